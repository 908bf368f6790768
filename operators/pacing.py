"""How much debounced timer work (ranks, suggestion lists) a worker does between two input batches.

Bytewax calls `on_notify` for every key whose timer is due in one go, without reading input in
between, and holds everything those calls emit until the sweep ends. In catch-up mode tens of
thousands of users come due together: a 300k-event drain stood 40 s on one sweep while the worker's
RSS grew by ~0.5 GB of held outputs (143.6 s and 45,931 ranks at 1M events). A budget bounds a
sweep: once the timer work since the last input batch has taken `budget_s` of wall clock, each
further due key is put off to a later *slot* (slots `2 · budget_s` apart, each holding as many keys
as the last budget ran), so the input and the outputs move between slots. The next input batch
restores the budget; with no input, it comes back once its first slot is due, so a quiet worker
still works through its timers.

A key can be put off many times: Bytewax sweeps due keys in key order, not in slot order, and a key
runs only within a budget (1.5M put-offs for 45,567 timer ranks in a 300k-event drain, a few µs
each), so each put-off in a row waits twice as long. Running a key at its slot whatever the budget
was tried: the sweeps then held the input for 41 s again and the drain ran at the speed without a
budget. No key is put off for ever: one that ran is not due again for its step's interval
(catch-up mode: the input's age), which hands the budget on; a user who reads a stale feed is
ranked at the read, budget or not. Users still due at the end of a bounded input are ranked in
Bytewax's one `on_eof` sweep, unbudgeted (a drained run's peak RSS; see docs/performance.md).

>>> t = [0.0]
>>> budget = TimerBudget(0.5, clock=lambda: t[0])
>>> budget.allows(), budget.spend(0.3), budget.allows(), budget.spend(0.3), budget.allows()
(True, None, True, None, False)
>>> [budget.put_off() for _ in range(5)]   # two runs fit in the budget: two keys a slot
[1.0, 1.0, 2.0, 2.0, 3.0]
>>> budget.put_off(times=3)   # a key put off three times before: 2³ slots on
8.0
>>> t[0] = 1.0; budget.allows()   # no input came, the first slot is due: the budget is back
True
>>> budget.spend(0.6); budget.allows(), budget.input_arrived(), budget.allows()
(False, None, True)

While the process catches up a backlog, a step's batch no longer restores the budget: the messages
the process reads earn it, `per_message_s` each, banked up to `budget_s`. Two processes receive
more, smaller batches than one (each step's input comes from both), so restoring the budget per
batch let them do 2.3× the timer work per event of one process on the same input (300k events,
session 17), and their speed-up measured that as much as the scale-out.

>>> from types import SimpleNamespace
>>> backlog = SimpleNamespace(read=0, catching_up=lambda interval_s: True)   # behind
>>> budget = TimerBudget(0.5, clock=lambda: t[0], per_message_s=0.001, backlog=backlog)
>>> budget.spend(0.5); budget.input_arrived(), budget.allows()   # a batch: nothing earned
(None, False)
>>> backlog.read += 100; budget.allows()   # 100 messages read: 0.1 s earned
True
>>> budget.spend(0.2); backlog.read += 2000; budget.allows(), budget._spent   # banked to 0.5 s
(True, 0.0)
>>> budget.put_off(times=3)   # a key missed three times in a row while catching up: 2³ slots
8.0
>>> backlog.catching_up = lambda interval_s: False   # caught up: the next slot with room
>>> budget.put_off(times=3)
1.0
"""

from __future__ import annotations

import time


