"""Holding events about a post until the post itself is known (a bounded stream-join buffer).

Partitions of a topic are consumed at different speeds, most of all when a backlog is replayed: a
like can overtake its post's `post_created` by thousands of events. Applied too early it would teach
nothing (no author or topics yet), so such events wait here until the post arrives, the buffer is
full, or a deadline passes (the caller releases them then, unannotated).

>>> w = AwaitingPost(capacity=2)
>>> w.hold("like-1"), w.hold("like-2"), w.hold("like-3")
([], [], ['like-1'])
>>> w.release()
['like-2', 'like-3']
"""

from __future__ import annotations

from collections import deque

from operators.bounded import RecentSet


class AwaitingPost:
    __slots__ = ("capacity", "events")

    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self.events: list = []

    def hold(self, event) -> list:
        """Hold `event`; return whatever overflowed (oldest first), to be applied now."""
        self.events.append(event)
        if len(self.events) > self.capacity:
            overflow, self.events = self.events[:1], self.events[1:]
            return overflow
        return []

    def release(self) -> list:
        out, self.events = self.events, []
        return out

    def __bool__(self) -> bool:
        return bool(self.events)

    def __getstate__(self):
        return (self.capacity, self.events)

    def __setstate__(self, state):
        self.capacity, self.events = state



