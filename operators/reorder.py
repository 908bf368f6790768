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
