"""`operators.redis_store.retrying`, the budget every Redis read and write of the workers waits
out an outage with (`redis.outage_timeout_s`), on a fake clock: a call that fails for a while
succeeds once Redis is back if that was within the budget, and otherwise fails saying what to do.
The real outages (a stopped and a loading redis-server) are in tests/integration/test_redis_outage.py."""

from __future__ import annotations

import logging

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from operators import redis_store
from operators.redis_store import RedisUnavailable, ReplicasBehind, retrying


class Clock:
    """`time` for `retrying`: sleeping advances it, and each attempt costs `attempt_s`."""

    def __init__(self, attempt_s: float = 0.0):
        self.now, self.attempt_s, self.slept = 0.0, attempt_s, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def flaky(clock: Clock, failures: int, error=redis.ConnectionError):
    """A call that raises `error` `failures` times, then answers "ok"."""
    attempts = []

    def call():
        attempts.append(clock.now)
        clock.now += clock.attempt_s
        if len(attempts) <= failures:
            raise error("Connection refused")
        return "ok"
    return call, attempts


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(redis_store, "time", fake)
    return fake


@given(failures=st.integers(0, 40), timeout_s=st.floats(0, 120),
       attempt_s=st.sampled_from([0.0, 0.05, 1.0]))
def test_waits_out_an_outage_within_the_budget_and_no_longer(failures, timeout_s, attempt_s):
    clock = Clock(attempt_s)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(redis_store, "time", clock)
        call, attempts = flaky(clock, failures)
        try:
            assert retrying(call, timeout_s) == "ok"
            succeeded = True
        except RedisUnavailable as exc:
            succeeded = False
            assert "check REDIS_URL" in str(exc) and isinstance(exc.__cause__, redis.ConnectionError)
    # backoff: 0.1 s doubling to 5 s; never a sleep past the budget
    assert clock.slept == [min(0.1 * 2 ** k, 5.0) for k in range(len(clock.slept))]
    assert clock.now - attempt_s <= timeout_s + 1e-9 or not clock.slept
    if succeeded:
        assert len(attempts) == failures + 1
    else:
        assert len(attempts) <= failures
        # it gave up only when the next wait would have crossed the budget
        assert clock.now + min(0.1 * 2 ** len(clock.slept), 5.0) > timeout_s


def test_no_budget_means_one_attempt(clock):
    call, attempts = flaky(clock, 1)
    with pytest.raises(RedisUnavailable, match=r"Redis unavailable for 0\.0s, 1 attempt\(s\)"):
        retrying(call, 0)
    assert len(attempts) == 1 and clock.slept == []


def test_giving_up_is_a_redis_error():
    """The reader's handlers turn any redis.RedisError into a 503."""
    assert issubclass(RedisUnavailable, redis.RedisError)


@pytest.mark.parametrize("error", [redis.TimeoutError, redis.BusyLoadingError,
                                   redis.exceptions.ClusterDownError,
                                   redis.exceptions.TryAgainError,
                                   redis.exceptions.OutOfMemoryError,
                                   redis.exceptions.ReadOnlyError])
def test_timeouts_loading_a_recovering_cluster_and_a_full_redis_are_waited_out(clock, error):
    call, _ = flaky(clock, 3, error)
    assert retrying(call, 10) == "ok"


def test_a_readonly_answer_drops_the_connections_before_the_next_attempt(clock):
    """A demoted primary: its open connections would keep reaching it (README "Redis durability")."""
    dropped = []
    call, _ = flaky(clock, 2, redis.exceptions.ReadOnlyError)
    assert retrying(call, 10, reconnect=lambda: dropped.append(clock.now)) == "ok"
    assert len(dropped) == 2
    call, _ = flaky(clock, 2, redis.ConnectionError)  # (redis-py drops a broken one itself)
    assert retrying(call, 10, reconnect=lambda: dropped.append(clock.now)) == "ok"
    assert len(dropped) == 2


@pytest.mark.parametrize("error,advice", [
    (redis.ConnectionError, "check REDIS_URL or start it with `persona up`"),
    (redis.BusyLoadingError, "Redis is still loading its data"),
    (redis.exceptions.OutOfMemoryError, "Redis is full: raise its maxmemory"),
    (redis.exceptions.ReadOnlyError, "REDIS_URL names a replica"),
    (redis.exceptions.ClusterDownError, "check the Redis Cluster's state"),
    (redis.sentinel.MasterNotFoundError, "no Sentinel names a reachable primary"),
    (ReplicasBehind, "check the replicas (INFO replication")])
def test_giving_up_says_what_to_do_about_that_failure(clock, error, advice):
    call, _ = flaky(clock, 100, error)
    with pytest.raises(RedisUnavailable) as raised:
        retrying(call, 3)
    assert advice in str(raised.value)


def test_other_errors_are_not_retried(clock):
    call, attempts = flaky(clock, 1, redis.ResponseError)
    with pytest.raises(redis.ResponseError):
        retrying(call, 60)
    assert len(attempts) == 1


def test_logs_degraded_then_resumed(clock, caplog):
    call, _ = flaky(clock, 2)
    with caplog.at_level(logging.WARNING, logger="persona.redis"):
        retrying(call, 60, "write")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("Redis degraded: write failed (Connection refused); retrying in 0.1s")
    assert lines[-1] == "Redis write resumed after 0.3s (2 retries)"


def test_the_outages_counts_feed_the_metrics(clock, monkeypatch):
    """`OUTAGES` (read by flows/metrics: persona_redis_retries_total{op},
    persona_redis_retrying_calls, persona_redis_give_ups_total): retries by operation, the calls
    retrying at the moment, give-ups."""
    outages = redis_store.Outages()
    monkeypatch.setattr(redis_store, "OUTAGES", outages)
    seen_retrying = []
    call, _ = flaky(clock, 3)

    def watched():
        seen_retrying.append(outages.retrying)
        return call()
    assert retrying(watched, 60, "write") == "ok"
    assert seen_retrying == [0, 1, 1, 1] and outages.retrying == 0
    assert outages.retries == {"write": 3} and outages.give_ups == 0
    with pytest.raises(RedisUnavailable):
        retrying(flaky(clock, 100)[0], 1.0, "read")
    assert outages.retries["read"] > 0 and outages.give_ups == 1 and outages.retrying == 0


@pytest.mark.parametrize("reply", [
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist",
    "NOREPLICAS Not enough good replicas to write."])
def test_a_redis_that_cannot_persist_or_replicate_is_waited_out(clock, reply):
    def error(_message):
        return redis.ResponseError(reply)
    call, attempts = flaky(clock, 3, error)
    assert retrying(call, 60) == "ok" and len(attempts) == 4


def test_a_refused_login_or_another_error_fails_at_once(clock):
    for error in (redis.AuthenticationError, redis.ResponseError, redis.exceptions.NoScriptError):
        call, attempts = flaky(clock, 3, error)
        with pytest.raises(error):
            retrying(call, 60)
        assert len(attempts) == 1, error
