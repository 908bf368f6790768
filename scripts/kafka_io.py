"""Producing event logs to Kafka and reading topics back (for `persona produce`, demo and tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def _key(line: bytes) -> bytes | None:
    """Partition by user so one user's events stay ordered; unparseable lines get no key."""
    try:
        user = orjson.loads(line).get("user_id")
        return user.encode() if isinstance(user, str) else None
    except (orjson.JSONDecodeError, AttributeError):
        return None


def produce(bootstrap: str, topic: str, lines: Iterable[bytes],
            progress: Callable[[int], object] | None = None, extra: dict | None = None) -> int:
    """Produce every line, confirmed (acks=all). Raises if any message was not delivered.
    `extra`: access settings (config.security.kafka_config), for this and the functions below."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                         "enable.idempotence": True, "batch.num.messages": 10000,
                         "queue.buffering.max.messages": 500000, **(extra or {})})
    failures: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))

    n = 0
    for line in lines:
        while True:
            try:
                producer.produce(topic, line, key=_key(line), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 10000 == 0:
            producer.poll(0)
            if progress:
                progress(n)
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(f"{remaining} messages undelivered to {topic}; errors: {failures[:3]}")
    if progress:
        progress(n)
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
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
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
    admin = AdminClient({"bootstrap.servers": bootstrap, **(extra or {})})
    if topic in admin.list_topics(timeout=timeout_s).topics:
        for f in admin.delete_topics([topic], operation_timeout=timeout_s).values():
            f.result()
    import time
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
