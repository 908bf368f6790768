"""Which users' social partitions learn what from an event (shared by the flow and `linkpred`)."""

from __future__ import annotations

from schemas import Event

SOCIAL_TYPES = frozenset({
    "user_created", "user_deleted", "follow", "unfollow", "block", "mute", "group_joined",
    "group_left", "message_sent", "like", "comment", "share", "post_created",
})


def social_messages(event: Event, view) -> list[tuple[str, tuple]]:
    """[(user key, message)]: ("event", Event, author, topics, group) for the actor;
    ("followed_by", kind, actor, ts, target) for a follow/unfollow/block target;
    ("received", conversation, sender, ts, recipient) for each message recipient (the key last:
    Bytewax builders do not get the key)."""
    if event.type not in SOCIAL_TYPES:
        return []
    author = getattr(view, "author_id", None) if view is not None else None
    topics = tuple(getattr(view, "topics", ()) or ()) if view is not None else ()
    group = getattr(view, "group_id", None) if view is not None else None
    if event.type == "post_created":
        author, topics, group = event.user_id, tuple(event.topics or ()), event.group_id
    out: list[tuple[str, tuple]] = [(event.user_id, ("event", event, author, topics, group))]
    target = event.target_id
    if target and target != event.user_id and event.type in ("follow", "unfollow", "block"):
        out.append((target, ("followed_by", event.type, event.user_id, event.ts, target)))
    if event.type == "message_sent":
        for r in event.recipients or ():
            if r != event.user_id:
                out.append((r, ("received", event.conversation_id, event.user_id, event.ts, r)))
    return out
