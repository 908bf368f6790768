"""GET /feed/{user_id} as a plain ASGI endpoint: the reader's hot path.

reader.middleware hands it feed requests before FastAPI's routing, so a feed read costs one Redis
round trip (the stored value; the active-version pointer rides along in the same pipeline only when
it is due, reader.client.ActivePointer) and no thread hop, dependency solving, pydantic validation
or response model: the query is checked by hand with the bounds the OpenAPI route declares
(reader.http), the page is rendered by the Python client's own `feed_page`, and the bytes go out
as they are. Measured in README "Performance" (`persona bench-reader`).
"""

from __future__ import annotations

import asyncio
import hashlib
from urllib.parse import parse_qsl

import orjson
import redis
import redis.asyncio as aredis

from operators.redis_store import connect_async
from reader.client import ActivePointer, InvalidCursor, decode_cursor, feed_page
from reader.metrics import ReaderMetrics
from schemas.keyspace import Keyspace

ROUTE = "/feed/{user_id}"
PATH_PREFIX = "/feed/"
MAX_USER_ID = 128
LIMIT_DEFAULT, LIMIT_MIN, LIMIT_MAX = 20, 1, 200
MAX_CURSOR = 4096  # (a cursor names the posts shown: reader.client.SERVED_MAX, 4 bytes each)
_JSON = [(b"content-type", b"application/json")]
# a client may keep a page but must ask again each time (If-None-Match → 304 when unchanged)
_REVALIDATE = (b"cache-control", b"private, no-cache")


class FeedEndpoint:
    def __init__(self, url: str, options: dict, prefix: str, metrics: ReaderMetrics):
        self.url, self.options, self.prefix, self.metrics = url, options, prefix, metrics
        self.pointer = ActivePointer()
        self._active_key = Keyspace(prefix, "").active
        self._client: tuple[asyncio.AbstractEventLoop, aredis.Redis] | None = None

    def handles(self, scope) -> bool:
        """GET /feed/<one path segment>; anything else goes to FastAPI's routing."""
        path = scope["path"]
        return (scope["method"] == "GET" and path.startswith(PATH_PREFIX)
                and len(path) > len(PATH_PREFIX) and "/" not in path[len(PATH_PREFIX):])

    def redis(self) -> aredis.Redis:
        """The asyncio client of the running event loop (one per process under uvicorn; a
        test client may run each request on a new loop, which a client must not outlive)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client[0] is not loop:
            self._client = (loop, connect_async(self.url, **self.options))
        return self._client[1]

    async def aclose(self) -> None:
        if self._client is not None and self._client[0] is asyncio.get_running_loop():
            await self._client[1].aclose()
        self._client = None

    async def read(self, user_id: str) -> tuple[str, bytes | None]:
        """(active version, the user's stored feed or None), in one round trip but on a switch."""
        client = self.redis()
        if not self.pointer.due():
            version = self.pointer.version
            return version, await client.get(Keyspace(self.prefix, version).feed(user_id))
        guess = self.pointer.version or "1"
        pipe = client.pipeline(transaction=False)
        pipe.get(self._active_key)
        pipe.get(Keyspace(self.prefix, guess).feed(user_id))
        active, raw = await pipe.execute()
        version = self.pointer.update(active)
        if version != guess:  # the pointer moved: read the value of the version it names
            raw = await client.get(Keyspace(self.prefix, version).feed(user_id))
        return version, raw

    async def __call__(self, scope, receive, send) -> None:
        user_id = scope["path"][len(PATH_PREFIX):]
        if_none_match = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
        status, body, etag = await self.respond(user_id, scope["query_string"], if_none_match)
        headers = [(b"etag", etag), _REVALIDATE] if etag else []
        if status != 304:
            headers += _JSON + [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def respond(self, user_id: str, query_string: bytes,
                      if_none_match: bytes | None = None) -> tuple[int, bytes, bytes | None]:
        """(status, JSON body, ETag) of GET /feed/{user_id}?{query_string}: 304 and no body
        when `if_none_match` (the request's If-None-Match) names the page's ETag."""
        params = dict(parse_qsl(query_string.decode("latin-1"))) if query_string else {}
        problem = _check(user_id, params)
        if problem:
            return 422, orjson.dumps({"detail": [problem]}), None
        limit = int(params.get("limit", LIMIT_DEFAULT))
        try:
            if "cursor" in params:  # refused before an If-None-Match could answer 304
                decode_cursor(params["cursor"])
            version, raw = await self.read(user_id)
            etag = page_etag(version, raw, query_string)
            if if_none_match is not None and _matches(if_none_match, etag):
                self.metrics.feed_lookup(raw is not None)
                return 304, b"", etag  # (not rendered: the page is what the client holds)
            page = feed_page(user_id, version, raw, limit, params.get("cursor"))
        except InvalidCursor as exc:
            return 400, orjson.dumps({"detail": str(exc)}), None
        except redis.RedisError as exc:
            return 503, orjson.dumps({"detail": f"feed store unavailable: {exc}"}), None
        self.metrics.feed_lookup(page.generated_at is not None)
        return 200, page.to_json(), etag


RENDERING = b"2"  # change it with what `feed_page` renders: clients then fetch pages again


def page_etag(version: str, raw: bytes | None, query_string: bytes) -> bytes:
    """A strong ETag of a feed page: the page is a function of the keyspace version, the stored
    value and the query (`feed_page`, as of `RENDERING`), so equal inputs give equal bytes.

    >>> page_etag("3", b'{"items": []}', b"limit=5") == page_etag("3", b'{"items": []}', b"limit=5")
    True
    >>> page_etag("3", b"a", b"") != page_etag("4", b"a", b"") != page_etag("4", b"b", b"")
    True
    """
    # (neither a version nor a query string holds a NUL)
    joined = b"%b\0%b\0%b\0%b" % (RENDERING, version.encode(), query_string, raw or b"")
    return b'"%b"' % hashlib.blake2b(joined, digest_size=8).hexdigest().encode()


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    """Whether an If-None-Match header names `etag` (a list, `*`, or a weak W/ form)."""
    return any(tag.strip().removeprefix(b"W/") in (etag, b"*")
               for tag in if_none_match.split(b","))


def _check(user_id: str, params: dict[str, str]) -> dict | None:
    """The first invalid input as a FastAPI-style 422 detail entry, or None."""
    if len(user_id) > MAX_USER_ID:
        return {"type": "string_too_long", "loc": ["path", "user_id"],
                "msg": f"user_id must be 1..{MAX_USER_ID} characters"}
    if "limit" in params:
        raw = params["limit"]
        try:
            limit = int(raw)
        except ValueError:
            return {"type": "int_parsing", "loc": ["query", "limit"],
                    "msg": "Input should be a valid integer", "input": raw}
        if not LIMIT_MIN <= limit <= LIMIT_MAX:
            return {"type": "out_of_range", "loc": ["query", "limit"],
                    "msg": f"limit must be {LIMIT_MIN}..{LIMIT_MAX}", "input": raw}
    if len(params.get("cursor", "")) > MAX_CURSOR:
        return {"type": "string_too_long", "loc": ["query", "cursor"],
                "msg": f"cursor must be at most {MAX_CURSOR} characters"}
    return None


__all__ = ["FeedEndpoint", "ROUTE"]
