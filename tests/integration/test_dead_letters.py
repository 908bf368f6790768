"""Malformed input mixed into the stream: the workers keep running, every bad event lands in the
dead-letter topic with its reason, every good event is processed (exactly once)."""

from __future__ import annotations

import uuid

import orjson
import redis

import config
from operators.item_stats import ItemView
from scripts import kafka_io
from scripts.generate import GeneratorConfig, generate, malformed_lines
from tests.integration.helpers import cleanup, isolated_env, run_pipeline


def test_bad_events_go_to_the_dead_letter_topic(live):
    env = isolated_env(live, uuid.uuid4().hex[:10])
    events, _ = generate(GeneratorConfig(users=40, days=1, seed=5))
    good = [orjson.dumps(e) for e in events]
    bad = malformed_lines(60, seed=3)
    duplicates = good[100:110]  # same event ids again: dead letters too, never double-counted
    lines = list(good)
    for i, (raw, _) in enumerate(bad):  # interleave bad lines through the stream
        lines.insert((i * 37) % len(lines), raw)
    lines += duplicates

    settings = run_pipeline(env, lines)
    client = redis.Redis.from_url(live[1])
    try:
        letters = [orjson.loads(m) for m in kafka_io.read_topic(
            settings.kafka.bootstrap, settings.kafka.dead_letter_topic)]
        assert len(letters) == len(bad) + len(duplicates)
        assert all(dl["reason"] for dl in letters)
        assert all(dl["source"]["offset"] is not None for dl in letters
                   if not dl["reason"].startswith("duplicate"))
        kinds = {kind for _, kind in bad}
        reasons = " | ".join(dl["reason"] for dl in letters)
        for fragment in ("invalid JSON", "missing", "must be", "unknown event type",
                         "too large", "outside the accepted range", "duplicate event_id"):
            assert fragment in reasons, f"no dead letter explains {fragment!r} ({kinds})"

        # every good event processed exactly once: each post's like count equals the log's
        version = client.get(f"{settings.redis.prefix}:active").decode()
        expected: dict[str, int] = {}
        deleted = set()
        for e in events:
            if e["type"] in ("like", "comment", "share"):
                expected[e["post_id"]] = expected.get(e["post_id"], 0) + 1
            if e["type"] == "post_deleted":
                deleted.add(e["post_id"])
        for post, n in expected.items():
            raw = client.get(f"{settings.redis.prefix}:v{version}:item:{{{post}}}")
            assert raw is not None, f"item {post} missing"
            assert ItemView.from_wire(post, orjson.loads(raw)).likes == n
    finally:
        cleanup(settings, client)


def test_dead_letters_that_decode_after_a_fix_are_redriven_and_applied(live, tmp_path):
    """Workers with a tight `stream.max_event_bytes` dead-letter every event of three users (their
    payloads padded with an unknown field, as a producer might send); a malformed line and a
    repeat are dead-lettered too. With the limit back at its default, `persona dead-letters`
    reports them by kind, `--redrive` produces the three users' events (not the repeat, not the
    malformed line), and the same workers, resumed on their recovery directory, apply them: the
    three users get their features, and nothing new is dead-lettered."""
    from scripts import dead_letters
    from tests.integration.helpers import (
        FIRST_LINE,
        create_run_topics,
        run_env,
        run_to_end,
        user_features_but_model,
    )

    unique = uuid.uuid4().hex[:10]
    env = run_env(live, unique, "redrive")
    settings = create_run_topics(env)
    events, _ = generate(GeneratorConfig(users=40, days=0.5, seed=17))
    padded = {"u0001", "u0002", "u0003"} & {e["user_id"] for e in events}
    assert len(padded) == 3
    lines = [orjson.dumps({**e, "client_note": "x" * 1500} if e["user_id"] in padded else e)
             for e in events]
    repeat = lines[50] if orjson.loads(lines[50])["user_id"] not in padded else lines[51]
    kafka_io.recreate_topic(settings.kafka.bootstrap, settings.kafka.events_topic, 1)
    kafka_io.produce(settings.kafka.bootstrap, settings.kafka.events_topic,
                     [FIRST_LINE, *lines, repeat])
    tight = {**env, "PERSONA_STREAM__MAX_EVENT_BYTES": "1200"}
    client = redis.Redis.from_url(live[1])
    try:
        assert run_to_end(config.load(env=tight), tight, tmp_path) == 0
        rejected = sum(1 for e in events if e["user_id"] in padded)
        before = user_features_but_model(client, settings.redis.prefix)
        assert not padded & before.keys() and len(before) > 20

        report = dead_letters.redrive(settings, log=lambda m: None, dry_run=True)
        assert report["by_kind"] == {"too_large": rejected, "invalid_json": 1, "duplicate": 1}
        assert report["redrivable"] == rejected and report["produced"] == 0
        assert report["still_rejected"] == {"invalid_json": 1}
        report = dead_letters.redrive(settings, log=lambda m: None)
        assert report["produced"] == rejected

        assert run_to_end(settings, env, tmp_path) == 0
        after = user_features_but_model(client, settings.redis.prefix)
        assert padded <= after.keys(), "the re-driven events were not applied"
        letters = kafka_io.read_topic(settings.kafka.bootstrap, settings.kafka.dead_letter_topic)
        assert len(letters) == rejected + 2, "the redrive was rejected again"
    finally:
        cleanup(settings, client)
