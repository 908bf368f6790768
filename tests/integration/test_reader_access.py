"""The reader behind a bearer token (reader.token / PERSONA_READER__TOKEN), its /metrics, and an
access log without user ids."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import config
from reader.http import create_app
from schemas import Feed, FeedItem, Reason
from schemas.keyspace import Keyspace

TOKEN = "s3cret-token-for-tests"


def _app(live, prefix, **env):
    return TestClient(create_app(config.load(env={"REDIS_URL": live[1],
                                                  "PERSONA_REDIS__PREFIX": prefix, **env})))


def _seed(redis_client, prefix):
    ks = Keyspace(prefix, "1")
    redis_client.set(ks.active, "1")
    redis_client.set(ks.feed("user-42"), Feed("user-42", 7, (
        FeedItem("p1", "a1", 0.9, (Reason("in_network", "a1"),)),)).encode())
    redis_client.set(ks.profile("user-42"), b'{"user_id":"user-42","generated_at":7,'
                                            b'"authors":[["a1",0.5]],"topics":[["t1",0.2]]}')


def _cleanup(redis_client, prefix):
    for key in redis_client.scan_iter(f"{prefix}:*"):
        redis_client.delete(key)


def test_reader_refuses_requests_without_the_token(live, redis_client, unique):
    prefix = f"test-{unique}"
    _seed(redis_client, prefix)
    try:
        http = _app(live, prefix, PERSONA_READER__TOKEN=TOKEN)
        good = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/feed/user-42", "/metrics", "/inspect/api/user/user-42",
                     "/inspect/api/stats", "/openapi.json", "/docs", "/no-such-route"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                            {"Authorization": f"Basic {TOKEN}"},
                            {"Authorization": f"Bearer {TOKEN}x"}):
                response = http.get(path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
        assert http.get("/healthz").status_code == 200  # load balancers need no token
        assert http.get("/inspect").status_code == 200  # the static page: no data in it
        page = http.get("/feed/user-42", headers=good).json()
        assert [i["post_id"] for i in page["items"]] == ["p1"]
        assert http.get("/feed/user-42", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
        inspected = http.get("/inspect/api/user/user-42", headers=good).json()
        assert inspected["profile"]["authors"] == [["a1", 0.5]]
        assert inspected["feed"]["items"][0]["explanations"] == ["Because you follow a1"]
    finally:
        _cleanup(redis_client, prefix)


def test_no_token_configured_means_open(live, redis_client, unique):
    prefix = f"test-{unique}"
    _seed(redis_client, prefix)
    try:
        http = _app(live, prefix)
        assert http.get("/feed/user-42").status_code == 200
        assert http.get("/inspect/api/user/nobody").json() == {
            "feed": {"user_id": "nobody", "version": "1", "generated_at": None, "arms": {},
                     "items": [], "next_cursor": None}, "profile": None}
    finally:
        _cleanup(redis_client, prefix)


def test_reader_metrics_count_requests_by_route_and_status(live, redis_client, unique):
    prefix = f"test-{unique}"
    _seed(redis_client, prefix)
    try:
        http = _app(live, prefix, PERSONA_READER__TOKEN=TOKEN)
        good = {"Authorization": f"Bearer {TOKEN}"}
        for _ in range(3):
            http.get("/feed/user-42", headers=good)
        http.get("/feed/nobody", headers=good)
        http.get("/feed/user-42")  # 401
        http.get("/feed/user-42", params={"cursor": "garbage"}, headers=good)  # 400
        text = http.get("/metrics", headers=good).text
        values = {(s.name, tuple(sorted(s.labels.items()))): s.value
                  for f in text_string_to_metric_families(text) for s in f.samples}

        def requests(status):
            return values[("persona_reader_requests_total", (
                ("method", "GET"), ("route", "/feed/{user_id}"), ("status", status)))]
        assert requests("200") == 4 and requests("401") == 1 and requests("400") == 1
        assert values[("persona_reader_request_seconds_count", (("route", "/feed/{user_id}"),))] == 6
        assert values[("persona_reader_feed_lookups_total", (("result", "hit"),))] == 3
        assert values[("persona_reader_feed_lookups_total", (("result", "miss"),))] == 1
        assert not any("user-42" in str(k) or "nobody" in str(k) for k in values)  # no ids as labels
        stats = http.get("/inspect/api/stats", headers=good).json()
        assert stats["requests_total"] == 6 and stats["client_errors_total"] == 2
        assert stats["by_route"] == {"/feed/{user_id}": 6}
        assert stats["latency_ms"]["p95"] >= stats["latency_ms"]["p50"] > 0
        assert stats["feed_hit_rate"] == 0.75
    finally:
        _cleanup(redis_client, prefix)


def test_access_log_at_info_has_no_user_ids(live, redis_client, unique, caplog):
    prefix = f"test-{unique}"
    _seed(redis_client, prefix)
    try:
        http = _app(live, prefix)
        with caplog.at_level(logging.DEBUG, logger="persona"):
            http.get("/feed/user-42")
            http.get("/inspect/api/user/user-42")
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert any("GET /feed/{user_id} 200" in line for line in lines), lines
        assert not any("user-42" in line for line in lines), lines
    finally:
        _cleanup(redis_client, prefix)


def test_empty_token_entries_let_nobody_in_and_a_utf8_token_works(live, redis_client, unique):
    """"new," (a rotation half done) accepts "new" only, never an empty bearer token; a token
    that is not ASCII matches the UTF-8 bytes a client sends; a setting with no token in it is a
    configuration error."""
    import pytest

    from config import ConfigError
    prefix = f"test-{unique}"
    _seed(redis_client, prefix)
    try:
        http = _app(live, prefix, PERSONA_READER__TOKEN="new, ")
        for header in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer"}):
            assert http.get("/feed/user-42", headers=header).status_code == 401, header
        assert http.get("/feed/user-42", headers={"Authorization": "Bearer new"}).status_code == 200
        http = _app(live, prefix, PERSONA_READER__TOKEN="pässwort")
        sent = "Bearer pässwort".encode()  # what a client sends: the token's UTF-8 bytes
        assert http.get("/feed/user-42", headers={"Authorization": sent}).status_code == 200
        with pytest.raises(ConfigError, match="holds no token"):
            config.load(env={"PERSONA_READER__TOKEN": " , ,"})
    finally:
        _cleanup(redis_client, prefix)
