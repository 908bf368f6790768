"""Producing event logs to Kafka and reading topics back (for `persona produce`, demo and tests)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from flows.kafka_delivery import Delivery
from scripts import services


def _key(line: bytes) -> bytes | None:
    """Partition by user so one user's events stay ordered; unparseable lines get no key."""
    try:
        user = orjson.loads(line).get("user_id")
        return user.encode() if isinstance(user, str) else None
    except (orjson.JSONDecodeError, AttributeError):
        return None


def produce(bootstrap: str, topic: str, lines: Iterable[bytes],
            progress: Callable[[int], object] | None = None, extra: dict | None = None,
            chunk: int = 50_000, timeout_s: float = 60.0) -> int:
    """Produce every line, keyed by its user, confirmed chunk by chunk (`flows.kafka_delivery`:
    what the broker reports failed is produced again, for up to `timeout_s` a chunk, then it
    raises). `extra`: access settings (config.security.kafka_config), for this and the functions
    below."""
    delivery = Delivery({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.num.messages": 10000, "queue.buffering.max.messages": 500000,
                         **(extra or {})}, topic, "event", timeout_s)
    n, lines = 0, iter(lines)
    while part := [(_key(line), line) for line in itertools.islice(lines, chunk)]:
        delivery.send(part)
        n += len(part)
        if progress:
            progress(n)
    delivery.close()
    return n


def read_topic(bootstrap: str, topic: str, timeout_s: float = 10.0,
               extra: dict | None = None) -> list[bytes]:
    """Every message currently in `topic` (all partitions, from the beginning)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **(extra or {})})
    meta = admin.list_topics(topic, timeout=timeout_s)
    parts = list(meta.topics[topic].partitions)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "persona-reader",
                         "enable.auto.commit": False, **(extra or {})})
    out: list[bytes] = []
    try:
        for p in parts:
            low, high = _watermarks(consumer, TopicPartition(topic, p), timeout_s)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            got = low
            while got < high:
                msg = consumer.poll(timeout_s)
                if msg is None:
                    break
                if msg.error() is None:
                    out.append(msg.value())
                got = msg.offset() + 1
    finally:
        consumer.close()
    return out


def recreate_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float = 30.0,
                   extra: dict | None = None) -> None:
    """Delete (if present) and create `topic` empty: for demos and tests that need a clean log."""
    admin = services.admin_client(bootstrap, timeout_s, extra)  # (its failures raise from the futures)
    if topic in admin.list_topics(timeout=timeout_s).topics:
        for f in admin.delete_topics([topic], operation_timeout=timeout_s).values():
            f.result()
    deadline = time.time() + timeout_s
    while True:
        try:
            for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
                f.result()
            return
        except Exception as exc:  # deletion is asynchronous: retry until the name is free
            if time.time() > deadline:
                raise RuntimeError(f"could not recreate topic {topic}: {exc}") from exc
            time.sleep(0.5)


def grow_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float = 30.0,
               extra: dict | None = None) -> None:
    """`topic` with `partitions` partitions from now on, as `kafka-topics.sh --alter
    --partitions` does (README "Changing the number of processes")."""
    admin = services.admin_client(bootstrap, timeout_s, extra)
    for future in admin.create_partitions([NewPartitions(topic, partitions)]).values():
        future.result()


@dataclass(frozen=True)
class TopicRange:
    """The offsets [start, end) of every partition of `topic` that a replay reads."""

    topic: str
    start: dict[int, int]
    end: dict[int, int]

    @property
    def messages(self) -> int:
        return sum(self.end[p] - self.start[p] for p in self.end)


def topic_range(bootstrap: str, topic: str, *, from_ts_ms: int | None = None,
                from_offsets: dict[int, int] | None = None, timeout_s: float = 10.0,
                extra: dict | None = None) -> TopicRange:
    """From the first message at or after `from_ts_ms` (Kafka message timestamps: when the event
    entered Kafka), or from `from_offsets` (partitions not named: from their beginning), or from
    the beginning; to the end of every partition *now* (what arrives later is the live workers')."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "persona-replay",
                         "enable.auto.commit": False, **(extra or {})})
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise ValueError(f"topic {topic!r} not found at {bootstrap}: check the name "
                             "(`persona up` creates the events topic) or KAFKA_BOOTSTRAP")
        unknown = set(from_offsets or {}) - set(meta.partitions)
        if unknown:
            raise ValueError(f"topic {topic!r} has no partition {sorted(unknown)} "
                             f"(it has 0..{len(meta.partitions) - 1})")
        start, end = {}, {}
        for p in sorted(meta.partitions):
            low, high = _watermarks(consumer, TopicPartition(topic, p), timeout_s)
            first = low
            if from_offsets is not None and p in from_offsets:
                first = from_offsets[p]
            elif from_ts_ms is not None:
                found = consumer.offsets_for_times([TopicPartition(topic, p, from_ts_ms)],
                                                   timeout=timeout_s)[0].offset
                first = high if found < 0 else found  # -1: no message that late
            start[p], end[p] = min(max(first, low), high), high
        return TopicRange(topic, start, end)
    finally:
        consumer.close()


