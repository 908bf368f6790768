"""Ranking metrics with fair ties, exposure metrics, and streaming accumulators.

Fair ties: when the target has the same score as `ties` other candidates and `greater` candidates score
strictly higher, its position under a uniformly random tie order is uniform on
`greater + 1 .. greater + ties + 1`. Every metric here is the exact expectation over that distribution:

* expected rank  = 1 + greater + ties / 2
* hit@k          = P(rank <= k) = clamp(k - greater, 0, ties + 1) / (ties + 1)
* NDCG@k         = E[1 / log2(rank + 1) if rank <= k else 0]   (one relevant item, so IDCG = 1)
* reciprocal rank = E[1 / rank]

A target that was not served at all has rank `math.inf` and contributes 0 to every metric.

A recommender reports the target's position as a `TiedRank` (a float equal to the expected rank that also
carries `greater` and `ties`); a plain float is taken as a deterministic rank.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np

EULER_GAMMA = 0.5772156649015329


class TiedRank(float):
    """Expected 1-based rank (the float value) with the tie structure it came from."""

    __slots__ = ("greater", "ties")
    greater: int
    ties: int

    def __new__(cls, greater: int, ties: int) -> Self:
        if greater < 0 or ties < 0:
            raise ValueError(f"greater and ties must be >= 0, got {greater}, {ties}")
        obj = super().__new__(cls, 1.0 + greater + ties / 2.0)
        obj.greater = int(greater)
        obj.ties = int(ties)
        return obj

    def __repr__(self) -> str:
        return f"TiedRank(greater={self.greater}, ties={self.ties})"

    def __reduce__(self):
        return (TiedRank, (self.greater, self.ties))


def tied_rank(target_score: float, other_scores: Iterable[float] | np.ndarray) -> TiedRank:
    """Rank of a target among the other candidates' scores (the target itself not included)."""
    others = np.asarray(
        other_scores if isinstance(other_scores, np.ndarray) else list(other_scores), dtype=float
    )
    return TiedRank(
        int(np.count_nonzero(others > target_score)), int(np.count_nonzero(others == target_score))
    )


def rank_in(scores: np.ndarray, candidates: np.ndarray | None, target: int) -> TiedRank | float:
    """Rank of `scores[target]` among `scores[candidates]` (boolean mask; None = every item).

    Returns `math.inf` when the target is not a candidate (it would not be served).
    """
    if target < 0 or target >= len(scores) or (candidates is not None and not candidates[target]):
        return math.inf
    pool = scores if candidates is None else scores[candidates]
    s = scores[target]
    return TiedRank(int(np.count_nonzero(pool > s)), int(np.count_nonzero(pool == s)) - 1)


def top_k(scores: np.ndarray, candidates: np.ndarray | None, k: int) -> np.ndarray:
    """Indices of the k best candidates, by score descending then index ascending (deterministic)."""
    idx = np.arange(len(scores)) if candidates is None else np.flatnonzero(candidates)
    if k <= 0 or len(idx) == 0:
        return idx[:0]
    vals = scores[idx]
    if len(idx) > k:
        kth = np.partition(vals, len(vals) - k)[len(vals) - k]  # k-th largest value
        above = np.flatnonzero(vals > kth)
        at = np.flatnonzero(vals == kth)[: k - len(above)]
        keep = np.concatenate([above, at])
        idx, vals = idx[keep], vals[keep]
    order = np.lexsort((idx, -vals))
    return idx[order][:k]


def _split(rank: float) -> tuple[int, int] | None:
    """(greater, ties) of a rank, None when not served. Plain finite floats are deterministic ranks."""
    if isinstance(rank, TiedRank):
        return rank.greater, rank.ties
    if rank is None or math.isinf(rank) or math.isnan(rank):
        return None
    r = math.ceil(rank)
    if r < 1:
        raise ValueError(f"ranks are 1-based, got {rank}")
    return r - 1, 0


def hit_at_k(rank: float, k: int) -> float:
    """Probability that the target lands in the top k."""
    split = _split(rank)
    if split is None:
        return 0.0
    greater, ties = split
    return min(max(k - greater, 0), ties + 1) / (ties + 1)


def ndcg_at_k(rank: float, k: int) -> float:
    """Expected 1/log2(rank + 1) over tied positions, 0 beyond k (single relevant item)."""
    split = _split(rank)
    if split is None:
        return 0.0
    greater, ties = split
    last = min(greater + ties + 1, k)
    total = sum(1.0 / math.log2(r + 1) for r in range(greater + 1, last + 1))
    return total / (ties + 1)


def harmonic(n: int) -> float:
    """H(n) = 1 + 1/2 + ... + 1/n (exact sum for small n, asymptotic series beyond; error < 1e-15)."""
    if n <= 0:
        return 0.0
    if n < 64:
        return math.fsum(1.0 / i for i in range(1, n + 1))
    n2 = float(n) * n
    return math.log(n) + EULER_GAMMA + 1.0 / (2 * n) - 1.0 / (12 * n2) + 1.0 / (120 * n2 * n2)


