from __future__ import annotations

import contextlib
import os

import pytest
import redis

import config
from scripts import kafka_io, services


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def live():
    """(bootstrap, redis_url) of the real services; started if needed (idempotent)."""
    if os.environ.get("PERSONA_SKIP_INTEGRATION") == "1":
        pytest.skip("PERSONA_SKIP_INTEGRATION=1")
    settings = config.load()
    bootstrap, url = services.up(settings, log=lambda m: None)
    return bootstrap, url


@pytest.fixture
def redis_client(live):
    return redis.Redis.from_url(live[1])


@pytest.fixture(scope="session", autouse=True)
def _delete_test_topics():
    """At the end of the session, delete the `persona.test.*` topics its tests created (through
    `kafka_io.recreate_topic` or `services.ensure_topics`) on brokers still up. A long-lived
    development broker otherwise gathers them run after run (1,117 topics and 2,506 partitions
    after 26 sessions), and each time its controller fences it, it re-elects every one."""
    created: set[tuple[str, str]] = set()
    recreate, ensure = kafka_io.recreate_topic, services.ensure_topics

    def recording_recreate(bootstrap, topic, *args, **kwargs):
        created.add((bootstrap, topic))
        return recreate(bootstrap, topic, *args, **kwargs)

    def recording_ensure(bootstrap, topics, *args, **kwargs):
        created.update((bootstrap, topic) for topic in topics)
        return ensure(bootstrap, topics, *args, **kwargs)

    kafka_io.recreate_topic, services.ensure_topics = recording_recreate, recording_ensure
    yield
    kafka_io.recreate_topic, services.ensure_topics = recreate, ensure
    by_broker: dict[str, list[str]] = {}
    for bootstrap, topic in created:
        if topic.startswith("persona.test."):
            by_broker.setdefault(bootstrap, []).append(topic)
    for bootstrap, topics in by_broker.items():
        admin = services.admin_client(bootstrap, 3.0, None)
        try:
            existing = admin.list_topics(timeout=3.0).topics
        except Exception:  # noqa: BLE001 (a private broker its test already stopped)
            continue
        doomed = [t for t in topics if t in existing]
        for future in (admin.delete_topics(doomed, operation_timeout=30).values()
                       if doomed else ()):
            with contextlib.suppress(Exception):
                future.result(timeout=30)


@pytest.fixture(scope="session", autouse=True)
def _delete_worker_end_markers():
    """At the end of the session, remove the directories `runner.start` made for the workers'
    end-of-dataflow notes (`persona-ended-*`) that no `supervise` or `stop` removed: the recovery
    tests kill workers themselves (345 were left in /tmp after a few sessions)."""
    import glob
    import shutil
    import tempfile

    pattern = f"{tempfile.gettempdir()}/persona-ended-*"
    before = set(glob.glob(pattern))
    yield
    for directory in set(glob.glob(pattern)) - before:
        shutil.rmtree(directory, ignore_errors=True)
