"""Catch-up mode's work hardly depends on how fast a worker drains (operators/backlog.py): a
continuously dirty user runs ~log₂ of the backlog over what a second reads, so a drain twice as
fast runs each user about once fewer, not twice as often; and one process and two (each with half
the messages at half the rate) run a user as often."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.backlog import Backlog

STREAM = SimpleNamespace(backlog_interval_s=600.0)
BASE_S = 0.5  # stream.rank_interval_s


def _runs_over_a_drain(messages: int, rate: float, partitions: int = 1) -> int:
    """Runs of a user dirty at every moment while one process reads `messages` (pre-filled,
    spread over `partitions`) at `rate` messages/s, the high watermarks observed every second."""
    t = [0.0]
    backlog = Backlog(clock=lambda: t[0])
    high = {("events", p): messages // partitions for p in range(partitions)}
    read, runs, due, dt = 0, 0, 0.0, 0.05
    next_observation = 0.0
    while read < sum(high.values()):
        if t[0] >= next_observation:
            backlog.observe(high)
            next_observation += 1.0
        if t[0] >= due:
            runs += 1
            due = t[0] + max(BASE_S, min(backlog.rerun_s(), STREAM.backlog_interval_s))
        upto = min(int(rate * (t[0] + dt)), sum(high.values()))
        for offset in range(read, upto):  # round robin over the partitions
            partition = offset % partitions
            backlog.note(SimpleNamespace(topic="events", partition=partition,
                                         offset=offset // partitions))
        read = upto
        t[0] += dt
    return runs


@settings(max_examples=15, deadline=None)
@given(messages=st.integers(20_000, 100_000), slow=st.floats(100.0, 1_000.0),
       speed_up=st.floats(1.5, 4.0))
def test_a_dirty_user_runs_as_often_over_a_backlog_at_any_drain_speed(messages, slow, speed_up):
    at_slow = _runs_over_a_drain(messages, slow)
    at_fast = _runs_over_a_drain(messages, slow * speed_up)
    # runs at lags M, M/2, M/4, … until what is left takes under two caught-up intervals (about
    # what a second reads), then every interval: plus the first second, whose rate is not known
    assert at_slow == pytest.approx(math.log2(messages / slow) + 3.5, abs=1.5), at_slow
    # (either may run once more at the very end: whether its last caught-up interval ends before
    # its input does, e.g. 46,310 messages at 234 and 351 a second ran 10 and 11 times)
    assert -1 <= at_slow - at_fast <= math.ceil(math.log2(speed_up)) + 1, (at_slow, at_fast)


def test_two_processes_run_a_user_as_often_as_one():
    """Each of two processes holds half the messages and reads at half the rate: per process,
    the same time to catch up as one process twice as fast, so the same runs per user."""
    one = _runs_over_a_drain(100_000, 1_000.0, partitions=4)
    each_of_two = _runs_over_a_drain(50_000, 500.0, partitions=2)
    assert abs(one - each_of_two) <= 1, (one, each_of_two)


def test_a_message_without_a_kafka_position_leaves_the_process_caught_up():
    backlog = Backlog()
    backlog.note(b'{"type": "user_created"}')  # a replay's raw payload
    backlog.observe({})
    assert (backlog.lag, backlog.seconds(), backlog.partitions()) == (0, 0.0, [])
