"""The thin reader over real Redis: HTTP API and client follow the active-version pointer."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient

import config
from reader.http import create_app
from schemas import Feed, FeedItem, Reason
from schemas.keyspace import Keyspace


def test_http_feed_pages_and_errors(live, redis_client, unique):
    prefix = f"test-{unique}"
    settings = config.load(env={"REDIS_URL": live[1], "PERSONA_REDIS__PREFIX": prefix})
    ks = Keyspace(prefix, "3")
    items = tuple(FeedItem(f"p{i}", "a1", 1.0 - i / 100, (Reason("in_network", "a1"),))
                  for i in range(30))
    redis_client.set(ks.feed("u1"), Feed("u1", 123, items).encode())
    redis_client.set(ks.active, "3")
    try:
        http = TestClient(create_app(settings))
        assert http.get("/healthz").json()["version"] == "3"
        page = http.get("/feed/u1", params={"limit": 20}).json()
        assert [i["post_id"] for i in page["items"]] == [f"p{i}" for i in range(20)]
        assert page["items"][0]["explanations"] == ["Because you follow a1"]
        rest = http.get("/feed/u1", params={"limit": 20, "cursor": page["next_cursor"]}).json()
        assert len(rest["items"]) == 10 and rest["next_cursor"] is None
        assert http.get("/feed/nobody").json()["items"] == []
        assert http.get("/feed/u1", params={"cursor": "garbage"}).status_code == 400
        assert http.get("/feed/u1", params={"limit": 0}).status_code == 422
        assert "/feed/{user_id}" in http.get("/openapi.json").json()["paths"]
    finally:
        for key in redis_client.scan_iter(f"{prefix}:*"):
            redis_client.delete(key)


def test_feed_value_is_one_whole_orjson_document(live, redis_client, unique):
    ks = Keyspace(f"test-{unique}", "1")
    feed = Feed("u9", 5, (FeedItem("p1", "a", 0.5, (Reason("trending"),)),))
    redis_client.set(ks.feed("u9"), feed.encode())
    try:
        assert orjson.loads(redis_client.get(ks.feed("u9")))["items"][0]["reasons"] == [
            {"code": "trending"}]
    finally:
        redis_client.delete(ks.feed("u9"))
