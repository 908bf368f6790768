"""One user's side of the social graph, for suggestions (the `suggestions` step, keyed by user).

Learns the user's own follows, blocks, mutes, groups, engaged authors and topics, declared interests,
conversations, and who follows or blocks them (routed here by `routing.social_messages`). Every
container is bounded, so memory per user is capped. `graph_record()` is what other users' suggestion
code may read about this user (followees, groups, engaged authors), published to the feature store.
"""

from __future__ import annotations

import orjson

from operators.bounded import add_capped, cap_newest, cap_top
from schemas import Event

MAX_FOLLOWING = 2000
MAX_FOLLOWERS = 1000
MAX_EDGES = 1000  # groups
MAX_SAFETY_EDGES = 50_000  # blocks, mutes, blocked-by: a new one makes room (bounded.add_capped)
MAX_AUTHORS = 200
MAX_TOPICS = 50
MAX_CONVERSATIONS = 100
MAX_CONTACTS = 200
PUBLISH_FOLLOWEES = 300  # newest followees published in the graph record
PUBLISH_GROUPS = 100
PUBLISH_AUTHORS = 30
ENGAGE_TYPES = {"like": 1.0, "comment": 2.0, "share": 2.0}


class Conversation:
    """last_ts, messages sent / received, replies (a send after an unanswered receive), peers."""

    __slots__ = ("awaiting", "last_ts", "peers", "prompts", "received", "replies", "sent")

    def __init__(self):
        self.last_ts = 0
        self.sent = self.received = self.prompts = self.replies = 0
        self.awaiting = False  # received since the user last wrote
        self.peers: tuple[str, ...] = ()

    def __getstate__(self):
        return (self.last_ts, self.sent, self.received, self.prompts, self.replies,
                self.awaiting, self.peers)

    def __setstate__(self, s):
        (self.last_ts, self.sent, self.received, self.prompts, self.replies,
         self.awaiting, self.peers) = s


