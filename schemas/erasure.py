"""Erasure commands: what the `erasure` step sends, through the flow's own Kafka command topic, to
the partitions that hold something about a deleted user (Bytewax dataflows have no cycles, and the
owners of those states sit upstream of the step that knows them).

>>> c = Command("forget", "u2", "u1", ("p1",))
>>> decode_command(encode_command(c)) == c
True
>>> decode_command(b'{"cmd": "nope"}') is None
True
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from schemas.exchange import pickled_by_fields

# erase_post: key = a post of the deleted user (items, similarity: forget it entirely)
# forget: key = a user whose state or stored values mention the deleted user (users, suggestions,
#         notifications: drop the user and their posts, then rewrite what they publish)
# forget_nbr: key = a post whose item-kNN neighbours include an erased post (similarity)
# forget_follower: key = a user the deleted user followed (followers: drop them from the list)
KINDS = ("erase_post", "forget", "forget_nbr", "forget_follower")
MAX_IDS = 10_000  # posts per command (the erasure index keeps fewer)


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Command:
    kind: str
    key: str  # the partition key of the receiving state
    user: str  # the deleted user
    posts: tuple[str, ...] = ()  # the deleted user's posts (forget), or the erased post (forget_nbr)


def encode_command(c: Command) -> bytes:
    return orjson.dumps({"cmd": c.kind, "key": c.key, "user": c.user, "posts": list(c.posts)})


def decode_command(raw: bytes) -> Command | None:
    """None for anything that is not a well-formed command (it becomes a dead letter)."""
    try:
        d = orjson.loads(raw)
        kind, key, user, posts = d["cmd"], d["key"], d["user"], d.get("posts", [])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if (kind not in KINDS or not isinstance(key, str) or not isinstance(user, str)
            or not isinstance(posts, list) or len(posts) > MAX_IDS
            or not all(isinstance(p, str) for p in posts)):
        return None
    return Command(kind, key, user, tuple(posts))
