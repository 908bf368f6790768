"""The thin reader's Python client: one Redis read per request, following the active version.

>>> # client = PersonaClient.from_url("redis://127.0.0.1:6379/0"); client.feed("u0001", limit=10)
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import zlib
from dataclasses import dataclass, field

import orjson
import redis

from operators.redis_store import connect
from reader.explain import explain
from schemas.keyspace import Keyspace

POINTER_TTL_S = 0.5  # how long the active-version pointer is cached; old versions outlive it


class InvalidCursor(ValueError):
    pass


class ActivePointer:
    """The active keyspace version as last read, trusted for POINTER_TTL_S: a switch reaches every
    reader within that, and a request reads it only when it is due (old versions outlive it)."""

    def __init__(self, ttl_s: float = POINTER_TTL_S):
        self.ttl_s = ttl_s
        self.version: str | None = None
        self._read_at = 0.0

    def due(self) -> bool:
        return self.version is None or time.monotonic() - self._read_at > self.ttl_s

    def update(self, raw: bytes | None) -> str:
        """The pointer's new value; absent, "1" (nothing switched yet), unless a version was read
        before: then the pointer was lost with Redis's data, and the last one stays until the
        workers set it back (operators.redis_store.KeyspaceGuard)."""
        version = raw.decode() if raw else (self.version or "1")
        self.version, self._read_at = version, time.monotonic()
        return version


@dataclass(frozen=True)
class FeedPage:
    user_id: str
    version: str
    generated_at: int | None
    items: list[dict]
    next_cursor: str | None
    arms: dict[str, str] = field(default_factory=dict)  # {experiment: arm} the feed was ranked with

    def to_dict(self) -> dict:
        return {"user_id": self.user_id, "version": self.version,
                "generated_at": self.generated_at, "arms": self.arms, "items": self.items,
                "next_cursor": self.next_cursor}

    def to_json(self) -> bytes:
        """The HTTP body of GET /feed/{user_id}."""
        return orjson.dumps(self.to_dict())


SERVED_MAX = 500  # post ids a cursor remembers as shown (4 bytes each): deeper is not scrolled
_CURSOR_FORMAT = 2


def feed_page(user_id: str, version: str, raw: bytes | None, limit: int,
              cursor: str | None) -> FeedPage:
    """A page of the stored feed value `raw` (None: no feed yet) with an explanation per reason:
    the one renderer behind the Python client and the HTTP reader.

    Feeds are ranked again while a user scrolls (after a like, within seconds of impressions) and
    a version switch replaces them all, so a cursor is not a bare offset. It names the stored
    value it was cut from (`feed_fingerprint`) and the posts already shown (CRC-32s of their ids,
    the last SERVED_MAX): on the same value the next page starts at the cursor's offset; on
    another one it starts from the top. Either way no post already shown is shown again, and
    none is skipped: a post ranked in above the old offset is shown on the next page."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    at = decode_cursor(cursor) if cursor else None
    if raw is None:
        return FeedPage(user_id, version, None, [], None)
    fingerprint = feed_fingerprint(version, raw)
    value = orjson.loads(raw)
    stored = value["items"]
    offset, served = 0, ()
    if at is not None:
        served = at.served
        same = (at.fingerprint == fingerprint if at.fingerprint is not None
                else at.generated_at == value["generated_at"])  # a cursor of the format before
        offset = at.offset if same else 0  # another value: from the top, less what was shown
    shown = set(served)
    items, i = [], offset
    while i < len(stored) and len(items) < limit:
        item = stored[i]
        i += 1
        if not shown or zlib.crc32(item["post_id"].encode()) not in shown:
            items.append(item)
    for item in items:
        item["explanations"] = [explain(r) for r in item["reasons"]]
    more = i < len(stored)
    next_cursor = encode_cursor(fingerprint, i, (*served, *(
        zlib.crc32(item["post_id"].encode()) for item in items))) if more else None
    return FeedPage(user_id, version, value["generated_at"], items, next_cursor,
                    value.get("arms", {}))  # feeds written before experiments have none


def feed_fingerprint(version: str, raw: bytes) -> bytes:
    """8 bytes naming one stored feed value of one keyspace version (a re-rank with the same
    generated_at can still change its items)."""
    return hashlib.blake2b(b"%b\0%b" % (version.encode(), raw), digest_size=8).digest()


