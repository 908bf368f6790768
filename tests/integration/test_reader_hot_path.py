"""GET /feed/{user_id} through the reader's hot path (reader/feed_endpoint.py) on real Redis: the
same bounds and errors as the declared route, versions switched without mixed reads, 503 while Redis
is down; and `persona bench-reader` end to end with `persona serve --workers 2`."""

from __future__ import annotations

import time

import pytest
import redis
from fastapi.testclient import TestClient

import config
from reader.feed_endpoint import MAX_CURSOR
from reader.http import create_app
from schemas import Feed, FeedItem, Reason
from schemas.keyspace import Keyspace
from scripts import bench_reader
from scripts.services import private_redis
from tests.integration.helpers import free_port, redis_server_binary, start_redis


def _feed(user: str, posts: list[str]) -> bytes:
    return Feed(user, 1, tuple(FeedItem(p, "a1", 0.5, (Reason("topic", "t1"),))
                               for p in posts)).encode()


def _cleanup(client, prefix):
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_bounds_errors_and_the_documented_route(live, redis_client, unique):
    prefix = f"test-{unique}"
    redis_client.set(Keyspace(prefix, "1").feed("u1"), _feed("u1", ["p1", "p2"]))
    try:
        http = TestClient(create_app(config.load(env={"REDIS_URL": live[1],
                                                      "PERSONA_REDIS__PREFIX": prefix})))
        page = http.get("/feed/u1", params={"limit": 1})
        assert page.status_code == 200 and page.headers["content-type"] == "application/json"
        assert [i["post_id"] for i in page.json()["items"]] == ["p1"]
        assert page.json()["items"][0]["explanations"] == ["Popular in t1, which you like"]
        rest = http.get("/feed/u1", params={"limit": 1, "cursor": page.json()["next_cursor"]})
        assert [i["post_id"] for i in rest.json()["items"]] == ["p2"]
        for params in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"cursor": "c" * (MAX_CURSOR + 1)}):
            response = http.get("/feed/u1", params=params)
            assert response.status_code == 422, params
            assert response.json()["detail"][0]["loc"][0] == "query"
        assert http.get("/feed/" + "u" * 129).status_code == 422
        assert http.get("/feed/u1", params={"cursor": "garbage"}).status_code == 400
        assert http.get("/feed/u1/more").status_code == 404  # not a feed path: FastAPI's 404
        spec = http.get("/openapi.json").json()["paths"]["/feed/{user_id}"]["get"]
        assert {p["name"] for p in spec["parameters"]} == {"user_id", "limit", "cursor"}
    finally:
        _cleanup(redis_client, prefix)


