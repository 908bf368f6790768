"""Shared fixtures. Integration tests use the real Kafka and Redis that `persona up` (or `make test`)
started, or KAFKA_BOOTSTRAP / REDIS_URL; they skip only when PERSONA_SKIP_INTEGRATION=1."""

from __future__ import annotations

import os
import uuid

import pytest

import config

ML_100K = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets",
                       "movielens-100k", "u.data")


@pytest.fixture
def settings():
    return config.load(env={})


@pytest.fixture
def unique() -> str:
    """A fresh name for topics / key prefixes so tests never see each other's data."""
    return uuid.uuid4().hex[:10]