class SocialState:
    """Picklable, bounded per-user social state."""

    def __init__(self, user_id: str, deleted: bool = False):
        self.user_id = user_id
        self.deleted = deleted  # a tombstone: learns nothing until a new `user_created`
        self.interests: tuple[str, ...] = ()
        self.following: dict[str, int] = {}  # followee -> ts (insertion order = oldest first)
        self.followers: dict[str, int] = {}
        self.blocked: set[str] = set()
        self.muted: set[str] = set()
        self.blocked_by: set[str] = set()
        self.groups: dict[str, int] = {}
        self.authors: dict[str, float] = {}  # engaged author -> weighted count
        self.topics: dict[str, float] = {}  # engaged or posted topic -> weighted count
        self.conversations: dict[str, Conversation] = {}
        self.contacts: dict[str, float] = {}  # messaged with -> count (both directions)
        self.last_ts = 0
        self.graph_changed = False
        self.followers_changed = False  # republish the follower count (popular-users index)

    def excluded(self) -> set[str]:
        """Never suggested: self, followed, blocked, muted, and those who blocked the user."""
        return {self.user_id, *self.following, *self.blocked, *self.muted, *self.blocked_by}

    # ---------------------------------------------------------------------------------- learning
    def learn(self, msg: tuple) -> list[tuple]:
        """Apply one routed message; returns side write records (group members, author likers)."""
        kind = msg[0]
        if self.deleted:
            if kind != "event" or msg[1].type != "user_created":
                return []
            self.deleted = False
            return [("undeleted", self.user_id)] + self.learn(msg)  # suggestible again
        if kind == "followed_by":
            _, how, actor, ts = msg[:4]
            self.last_ts = max(self.last_ts, ts)
            self.followers_changed = True
            if how == "follow":
                self.followers.pop(actor, None)
                self.followers[actor] = ts
                cap_newest(self.followers, MAX_FOLLOWERS)
            else:
                self.followers.pop(actor, None)
                if how == "block":
                    add_capped(self.blocked_by, actor, MAX_SAFETY_EDGES)
            return []
        if kind == "received":
            _, conv_id, sender, ts = msg[:4]
            self.last_ts = max(self.last_ts, ts)
            c = self._conversation(conv_id, ts)
            c.received += 1
            if not c.awaiting:
                c.awaiting, c.prompts = True, c.prompts + 1
            if sender not in c.peers:
                c.peers = (*c.peers, sender)[:20]
            self._contact(sender, 1.0)
            return []
        _, event, author, topics, group = msg
        return self._event(event, author, topics, group)

    def _event(self, e: Event, author, topics, group) -> list[tuple]:
        self.last_ts = max(self.last_ts, e.ts)
        t, out = e.type, []
        if t == "user_created":
            self.interests = tuple(e.interests or ())
        elif t == "follow" and e.target_id and e.target_id != self.user_id:
            if e.target_id not in self.blocked:
                self.following.pop(e.target_id, None)
                self.following[e.target_id] = e.ts
                cap_newest(self.following, MAX_FOLLOWING)
                self.graph_changed = True
        elif t in ("unfollow", "block", "mute") and e.target_id:
            if t != "mute" and self.following.pop(e.target_id, None) is not None:
                self.graph_changed = True
            if t == "block":  # (past the cap too: a block must always count)
                add_capped(self.blocked, e.target_id, MAX_SAFETY_EDGES)
                self.followers.pop(e.target_id, None)
            if t == "mute":
                add_capped(self.muted, e.target_id, MAX_SAFETY_EDGES)
        elif t == "group_joined" and e.group_id:
            if e.group_id not in self.groups and len(self.groups) < MAX_EDGES:
                self.groups[e.group_id] = e.ts
                self.graph_changed = True
                out.append(("group_member", e.group_id, self.user_id, True))
        elif t == "group_left" and e.group_id:
            if self.groups.pop(e.group_id, None) is not None:
                self.graph_changed = True
                out.append(("group_member", e.group_id, self.user_id, False))
        elif t in ENGAGE_TYPES and author and author != self.user_id:
            w = ENGAGE_TYPES[t]
            self.authors[author] = self.authors.get(author, 0.0) + w
            cap_top(self.authors, MAX_AUTHORS)
            self._topics(topics, w)
            self.graph_changed = True
            out.append(("liker", author, self.user_id, e.ts))
        elif t == "post_created":
            self._topics(topics, 1.0)
        elif t == "message_sent" and e.conversation_id:
            c = self._conversation(e.conversation_id, e.ts)
            c.sent += 1
            if c.awaiting:
                c.awaiting, c.replies = False, c.replies + 1
            for r in e.recipients or ():
                if r != self.user_id:
                    if r not in c.peers:
                        c.peers = (*c.peers, r)[:20]
                    self._contact(r, 1.0)
        return out

    def _topics(self, topics, w: float) -> None:
        for topic in topics or ():
            self.topics[topic] = self.topics.get(topic, 0.0) + w
        cap_top(self.topics, MAX_TOPICS)

    def _conversation(self, conv_id: str, ts: int) -> Conversation:
        c = self.conversations.pop(conv_id, None) or Conversation()
        c.last_ts = max(c.last_ts, ts)
        self.conversations[conv_id] = c  # most recent last
        cap_newest(self.conversations, MAX_CONVERSATIONS)
        return c

    def _contact(self, other: str, w: float) -> None:
        self.contacts[other] = self.contacts.get(other, 0.0) + w
        cap_top(self.contacts, MAX_CONTACTS)

    def forget(self, user_id: str) -> None:
        """Erasure (operators.erasure): drop a deleted user from every edge, count and peer list,
        and republish at the next micro-batch the graph record and follower count if they named
        or counted them — only then: an owner told because its suggestions named the user (or a
        replay telling every state) has nothing else to rewrite."""
        named = (self.following.pop(user_id, None) is not None) | (
            self.authors.pop(user_id, None) is not None)
        counted = self.followers.pop(user_id, None) is not None
        self.contacts.pop(user_id, None)
        for edges in (self.blocked, self.muted, self.blocked_by):
            edges.discard(user_id)
        for c in self.conversations.values():
            if user_id in c.peers:
                c.peers = tuple(p for p in c.peers if p != user_id)
        self.graph_changed |= named
        self.followers_changed |= counted
        reported = getattr(self, "reported", None)
        if reported is not None:
            reported.forget(user_id)

    # ---------------------------------------------------------------------------------- publish
    def graph_record(self) -> dict:
        """What other users' suggestions may read about this user."""
        top_authors = sorted(self.authors, key=lambda a: (-self.authors[a], a))[:PUBLISH_AUTHORS]
        return {"f": list(self.following)[-PUBLISH_FOLLOWEES:],
                "g": list(self.groups)[-PUBLISH_GROUPS:], "a": top_authors}

    def publish(self) -> list[tuple]:
        """Write records for what changed since the last micro-batch."""
        out: list[tuple] = []
        if self.graph_changed:
            self.graph_changed = False
            out.append(("graph", self.user_id, orjson.dumps(self.graph_record())))
        if self.followers_changed:
            self.followers_changed = False
            out.append(("popular_user", self.user_id, len(self.followers)))
        return out

    def top_topics(self, n: int = 5) -> list[str]:
        ranked = sorted(self.topics, key=lambda t: (-self.topics[t], t))
        return list(dict.fromkeys([*self.interests, *ranked]))[:n]
