"""TLS end to end: a private KRaft broker that speaks SASL_SSL only and a private redis-server
that speaks TLS only, both started by scripts/services.py as `persona up` would (certificates of
a local CA: scripts/tls.py), carry a whole drained run over a recovery directory — topic creation,
the producer, the workers' Kafka input with its erasure passes, every Kafka sink, the Redis sink,
the feature store, the runner's checks — and the HTTP reader serves the feeds from the TLS Redis.
A bare client, or a TLS client that does not trust the local CA, is refused by both."""

from __future__ import annotations

import uuid

import pytest
import redis
from fastapi.testclient import TestClient

import config
from config.security import kafka_config
from reader.http import create_app
from scripts import services
from scripts.tls import ensure_local_tls
from tests.integration.helpers import (
    PrivateKafka,
    assert_access_settings_carry_a_drained_run,
    free_port,
)

SASL_SSL = {"PERSONA_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "PERSONA_KAFKA__USERNAME": "app",
            "PERSONA_KAFKA__PASSWORD": "app-secret", "PERSONA_KAFKA__CONNECT_TIMEOUT_S": "5",
            "PERSONA_KAFKA__DELIVERY_TIMEOUT_S": "30"}

pytestmark = pytest.mark.skipif(services.redis_server_path() is None, reason="no redis-server")


@pytest.fixture
def home(tmp_path):
    """The services' cache dir, its local CA written first (the settings name the CA file, and
    a CA file that does not exist fails the configuration)."""
    ensure_local_tls(tmp_path / "services" / "tls")
    return tmp_path / "services"


@pytest.fixture
def tls_broker(home):
    broker = PrivateKafka(home, access={**SASL_SSL, "PERSONA_KAFKA__CA_FILE": str(home / "tls" /
                                                                                    "ca.pem")})
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def tls_redis(home):
    """(settings, url) of a TLS-only redis-server started by `services.ensure_redis`."""
    port = free_port()
    url = f"rediss://127.0.0.1:{port}/0"
    settings = config.load(env={"REDIS_URL": url, "PERSONA_REDIS__CA_FILE": str(home / "tls" /
                                                                                 "ca.pem"),
                                "PERSONA_SERVICES__CACHE_DIR": str(home),
                                "PERSONA_SERVICES__REDIS_PORT": str(port)})
    assert services.ensure_redis(settings, log=lambda m: None) == url
    yield settings, url
    services.down(settings, log=lambda m: None)


def test_tls_broker_and_redis_carry_a_drained_run_and_the_reader(tls_broker, tls_redis, home,
                                                                 tmp_path):
    bootstrap = tls_broker.bootstrap
    redis_settings, url = tls_redis
    ca = str(home / "tls" / "ca.pem")
    assert services.kafka_brokers(bootstrap, timeout=3) is None, "a bare client was let in"
    untrusting = {k: v for k, v in kafka_config(tls_broker.settings.kafka).items()
                  if k != "ssl.ca.location"}  # TLS with the system CAs: the local CA unknown
    assert services.kafka_brokers(bootstrap, timeout=3, extra=untrusting) is None
    plain = f"redis://127.0.0.1:{redis_settings.services.redis_port}/0"
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(plain, socket_timeout=2).ping()
    with pytest.raises(redis.ConnectionError):  # TLS, but verified against the system CAs
        redis.Redis.from_url(url, socket_timeout=2, ssl_cert_reqs="required").ping()

    unique = uuid.uuid4().hex[:10]
    env = {"KAFKA_BOOTSTRAP": bootstrap, "REDIS_URL": url, **SASL_SSL,
           "PERSONA_KAFKA__CA_FILE": ca, "PERSONA_REDIS__CA_FILE": ca,
           "PERSONA_KAFKA__EVENTS_TOPIC": f"persona.test.{unique}.events",
           "PERSONA_KAFKA__DEAD_LETTER_TOPIC": f"persona.test.{unique}.dead",
           "PERSONA_KAFKA__NOTIFICATIONS_TOPIC": f"persona.test.{unique}.notifs",
           "PERSONA_KAFKA__PARTITIONS": "2", "PERSONA_REDIS__PREFIX": f"test-{unique}"}
    settings = config.load(env=env)
    served = assert_access_settings_carry_a_drained_run(settings, env, tmp_path / "recovery",
                                                        "TLS")

    user, stored = next(iter(served.items()))
    http = TestClient(create_app(settings))  # the reader's async client, over TLS
    page = http.get(f"/feed/{user}").json()
    assert [i["post_id"] for i in page["items"]] == [i["post_id"] for i in stored["items"]][
        :len(page["items"])] and page["items"]


def test_up_names_the_local_ca_when_the_clients_do_not_trust_it(tmp_path):
    """`persona up` asked for a TLS Redis (or broker) whose clients name no CA: it writes the
    local CA and says which setting to point at it, before starting anything."""
    port = free_port()
    settings = config.load(env={"REDIS_URL": f"rediss://127.0.0.1:{port}/0",
                                "PERSONA_SERVICES__CACHE_DIR": str(tmp_path),
                                "PERSONA_SERVICES__REDIS_PORT": str(port)})
    with pytest.raises(services.ServiceError) as failed:
        services.ensure_redis(settings, log=lambda m: None)
    message = str(failed.value)
    assert f"PERSONA_REDIS__CA_FILE={tmp_path / 'tls' / 'ca.pem'}" in message, message
    assert (tmp_path / "tls" / "ca.pem").is_file() and not (tmp_path / "redis" / "redis.pid").exists()
