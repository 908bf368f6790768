"""One HTTP middleware for the reader: bearer-token check, metrics, and an access log without
personal data (the route template is logged, never the path: `/feed/{user_id}`, not a user id)."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Match

from reader.auth import PUBLIC_PATHS, authorized
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


def install(app: FastAPI, metrics: ReaderMetrics, token: str) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        route = route_template(app, request.scope)
        status = 500
        try:
            if request.url.path in PUBLIC_PATHS or authorized(
                    request.headers.get("authorization"), token):
                response = await call_next(request)
            else:
                response = JSONResponse({"detail": "missing or invalid bearer token"},
                                        status_code=401, headers={"WWW-Authenticate": "Bearer"})
            status = response.status_code
            return response
        finally:
            elapsed = time.perf_counter() - started
            metrics.observe(route, request.method, status, elapsed)
            log.info("%s %s %d %.1fms", request.method, route, status, elapsed * 1000)
