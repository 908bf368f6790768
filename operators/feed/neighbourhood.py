"""Item-kNN from the user's side: how strongly the user's recent touches point at each post.

    knn(i) = Σ_j  w_j · r^k(j) · co(j, i) / sqrt(mass_j · mass_i)

over the user's newest touches j (k(j) = 0 for the newest), where w_j is the touch weight (an
engagement counts more than an impression), r = `features.knn_recency`, co(j, i) the decayed,
weighted co-occurrence count published by `operators.item_similarity`, and mass the item's total
touch weight (likes + impression_weight · impressions): a cosine over weighted touch vectors.

One `Neighbourhood` serves one ranking request: candidate generation reads every reachable post
(`best`), hydration reads the candidates (`scores`); learning asks for one post, which only
costs a lookup per history item.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from operators.context import Context
from operators.feature_store import FeatureReader
from operators.item_stats import ItemView

if TYPE_CHECKING:
    from operators.user_state import UserState

MIN_RECENCY = 0.05  # history items weighted below this are skipped (they barely change a ranking)


def mass(view: ItemView | None, impression_weight: float) -> float:
    """Total touch weight of an item (the diagonal of the co-occurrence matrix), at least 1."""
    if view is None:
        return 1.0
    return max(1.0, view.likes + impression_weight * view.impressions)


def weighted_history(user: UserState, ctx: Context) -> list[tuple[str, float]]:
    """The user's newest touches whose recency weight is at least MIN_RECENCY, newest first."""
    recency = ctx.settings.features.knn_recency
    depth = len(user.history) if recency <= 0 else min(
        len(user.history), 1 + int(math.log(MIN_RECENCY) / math.log(min(recency, 0.999))))
    return user.history.newest(depth)


class Neighbourhood:
    """The user's weighted history and its neighbour rows, read once per request."""

    __slots__ = ("imp_w", "weights", "rows", "store", "_all")

    def __init__(self, user: UserState, store: FeatureReader, ctx: Context):
        f = ctx.settings.features
        self.imp_w = f.impression_weight
        self.store = store
        recency = f.knn_recency
        history = weighted_history(user, ctx)
        ids = [p for p, _ in history]
        rows = store.neighbours(ids)
        views = store.items(ids)
        self.weights: list[float] = []  # w_j · r^k / sqrt(mass_j), aligned with self.rows
        self.rows: list[tuple[str, dict[str, float]]] = []
        for k, (post, w) in enumerate(history):
            row = rows.get(post)
            if row:
                self.rows.append((post, row))
                self.weights.append(w * recency**k / math.sqrt(mass(views.get(post), self.imp_w)))
        self._all: dict[str, float] | None = None

    def __bool__(self) -> bool:
        return bool(self.rows)

    def _raw_all(self) -> dict[str, float]:
        if self._all is None:
            totals: dict[str, float] = {}
            get = totals.get
            for c, (_, row) in zip(self.weights, self.rows, strict=True):
                for i, co in row.items():
                    totals[i] = get(i, 0.0) + c * co
            self._all = totals
        return self._all

    def best(self, n: int, exclude) -> list[str]:
        """The n posts with the highest knn(i), skipping ids in `exclude`, best first; ties by
        id, so the choice does not depend on the order a store returns a neighbour row in (the
        workers' rows come from Redis sorted by id, the in-process engine's in insertion order:
        ties at the cut once made a replay and a worker propose different posts from the same
        features).

        knn(i) ≤ raw(i) (a mass is at least 1), so a post whose raw value is below the n-th best
        knn among the 2n highest raw values cannot be chosen, and is not read from the store: a
        long history reaches ~460 posts, of which ~200 are read (each a decoded item on a
        worker whose cache has expired)."""
        totals = self._raw_all()
        ids = [i for i in totals if i not in exclude]
        if not ids or n <= 0:
            return []
        raw = np.fromiter(map(totals.__getitem__, ids), dtype=float, count=len(ids))
        at = np.arange(len(ids))
        if len(ids) > 2 * n:  # the 2n highest raw values, then whatever may still beat them
            at = np.argpartition(-raw, 2 * n - 1)[:2 * n]
            score = self._knn(ids, raw, at)
            cut = np.partition(score, len(score) - n)[len(score) - n]
            above = np.flatnonzero(raw >= cut)
            rest = above[np.isin(above, at, assume_unique=True, invert=True)]
            if len(rest):
                at = np.concatenate((at, rest))
                score = np.concatenate((score, self._knn(ids, raw, rest)))
        else:
            score = self._knn(ids, raw, at)
        if len(at) > n:
            cut = np.partition(score, len(at) - n)[len(at) - n]  # the n-th highest score
            top = np.flatnonzero(score > cut).tolist()
            tied = np.flatnonzero(score == cut).tolist()
            if len(top) + len(tied) > n:  # the cut falls among equals: the smallest ids stay
                tied = sorted(tied, key=lambda k: ids[at[k]])[:n - len(top)]
            top += tied
        else:
            top = range(len(at))
        values, post = score.tolist(), at.tolist()
        return [i for _, i in sorted((-values[k], ids[post[k]]) for k in top)]

    def _knn(self, ids: list[str], raw: np.ndarray, at: np.ndarray) -> np.ndarray:
        """knn(i) = raw(i) / sqrt(mass(i)) for `ids[at]` (their items read from the store)."""
        chosen = [ids[k] for k in at.tolist()]
        views, w = self.store.items(chosen), self.imp_w
        masses = np.fromiter((mass(v, w) for v in map(views.get, chosen)), dtype=float,
                             count=len(chosen))
        return raw[at] / np.sqrt(masses)

    def scores(self, views: list[ItemView], masses: np.ndarray | None = None) -> np.ndarray:
        """knn(i) for each of `views` (`masses`: their `mass`es, when the caller has them)."""
        out = np.zeros(len(views))
        if not self.rows or not views:
            return out
        if self._all is not None:
            raw = self._all
            vals = [raw.get(v.post_id, 0.0) for v in views]
        else:
            vals = [sum(c * row.get(v.post_id, 0.0) for c, (_, row) in zip(self.weights, self.rows, strict=True))
                    for v in views]
        out[:] = vals
        out /= np.sqrt([mass(v, self.imp_w) for v in views] if masses is None else masses)
        return out

    def origins(self, posts: list[str], liked) -> dict[str, str]:
        """For each post with knn > 0, the history item contributing most among those in `liked`
        (the "similar to X, which you liked" reason: not a post only seen, nor one hidden since);
        the newest of equals. A post with no liked origin has none (a generic reason)."""
        best: dict[str, float] = {}
        out: dict[str, str] = {}
        for c, (j, row) in zip(self.weights, self.rows, strict=True):
            if j not in liked:
                continue
            for p in posts:
                co = row.get(p)
                if co is not None and c * co > best.get(p, 0.0):
                    best[p], out[p] = c * co, j
        return out