class InOrder:
    """A user's input applied in the user's own order, although the items step (keyed by post)
    annotates each post's event and sends it back in whatever order its keys, workers and the
    hold above (`AwaitingPost`) produce.

    The users step receives each user's events straight from the dedup step, in the order of the
    user's partition, with a post's event as an ("await", event) placeholder; the annotated copy
    (("annotated", event, view) from the items step, or ("cancel", event) when an erased post
    dropped it) fills it in. `admit` returns the values ready to apply: the user's events up to
    the first unfilled placeholder, in their order; deliveries and erasure commands at once (they
    commute with the user's events). So what a user learns (history, co-occurrence pairs, labels)
    does not depend on batching, on which process holds which post, or on how partitions
    interleave. An annotated copy that comes before its placeholder waits for it.

    A placeholder is given up — its event applied *in its place* without annotation (view None),
    its copy dropped when it comes — once the items step said it holds the event for a post it
    does not know yet (("held", event)) and the user's own queued events run `max_lag_ms` of
    event time past it (`admit`'s argument: the user has moved on; waiting longer would hold the
    whole user behind one like, however long the items step holds its post), or past `capacity`
    queued values. A copy that is only in transit through the items step is waited for: the
    user's later events, on the direct path, overtake it within a batch. The order stays the
    user's either way; only the annotation of an event whose post came that late depends on
    timing — the caller still learns the late copy's view (`take_late`: who the post's author is,
    for erasure). Past `capacity` early copies the oldest is applied at once, and only the newest 256
    "held" notices that came before their placeholder (or after its copy) are remembered, so
    memory stays bounded.

    >>> from types import SimpleNamespace as E
    >>> a, b, c = (E(event_id=i, ts=0) for i in "abc")
    >>> q = InOrder()
    >>> ids = lambda values: [v[1].event_id for v in values]
    >>> ids(q.admit([("await", a), ("event", b, None), ("annotated", c, "view")])), q.blocked
    ([], True)
    >>> ids(q.admit([("await", c), ("annotated", a, "view")])), q.blocked
    (['a', 'b', 'c'], False)
    >>> q.admit([("await", a), ("cancel", a)]), bool(q)
    ([], False)
    >>> late, later = E(event_id="d", ts=1_000), E(event_id="e", ts=70_000)
    >>> q.admit([("await", late), ("event", later, None)], max_lag_ms=60_000)  # in transit
    []
    >>> [(v[1].event_id, v[2]) for v in q.admit([("held", late)], max_lag_ms=60_000)]
    [('d', None), ('e', None)]
    >>> q.admit([("annotated", late, "view")])  # its copy, too late: not applied …
    []
    >>> [(event.event_id, view) for event, view in q.take_late()]  # … but its view is told
    [('d', 'view')]
    """

    __slots__ = ("capacity", "queue", "waiting", "filled", "early", "given_up", "held",
                 "held_unqueued", "newest_ts", "late")

    def __init__(self, capacity: int = 2_000):
        self.capacity = capacity
        self.queue: deque = deque()  # the user's values not applied yet, in order (placeholders too)
        self.waiting: set[str] = set()  # ids of the placeholders in the queue
        self.filled: dict[str, tuple | None] = {}  # placeholder id -> its value (None: cancelled)
        self.early: dict[str, tuple | None] = {}  # annotated before its placeholder came
        # placeholders applied unannotated: their copies are dropped when they come. Sized like
        # the queue: a replay can give hundreds up before any copy comes, and a copy whose id
        # was forgotten would wait as "early" and, past capacity, be applied a second time
        self.given_up = RecentSet(capacity)
        self.held: set[str] = set()  # queued placeholders whose event the items step holds
        # "held" notices with no placeholder queued: it has not come yet (or its copy came first)
        self.held_unqueued = RecentSet(256)
        self.newest_ts = 0  # event time of the newest value queued
        self.late: list = []  # (event, view) of copies that came after their give-up (take_late)

    def admit(self, values, max_lag_ms: int = 0) -> list:
        """The values ready to apply, in order; `max_lag_ms` > 0 gives a placeholder up once the
        user's queued events are that much event time past it (0: only past `capacity`)."""
        ready: list = []
        for value in values:
            kind = value[0]
            if kind == "await":
                event_id = value[1].event_id
                self.newest_ts = max(self.newest_ts, value[1].ts)
                if event_id in self.early:
                    filled = self.early.pop(event_id)
                    if filled is not None:
                        self.queue.append(filled)
                else:
                    self.queue.append(value)
                    self.waiting.add(event_id)
                    if event_id in self.held_unqueued:
                        self.held_unqueued.discard(event_id)
                        self.held.add(event_id)
            elif kind in ("annotated", "cancel"):
                event_id = value[1].event_id
                filled = ("event", value[1], value[2]) if kind == "annotated" else None
                if event_id in self.given_up:  # applied in its place already
                    if kind == "annotated" and value[2] is not None:
                        self.late.append((value[1], value[2]))
                    continue
                if event_id in self.waiting:
                    self.filled[event_id] = filled
                else:
                    self.early[event_id] = filled
            elif kind == "held":
                event_id = value[1].event_id
                if event_id in self.waiting:
                    self.held.add(event_id)
                elif event_id not in self.given_up and event_id not in self.early:
                    self.held_unqueued.add(event_id)
            elif kind == "event":
                self.newest_ts = max(self.newest_ts, value[1].ts)
                self.queue.append(value)
            else:  # deliveries, erasure commands
                ready.append(value)
        while len(self.early) > self.capacity:  # a placeholder that never came: apply at once
            filled = self.early.pop(next(iter(self.early)))
            if filled is not None:
                ready.append(filled)
        while self.queue:
            head = self.queue[0]
            if head[0] == "await":
                event_id = head[1].event_id
                if event_id in self.filled:
                    head = self.filled.pop(event_id)
                elif len(self.queue) > self.capacity or (
                        max_lag_ms > 0 and self.newest_ts - head[1].ts > max_lag_ms
                        and event_id in self.held):
                    self.given_up.add(event_id)
                    head = ("event", head[1], None)
                else:
                    break
                self.waiting.discard(event_id)
                self.held.discard(event_id)
            self.queue.popleft()
            if head is not None:
                ready.append(head)
        return ready

    def take_late(self) -> list:
        """[(event, view)] of the annotated copies that came after their placeholder was given
        up, since the last call: not applied, but the view names the post's author, whom the user
        now mentions (operators.erasure: the author's deletion must reach this user, whose
        history holds the post)."""
        late, self.late = self.late, []
        return late

    def __bool__(self) -> bool:
        return bool(self.queue or self.early)

    @property
    def blocked(self) -> bool:
        """Some of the user's events wait behind a placeholder not filled yet: the state lacks
        them (after `admit` the queue's head, if any, is always such a placeholder)."""
        return bool(self.queue)

    def __getstate__(self):
        return (self.capacity, self.queue, self.filled, self.early, self.given_up, self.held,
                self.held_unqueued, self.newest_ts)

    def __setstate__(self, state):
        self.capacity, queue, self.filled, self.early, self.given_up = state[:5]
        self.late = []  # taken in the batch that filled it: never part of a snapshot
        self.queue = deque(queue)  # snapshots before it was a deque hold a list
        self.waiting = {v[1].event_id for v in self.queue if v[0] == "await"}
        if len(state) > 5:
            self.held, self.held_unqueued, self.newest_ts = state[5:]
        else:  # a snapshot from before "held" notices: its placeholders wait for their copies
            self.held, self.held_unqueued = set(), RecentSet(256)
            self.newest_ts = max((v[1].ts for v in self.queue), default=0)
