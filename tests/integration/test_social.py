"""Social discovery with the real flow and real Redis: suggestions exclude followed, blocked, muted,
deleted and self; search re-ranking returns a permutation with the blend weight the flow learned from
search clicks; a new user with interests gets a feed and suggestions within one micro-batch
interval."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink, TestingSource, run_main
from fastapi.testclient import TestClient

from flows.feeds import build_flow
from reader.http import create_app
from schemas.keyspace import Keyspace
from scripts.generate import GeneratorConfig, generate
from tests.integration.inproc import cleanup, settings_for


def _truth(events: list[dict]) -> dict[str, set[str]]:
    """Per user: who they must never be suggested (self, followed at the end, blocked, muted,
    and users who blocked them)."""
    follows: dict[str, set[str]] = {}
    never: dict[str, set[str]] = {}
    for e in events:
        u, t = e["user_id"], e.get("target_id")
        never.setdefault(u, {u})
        if t is None:
            continue
        if e["type"] == "follow":
            follows.setdefault(u, set()).add(t)
        elif e["type"] in ("unfollow", "block"):
            follows.get(u, set()).discard(t)
        if e["type"] in ("block", "mute"):
            never[u].add(t)
        if e["type"] == "block":
            never.setdefault(t, {t}).add(u)
    deleted = {e["user_id"] for e in events if e["type"] == "user_deleted"}
    return {u: s | follows.get(u, set()) | deleted for u, s in never.items()}


@pytest.fixture(scope="module")
def social_run(live):
    import redis as redis_mod
    client = redis_mod.Redis.from_url(live[1])
    prefix = f"test-social-{uuid.uuid4().hex[:8]}"
    settings = settings_for(live, prefix)
    events, _ = generate(GeneratorConfig(users=60, days=2.0, seed=5))
    # more blocks and mutes than the generator makes: each of 20 users blocks one and mutes one
    # of the users their followees follow (likely friends-of-friends candidates)
    follows: dict[str, list[str]] = {}
    for e in events:
        if e["type"] == "follow":
            follows.setdefault(e["user_id"], []).append(e["target_id"])
    ts = events[-1]["ts"]
    for i, u in enumerate(sorted(follows)[:20]):
        fof = sorted({c for f in follows[u] for c in follows.get(f, [])} - {u})
        for j, (kind, target) in enumerate(zip(("block", "mute"), fof[:2], strict=False)):
            events.append({"v": 1, "event_id": f"x-{i}-{j}", "type": kind, "ts": ts + 1 + i,
                           "user_id": u, "target_id": target})
    # the most followed user leaves: stale graph records must never bring them back
    followers: dict[str, int] = {}
    for targets in follows.values():
        for t in targets:
            followers[t] = followers.get(t, 0) + 1
    star = max(sorted(followers), key=followers.get)
    events.append({"v": 1, "event_id": "x-deleted", "type": "user_deleted", "ts": ts + 100,
                   "user_id": star})
    run_main(build_flow(settings, source=TestingSource([orjson.dumps(e) for e in events]),
                        dead_letters=TestingSink([])))
    ks = Keyspace(prefix, client.get(f"{prefix}:active").decode())
    yield settings, client, ks, events
    cleanup(client, prefix)


def test_suggestions_never_include_followed_blocked_muted_or_self(social_run):
    settings, client, ks, events = social_run
    never = _truth(events)
    deleted = {e["user_id"] for e in events if e["type"] == "user_deleted"}
    assert deleted and not any(client.get(ks.suggestions(u)) for u in deleted)
    checked, stale = 0, 0
    http = TestClient(create_app(settings))  # what users get: served by the HTTP reader
    for user, excluded in never.items():
        raw = client.get(ks.suggestions(user))
        if raw is None:
            continue
        stale += bool(deleted & {p["id"] for p in orjson.loads(raw)["people"]})
        served = http.get(f"/suggestions/{user}", params={"kind": "people", "limit": 100}).json()
        people = [p["id"] for p in served["items"]]
        assert not set(people) & excluded, (user, set(people) & excluded)
        assert all(p["reasons"] for p in served["items"])
        contacts = http.get(f"/suggestions/{user}", params={"kind": "contacts"}).json()["items"]
        assert not {c["id"] for c in contacts} & deleted
        checked += 1
    assert checked >= 50
    print(f"{stale} stored suggestion lists still named the deleted user; none served it")
    user = next(u for u in never if client.get(ks.suggestions(u)))
    page = http.get(f"/suggestions/{user}", params={"kind": "people", "limit": 5}).json()
    assert 0 < len(page["items"]) <= 5 and page["items"][0]["explanations"]
    for kind in ("groups", "conversations", "contacts"):
        assert http.get(f"/suggestions/{user}", params={"kind": kind}).status_code == 200
    assert http.get(f"/suggestions/{user}", params={"kind": "nope"}).status_code == 422


def test_search_rerank_returns_a_permutation(social_run):
    settings, client, ks, events = social_run
    posts = [e["post_id"] for e in events if e["type"] == "post_created"][:40]
    user = next(e["user_id"] for e in reversed(events) if e["type"] == "like")
    assert client.get(ks.user_features(user)) is not None
    results = [{"id": p, "score": 1.0 - i / 100} for i, p in enumerate(posts)]
    results.append({"id": "no-such-post", "score": 0.5})
    http = TestClient(create_app(settings))
    body = http.post("/search/rerank", json={"user_id": user, "results": results}).json()
    assert body["personalized"] is True
    out = [r["id"] for r in body["results"]]
    assert sorted(out) == sorted(r["id"] for r in results) and len(out) == len(results)
    assert all(r["reasons"] and r["explanations"] for r in body["results"])
    assert [r["score"] for r in body["results"]] == sorted(
        (r["score"] for r in body["results"]), reverse=True)
    # an unknown user keeps the base order
    anon = http.post("/search/rerank", json={"user_id": "nobody", "results": results}).json()
    assert [r["id"] for r in anon["results"]] == [r["id"] for r in results]
    for bad in ("NaN", "Infinity", "-Infinity"):  # no order can be made of them
        assert http.post("/search/rerank", json={"user_id": user, "results": [
            {"id": "a", "score": 1.0}, {"id": "b", "score": bad}]}).status_code == 422, bad


def test_search_blend_is_learned_from_clicks_in_the_stream_and_served(social_run):
    settings, client, ks, events = social_run
    searches = sum(e["type"] == "search" and bool(e.get("result_ids")) for e in events)
    raw = client.get(ks.search_blend)
    assert searches > 0 and raw is not None
    blend = orjson.loads(raw)
    assert 0 < blend["clicks"] <= searches and 0.0 <= blend["weight"] <= 5.0
    http = TestClient(create_app(settings))
    user = next(e["user_id"] for e in reversed(events) if e["type"] == "like")
    posts = [e["post_id"] for e in events if e["type"] == "post_created"][:5]
    body = http.post("/search/rerank", json={"user_id": user, "results": [
        {"id": p, "score": 0.0} for p in posts]}).json()
    assert body["personal_weight"] == blend["weight"]


class _SlowPartition(StatefulSourcePartition):
    """Emits the payloads once, then stays open (idle) until `until`, then ends."""

    def __init__(self, payloads, until, emitted):
        self.payloads, self.until, self.emitted = payloads, until, emitted

    def next_batch(self):
        if self.payloads:
            out, self.payloads = self.payloads, []
            self.emitted.append(time.monotonic())
            return out
        if datetime.now(UTC) >= self.until:
            raise StopIteration
        return []

    def next_awake(self):
        return datetime.now(UTC) + timedelta(milliseconds=20)

    def snapshot(self):
        return None


class _SlowSource(FixedPartitionedSource):
    def __init__(self, payloads, seconds):
        self.payloads, self.seconds, self.emitted = payloads, seconds, []

    def list_parts(self):
        return ["0"]

    def build_part(self, step_id, for_key, resume_state):
        until = datetime.now(UTC) + timedelta(seconds=self.seconds)
        return _SlowPartition(self.payloads, until, self.emitted)


def test_new_user_with_interests_gets_feed_and_suggestions_within_one_interval(social_run):
    settings, client, ks, events = social_run
    interval = settings.stream.rank_interval_s
    topic = next(t for e in events if e["type"] == "post_created" for t in e.get("topics", []))
    user = f"newbie-{uuid.uuid4().hex[:6]}"
    ts = events[-1]["ts"] + 1000
    event = {"v": 1, "event_id": f"e-{user}", "type": "user_created", "ts": ts,
             "user_id": user, "interests": [topic]}
    source = _SlowSource([orjson.dumps(event)], seconds=interval * 4 + 2)
    seen: dict[str, float] = {}

    def watch():
        deadline = time.monotonic() + interval * 4 + 10
        while time.monotonic() < deadline and len(seen) < 2:
            for name, key in (("feed", ks.feed(user)), ("suggestions", ks.suggestions(user))):
                if name not in seen and client.get(key) is not None:
                    seen[name] = time.monotonic()
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    run_main(build_flow(settings, source=source, dead_letters=TestingSink([])))
    watcher.join()
    assert source.emitted and set(seen) == {"feed", "suggestions"}, seen
    for name, at in seen.items():  # written before the source ended, within one interval
        assert at - source.emitted[0] <= interval + 1.0, (name, at - source.emitted[0])
    feed = orjson.loads(client.get(ks.feed(user)))
    assert feed["items"], "a new user with interests gets a non-empty feed"
    suggestions = orjson.loads(client.get(ks.suggestions(user)))
    assert suggestions["people"], "and people to follow"
    assert any(r["code"] == "topic_creator" for p in suggestions["people"] for r in p["reasons"])