def test_an_unchanged_page_answers_304_and_a_changed_one_200(live, redis_client, unique):
    """Each page carries a strong ETag; a client that sends it back (If-None-Match) gets 304 and
    no body until the page would differ: a new feed value, another query, another version."""
    prefix = f"test-{unique}"
    ks = Keyspace(prefix, "1")
    redis_client.set(ks.feed("u1"), _feed("u1", ["p1", "p2"]))
    try:
        http = TestClient(create_app(config.load(env={"REDIS_URL": live[1],
                                                      "PERSONA_REDIS__PREFIX": prefix})))
        first = http.get("/feed/u1", params={"limit": 1})
        etag = first.headers["etag"]
        assert first.status_code == 200 and first.headers["cache-control"] == "private, no-cache"
        same = http.get("/feed/u1", params={"limit": 1}, headers={"If-None-Match": etag})
        assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
        for header in (f'"other", {etag}', "*", f"W/{etag}"):
            assert http.get("/feed/u1", params={"limit": 1},
                            headers={"If-None-Match": header}).status_code == 304, header
        other_query = http.get("/feed/u1", params={"limit": 2}, headers={"If-None-Match": etag})
        assert other_query.status_code == 200 and other_query.headers["etag"] != etag
        redis_client.set(ks.feed("u1"), _feed("u1", ["p3", "p2"]))  # the worker ranked again
        changed = http.get("/feed/u1", params={"limit": 1}, headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert changed.json()["items"][0]["post_id"] == "p3"
        redis_client.set(Keyspace(prefix, "2").feed("u1"), _feed("u1", ["p3", "p2"]))
        redis_client.set(ks.active, "2")
        time.sleep(0.6)  # the reader's pointer cache
        switched = http.get("/feed/u1", params={"limit": 1},
                            headers={"If-None-Match": changed.headers["etag"]})
        assert switched.status_code == 200 and switched.json()["version"] == "2"
        assert http.get("/feed/u1", params={"limit": 0},
                        headers={"If-None-Match": "*"}).status_code == 422  # checked first
        assert http.get("/feed/u1", params={"cursor": "garbage"},
                        headers={"If-None-Match": "*"}).status_code == 400  # and the cursor
    finally:
        _cleanup(redis_client, prefix)


def test_http_readers_follow_a_switch_without_mixing(live, redis_client, unique):
    prefix = f"test-{unique}"
    v1, v2 = Keyspace(prefix, "1"), Keyspace(prefix, "2")
    redis_client.set(v1.feed("u1"), _feed("u1", ["a", "b"]))
    redis_client.set(v2.feed("u1"), _feed("u1", ["c", "d", "e"]))
    redis_client.set(v1.active, "1")
    expected = {"1": ["a", "b"], "2": ["c", "d", "e"]}
    try:
        http = TestClient(create_app(config.load(env={"REDIS_URL": live[1],
                                                      "PERSONA_REDIS__PREFIX": prefix})))
        seen = []
        t_switch = None
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            if t_switch is None and time.monotonic() > t_end - 1.5:
                redis_client.set(v1.active, "2")
                t_switch = time.monotonic()
            page = http.get("/feed/u1").json()
            seen.append((time.monotonic(), page["version"], [i["post_id"] for i in page["items"]]))
        assert all(items == expected[version] for _, version, items in seen)  # never mixed
        assert {version for _, version, _ in seen} == {"1", "2"}
        # every response later than the pointer cache's TTL after the switch names version 2
        assert all(version == "2" for t, version, _ in seen if t > t_switch + 0.6)
    finally:
        _cleanup(redis_client, prefix)


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")
def test_reads_answer_503_while_redis_is_down_and_recover(tmp_path, live):
    port = free_port()
    proc = start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    redis.Redis(port=port).set(Keyspace("hot", "1").feed("u1"), _feed("u1", ["p1"]))
    http = TestClient(create_app(config.load(env={"REDIS_URL": url, "PERSONA_REDIS__PREFIX": "hot"})))
    restarted = None
    try:
        assert http.get("/feed/u1").json()["items"][0]["post_id"] == "p1"
        proc.kill()
        proc.wait()
        down = http.get("/feed/u1")
        assert down.status_code == 503 and "feed store unavailable" in down.json()["detail"]
        # the other reads too, at once: the reader's feature store does not wait out an outage
        # as the workers' does (it once retried for ~16 s and then answered 500)
        t0 = time.monotonic()
        search = http.post("/search/rerank", json={"user_id": "u1",
                                                   "results": [{"id": "p1", "score": 1.0}]})
        assert search.status_code == 503 and "unavailable" in search.json()["detail"]
        assert http.get("/suggestions/u1?kind=people").status_code == 503
        assert time.monotonic() - t0 < 2.0
        restarted = start_redis(port, tmp_path)
        redis.Redis(port=port).set(Keyspace("hot", "1").feed("u1"), _feed("u1", ["p9"]))
        assert http.get("/feed/u1").json()["items"][0]["post_id"] == "p9"
    finally:
        for p in (proc, restarted):
            if p is not None and p.poll() is None:
                p.kill()


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")
def test_a_stalled_redis_answers_503_within_the_readers_timeout(tmp_path, live):
    """A Redis that accepts connections but answers nothing (paused) must not hold a request for
    seconds: after `reader.redis_timeout_s` the read answers 503, the feed's and the others'."""
    import signal

    port = free_port()
    proc = start_redis(port, tmp_path)
    redis.Redis(port=port).set(Keyspace("stall", "1").feed("u1"), _feed("u1", ["p1"]))
    http = TestClient(create_app(config.load(env={
        "REDIS_URL": f"redis://127.0.0.1:{port}/0", "PERSONA_REDIS__PREFIX": "stall",
        "PERSONA_READER__REDIS_TIMEOUT_S": "0.3"})))
    try:
        assert http.get("/feed/u1").json()["items"][0]["post_id"] == "p1"
        proc.send_signal(signal.SIGSTOP)
        for path in ("/feed/u1", "/suggestions/u1?kind=people"):
            t0 = time.monotonic()
            response = http.get(path)
            assert response.status_code == 503, (path, response.text)
            assert time.monotonic() - t0 < 1.5, f"{path} waited {time.monotonic() - t0:.1f}s"
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.2)
        assert http.get("/feed/u1").status_code == 200
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()


def test_bench_reader_with_two_server_workers(live, redis_client):
    settings = config.load(env={"REDIS_URL": live[1]})
    load = bench_reader.ReaderLoad(rate=200, connections=2, seconds=1, closed=True,
                                   server_workers=2)
    report = bench_reader.run(settings, load, users=50, prefix=None, seed=3, log=lambda m: None)
    for mode in ("open", "closed"):
        http, raw = report[mode]["http"], report[mode]["redis"]
        assert http["errors"] == 0 and raw["errors"] == 0
        assert raw["empty_replies"] == 0  # every GET found its feed: same keys, same bytes
        assert http["requests"] > 50 and raw["requests"] > 50
        assert 0 < http["p50_ms"] <= http["p99_ms"] and report[mode]["p99_ratio"] > 0
    assert 150 <= report["open"]["http"]["rps"] <= 210  # the open loop kept its rate
    assert report["http_p99_ms"] == report["open"]["http"]["p99_ms"]
    assert any(name.startswith("reader GET /feed") for name, _ in bench_reader.table(report))
    assert not list(redis_client.scan_iter(f"{report['prefix']}:*", count=1000))  # seeded: removed


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")
def test_bench_reader_on_a_redis_with_a_password_and_another_database(tmp_path, live):
    port = free_port()
    proc = private_redis(port, tmp_path, ("--appendonly", "no", "--requirepass", "pw-for-tests"),
                         password="pw-for-tests")
    try:
        settings = config.load(env={"REDIS_URL": f"redis://127.0.0.1:{port}/3",
                                    "PERSONA_REDIS__PASSWORD": "pw-for-tests"})
        report = bench_reader.run(settings, bench_reader.ReaderLoad(rate=100, connections=1,
                                                                    seconds=1),
                                  users=10, prefix=None, seed=1, log=lambda m: None)
        http, raw = report["open"]["http"], report["open"]["redis"]
        assert http["errors"] == raw["errors"] == 0 and raw["requests"] > 50
        assert raw["empty_replies"] == 0  # authenticated, and in database 3 where the feeds are
    finally:
        proc.kill()
        proc.wait()
