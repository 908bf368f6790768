"""The confirmed Kafka sinks' `Delivery` against a real broker that goes away: a private
single-node broker (tests/integration/helpers.PrivateKafka) is stopped while a batch is being
sent, for longer than librdkafka waits for an acknowledgement (`message.timeout.ms` 2 s here), and
started again on the same data. The batch is produced again until acknowledged — every record
reaches the topic — and the outage is logged; with the broker still down past
`kafka.delivery_timeout_s`, the send fails saying what to do."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from flows.kafka_delivery import Delivery, DeliveryFailed
from scripts import kafka_io
from tests.integration.helpers import PrivateKafka


def test_a_batch_outlives_a_broker_outage_and_fails_only_past_the_delivery_timeout(
        tmp_path, caplog):
    kafka = PrivateKafka(tmp_path / "kafka")
    kafka.start()
    try:
        topic = f"persona.test.{uuid.uuid4().hex[:10]}.delivery"
        kafka_io.recreate_topic(kafka.bootstrap, topic, 2)
        config = {"bootstrap.servers": kafka.bootstrap, "message.timeout.ms": 2000}
        delivery = Delivery(config, topic, "notification", timeout_s=120.0)
        delivery.send([(b"warm", b"up")])  # connected, the partitions' leaders known
        records = [(f"u{i}".encode(), f"v{i}".encode()) for i in range(500)]
        kafka.stop()
        outcome: dict = {}

        def send():
            try:
                delivery.send(records)
                outcome["ok"] = True
            except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
                outcome["error"] = exc

        with caplog.at_level(logging.WARNING, "persona.kafka"):
            sender = threading.Thread(target=send)
            sender.start()
            time.sleep(6.0)  # three times what librdkafka waits: the records come back failed
            assert sender.is_alive(), outcome
            kafka.start()
            sender.join(120.0)
        assert outcome == {"ok": True}
        assert "Kafka degraded" in caplog.text and "resumed" in caplog.text, caplog.text
        got = kafka_io.read_topic(kafka.bootstrap, topic)
        assert set(got) == {b"up"} | {v for _, v in records}  # each at least once

        kafka.stop()
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match=r"kafka.delivery_timeout_s.*persona up"):
            Delivery(config, topic, "notification", timeout_s=5.0).send(records[:10])
        assert time.monotonic() - started < 30.0
    finally:
        kafka.stop()
