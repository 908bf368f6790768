"""`persona up` machinery against the real services: idempotent, reachable, topics as configured."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from confluent_kafka.admin import AdminClient

from config import load
from scripts import services

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings():
    return load()


def _quiet(_msg: str) -> None:
    pass


def _topics(bootstrap: str) -> dict:
    return AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics


def test_up_twice_is_idempotent_and_reachable(settings):
    first = services.up(settings, log=_quiet)
    started = time.monotonic()
    second = services.up(settings, log=_quiet)
    assert second == first
    assert time.monotonic() - started < 10, "a second `up` must reuse the running services"

    bootstrap, redis_url = second
    assert services.kafka_brokers(bootstrap), f"no broker answers at {bootstrap}"
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        assert client.ping()
    finally:
        client.close()

    state = services.status(settings)
    assert state["kafka"]["reachable"] and state["redis"]["reachable"]


def test_topics_exist_with_configured_partitions(settings):
    bootstrap, _ = services.up(settings, log=_quiet)
    topics = _topics(bootstrap)
    for name in (settings.kafka.events_topic, settings.kafka.dead_letter_topic):
        assert name in topics, f"topic {name} missing"
        assert len(topics[name].partitions) == settings.kafka.partitions


def test_extra_topics_are_created_and_existing_ones_left_alone(settings):
    name = f"persona.test.services-{uuid.uuid4().hex[:8]}"
    bootstrap, _ = services.up(settings, log=_quiet, extra_topics=[name])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        assert len(_topics(bootstrap)[name].partitions) == settings.kafka.partitions
        # Asking for another partition count later leaves the existing topic as it is.
        services.ensure_topics(bootstrap, {name: settings.kafka.partitions + 1}, log=_quiet)
        assert len(_topics(bootstrap)[name].partitions) == settings.kafka.partitions
    finally:
        for fut in admin.delete_topics([name], operation_timeout=30).values():
            fut.result(timeout=60)


def test_run_on_a_missing_events_topic_says_what_to_do_and_starts_nothing(settings, monkeypatch):
    """Bytewax's Kafka source would panic with a Rust backtrace; the runner says what to do."""
    from scripts import runner

    bootstrap, _ = services.up(settings, log=_quiet)
    name = f"persona.test.missing-{uuid.uuid4().hex[:8]}"
    missing = load(env={"KAFKA_BOOTSTRAP": bootstrap, "REDIS_URL": settings.redis.url,
                        "PERSONA_KAFKA__EVENTS_TOPIC": name})
    started = []
    monkeypatch.setattr(runner.subprocess, "Popen", lambda *a, **k: started.append(a))
    with pytest.raises(services.ServiceError, match=f"topic {name} does not exist.*persona up"):
        runner.start(missing, None, log=_quiet)
    assert not started
    assert name not in _topics(bootstrap), "the check must not create the topic"
    assert services.topic_exists(bootstrap, settings.kafka.events_topic)


def test_status_gives_the_workers_lag_and_the_redis_warnings(settings):
    """`persona status`: the workers' lag per partition of the events topic, from the positions
    they commit to their progress group, and the Redis audit (the `persona up` Redis, without
    persistence on purpose, draws no warning)."""
    import orjson
    from confluent_kafka.admin import AdminClient

    from flows.resources import ProgressCommits
    from scripts import kafka_io

    unique = uuid.uuid4().hex[:8]
    topic, group = f"persona.test.status-{unique}", f"persona-test-status-{unique}"
    ours = load(env={"PERSONA_KAFKA__EVENTS_TOPIC": topic,
                     "PERSONA_KAFKA__PROGRESS_GROUP": group})
    bootstrap = ours.kafka.bootstrap
    kafka_io.recreate_topic(bootstrap, topic, 2)
    try:
        kafka_io.produce(bootstrap, topic, [orjson.dumps({"user_id": f"u{i}"}) for i in range(300)])
        end = kafka_io.topic_range(bootstrap, topic).end
        before = services.status(ours)["workers"]
        assert before["lag"] == 300 and before["partitions"][0]["committed"] is None
        commits = ProgressCommits(group, {"bootstrap.servers": bootstrap})
        commits.commit({(topic, 0): end[0] - 7})
        commits.close()
        state = services.status(ours)
        assert state["workers"]["group"] == group and state["workers"]["topic"] == topic
        assert state["workers"]["partitions"][0] == {"committed": end[0] - 7, "end": end[0],
                                                      "lag": 7}
        assert state["workers"]["lag"] == 7 + end[1]
        assert state["redis"]["warnings"] == []
    finally:
        admin = AdminClient({"bootstrap.servers": bootstrap})  # (kept: futures need the client)
        for fut in admin.delete_topics([topic], operation_timeout=30).values():
            fut.result(timeout=60)


def test_up_starts_a_local_redis_that_takes_the_configured_login(tmp_path):
    """`persona up` with a Redis password (and an ACL user) starts its redis-server requiring them:
    it answers the configured clients and refuses a client without them."""
    import redis as redis_py

    from operators.redis_store import connect_to
    from tests.integration.helpers import free_port

    port = free_port()
    settings = load(env={"REDIS_URL": f"redis://127.0.0.1:{port}/0",
                         "PERSONA_REDIS__USERNAME": "app", "PERSONA_REDIS__PASSWORD": "s3cret",
                         "PERSONA_SERVICES__CACHE_DIR": str(tmp_path),
                         "PERSONA_SERVICES__REDIS_PORT": str(port)})
    try:
        services.ensure_redis(settings, log=lambda m: None)
        assert connect_to(settings.redis).ping()
        with pytest.raises(redis_py.AuthenticationError):
            redis_py.Redis(port=port, socket_timeout=2).ping()
    finally:
        services.down(settings, log=lambda m: None)
