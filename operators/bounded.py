"""Bounded containers for per-user state, so memory stays flat under a long stream of new ids.

>>> s = RecentSet(2)
>>> for x in "abc": _ = s.add(x)
>>> list(s), "a" in s
(['b', 'c'], False)
"""

from __future__ import annotations

from collections.abc import Iterator


class RecentSet:
    """An insertion-ordered set that forgets its oldest members past `capacity`."""

    __slots__ = ("capacity", "_items")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: dict[str, None] = {}

    def add(self, key: str) -> bool:
        """Add (or refresh) `key`; return True if it was new."""
        new = key not in self._items
        if not new:
            del self._items[key]
        self._items[key] = None
        if len(self._items) > self.capacity:
            del self._items[next(iter(self._items))]
        return new

    def discard(self, key: str) -> None:
        self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def newest(self, n: int) -> list[str]:
        keys = list(self._items)
        return keys[-n:][::-1]

    def __getstate__(self):
        return (self.capacity, list(self._items))

    def __setstate__(self, state):
        self.capacity, keys = state
        self._items = dict.fromkeys(keys)


def cap_top(scores: dict[str, float], capacity: int, slack: int = 0) -> None:
    """Drop the lowest-scored keys of `scores` in place until it holds `capacity` keys, once it
    holds more than `capacity + slack`; among equal scores the smallest keys go (not the first
    inserted: arrival order must not decide). A large `slack` makes a cap kept at every insert
    O(log n) amortised, not a scan of n keys per insert (1.6 ms at 5,000 keys)."""
    if len(scores) > capacity + slack:
        for key in sorted(scores, key=lambda k: (scores[k], k))[: len(scores) - capacity]:
            del scores[key]


def cap_newest(d: dict, n: int) -> None:
    """Drop the first-inserted keys of `d` in place until it holds `n` keys."""
    while len(d) > n:
        del d[next(iter(d))]
