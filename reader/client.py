"""The thin reader's Python client: one Redis read per request, following the active version.

>>> # client = PersonaClient.from_url("redis://127.0.0.1:6379/0"); client.feed("u0001", limit=10)
"""

from __future__ import annotations

import base64
import time
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


def feed_page(user_id: str, version: str, raw: bytes | None, limit: int,
              cursor: str | None) -> FeedPage:
    """A page of the stored feed value `raw` (None: no feed yet) with an explanation per reason:
    the one renderer behind the Python client and the HTTP reader."""
    if raw is None:
        return FeedPage(user_id, version, None, [], None)
    offset = decode_cursor(cursor)[1] if cursor else 0
    value = orjson.loads(raw)
    items = value["items"][offset: offset + limit]
    for item in items:
        item["explanations"] = [explain(r) for r in item["reasons"]]
    end = offset + len(items)
    more = end < len(value["items"])
    return FeedPage(user_id, version, value["generated_at"], items,
                    encode_cursor(value["generated_at"], end) if more else None,
                    value.get("arms", {}))  # feeds written before experiments have none


def encode_cursor(generated_at: int, offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([generated_at, offset])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        generated_at, offset = orjson.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(offset, int) or offset < 0:
            raise ValueError
        return int(generated_at), offset
    except Exception:
        raise InvalidCursor(f"invalid cursor {cursor[:40]!r}: pass next_cursor from a previous page") from None


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
