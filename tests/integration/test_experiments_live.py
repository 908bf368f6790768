"""Experiments and user controls through the real flow, the real Kafka broker and the real Redis.

1. A generated log with one arm planted as better goes through Kafka → Bytewax worker processes →
   Redis with an experiment whose arm `small` has feed.size = 7 and notifications.min_p_open = 1:
   every feed records its user's arm, `small` users get short feeds and no notification sent, arms
   get their traffic fraction, the per-arm counters in Redis equal the log's, and the report read
   from Redis finds the planted arm with an interval excluding zero.
2. `see_less` of an author, through the flow with the Redis sink and feature store: the author is
   gone from the next feed, back with a discount half-way through the fade, and fully back after.
"""

from __future__ import annotations

import statistics
import time
import uuid

import orjson
import pytest
import redis
from bytewax.testing import TestingSink, TestingSource, run_main

import config
from flows.feeds import build_flow
from operators.experiments import assign
from operators.experiments import report as report_mod
from reader.client import PersonaClient
from schemas import Event, encode_event
from schemas.keyspace import Keyspace
from scripts import kafka_io
from scripts.generate import GeneratorConfig, generate
from tests.integration.helpers import cleanup, feeds, isolated_env, run_pipeline
from tests.integration.inproc import settings_for
from tests.unit.test_experiments import decode

EXPERIMENT = """
[experiments.size]
enabled = true
[experiments.size.arms.control]
fraction = 0.5
[experiments.size.arms.small]
fraction = 0.5
feed.size = 7
notifications.min_p_open = 1.0
"""





@pytest.fixture(scope="module")
def experiment_run(live, tmp_path_factory):
    unique = uuid.uuid4().hex[:10]
    path = tmp_path_factory.mktemp("exp") / "experiment.toml"
    path.write_text(EXPERIMENT)
    env = {**isolated_env(live, unique),
           "PERSONA_KAFKA__NOTIFICATIONS_TOPIC": f"persona.test.{unique}.notifs"}
    settings = config.load(path, env=env)
    kafka_io.recreate_topic(settings.kafka.bootstrap, settings.kafka.notifications_topic, 1)
    planted = (settings.experiments[0], "small", 0.5)
    events, _ = generate(GeneratorConfig(users=200, days=2, seed=9, planted_arm=planted))
    settings = run_pipeline(env, [orjson.dumps(e) for e in events], config_path=str(path))
    client = redis.Redis.from_url(live[1])
    yield settings, client, events
    cleanup(settings, client)


def test_feeds_use_and_record_the_users_arm(experiment_run):
    settings, client, events = experiment_run
    exp = settings.experiments[0]
    written = feeds(settings, client)
    assert len(written) >= 150
    reader = PersonaClient(client, settings.redis.prefix)
    some = next(iter(written))
    assert reader.feed(some, limit=3).arms == written[some]["arms"]  # served with the feed
    sizes: dict[str, list[int]] = {"control": [], "small": []}
    for user, feed in written.items():
        assert feed["arms"] == {"size": assign(exp, user)}  # every feed value records its arm
        sizes[feed["arms"]["size"]].append(len(feed["items"]))
    assert max(sizes["small"]) <= 7
    assert statistics.median(sizes["control"]) > 7
    share = len(sizes["small"]) / len(written)
    assert abs(share - 0.5) < 0.15, share  # the traffic fraction (200 users: sd 0.035)


def test_notifications_use_the_recipients_arm(experiment_run):
    settings, client, events = experiment_run
    exp, reader = settings.experiments[0], PersonaClient(client, settings.redis.prefix)
    delivered = {"control": 0, "small": 0}
    for user in {e["user_id"] for e in events}:
        items = reader.notifications(user, limit=1000)["items"]
        delivered[assign(exp, user)] += sum(i["decision"] in ("send", "delay") for i in items)
    assert delivered["control"] > 20 and delivered["small"] == 0, delivered
    # the topic's records name the recipient's arm, for a delivery service's exposure log
    records = [orjson.loads(m) for m in kafka_io.read_topic(
        settings.kafka.bootstrap, settings.kafka.notifications_topic)]
    assert records and all(r["arms"] == {"size": assign(exp, r["user_id"])} for r in records)


