"""Incremental item-to-item co-occurrence (item-kNN), bounded per item.

When a user touches item p, the pairs (j, p) and (p, j) are counted for the user's previous touches
j (see `UserState`), weighted by how much both touches say (an engagement counts more than an
impression) and by how far apart they are in the user's history. Each item keeps its strongest
co-occurring items: when it holds 2·`capacity`, the weaker half is dropped (amortised O(1) updates).
Similarity is normalised at read time (`operators.feed.neighbourhood`).

Order-independent: each weight is rounded to a multiple of 2^-24 before it is added, so every count
is a sum of dyadic numbers that float64 holds exactly (up to 2^29): the same pairs give the same
bits in any order (a restart, another batching). Published neighbours are sorted by id, and pruning
breaks ties by id. What still depends on order is *which* neighbours pruning drops (the weaker half
at the moment a post holds 2·`capacity`): exact while a post has at most 2·`capacity` distinct
co-touched posts.

>>> s = ItemSimilarity(capacity=1)
>>> for j in ["a", "b", "a"]: s.learn_one(j)
>>> s.top()
{'a': 2.0, 'b': 1.0}
>>> s.learn_one("c", 0.5); s.top()
{'a': 2.0}
"""

from __future__ import annotations

from operators.bounded import cap_top

QUANTUM = 2.0 ** 24  # weights are rounded to multiples of 1/QUANTUM (sums stay exact below 2^29)


def quantize(weight: float) -> float:
    """`weight` rounded to the nearest multiple of 1/QUANTUM (every step is exact in float64)."""
    return round(weight * QUANTUM) / QUANTUM


class ItemSimilarity:
    __slots__ = ("capacity", "counts")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.counts: dict[str, float] = {}

    def learn_one(self, other: str, weight: float = 1.0) -> None:
        counts = self.counts
        counts[other] = counts.get(other, 0.0) + quantize(weight)
        if len(counts) > 2 * self.capacity:  # amortised pruning keeps updates O(1)
            cap_top(counts, self.capacity)

    def top(self) -> dict[str, float]:
        """The kept neighbours (between `capacity` and 2·`capacity` once warm), as published:
        sorted by id, so the bytes do not depend on the order neighbours were first seen."""
        return dict(sorted(self.counts.items()))

    def forget(self, other: str) -> None:
        self.counts.pop(other, None)

    def __getstate__(self):
        return (self.capacity, self.counts)

    def __setstate__(self, state):
        self.capacity, self.counts = state
