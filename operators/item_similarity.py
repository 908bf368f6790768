"""Incremental item-to-item co-engagement (item-kNN), bounded per item.

When a user likes item p after items R (their last few likes), the pairs (j, p) and (p, j) for j in R
are counted. Each item keeps its strongest `capacity` co-engaged items. Similarity is normalised by
popularity at read time: co(i, j) / sqrt(likes_i · likes_j) (cosine on binary like vectors).

>>> s = ItemSimilarity(capacity=2)
>>> for j in ["a", "b", "a", "c"]: s.learn_one(j)
>>> s.top()
{'a': 2.0, 'b': 1.0}
"""

from __future__ import annotations

from operators.bounded import cap_top


class ItemSimilarity:
    __slots__ = ("capacity", "counts")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.counts: dict[str, float] = {}

    def learn_one(self, other: str, weight: float = 1.0) -> None:
        self.counts[other] = self.counts.get(other, 0.0) + weight
        if len(self.counts) > 2 * self.capacity:  # amortised pruning keeps updates O(1)
            cap_top(self.counts, self.capacity)

    def top(self) -> dict[str, float]:
        """The strongest neighbours, in a stable order (count desc, id asc)."""
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.capacity]
        return dict(ranked)

    def forget(self, other: str) -> None:
        self.counts.pop(other, None)

    def __getstate__(self):
        return (self.capacity, self.counts)

    def __setstate__(self, state):
        self.capacity, self.counts = state