def test_arm_counters_in_redis_are_exact_and_the_report_finds_the_planted_arm(experiment_run):
    settings, client, events = experiment_run
    ks = Keyspace(settings.redis.prefix, client.get(f"{settings.redis.prefix}:active").decode())
    in_redis = report_mod.from_redis(client, ks)
    from_log = report_mod.from_events((decode(e) for e in events), settings)
    assert in_redis == from_log
    report = report_mod.build(in_redis, settings)
    small = next(r for r in report[0]["arms"] if r["arm"] == "small")
    diff = small["engagement_rate"]["diff"]
    assert diff["significant"] and diff["low"] > 0, diff
    print("\n" + report_mod.render(report))
    # the reader serves the same report from the same counters (what a dashboard polls)
    from fastapi.testclient import TestClient

    from reader.http import create_app

    http = TestClient(create_app(settings))
    served = http.get("/experiments")
    assert served.status_code == 200, served.text
    assert served.json() == orjson.loads(orjson.dumps(report))
    strict = http.get("/experiments", params={"alpha": 0.01}).json()
    assert strict[0]["alpha"] == 0.01 and strict[0]["comparisons"] == report[0]["comparisons"]
    assert http.get("/experiments", params={"alpha": 0.9}).status_code == 422


# ------------------------------------------------------------------------------ see less, in time
T = 1_767_225_600_000
H = 3_600_000


def see_less_scenario() -> tuple[list[Event], list[Event]]:
    """(posts, everything): two authors' posts, then four users who follow both. `baseline` never
    asks; `now`, `fading` and `faded` ask to see less of a1 at T+1h and are ranked (their last event)
    1 minute, 5 hours and 8 hours later (filter 2 h, fade 4 h)."""
    n = iter(range(1, 10_000))

    def ev(kind, ts, user, **kw):
        return Event(f"e{next(n)}", kind, ts, user, **kw)

    posts = [ev("post_created", T + i, f"a{1 + i % 2}", post_id=f"p{i}", topics=("t1",))
             for i in range(8)]
    out = list(posts)
    for user, last in [("baseline", T + H + 60_000), ("now", T + H + 60_000),
                       ("fading", T + 5 * H), ("faded", T + 8 * H)]:
        out += [ev("follow", T + 10, user, target_id="a1"), ev("follow", T + 10, user, target_id="a2")]
        if user != "baseline":
            out.append(ev("see_less", T + H, user, target_id="a1"))
        out.append(ev("follow", last, user, target_id="a3"))  # the user's last event: rank time
    return posts, sorted(out, key=lambda e: e.ts)


@pytest.fixture
def controls_settings(live):
    unique = uuid.uuid4().hex[:10]
    settings = settings_for(live, f"test-{unique}",
                            PERSONA_KAFKA__NOTIFICATIONS_TOPIC=f"persona.test.{unique}.notifs",
                            PERSONA_CONTROLS__FILTER_H="2", PERSONA_CONTROLS__FADE_H="4",
                            PERSONA_CONTROLS__DISCOUNT="0.2")
    kafka_io.recreate_topic(settings.kafka.bootstrap, settings.kafka.notifications_topic, 1)
    client = redis.Redis.from_url(live[1])
    yield settings, client
    cleanup(settings, client)


def test_see_less_removes_the_author_then_the_discount_fades(controls_settings):
    settings, client = controls_settings
    posts, everything = see_less_scenario()

    def run(events):
        dead: list = []
        run_main(build_flow(settings, source=TestingSource([encode_event(e) for e in events]),
                            dead_letters=TestingSink(dead)))
        assert dead == []

    run(posts)  # the posts' features reach Redis (the feature store users are ranked from)
    time.sleep(1.2)  # past the feature store's read-cache TTL
    run(everything)  # a fresh flow state over the whole history, ranking from Redis
    reader = PersonaClient(client, settings.redis.prefix)

    def feed(user):
        items = reader.feed(user, limit=50).items
        return {i["author_id"] for i in items}, items

    authors, _ = feed("baseline")
    assert authors == {"a1", "a2"}
    authors, _ = feed("now")
    assert authors == {"a2"}, "the author is gone from the next feed"
    authors, items = feed("fading")
    assert "a1" in authors
    for item in items:
        less = [r for r in item["reasons"] if r["code"] == "see_less"]
        if item["author_id"] == "a1":
            assert less == [{"code": "see_less", "detail": "a1", "weight": 0.6}]  # 0.2 → 1, half-way
            assert "Shown less often: you asked to see less of a1" in item["explanations"]
        else:
            assert less == []
    authors, items = feed("faded")
    assert "a1" in authors and not any(r["code"] == "see_less" for i in items for r in i["reasons"])
