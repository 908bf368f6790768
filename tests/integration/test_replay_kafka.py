"""`persona replay --topic`: a range of a real Kafka topic (4 partitions) replayed through the
production operators into a new keyspace version — the same bytes twice (partitions merged in
event time, whatever the broker's interleaving), and the range chosen by offsets or by time."""

from __future__ import annotations

import time

import orjson

import config
from scripts import kafka_io
from scripts.generate import GeneratorConfig, generate
from scripts.replay import replay
from tests.integration.test_replay import dump


def test_a_topic_replayed_twice_writes_identical_bytes_and_ranges_select(live, redis_client,
                                                                          unique):
    prefix = f"test-{unique}"
    topic = f"persona.test.{unique}.events"
    settings = config.load(env={"KAFKA_BOOTSTRAP": live[0], "REDIS_URL": live[1],
                                "PERSONA_REDIS__PREFIX": prefix})
    events, _ = generate(GeneratorConfig(users=60, days=1.0, seed=23))
    lines = [orjson.dumps(e) for e in events]
    head, tail = lines[:-300], lines[-300:]
    kafka_io.recreate_topic(live[0], topic, 4)
    kafka_io.produce(live[0], topic, head)
    time.sleep(1.1)  # the tail's Kafka timestamps start strictly later
    between_ms = int(time.time() * 1000)
    time.sleep(0.1)
    kafka_io.produce(live[0], topic, tail)
    try:
        whole = kafka_io.topic_range(live[0], topic)
        assert whole.messages == len(lines) and len(whole.end) == 4
        first = replay(settings, topic=whole)
        second = replay(settings, topic=kafka_io.topic_range(live[0], topic))
        assert first["events"] == second["events"] == len(lines)
        assert first["writes"] > 100 and second["previous"] == first["version"]
        assert dump(redis_client, prefix, first["version"]) == \
            dump(redis_client, prefix, second["version"])

        later = kafka_io.topic_range(live[0], topic, from_ts_ms=between_ms)
        assert later.messages == len(tail)
        assert replay(settings, topic=later, switch=False)["events"] == len(tail)

        # from offsets: the end of partitions 0-2, partition 3 from its beginning
        offsets = {p: whole.end[p] for p in (0, 1, 2)}
        only_3 = kafka_io.topic_range(live[0], topic, from_offsets=offsets)
        assert only_3.messages == whole.end[3] - whole.start[3] > 0
        assert replay(settings, topic=only_3, switch=False)["events"] == only_3.messages

        # nothing after the end: the empty version is not switched to
        empty = kafka_io.topic_range(live[0], topic, from_ts_ms=int(time.time() * 1000) + 60_000)
        result = replay(settings, topic=empty)
        assert result["events"] == 0 and not result["switched"]
        assert redis_client.get(f"{prefix}:active").decode() == second["version"]
    finally:
        for key in redis_client.scan_iter(f"{prefix}:*"):
            redis_client.delete(key)
