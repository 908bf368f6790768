"""The thin reader's HTTP API (FastAPI; OpenAPI at /docs). No Bytewax here: it reads Redis only."""

from __future__ import annotations

import redis
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import ORJSONResponse, Response

from config import Settings
from reader import inspector, middleware, social
from reader.client import InvalidCursor, PersonaClient
from reader.metrics import ReaderMetrics


def create_app(settings: Settings) -> FastAPI:
    client = PersonaClient.from_settings(settings)
    metrics = ReaderMetrics()
    app = FastAPI(title="persona reader", version="1",
                  description="Precomputed personalized feeds, served from Redis. With "
                              "`reader.token` set, send `Authorization: Bearer <token>`.",
                  default_response_class=ORJSONResponse)
    app.state.metrics = metrics
    middleware.install(app, metrics, settings.reader.token)  # bearer token, metrics, access log
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

    @app.get("/feed/{user_id}")
    def feed(user_id: str, limit: int = Query(20, ge=1, le=200),
             cursor: str | None = Query(None, max_length=200)) -> dict:
        """The user's ranked feed: items with scores, machine-readable reasons and explanations."""
        if not user_id or len(user_id) > 128:
            raise HTTPException(422, "user_id must be 1..128 characters")
        try:
            page = client.feed(user_id, limit, cursor)
            metrics.feed_lookup(page.generated_at is not None)
            return page.to_dict()
        except InvalidCursor as exc:
            raise HTTPException(400, str(exc)) from exc
        except redis.RedisError as exc:
            raise HTTPException(503, f"feed store unavailable: {exc}") from exc

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
