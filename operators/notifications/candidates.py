"""Notification candidates and their routing: every message is keyed by the recipient.

`notification_messages(event, author)` is what the flow's `notif_msgs` step (and the in-process
driver) does with each event: the recipient's own events go to their state ("self": timezone,
blocks, mutes, engagement with authors, feedback on notifications), and events about someone else
become candidates for that someone ("cand"). Candidate ids are deterministic (a replay of the same
events yields the same ids), unique per recipient, and at most 128 characters.

>>> from schemas import Event
>>> msgs = notification_messages(Event("e1", "like", 5, "u2", post_id="p1"), "u1")
>>> [(k, m[0]) for k, m in msgs]
[('u2', 'self'), ('u1', 'cand')]
>>> msgs[1][1][1].notification_id, msgs[1][1][1].group
('like.u1.p1.u2', 'like.p1')
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import Event
from schemas.exchange import pickled_by_fields

KINDS = ("like", "comment", "share", "follow", "reply", "new_post", "trending")
POST_KINDS = frozenset({"like", "comment", "share"})
# The recipient's own events that their notification state learns from.
SELF_TYPES = frozenset({"user_created", "user_deleted", "block", "mute", "follow", "unfollow",
                        "like", "comment", "share", "notification_opened",
                        "notification_dismissed"})
VERBS = {"like": "liked your post", "comment": "commented on your post",
         "share": "shared your post", "follow": "started following you",
         "reply": "replied in your conversation", "new_post": "posted something new",
         "trending": "posted something trending in your interests"}


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Candidate:
    notification_id: str
    recipient: str
    kind: str  # one of KINDS
    actor: str
    ts: int  # event time of the triggering event
    group: str  # aggregation key within the recipient (same group + window → one notification)
    post_id: str | None = None
    conversation_id: str | None = None


def candidate_id(*parts: str) -> str:
    """A deterministic notification id from its parts (≤ 128 characters)."""
    return ".".join(parts)[:128]


def notification_messages(event: Event, author: str | None) -> list[tuple[str, tuple]]:
    """[(recipient or actor, ("self", event, author) | ("cand", Candidate))]. `author` is the post's
    author for post events (the item step's view), else None."""
    out: list[tuple[str, tuple]] = []
    kind, actor = event.type, event.user_id
    if kind in SELF_TYPES:
        out.append((actor, ("self", event, author)))
    if kind in POST_KINDS and author and author != actor:
        out.append((author, ("cand", Candidate(
            candidate_id(kind, author, event.post_id, actor), author, kind, actor, event.ts,
            f"{kind}.{event.post_id}", post_id=event.post_id))))
    elif kind == "follow" and event.target_id and event.target_id != actor:
        target = event.target_id
        out.append((target, ("cand", Candidate(
            candidate_id("follow", target, actor), target, "follow", actor, event.ts, "follow"))))
    elif kind == "message_sent" and event.conversation_id:
        for recipient in dict.fromkeys(event.recipients or ()):
            if recipient != actor:
                out.append((recipient, ("cand", Candidate(
                    candidate_id("reply", recipient, event.conversation_id, event.event_id), recipient,
                    "reply", actor, event.ts, f"reply.{event.conversation_id}",
                    conversation_id=event.conversation_id))))
    return out


def new_post_candidate(author: str, follower: str, post_id: str, ts: int) -> tuple[str, tuple]:
    """A followed author posted (from the followers step's fan-out); the recipient's state keeps it
    only when the recipient engages with that author a lot."""
    return follower, ("cand", Candidate(candidate_id("new_post", follower, post_id), follower, "new_post",
                                        author, ts, f"new_post.{post_id}", post_id=post_id))


def delivery_message(author: str, delivery: tuple) -> tuple[str, tuple]:
    """The followers step's ("deliver" | "undeliver", follower, post_id, ts) of `author`'s post
    (operators.graph) for the follower's notification state: the new-post candidate, or its
    withdrawal ("withdraw", Candidate: `RecipientState.withdraw`)."""
    kind, follower, post_id, ts = delivery
    key, (_, candidate) = new_post_candidate(author, follower, post_id, ts)
    return key, ("cand" if kind == "deliver" else "withdraw", candidate)