def group_offsets(bootstrap: str, group: str, topic: str, partitions, timeout_s: float = 10.0,
                  extra: dict | None = None) -> dict[int, int]:
    """The offsets consumer group `group` has committed for `partitions` of `topic` (those with
    none left out): what the workers report having read (flows.resources.ProgressCommits).
    Asked through a consumer of the group that never joins it, not the AdminClient's
    list_consumer_group_offsets: librdkafka (2.x, confluentinc/librdkafka#5040) crashes the
    process in that call when the group's coordinator moves or is still loading — it did, a
    segfault in a test on a fresh broker."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, **(extra or {})})
    try:
        listed = consumer.committed([TopicPartition(topic, p) for p in partitions],
                                    timeout=timeout_s)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in listed if tp.offset >= 0}


def _watermarks(consumer: Consumer, partition: TopicPartition, timeout_s: float) -> tuple[int, int]:
    """(low, high) offsets of `partition`; a topic created a moment ago has no leader yet
    (NOT_LEADER_FOR_PARTITION, retriable): asked again until `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(partition, timeout=timeout_s)
        except KafkaException as exc:
            error = exc.args[0]
            transient = error.retriable() or error.code() in (
                KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                KafkaError.UNKNOWN_TOPIC_OR_PART)
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_partition(bootstrap: str, rng: TopicRange, partition: int, timeout_s: float = 30.0,
                   extra: dict | None = None) -> Iterator[bytes]:
    """The values of one partition's range, in offset order (a consumer of its own: a replay
    merges partitions in event time, so it pulls each at its own pace)."""
    first, end = rng.start[partition], rng.end[partition]
    if first >= end:
        return
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "persona-replay",
                         "enable.auto.commit": False, "queued.max.messages.kbytes": 16384,
                         **(extra or {})})
    try:
        consumer.assign([TopicPartition(rng.topic, partition, first)])
        offset, last_progress = first, time.monotonic()
        while offset < end:
            # a short wait: consume() holds a partial batch for its whole timeout
            batch = consumer.consume(num_messages=min(1000, end - offset), timeout=0.2)
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > timeout_s:
                raise RuntimeError(f"Kafka at {bootstrap} sent nothing for {timeout_s:.0f}s: "
                                   f"{rng.topic}[{partition}] stalled at offset {offset} of "
                                   f"{end}; check the broker (`persona status`)")
            for msg in batch:
                if msg.error() is not None:
                    raise RuntimeError(f"reading {rng.topic}[{partition}]: {msg.error()}")
                if msg.offset() >= end:
                    return
                offset = msg.offset() + 1
                yield msg.value() or b""
    finally:
        consumer.close()