def encode_cursor(fingerprint: bytes, offset: int, served: tuple[int, ...]) -> str:
    """Format byte, fingerprint, offset (4 bytes), then the shown posts' CRC-32s (the last
    SERVED_MAX), URL-safe base64."""
    served = served[-SERVED_MAX:]
    packed = struct.pack(f">B8sI{len(served)}I", _CURSOR_FORMAT, fingerprint, offset, *served)
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


@dataclass(frozen=True)
class Cursor:
    fingerprint: bytes | None  # None: a cursor of the format before (an offset into a feed
    generated_at: int | None  # of this generated_at; readers of both run during a deploy)
    offset: int
    served: tuple[int, ...] = ()


def decode_cursor(cursor: str) -> Cursor:
    """The cursor `encode_cursor` made (or the format before it: [generated_at, offset] JSON)."""
    try:
        packed = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if packed[:1] == b"[":
            generated_at, offset = orjson.loads(packed)
            if not isinstance(offset, int) or offset < 0:
                raise ValueError
            return Cursor(None, int(generated_at), offset)
        if packed[0] != _CURSOR_FORMAT or len(packed) < 13 or (len(packed) - 13) % 4:
            raise ValueError
        _format, fingerprint, offset = struct.unpack_from(">B8sI", packed)
        return Cursor(fingerprint, None, offset,
                      struct.unpack_from(f">{(len(packed) - 13) // 4}I", packed, 13))
    except Exception:
        raise InvalidCursor(f"invalid cursor {cursor[:40]!r}: pass next_cursor from a previous "
                            "page") from None


class PersonaClient:
    def __init__(self, client: redis.Redis, prefix: str = "persona"):
        self.redis = client
        self.prefix = prefix
        self._pointer = ActivePointer()

    @classmethod
    def from_url(cls, url: str, prefix: str = "persona", timeout_s: float = 5.0,
                 **options) -> PersonaClient:
        """`options`: access settings for redis-py (username, password, ssl_*; cluster)."""
        return cls(connect(url, timeout_s=timeout_s, **options), prefix)

    @classmethod
    def from_settings(cls, settings, prefix: str | None = None,
                      timeout_s: float = 5.0) -> PersonaClient:
        """From the [redis] settings, with its ACL user, password and TLS options."""
        from config.security import redis_connection
        url, options = redis_connection(settings.redis)
        return cls.from_url(url, prefix or settings.redis.prefix, timeout_s, **options)

    def version(self) -> str:
        if self._pointer.due():
            return self._pointer.update(self.redis.get(Keyspace(self.prefix, "").active))
        return self._pointer.version

    def keyspace(self) -> Keyspace:
        return Keyspace(self.prefix, self.version())

    def profile(self, user_id: str) -> dict | None:
        """The user's top affinities as the workers last published them (None if not yet)."""
        raw = self.redis.get(self.keyspace().profile(user_id))
        return orjson.loads(raw) if raw else None

    def notifications(self, user_id: str, limit: int = 20, decision: str | None = None) -> dict:
        """The recipient's newest notification decisions (newest first), optionally only one
        decision kind (send, delay, aggregate, suppress): `{"user_id", "version", "updated_at",
        "items"}`; updated_at is None when the workers have decided nothing for this user yet."""
        ks = self.keyspace()
        raw = self.redis.get(ks.notifications(user_id))
        value = orjson.loads(raw) if raw else {"updated_at": None, "items": []}
        items = [i for i in value["items"] if decision is None or i["decision"] == decision]
        return {"user_id": user_id, "version": ks.version, "updated_at": value["updated_at"],
                "items": items[:limit]}

    def raw_feed(self, user_id: str) -> bytes | None:
        return self.redis.get(self.keyspace().feed(user_id))

    def feed(self, user_id: str, limit: int = 20, cursor: str | None = None) -> FeedPage:
        """A page of the user's precomputed feed; `cursor` continues from a previous page."""
        ks = self.keyspace()
        return feed_page(user_id, ks.version, self.redis.get(ks.feed(user_id)), limit, cursor)
