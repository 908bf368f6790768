"""Activity events, schema v1: one envelope, one table of event types, one decoded class.

Wire format (JSON object, flat): the envelope fields `v`, `event_id`, `type`, `ts` (event time, epoch
milliseconds), `user_id` (the actor), then the fields of the type. Unknown extra fields are ignored so
producers can add fields compatibly; a missing required field, a wrong type or an unknown event type is
a rejection with a precise reason (see `schemas.codec`).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.exchange import pickled_by_fields

SCHEMA_VERSION = 1

# Field kinds: "id" (non-empty str ≤ 128 chars), "str" (≤ 1024 chars), "int" (non-negative),
# "ids" (list of ids), "strs" (list of short strings).
ENVELOPE: dict[str, str] = {"event_id": "id", "type": "str", "ts": "int", "user_id": "id"}

# type -> (required fields, optional fields); every field name maps to a kind in FIELD_KINDS.
EVENT_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "user_created": ((), ("interests", "timezone")),
    "user_deleted": ((), ()),
    "post_created": (("post_id",), ("topics", "group_id")),
    "post_deleted": (("post_id",), ()),
    "follow": (("target_id",), ()),
    "unfollow": (("target_id",), ()),
    "block": (("target_id",), ()),
    "mute": (("target_id",), ()),
    "impression": (("post_id",), ("surface", "position")),
    "click": (("post_id",), ()),
    "like": (("post_id",), ()),
    "comment": (("post_id",), ()),
    "share": (("post_id",), ()),
    "hide": (("post_id",), ()),
    "not_interested": (("post_id",), ()),
    "report": (("post_id",), ()),
    "dwell": (("post_id", "dwell_ms"), ()),
    "message_sent": (("conversation_id",), ("recipients",)),
    "group_joined": (("group_id",), ()),
    "group_left": (("group_id",), ()),
    "search": (("query",), ("result_ids",)),
    "notification_opened": (("notification_id",), ()),
    "notification_dismissed": (("notification_id",), ()),
    # User controls (operators/feed/controls.py): see less of an author and/or a topic, see more of
    # a topic. `mute` (above) filters an author for good; `hide`/`not_interested` drop one post.
    "see_less": ((), ("target_id", "topic")),
    "see_more": (("topic",), ()),
}

# type -> fields of which at least one must be present (beyond the table's required ones).
ANY_OF: dict[str, tuple[str, ...]] = {"see_less": ("target_id", "topic")}

FIELD_KINDS: dict[str, str] = {
    "post_id": "id",
    "target_id": "id",
    "group_id": "id",
    "conversation_id": "id",
    "notification_id": "id",
    "topic": "id",
    "topics": "strs",
    "interests": "strs",
    "recipients": "ids",
    "result_ids": "ids",
    "timezone": "str",
    "surface": "str",
    "query": "str",
    "position": "int",
    "dwell_ms": "int",
}

FIELD_DOCS: dict[str, str] = {
    "event_id": "Globally unique id of this event; duplicates are dropped (bounded memory).",
    "type": "Event type, one of the documented types.",
    "ts": "Event time in epoch milliseconds.",
    "user_id": "The acting user.",
    "v": "Schema version (1). Optional; absent means 1.",
    "post_id": "The post acted on (or created).",
    "target_id": "The user followed, unfollowed, blocked, muted, or seen less of (see_less).",
    "topic": "The topic a user wants to see less (see_less) or more (see_more) of.",
    "group_id": "A group/community.",
    "conversation_id": "A messaging conversation.",
    "notification_id": "The notification opened or dismissed.",
    "topics": "Topics of a post.",
    "interests": "Topics a new user declared at signup.",
    "recipients": "Users a message was sent to.",
    "result_ids": "Post ids returned by a search, in order.",
    "timezone": "IANA timezone of a new user, e.g. Europe/Paris.",
    "surface": "Where an impression happened (feed, search, profile...).",
    "query": "Search query text.",
    "position": "0-based position of an impression in its surface.",
    "dwell_ms": "Time spent on a post in milliseconds.",
}

# Engagement weights: how much an event says the user likes the post (used for affinities/labels).
ENGAGEMENT_WEIGHT: dict[str, float] = {
    "like": 1.0,
    "comment": 1.5,
    "share": 2.0,
    "click": 0.5,
}
NEGATIVE_TYPES = frozenset({"hide", "report", "not_interested"})
POST_ACTIONS = frozenset(
    {"impression", "click", "like", "comment", "share", "hide", "report", "dwell", "not_interested"}
)
CONTROL_TYPES = frozenset({"see_less", "see_more", "not_interested", "hide", "mute"})


@pickled_by_fields
@dataclass(slots=True)
class Event:
    """A decoded, validated event. Optional fields are None when absent."""

    event_id: str
    type: str
    ts: int
    user_id: str
    post_id: str | None = None
    target_id: str | None = None
    group_id: str | None = None
    conversation_id: str | None = None
    notification_id: str | None = None
    topic: str | None = None
    topics: tuple[str, ...] | None = None
    interests: tuple[str, ...] | None = None
    recipients: tuple[str, ...] | None = None
    result_ids: tuple[str, ...] | None = None
    timezone: str | None = None
    surface: str | None = None
    query: str | None = None
    position: int | None = None
    dwell_ms: int | None = None

    def to_dict(self) -> dict:
        """The wire form (only present fields), suitable for `schemas.codec.encode_event`."""
        out: dict = {"v": SCHEMA_VERSION}
        for name in self.__slots__:  # type: ignore[attr-defined]
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out
