"""The thin reader's HTTP API (FastAPI; OpenAPI at /docs). No Bytewax here: it reads Redis only."""

from __future__ import annotations

import gc
import os
from contextlib import asynccontextmanager
from urllib.parse import urlencode

import redis
from fastapi import FastAPI, HTTPException, Path, Query
from fastapi.responses import Response

import config
from config import Settings, logs
from config.security import redis_connection
from operators.experiments import report as experiments_report
from operators.experiments.stats import ALPHA, MIXTURE_LIFT
from reader import inspector, middleware, social
from reader.client import PersonaClient
from reader.feed_endpoint import (
    LIMIT_DEFAULT,
    LIMIT_MAX,
    LIMIT_MIN,
    MAX_CURSOR,
    MAX_USER_ID,
    FeedEndpoint,
)
from reader.metrics import ReaderMetrics

CONFIG_ENV = "PERSONA_CONFIG_FILE"  # `persona serve --workers N -c F`: each worker loads F


def app_from_env() -> FastAPI:
    """The app of one `persona serve --workers N` worker process (uvicorn imports it by name)."""
    settings = config.load(os.environ.get(CONFIG_ENV) or None)
    logs.configure(settings.log)  # the access log (reader.middleware) is persona.access, INFO
    return create_app(settings)


def create_app(settings: Settings) -> FastAPI:
    timeout_s = settings.reader.redis_timeout_s  # every Redis call of a request, then 503
    client = PersonaClient.from_settings(settings, timeout_s=timeout_s)
    metrics = ReaderMetrics()
    url, options = redis_connection(settings.redis)
    feed_endpoint = FeedEndpoint(url, {**options, "timeout_s": timeout_s}, settings.redis.prefix,
                                 metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # what start-up allocated (modules, routes, schemas) never becomes garbage: keep it out
        # of the collector's full passes, which would otherwise pause requests scanning it
        gc.freeze()
        yield
        await feed_endpoint.aclose()

    app = middleware.ReaderAPI(title="persona reader", version="1", lifespan=lifespan,
                  description="Precomputed personalized feeds, served from Redis. With "
                              "`reader.token` set, send `Authorization: Bearer <token>`.")
    app.state.metrics = metrics
    # bearer token, metrics, access log; GET /feed/{user_id} is answered there by feed_endpoint
    middleware.install(app, metrics, settings.reader.token, feed_endpoint)
    inspector.install(app, client, metrics)  # /inspect page and its JSON
    social.install(app, client, settings)  # /suggestions/{user_id}, /search/rerank

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)

    @app.get("/healthz")
    def healthz() -> dict:
        try:
            client.redis.ping()
        except redis.RedisError as exc:
            raise HTTPException(503, f"Redis unreachable: {exc}") from exc
        return {"status": "ok", "version": client.version()}

    @app.get("/feed/{user_id}", responses={400: {"description": "invalid cursor"},
                                           503: {"description": "feed store unavailable"}})
    async def feed(user_id: str = Path(min_length=1, max_length=MAX_USER_ID),
                   limit: int = Query(LIMIT_DEFAULT, ge=LIMIT_MIN, le=LIMIT_MAX),
                   cursor: str | None = Query(None, max_length=MAX_CURSOR)) -> Response:
        """The user's ranked feed: items with scores, machine-readable reasons and explanations.
        (The declaration documents the route; requests are answered before routing by
        reader.feed_endpoint, with the same bounds.)"""
        query = urlencode({"limit": limit, **({"cursor": cursor} if cursor else {})})
        status, body, etag = await feed_endpoint.respond(user_id, query.encode())
        headers = {"etag": etag.decode(), "cache-control": "private, no-cache"} if etag else None
        return Response(body, status, media_type="application/json", headers=headers)

    @app.get("/experiments")
    def experiments(alpha: float = Query(ALPHA, gt=0, le=0.5),
                    mixture_lift: float = Query(MIXTURE_LIFT, gt=0)) -> list[dict]:
        """Every counted experiment's report, as `persona experiments report redis --json -`
        gives it: per arm the rates, the differences from the control with their fixed and
        always-valid intervals, the sample-ratio check and a verdict (see README "Experiments").
        Safe to poll: the always-valid intervals hold however often they are read."""
        try:
            counts = experiments_report.from_redis(client.redis, client.keyspace())
        except redis.RedisError as exc:
            raise HTTPException(503, f"experiment counters unavailable: {exc}") from exc
        return experiments_report.build(counts, settings, alpha, mixture_lift)

    @app.get("/notifications/{user_id}")
    def notifications(user_id: str, limit: int = Query(20, ge=1, le=1000),
                      decision: str | None = Query(None, pattern="^(send|delay|aggregate|suppress)$")
                      ) -> dict:
        """The recipient's newest notification decisions with reason codes, predicted open
        probability and send_at (schemas/notifications.py)."""
        if not user_id or len(user_id) > 128:
            raise HTTPException(422, "user_id must be 1..128 characters")
        try:
            return client.notifications(user_id, limit, decision)
        except redis.RedisError as exc:
            raise HTTPException(503, f"notification store unavailable: {exc}") from exc

    return app
