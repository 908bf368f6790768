"""The backlog catch-up mode runs on (operators/backlog.py), against the real broker: the watcher
thread reads the high watermarks of the partitions a process has read from, and the lag and the
time to catch up follow the messages noted as the flow's decode step notes them."""

from __future__ import annotations

import time
import uuid

import orjson
from bytewax.connectors.kafka import KafkaSourceMessage
from confluent_kafka import Consumer, TopicPartition

import config
from flows import resources
from operators.backlog import Backlog
from scripts import kafka_io
from tests.integration.helpers import wait_until


def _read(bootstrap: str, topic: str, partition: int, n: int) -> list[KafkaSourceMessage]:
    """The first `n` messages of a partition, as Bytewax's Kafka input hands them to the flow."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "persona-test",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, 0)])
    out: list[KafkaSourceMessage] = []
    deadline = time.monotonic() + 30
    while len(out) < n and time.monotonic() < deadline:
        for m in consumer.consume(n - len(out), 1.0):
            if m.error() is None:
                out.append(KafkaSourceMessage(m.key(), m.value(), m.topic(), m.headers() or [],
                                              m.latency(), m.offset(), m.partition(),
                                              m.timestamp()))
    consumer.close()
    assert len(out) == n, f"read {len(out)} of {n} messages of {topic}[{partition}]"
    return out


def _until(check, timeout_s: float = 10.0) -> None:
    wait_until(check, "the watcher to observe it", timeout_s)


def test_the_watcher_reads_the_lag_of_the_partitions_a_process_reads(live):
    bootstrap = live[0]
    topic = f"persona.test.{uuid.uuid4().hex[:10]}.backlog"
    settings = config.load(env={"KAFKA_BOOTSTRAP": bootstrap})
    kafka_io.recreate_topic(bootstrap, topic, 2)
    # keyed by user: spread over both partitions; this process reads partition 0 only
    kafka_io.produce(bootstrap, topic, [orjson.dumps({"user_id": f"u{i}"}) for i in range(2000)])
    on_0 = kafka_io.topic_range(bootstrap, topic).end[0]
    assert 100 < on_0 < 1900
    messages = _read(bootstrap, topic, 0, on_0)
    process = resources.watch_backlog(settings, Backlog(), every_s=0.2)
    try:
        assert process.seconds() == 0.0 and process.lag == 0, "nothing read: nothing known"
        half = on_0 // 2
        for m in messages[:half]:
            process.note(m)
        # all noted before the watcher's first look, nothing since: behind, and stalled
        _until(lambda: process.lag == on_0 - half and process.rate == 0.0)
        assert process.seconds() == float("inf")
        for m in messages[half:-5]:
            process.note(m)
        _until(lambda: process.lag == 5)
        assert 0 < process.seconds() < 1, "5 messages behind, at the rate it read at lately"
        for m in messages[-5:]:
            process.note(m)
        _until(lambda: process.lag == 0)
        assert process.seconds() == 0.0, "all read: caught up"
        assert process.partitions() == [(topic, 0)], "the partitions this process read only"
    finally:
        resources.stop_watching(process)


def test_the_watcher_says_when_the_topic_has_more_partitions_than_the_workers_read(live,
                                                                                   caplog):
    """Partitions added under running workers are not read until they restart (Bytewax lists
    them at start): the watcher, which polls the broker anyway, says so."""
    import logging


    bootstrap = live[0]
    topic = f"persona.test.{uuid.uuid4().hex[:10]}.grown"
    settings = config.load(env={"KAFKA_BOOTSTRAP": bootstrap, "PERSONA_KAFKA__EVENTS_TOPIC": topic})
    kafka_io.recreate_topic(bootstrap, topic, 1)
    kafka_io.produce(bootstrap, topic, [orjson.dumps({"user_id": "u1"})])
    with caplog.at_level(logging.WARNING, logger="persona.backlog"):
        process = resources.watch_backlog(settings, Backlog(), every_s=0.1)
        try:
            process.note(_read(bootstrap, topic, 0, 1)[0])  # starts the watcher
            time.sleep(0.5)  # its first look: 1 partition
            kafka_io.grow_topic(bootstrap, topic, 3)
            _until(lambda: any("has 3 partitions now, 1 when the workers started" in
                                   r.getMessage() for r in caplog.records), timeout_s=15)
        finally:
            resources.stop_watching(process)


def test_the_watcher_commits_read_positions_for_kafkas_lag_tools(live):
    """What a process has read shows as a consumer group's committed offsets (what
    kafka-consumer-groups.sh and lag exporters compare with the log end), every
    `kafka.progress_commit_s`; a partition it never read is not committed."""
    bootstrap = live[0]
    topic = f"persona.test.{uuid.uuid4().hex[:10]}.progress"
    group = f"persona-test-{uuid.uuid4().hex[:8]}"
    settings = config.load(env={"KAFKA_BOOTSTRAP": bootstrap, "PERSONA_KAFKA__EVENTS_TOPIC": topic,
                                "PERSONA_KAFKA__PROGRESS_GROUP": group,
                                "PERSONA_KAFKA__PROGRESS_COMMIT_S": "0.5"})
    kafka_io.recreate_topic(bootstrap, topic, 2)
    kafka_io.produce(bootstrap, topic, [orjson.dumps({"user_id": f"u{i}"}) for i in range(500)])
    on_0 = kafka_io.topic_range(bootstrap, topic).end[0]
    messages = _read(bootstrap, topic, 0, on_0)
    process = resources.watch_backlog(settings, Backlog(), every_s=0.1)
    try:
        for m in messages[:100]:
            process.note(m)
        committed = lambda: kafka_io.group_offsets(bootstrap, group, topic, range(2))  # noqa: E731
        _until(lambda: committed() == {0: 100}, timeout_s=15)
        for m in messages[100:]:
            process.note(m)
        _until(lambda: committed() == {0: on_0}, timeout_s=15)
    finally:
        resources.stop_watching(process)



def test_a_stopping_process_commits_its_last_read_positions(live):
    """A process that stops (a drained run's end, SIGTERM: `stop_watching` runs at exit) commits
    the positions it read since the last periodic commit before it goes."""
    bootstrap = live[0]
    topic = f"persona.test.{uuid.uuid4().hex[:10]}.progress"
    group = f"persona-test-{uuid.uuid4().hex[:8]}"
    settings = config.load(env={"KAFKA_BOOTSTRAP": bootstrap, "PERSONA_KAFKA__EVENTS_TOPIC": topic,
                                "PERSONA_KAFKA__PROGRESS_GROUP": group,
                                "PERSONA_KAFKA__PROGRESS_COMMIT_S": "3600"})
    kafka_io.recreate_topic(bootstrap, topic, 1)
    kafka_io.produce(bootstrap, topic, [orjson.dumps({"user_id": f"u{i}"}) for i in range(50)])
    process = resources.watch_backlog(settings, Backlog(), every_s=0.1)
    for m in _read(bootstrap, topic, 0, 50):
        process.note(m)
    _until(lambda: process.rate is not None)  # the watcher runs, and has committed nothing yet
    assert kafka_io.group_offsets(bootstrap, group, topic, range(1)) == {}
    resources.stop_watching(process)
    assert kafka_io.group_offsets(bootstrap, group, topic, range(1)) == {0: 50}
