"""Bounded duplicate detection by event id.

Remembers the last `capacity` ids per shard (FIFO); a duplicate older than that window is let
through, which is the usual trade of a bounded dedup.

>>> d = Dedup(capacity=2)
>>> [d.is_new(x) for x in ["a", "b", "a", "c", "d", "a"]]
[True, True, False, True, True, True]
"""

from __future__ import annotations

import zlib

from operators.bounded import RecentSet


def shard_of(key: str, shards: int) -> str:
    """A stable shard name for `key` (crc32: stable across processes, unlike hash())."""
    return str(zlib.crc32(key.encode()) % shards)


class Dedup:
    __slots__ = ("_seen",)

    def __init__(self, capacity: int):
        self._seen = RecentSet(capacity)

    def is_new(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        return True

    def __getstate__(self):
        return self._seen

    def __setstate__(self, state):
        self._seen = state
