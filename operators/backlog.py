"""How long a worker process needs to catch up with its Kafka input: the messages it has still to
read (the partitions' high watermarks minus its positions) over the rate it read them at lately.

Catch-up mode (`flows.adapters._catching_up`) stretches the rank and suggestion intervals to this
estimate. Until session 17 it used the input's *age* (wall clock − Kafka timestamp of the message
decoded last). On a pre-filled topic the age at an offset is how long the drain took to get there,
so a faster drain saw a smaller age everywhere and ranked each user more often: two processes made
181,300 timer ranks of the 1M-event workload where one made 57,735, and their speed-up measured how
much work the policy shed as much as the scale-out. The time to catch up, M / r, moves with the
speed instead, and two processes, each with half the messages and half the rate, see the same M / r
as one process twice as fast.

A dirty key waits `rerun_s()`, the time to read *half* the backlog: its runs come at lags of M,
M/2, M/4, … whatever the rate, until what is left takes under two caught-up intervals (about what a
second reads), and a feed is at most half the remaining backlog behind its input. So a continuously
active user runs ~log₂(M / r) + a few times over a drain: a drain twice as fast runs it about once
fewer, not twice as often (`tests/unit/test_backlog.py`). Waiting the whole M / r would put every
user's next run at the end of the drain, all at once.

>>> from types import SimpleNamespace as Message
>>> t = [0.0]
>>> backlog = Backlog(window_s=30.0, clock=lambda: t[0])
>>> for offset in range(100):
...     backlog.note(Message(topic="events", partition=0, offset=offset))
>>> backlog.observe({("events", 0): 1100}); backlog.lag, backlog.seconds()   # no rate yet
(1000, 0.0)
>>> for offset in range(100, 300):   # 200 messages in the next 2 s: 100 a second
...     backlog.note(Message(topic="events", partition=0, offset=offset))
>>> t[0] = 2.0; backlog.observe({("events", 0): 1100}); backlog.lag, backlog.seconds()
(800, 8.0)
>>> backlog.rerun_s()   # a dirty key's next run: once half of it is read
4.0
>>> t[0] = 4.0; backlog.observe({("events", 0): 1100}); backlog.rate   # over the window
50.0
>>> t[0] = 40.0; backlog.observe({("events", 0): 1100}); backlog.seconds()   # nothing for 38 s
inf
>>> backlog.note(Message(topic="events", partition=0, offset=1099)); t[0] = 41.0
>>> backlog.observe({("events", 0): 1100}); backlog.lag, backlog.seconds()   # all read
(0, 0.0)
"""

from __future__ import annotations

import math
import time
from collections import deque

RERUN_SHARE = 0.5  # of the time to catch up, between two runs of a dirty key (see above)


def catching_up(seconds: float, interval_s: float) -> bool:
    """Whether a process `seconds` from caught up is in catch-up mode for a step whose caught-up
    interval is `interval_s`: the stretch (`RERUN_SHARE` of it) is longer, so the step waits it
    (`flows.adapters._catching_up`) and the timer budget is earned per message (operators/pacing).

    >>> catching_up(0.9, 0.5), catching_up(1.1, 0.5)
    (False, True)
    """
    return seconds * RERUN_SHARE > interval_s


class Backlog:
    """One per worker process (`PROCESS`): its worker threads `note` each Kafka message they
    decode, a poller (`flows.resources.watch_backlog`) `observe`s the high watermarks every second,
    and the debounced steps read `seconds()`. Plain attribute writes, no lock: a torn read only
    misjudges one schedule."""

    def __init__(self, window_s: float = 30.0, clock=time.monotonic):
        # the rate is over this much of the recent past: a stall of a few seconds (a GC pause,
        # a sweep of due timers) hardly moves it
        self.window_s = window_s
        self._clock = clock
        self.positions: dict[tuple[str, int], int] = {}  # (topic, partition) → next offset
        self.read = 0  # messages noted
        self.lag = 0  # messages behind the high watermarks at the last observation
        self.rate: float | None = None  # messages/s over the window (None: under a second seen)
        self._seconds = 0.0
        self._samples: deque[tuple[float, int]] = deque()  # (clock, read)
        self.on_first_message = None  # called once, at the first message (starts the poller)

    def note(self, message) -> None:
        """A message this process decoded (the decode step, per message: a dict write and a
        count). Inputs without Kafka positions (tests, replays from files) leave it caught up."""
        offset = getattr(message, "offset", None)  # (not `partition`: bytes have that method)
        if offset is None:
            return
        self.positions[(message.topic, message.partition)] = offset + 1
        self.read += 1
        if self.on_first_message is not None:
            start, self.on_first_message = self.on_first_message, None
            start()

    def observe(self, high: dict[tuple[str, int], int]) -> None:
        """The high watermarks of (some of) the partitions noted: the lag, the rate, the estimate.
        A partition without a watermark counts as caught up."""
        now, read = self._clock(), self.read
        noted = tuple(self.positions.items())  # (one C call: a worker may note a new partition)
        self.lag = sum(max(0, high[tp] - position) for tp, position in noted if tp in high)
        self._samples.append((now, read))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        since, read_then = self._samples[0]
        self.rate = (read - read_then) / (now - since) if now - since >= 1.0 else None
        if not self.lag or self.rate is None:
            self._seconds = 0.0  # (a rate not known yet: as caught up, the cautious side)
        else:
            self._seconds = self.lag / self.rate if self.rate > 0 else math.inf

    def seconds(self) -> float:
        """Seconds until this process has read what its partitions hold now, at its recent rate:
        0 caught up (or without Kafka), inf when it read nothing over the window but is behind.
        No threshold in messages: a lag of one consume call is 10 s at 100 messages/s, and
        `rerun_s` under the caught-up interval changes nothing anyway."""
        return self._seconds

    def rerun_s(self) -> float:
        """How long a dirty key waits for its next run while catching up (0 caught up)."""
        return self._seconds * RERUN_SHARE

    def catching_up(self, interval_s: float) -> bool:
        return catching_up(self._seconds, interval_s)

    def partitions(self) -> list[tuple[str, int]]:
        return list(self.positions)


PROCESS = Backlog()
