"""Every Kafka client of the pipeline takes the [kafka] access settings: a private KRaft broker
that only speaks SASL_PLAINTEXT (PLAIN, one user; started by scripts/services.py as `persona up`
would) carries a whole drained run over a recovery directory — topic creation, the producer, the
workers' Kafka input with its erasure passes, the dead-letter, notification and erasure-command
sinks, the backlog watcher, the runner's pre-flight and recovery checks — while a
client without the credentials is refused."""

from __future__ import annotations

import uuid

import pytest

import config
from scripts import services
from tests.integration.helpers import (
    PrivateKafka,
    assert_access_settings_carry_a_drained_run,
    isolated_env,
)

SASL = {"PERSONA_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PERSONA_KAFKA__USERNAME": "app",
        "PERSONA_KAFKA__PASSWORD": "app-secret", "PERSONA_KAFKA__CONNECT_TIMEOUT_S": "5",
        "PERSONA_KAFKA__DELIVERY_TIMEOUT_S": "30"}  # a client left without them fails in 30 s


@pytest.fixture
def sasl_broker(tmp_path):
    broker = PrivateKafka(tmp_path / "kafka", access=SASL)
    broker.start()
    yield broker
    broker.stop()


def test_a_sasl_only_broker_carries_a_drained_run(sasl_broker, live, tmp_path):
    bootstrap = sasl_broker.bootstrap
    assert services.kafka_brokers(bootstrap, timeout=3) is None, "a bare client was let in"
    unique = uuid.uuid4().hex[:10]
    env = {**isolated_env((bootstrap, live[1]), unique), **SASL, "PERSONA_KAFKA__PARTITIONS": "2",
           "PERSONA_KAFKA__NOTIFICATIONS_TOPIC": f"persona.test.{unique}.notifs"}
    assert_access_settings_carry_a_drained_run(config.load(env=env), env, tmp_path / "recovery",
                                               "SASL")
