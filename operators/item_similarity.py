"""Incremental item-to-item co-occurrence (item-kNN), bounded per item.

When a user touches item p, the pairs (j, p) and (p, j) are counted for the user's previous touches
j (see `UserState`), weighted by how much both touches say (an engagement counts more than an
impression) and by how far apart they are in the user's history. Each item keeps its strongest
co-occurring items: when it holds 2·`capacity`, the weaker half is dropped (amortised O(1) updates).
Similarity is normalised at read time (`operators.feed.neighbourhood`).

>>> s = ItemSimilarity(capacity=1)
>>> for j in ["a", "b", "a"]: s.learn_one(j)
>>> s.top()
{'a': 2.0, 'b': 1.0}
>>> s.learn_one("c", 0.5); s.top()
{'a': 2.0}
"""

from __future__ import annotations

from operators.bounded import cap_top


class ItemSimilarity:
    __slots__ = ("capacity", "counts")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.counts: dict[str, float] = {}

    def learn_one(self, other: str, weight: float = 1.0) -> None:
        counts = self.counts
        counts[other] = counts.get(other, 0.0) + weight
        if len(counts) > 2 * self.capacity:  # amortised pruning keeps updates O(1)
            cap_top(counts, self.capacity)

    def top(self) -> dict[str, float]:
        """The kept neighbours (between `capacity` and 2·`capacity` once warm), as published.

        Not sorted: readers only look neighbours up, and skipping the sort keeps publishing cheap."""
        return dict(self.counts)

    def forget(self, other: str) -> None:
        self.counts.pop(other, None)

    def __getstate__(self):
        return (self.capacity, self.counts)

    def __setstate__(self, state):
        self.capacity, self.counts = state