def reciprocal_rank(rank: float) -> float:
    """E[1/rank] over tied positions."""
    split = _split(rank)
    if split is None:
        return 0.0
    greater, ties = split
    if ties == 0:
        return 1.0 / (greater + 1)
    return (harmonic(greater + ties + 1) - harmonic(greater)) / (ties + 1)


def gini(counts: Sequence[float] | np.ndarray, catalog_size: int | None = None) -> float:
    """Gini coefficient of exposure counts over the catalog (0 = perfectly equal, →1 = concentrated).

    Items of the catalog missing from `counts` count as zero exposure (`catalog_size` pads with zeros).
    """
    x = np.asarray(counts, dtype=float).ravel()
    if catalog_size is not None:
        if catalog_size < len(x):
            raise ValueError(f"catalog_size {catalog_size} < number of counts {len(x)}")
        x = np.concatenate([x, np.zeros(catalog_size - len(x))])
    n, total = len(x), float(x.sum())
    if n == 0 or total <= 0:
        return 0.0
    x = np.sort(x)
    ranks = np.arange(1, n + 1, dtype=float)
    return float(np.sum((2 * ranks - n - 1) * x) / (n * total))


def catalog_coverage(served_lists: Iterable[Iterable[str]], catalog_size: int) -> float:
    """Distinct items that appeared in any served list / catalog size."""
    distinct: set[str] = set()
    for items in served_lists:
        distinct.update(items)
    return len(distinct) / catalog_size if catalog_size > 0 else 0.0


# ----------------------------------------------------------------------------- streaming accumulators


@dataclass(frozen=True, slots=True)
class RankingResult:
    hr: float
    ndcg: float
    mrr: float
    n: int
    not_served: int


class RankingAccumulator:
    """Running means of hit@k, NDCG@k and reciprocal rank."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.n = 0
        self.not_served = 0
        self._hit = 0.0
        self._ndcg = 0.0
        self._rr = 0.0

    def update(self, rank: float) -> tuple[float, float, float]:
        """Add one target; returns its (hit, ndcg, rr)."""
        values = (hit_at_k(rank, self.k), ndcg_at_k(rank, self.k), reciprocal_rank(rank))
        self.n += 1
        self.not_served += _split(rank) is None
        self._hit += values[0]
        self._ndcg += values[1]
        self._rr += values[2]
        return values

    def result(self) -> RankingResult:
        n = max(self.n, 1)
        return RankingResult(self._hit / n, self._ndcg / n, self._rr / n, self.n, self.not_served)


@dataclass(frozen=True, slots=True)
class ExposureResult:
    coverage: float
    gini: float
    distinct: int
    catalog_size: int


class ExposureAccumulator:
    """Exposure counts of every served top-k list: catalog coverage and Gini."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lists = 0

    def update(self, served: Iterable[str]) -> None:
        self.counts.update(served)
        self.lists += 1

    def result(self, catalog_size: int) -> ExposureResult:
        size = max(catalog_size, len(self.counts))
        return ExposureResult(
            coverage=len(self.counts) / size if size else 0.0,
            gini=gini(list(self.counts.values()), size),
            distinct=len(self.counts),
            catalog_size=size,
        )


SERIES_METRICS = ("hr", "ndcg", "mrr", "coverage", "gini")


@dataclass
class WindowedSeries:
    """Metrics over a sliding window of the last `window` targets, sampled every `step` targets.

    `points[metric]` is a list of `(n_targets, ts_ms, value)`; coverage and Gini are over the lists
    served in the window, against the catalog size at sampling time.
    """

    k: int
    window: int = 2000
    step: int = 0  # 0 = window // 10
    points: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.step <= 0:
            self.step = max(1, self.window // 10)
        self.points = {m: [] for m in SERIES_METRICS}
        self._values: deque[tuple[float, float, float]] = deque(maxlen=self.window)
        self._served: deque[tuple[str, ...]] = deque(maxlen=self.window)
        self._exposure: Counter[str] = Counter()
        self._n = 0

    def update(
        self, values: tuple[float, float, float], served: Sequence[str], ts: int, catalog_size: int
    ) -> None:
        if len(self._served) == self.window:
            old = self._served[0]
            self._exposure.subtract(old)
            for item in old:
                if self._exposure[item] <= 0:
                    del self._exposure[item]
        self._values.append(values)
        served = tuple(served)
        self._served.append(served)
        self._exposure.update(served)
        self._n += 1
        if self._n % self.step == 0:
            self._sample(ts, catalog_size)

    def _sample(self, ts: int, catalog_size: int) -> None:
        n = len(self._values)
        for i, metric in enumerate(("hr", "ndcg", "mrr")):
            self.points[metric].append((self._n, ts, math.fsum(v[i] for v in self._values) / n))
        size = max(catalog_size, len(self._exposure))
        self.points["coverage"].append((self._n, ts, len(self._exposure) / size if size else 0.0))
        self.points["gini"].append((self._n, ts, gini(list(self._exposure.values()), size)))
