from __future__ import annotations

import os

import pytest
import redis

import config
from scripts import services


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