class TimerBudget:
    """Wall-clock budget of timer work between input batches, one per worker process (its steps
    share the process's thread). `budget_s` 0 turns it off."""

    __slots__ = ("budget_s", "slot_s", "per_message_s", "interval_s", "_backlog", "_read",
                 "_clock", "_spent", "_runs", "_per_slot", "_ran_out_at", "_slot_at", "_in_slot",
                 "waiting")

    def __init__(self, budget_s: float, clock=time.monotonic, per_message_s: float = 0.0,
                 backlog=None, interval_s: float = 0.5):
        self.budget_s = budget_s
        self.slot_s = 2 * budget_s  # at most half the time for timer work while input waits
        self.per_message_s = per_message_s  # earned per message read while catching up (0: off)
        self.interval_s = interval_s  # the caught-up rank interval: past it, catch-up mode
        self._backlog = backlog  # the process's operators.backlog.Backlog
        self._read = 0  # its messages read when last counted
        self._clock = clock
        self._spent, self._runs, self._per_slot = 0.0, 0, 1
        self._ran_out_at: float | None = None
        self._slot_at: float | None = None  # the slot put-off keys are filling
        self._in_slot = 0
        # keys whose due run is put off now (kept by the steps: flows.adapters._Debounced): the
        # process's backlog of timer work, 0 when it keeps up
        self.waiting = 0

    def input_arrived(self) -> None:
        if not self._earn():  # (while catching up, a batch restores nothing)
            self._restore()

    def _restore(self) -> None:
        self._spent, self._runs, self._ran_out_at = 0.0, 0, None

    def _earn(self) -> bool:
        """While catching up, add what the messages read since the last count earned; whether
        it is catching up (the messages read while caught up earn nothing)."""
        if not self.per_message_s or self._backlog is None:
            return False
        read = self._backlog.read
        new, self._read = read - self._read, read
        if not self._backlog.catching_up(self.interval_s):
            return False
        self._spent = max(0.0, self._spent - new * self.per_message_s)
        if self._ran_out_at is not None and self._spent < self.budget_s:
            self._runs, self._ran_out_at = 0, None
        return True

    def allows(self) -> bool:
        """Whether a due timer may run now (else `put_off`)."""
        if self._ran_out_at is None:
            return True
        if self._clock() - self._ran_out_at >= self.slot_s:  # no input came meanwhile
            self._restore()
            return True
        self._earn()
        return self._ran_out_at is None

    def spend(self, seconds: float) -> None:
        if self.budget_s <= 0:  # off: nothing to count
            return
        self._spent += seconds
        self._runs += 1
        if self._ran_out_at is None and self._spent >= self.budget_s:
            self._ran_out_at = self._clock()
            self._per_slot = self._runs

    def put_off(self, times: int = 0) -> float:
        """Seconds from now to the slot of a due key that may not run now, put off `times` in a
        row before. While catching up, each time twice as far (up to 2⁶ slots on), so a key the
        sweeps keep missing is visited ~log₂ as often (33M put-offs for 200k timer ranks at 1M
        events without it). Caught up, the next slot with room: the due keys are few enough to
        visit each slot, and a key waiting 64 slots while the budget goes unused left feeds
        stale for over two minutes after a burst (`persona bench`'s rate search, session 18)."""
        if times and self._doubling():
            return self.slot_s * 2 ** min(times, 6)
        now = self._clock()
        if self._slot_at is None or self._slot_at < now + self.slot_s:  # earlier slots are past
            self._slot_at, self._in_slot = max(now + self.slot_s, self._slot_at or 0.0), 0
        elif self._in_slot >= self._per_slot:
            self._slot_at, self._in_slot = self._slot_at + self.slot_s, 0
        self._in_slot += 1
        return self._slot_at - now

    def _doubling(self) -> bool:
        """Put-offs in a row wait twice as long: unless the process is known to be caught up."""
        return self._backlog is None or self._backlog.catching_up(self.interval_s)

    def timed(self, run, *args):
        """`run(*args)`, its wall clock spent from the budget."""
        started = time.perf_counter()
        try:
            return run(*args)
        finally:
            self.spend(time.perf_counter() - started)


UNLIMITED = TimerBudget(0.0)  # (off: unit tests and the in-process paths have no timers)
