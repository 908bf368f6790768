"""Reader routes for social discovery: `GET /suggestions/{user_id}?kind=…` and `POST /search/rerank`.

Suggestions are precomputed by the `suggestions` step (one Redis read). Search re-ranking hydrates
and scores the given results at request time with the feed's own code (operators.feed.hydrate and
scoring via operators.suggestions.search), from the user's published ranking features and the same
Redis feature store the workers read — no train/serve skew — blended with the weight the flow's
`search_blend` step learned from search → click (`…:model:search_blend`; 0.5 before any).
"""

from __future__ import annotations

import time
from typing import Literal

import orjson
import redis
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from config import Settings
from operators.context import Context
from operators.redis_store import RedisFeatureStore
from operators.suggestions.search import PERSONAL_WEIGHT, published_user, rerank
from reader.client import PersonaClient
from reader.explain import explain_suggestion as explain

KINDS = ("people", "groups", "conversations", "contacts")


class SearchResult(BaseModel):
    id: str = Field(min_length=1, max_length=128)
    score: float = Field(0.0, allow_inf_nan=False)


class RerankRequest(BaseModel):
    user_id: str = Field(min_length=1, max_length=128)
    results: list[SearchResult] = Field(max_length=1000)


def install(app: FastAPI, client: PersonaClient, settings: Settings) -> None:
    ctx = Context.from_settings(settings)
    stores: dict[str, RedisFeatureStore] = {}

    def features() -> RedisFeatureStore:
        ks = client.keyspace()
        if ks.version not in stores:
            stores.clear()
            stores[ks.version] = RedisFeatureStore(client.redis, ks, ttl_s=1.0,
                                                   outage_timeout_s=0)  # 503 at once
        return stores[ks.version]

    @app.get("/suggestions/{user_id}")
    def suggestions(user_id: str, kind: Literal["people", "groups", "conversations", "contacts"]
                    = "people", limit: int = Query(20, ge=1, le=100)) -> dict:
        """Precomputed suggestions with reasons: people to follow, groups to join, conversations
        (ranked), contacts to message."""
        if len(user_id) > 128:
            raise HTTPException(422, "user_id must be 1..128 characters")
        try:
            raw = client.redis.get(client.keyspace().suggestions(user_id))
            value = orjson.loads(raw) if raw else {"generated_at": None, kind: []}
            items = value.get(kind, [])
            if items and kind in ("people", "contacts"):  # stored before a suggested user left
                pipe, ks = client.redis.pipeline(transaction=False), client.keyspace()
                for item in items:
                    pipe.sismember(ks.deleted_users, ks.deleted_tag(item["id"]))
                items = [i for i, gone in zip(items, pipe.execute(), strict=True) if not gone]
        except redis.RedisError as exc:
            raise HTTPException(503, f"suggestion store unavailable: {exc}") from exc
        items = items[:limit]
        for item in items:
            item["explanations"] = [explain(kind, r) for r in item["reasons"]]
        return {"user_id": user_id, "kind": kind, "generated_at": value["generated_at"],
                "items": items}

    @app.post("/search/rerank")
    def search_rerank(body: RerankRequest) -> dict:
        """Re-rank search results for a user with the feed's features and models; returns a
        permutation of the input with a reason per result."""
        try:
            store = features()
            user = published_user(store, body.user_id, ctx)
            blend = client.redis.get(store.keyspace.search_blend)
            weight = orjson.loads(blend)["weight"] if blend else PERSONAL_WEIGHT
            now = user.last_ts if user is not None and user.last_ts else int(time.time() * 1000)
            ranked = rerank(user, [(r.id, r.score) for r in body.results], store, ctx, now,
                            weight)
        except redis.RedisError as exc:
            raise HTTPException(503, f"feature store unavailable: {exc}") from exc
        for r in ranked:
            r["explanations"] = [explain("search", x) for x in r["reasons"]]
        return {"user_id": body.user_id, "personalized": user is not None,
                "personal_weight": weight, "results": ranked}
