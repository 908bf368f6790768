"""`persona run --until-drained` says how far it is (scripts.runner.DrainProgress): the offsets
the workers commit to their progress group against the topic's end, from where the run began."""

from __future__ import annotations

from scripts.runner import DrainProgress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_count_from_the_start_and_ignore_an_earlier_runs_positions():
    clock, lines = Clock(), []
    # an earlier run left partition 1 at 900; this run resumes partition 0 at 100, 1 at 0
    group = {1: 900}
    progress = DrainProgress(lambda: dict(group), start={0: 100, 1: 0}, end={0: 1100, 1: 1000},
                             log=lines.append, every_s=10.0, clock=clock)
    assert progress.total == 2000
    clock.now = 5.0
    progress.tick()
    assert lines == []  # not due yet
    clock.now = 10.0
    group.update({0: 600})  # partition 1 has not moved since the start: the earlier run's
    progress.tick()
    assert lines[-1] == "drain: 25% of the events topic (500 of 2,000), 50 events/s, ~30s left"
    clock.now = 20.0
    group.update({0: 1100, 1: 500})
    progress.tick()
    assert lines[-1].startswith("drain: 75% of the events topic (1,500 of 2,000), 75 events/s")
    clock.now = 30.0
    group.update({1: 995})
    progress.tick()
    assert lines[-1].startswith("drain: 99% of the events topic (1,995 of 2,000)")  # not 100%
    clock.now = 40.0
    progress.tick()  # no further progress: nothing more to say
    assert len(lines) == 3
    assert progress.summary() == "drained 2,000 events in 40s (50 events/s)"


def test_an_unreadable_group_or_an_empty_range_logs_nothing():
    clock, lines = Clock(), []

    def unreadable():
        raise RuntimeError("broker down")
    progress = DrainProgress(unreadable, start={0: 0}, end={0: 100}, log=lines.append,
                             clock=clock)
    clock.now = 60.0
    progress.tick()
    assert lines == ["drain: 0% of the events topic (0 of 100), 0 events/s"]
    empty = DrainProgress(lambda: {0: 5}, start={0: 5}, end={0: 5}, log=lines.append, clock=clock)
    clock.now = 120.0
    empty.tick()
    assert len(lines) == 1
