"""Every Kafka client of the pipeline takes the [kafka] access settings: a private KRaft broker
that only speaks SASL_PLAINTEXT (PLAIN, one user; started by scripts/services.py as `persona up`
would) carries a whole drained run over a recovery directory — topic creation, the producer, the
workers' Kafka input with its erasure passes, the dead-letter, notification and erasure-command
sinks, the backlog watcher, the runner's pre-flight and recovery checks — while a
client without the credentials is refused."""

from __future__ import annotations

import uuid

import orjson
import pytest

import config
from config.security import kafka_config
from scripts import kafka_io, services
from scripts.generate import GeneratorConfig, generate
from tests.integration.helpers import FIRST_LINE, PrivateKafka, feeds, isolated_env, run_to_end

SASL = {"PERSONA_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PERSONA_KAFKA__USERNAME": "app",
        "PERSONA_KAFKA__PASSWORD": "app-secret", "PERSONA_KAFKA__CONNECT_TIMEOUT_S": "5",
        "PERSONA_KAFKA__DELIVERY_TIMEOUT_S": "30"}  # a client left without them fails in 30 s


@pytest.fixture
def sasl_broker(tmp_path):
    broker = PrivateKafka(tmp_path / "kafka", access=SASL)
    broker.start()
    yield broker
    broker.stop()


def test_a_sasl_only_broker_carries_a_drained_run(sasl_broker, live, redis_client, tmp_path):
    bootstrap = sasl_broker.bootstrap
    assert services.kafka_brokers(bootstrap, timeout=3) is None, "a bare client was let in"
    unique = uuid.uuid4().hex[:10]
    env = {**isolated_env((bootstrap, live[1]), unique), **SASL, "PERSONA_KAFKA__PARTITIONS": "2",
           "PERSONA_KAFKA__NOTIFICATIONS_TOPIC": f"persona.test.{unique}.notifs"}
    settings = config.load(env=env)
    access = kafka_config(settings.kafka)
    services.up(settings, log=lambda m: None)  # topics, through the SASL listener
    events, _ = generate(GeneratorConfig(users=60, days=1, seed=31))
    assert any(e["type"] == "user_deleted" for e in events)  # so the run reads commands back
    kafka_io.produce(bootstrap, settings.kafka.events_topic,
                     [FIRST_LINE, *(orjson.dumps(e) for e in events)], extra=access)

    assert run_to_end(settings, env, tmp_path / "recovery") == 0
    served = feeds(settings, redis_client)
    assert len(served) > 30, f"{len(served)} feeds written"
    dead = kafka_io.read_topic(bootstrap, settings.kafka.dead_letter_topic, extra=access)
    assert len(dead) == 1 and orjson.loads(dead[0])["reason"], dead
    assert kafka_io.read_topic(bootstrap, settings.kafka.erasures, extra=access), (
        "no erasure command went through the SASL producer")
