"""`flows.kafka_delivery.Delivery`, the confirmed Kafka sinks' retry policy, against a scripted
producer (the real broker's outages are in tests/integration/test_kafka_delivery.py): what the
broker reports failed is produced again until acknowledged, on a new producer after a fatal error,
and the worker fails only after `kafka.delivery_timeout_s`, saying what to do."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.kafka_delivery import Delivery, DeliveryFailed

ACK, RETRIABLE, FATAL, HANG = "ack", "retriable", "fatal", "hang"


class _Message:
    def __init__(self, key, value):
        self._key, self._value = key, value

    def key(self):
        return self._key

    def value(self):
        return self._value


class Broker:
    """Scripted outcomes: `outcomes[value]` lists what each attempt at that record gets (then
    acks); `full` BufferErrors before produce accepts; `log` what was acknowledged, in order."""

    def __init__(self, outcomes=None, full: int = 0, produce_fails_fatally: int = 0,
                 fatal_at_produce: int = 0):
        self.outcomes = {k: list(v) for k, v in (outcomes or {}).items()}
        self.full, self.produce_fails_fatally = full, produce_fails_fatally
        self.fatal_at_produce, self.produced = fatal_at_produce, 0  # (the n-th produce call)
        self.log: list[tuple] = []
        self.producers: list[FakeProducer] = []

    def producer_of(self, config):
        producer = FakeProducer(self, config)
        self.producers.append(producer)
        return producer


class FakeProducer:
    def __init__(self, broker: Broker, config: dict):
        self.broker, self.config = broker, config
        self.queue: list[tuple] = []
        self.dead = False

    def produce(self, topic, value, key=None, on_delivery=None):
        self.broker.produced += 1
        if self.broker.produced == self.broker.fatal_at_produce:
            self.dead = True
        if self.dead or self.broker.produce_fails_fatally:
            self.broker.produce_fails_fatally = max(0, self.broker.produce_fails_fatally - 1)
            raise KafkaException(KafkaError(KafkaError._FATAL, "producer fenced", fatal=True))
        if self.broker.full:
            self.broker.full -= 1
            raise BufferError("queue full")
        self.queue.append((topic, key, value, on_delivery))

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout=None):
        if self.dead:  # librdkafka fails what a fatal error left queued
            for _topic, key, value, callback in self.queue:
                callback(KafkaError(KafkaError._FATAL, "fatal", fatal=True), _Message(key, value))
            self.queue = []
            return 0
        kept = []
        for topic, key, value, callback in self.queue:
            script = self.broker.outcomes.get(value, [])
            outcome = script.pop(0) if script else ACK
            if outcome == HANG:
                script.insert(0, HANG)
                kept.append((topic, key, value, callback))
            elif outcome == ACK:
                self.broker.log.append((topic, key, value))
                callback(None, _Message(key, value))
            else:
                fatal = outcome == FATAL
                self.dead = self.dead or fatal
                callback(KafkaError(KafkaError._MSG_TIMED_OUT if not fatal else KafkaError._FATAL,
                                    outcome, fatal=fatal), _Message(key, value))
        self.queue = kept
        if kept:  # (librdkafka waits out the timeout while records are in flight)
            time.sleep(min(timeout or 0.0, 0.05))
        return len(kept)

    def __len__(self):
        return len(self.queue)


def _delivery(broker: Broker, timeout_s: float = 5.0) -> Delivery:
    return Delivery({"bootstrap.servers": "unused"}, "t", "notification", timeout_s,
                    producer_of=broker.producer_of, first_backoff_s=0.0)


RECORDS = [(f"u{i}".encode(), f"v{i}".encode()) for i in range(5)]


def test_a_healthy_broker_acknowledges_each_record_once_through_one_producer(caplog):
    broker = Broker()
    _delivery(broker).send(RECORDS)
    assert broker.log == [("t", k, v) for k, v in RECORDS]
    assert len(broker.producers) == 1
    assert broker.producers[0].config["enable.idempotence"] is True
    assert "Kafka degraded" not in caplog.text


def test_what_the_broker_reports_failed_is_produced_again_and_the_recovery_logged(caplog):
    broker = Broker({b"v1": [RETRIABLE, RETRIABLE], b"v3": [RETRIABLE]})
    with caplog.at_level(logging.WARNING, "persona.kafka"):
        _delivery(broker).send(RECORDS)
    assert sorted(broker.log) == sorted(("t", k, v) for k, v in RECORDS)
    assert len(broker.producers) == 1
    assert "Kafka degraded: 2 of 5 notification record(s) to t not acknowledged" in caplog.text
    assert "Kafka degraded: 1 of 2" in caplog.text
    assert "resumed: every notification record acknowledged after 2 round(s)" in caplog.text


def test_records_produced_again_and_give_ups_are_counted_for_the_metrics():
    from flows.kafka_delivery import DELIVERY_FAILURES, REPRODUCED

    topic = "metrics-t"
    broker = Broker({b"v1": [RETRIABLE, RETRIABLE], b"v3": [RETRIABLE]})
    Delivery({"bootstrap.servers": "unused"}, topic, "notification", 5.0,
             producer_of=broker.producer_of, first_backoff_s=0.0).send(RECORDS)
    assert REPRODUCED.labels(topic)._value.get() == 3  # 2 records, then 1
    with pytest.raises(DeliveryFailed):
        Delivery({"bootstrap.servers": "unused"}, topic, "notification", 0.2,
                 producer_of=Broker({b"v0": [RETRIABLE] * 10_000}).producer_of,
                 first_backoff_s=0.0).send(RECORDS)
    assert DELIVERY_FAILURES.labels(topic)._value.get() == 1


def test_a_fatal_error_hands_the_records_to_a_new_producer(caplog):
    broker = Broker({b"v2": [FATAL]})
    with caplog.at_level(logging.WARNING, "persona.kafka"):
        _delivery(broker).send(RECORDS)
    assert sorted(broker.log) == sorted(("t", k, v) for k, v in RECORDS)
    assert len(broker.producers) == 2
    assert "on a new producer" in caplog.text


def test_a_producer_that_refuses_records_is_replaced_and_a_full_queue_waited_out():
    broker = Broker(full=3, produce_fails_fatally=1)
    _delivery(broker).send(RECORDS)
    assert [v for _, _, v in broker.log] == [v for _, v in RECORDS]
    assert len(broker.producers) == 2


def test_records_queued_on_a_producer_that_fails_mid_batch_are_not_left_behind():
    broker = Broker(fatal_at_produce=3)  # two records accepted, then the producer is fenced
    _delivery(broker).send(RECORDS)
    assert sorted(broker.log) == sorted(("t", k, v) for k, v in RECORDS)
    assert len(broker.producers) >= 2


@pytest.mark.parametrize("outcome", [HANG, RETRIABLE])
def test_the_worker_fails_after_the_delivery_timeout_saying_what_to_do(outcome):
    broker = Broker({b"v0": [outcome] * 10_000})
    with pytest.raises(DeliveryFailed, match=r"kafka.delivery_timeout_s.*persona up"):
        _delivery(broker, timeout_s=0.3).send(RECORDS)
    assert b"v0" not in [v for _, _, v in broker.log]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from([RETRIABLE, FATAL]), max_size=4), min_size=1,
                max_size=8))
def test_any_run_of_failures_ends_with_every_record_acknowledged(scripts):
    """Whatever each record's attempts get before an ack: every record is acknowledged (at least
    once), a record is produced again only after a reported failure, and a new producer is made
    exactly after each round that had a fatal error."""
    records = [(None, f"r{i}".encode()) for i in range(len(scripts))]
    broker = Broker({f"r{i}".encode(): script for i, script in enumerate(scripts)})
    _delivery(broker).send(records)
    acked = [v for _, _, v in broker.log]
    assert sorted(acked) == sorted(v for _, v in records)  # each once: failures were not acked
    rounds_with_fatal, remaining = 0, [list(s) for s in scripts]
    while any(remaining):
        rounds_with_fatal += any(s and s[0] == FATAL for s in remaining)
        remaining = [s[1:] for s in remaining]
    assert len(broker.producers) == 1 + rounds_with_fatal


def test_dead_letters_are_logged_at_most_once_a_minute(caplog, monkeypatch):
    """A producer sending garbage can fill the dead-letter topic at thousands a second: the sink
    logs the first batch at once, then one line a minute with the count since (the metric and the
    topic hold the rest)."""
    from flows import kafka_sinks

    now = [1000.0]
    monkeypatch.setattr(kafka_sinks.time, "monotonic", lambda: now[0])
    sink = kafka_sinks._DeadLetterPartition(None)
    with caplog.at_level(logging.INFO, "persona.kafka"):
        sink.delivered([1, 2])
        for _ in range(50):
            now[0] += 1.0
            sink.delivered([3])
        now[0] += 10.0
        sink.delivered([4, 5])
    counts = [r.getMessage().split()[1] for r in caplog.records]
    assert counts == ["2", "52"], counts  # the first batch at once; the next 52 a minute later


def test_records_a_failed_producer_never_reported_are_not_dropped_with_it(monkeypatch):
    """A fatal error at produce() mid-batch while the batch's first records are still in flight
    on the old producer, which never reports them (its broker fenced): `send` must not return as
    if they were acknowledged. It waits for them until its timeout, then fails loudly."""
    import flows.kafka_delivery as delivery_mod
    monkeypatch.setattr(delivery_mod, "WAIT_SLICE_S", 0.01)
    acknowledged: list[bytes] = []

    class Silent:
        made = 0

        def __init__(self, _config):
            Silent.made += 1
            self.first, self.in_flight = Silent.made == 1, []

        def produce(self, topic, value, key=None, on_delivery=None):
            if self.first and value == b"v2":
                raise KafkaException(KafkaError(KafkaError._FATAL, "fenced", fatal=True))
            self.in_flight.append((value, on_delivery))

        def flush(self, timeout=None):
            if self.first:  # v0, v1 sent, never answered
                time.sleep(timeout or 0)
                return len(self.in_flight)
            for value, callback in self.in_flight:
                acknowledged.append(value)
                callback(None, _Message(None, value))
            self.in_flight = []
            return 0

        def poll(self, timeout=0):
            return 0

    delivery = Delivery({}, "t", "notification", timeout_s=0.3, producer_of=Silent,
                        first_backoff_s=0.01)
    with pytest.raises(DeliveryFailed, match="never reported"):
        delivery.send([(b"k", f"v{i}".encode()) for i in range(4)])
    assert b"v0" not in acknowledged  # (it was neither acknowledged nor silently dropped)
