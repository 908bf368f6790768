"""One HTTP middleware for the reader: bearer-token check, metrics, and an access log without
personal data (the route template is logged, never the path: `/feed/{user_id}`, not a user id).
It answers feed reads itself with reader.feed_endpoint (the hot path skips FastAPI's routing)."""

from __future__ import annotations

import logging
import time
from functools import partial

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.routing import Match

from reader.auth import PUBLIC_PATHS, authorized
from reader.feed_endpoint import ROUTE as FEED_ROUTE
from reader.feed_endpoint import FeedEndpoint
from reader.metrics import ReaderMetrics

log = logging.getLogger("persona.reader")


def route_template(app: FastAPI, scope) -> str:
    """The path template of the route `scope` matches (bounded label), or "unmatched"."""
    partial = None
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "unmatched")
        if match == Match.PARTIAL and partial is None:
            partial = getattr(route, "path", None)
    return partial or "unmatched"


class _Guard:
    """Pure ASGI middleware (Starlette's `@app.middleware("http")` wraps every response in a task
    group and a memory stream: most of a feed request's latency under load), in front of the
    whole FastAPI app (ReaderAPI): FastAPI's own outer layers (error page, telemetry, body limit)
    cost a feed read ~10% of its CPU, and the feed endpoint needs none of them."""

    def __init__(self, app, router_app: FastAPI, metrics: ReaderMetrics, token: str,
                 feed: FeedEndpoint):
        self.app, self.router_app, self.metrics, self.token = app, router_app, metrics, token
        self.feed = feed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        fast = self.feed.handles(scope)
        route = FEED_ROUTE if fast else route_template(self.router_app, scope)
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            header = next((v.decode("latin-1") for k, v in scope["headers"]
                           if k == b"authorization"), None)
            if scope["path"] in PUBLIC_PATHS or authorized(header, self.token):
                await (self.feed if fast else self.app)(scope, receive, send_status)
            else:
                await JSONResponse({"detail": "missing or invalid bearer token"}, status_code=401,
                                   headers={"WWW-Authenticate": "Bearer"})(
                    scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"]
            self.metrics.observe(route, method, status, elapsed)
            log.info("%s %s %d %.2fms", method, route, status, elapsed * 1000)


class ReaderAPI(FastAPI):
    """FastAPI with the reader's guard as its outermost layer (set by `install`)."""

    guard: _Guard | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self.guard is None:
            await super().__call__(scope, receive, send)
        else:
            await self.guard(scope, receive, send)


def install(app: ReaderAPI, metrics: ReaderMetrics, token: str, feed: FeedEndpoint) -> None:
    """Bearer token, metrics and access log around every route of `app`; feed reads by `feed`."""
    app.guard = _Guard(partial(FastAPI.__call__, app), app, metrics, token, feed)
