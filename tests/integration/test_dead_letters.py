"""Malformed input mixed into the stream: the workers keep running, every bad event lands in the
dead-letter topic with its reason, every good event is processed (exactly once)."""

from __future__ import annotations

import uuid

import orjson
import redis

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
