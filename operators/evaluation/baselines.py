"""Incremental baselines for the prequential loop (same interface as the engine adapter).

Both rank every item that exists so far (seen in the log, not deleted) and that the user has not
touched yet (`prequential.TOUCH_TYPES`); items are dense integer indices into numpy arrays so scoring
is vectorised.

* `GlobalPopularity`: score(i) = number of distinct users with a positive engagement on i so far.
* `ItemKNN`: incremental co-occurrence of positively-engaged items per user;
  score(i) = Σ_{j in user's positive history} co(i,j) / sqrt(pop(i)·pop(j)) (cosine-normalised).
  The co-occurrence matrix is dense (n_items² float64, 8·n² bytes): fine up to ~10k items.
"""

from __future__ import annotations

import math

import numpy as np

from operators.evaluation.metrics import rank_in, top_k
from operators.evaluation.prequential import is_positive, touched_post
from schemas.events import Event


class IncrementalCatalog:
    """Item index, alive mask, positive counts and per-user touched/positive sets (shared state)."""

    name = "catalog"

    def __init__(self, initial_capacity: int = 1024) -> None:
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._cap = max(16, initial_capacity)
        self._alive = np.zeros(self._cap, dtype=bool)
        self._pop = np.zeros(self._cap, dtype=np.float64)
        self._touched: dict[str, set[int]] = {}
        self._liked: dict[str, list[int]] = {}
        self._liked_set: dict[str, set[int]] = {}

    @property
    def n_items(self) -> int:
        return len(self._ids)

    def _grow(self, cap: int) -> None:
        self._alive = np.concatenate([self._alive, np.zeros(cap - self._cap, dtype=bool)])
        self._pop = np.concatenate([self._pop, np.zeros(cap - self._cap)])
        self._cap = cap

    def _item(self, post_id: str) -> int:
        idx = self._index.get(post_id)
        if idx is None:
            idx = len(self._ids)
            if idx >= self._cap:
                self._grow(self._cap * 2)
            self._index[post_id] = idx
            self._ids.append(post_id)
            self._alive[idx] = True
        return idx

    def learn_one(self, event: Event) -> None:
        if event.type == "post_deleted" and event.post_id is not None:
            idx = self._index.get(event.post_id)
            if idx is not None:
                self._alive[idx] = False
            return
        post = touched_post(event)
        if post is None:
            return
        idx = self._item(post)
        user = event.user_id
        self._touched.setdefault(user, set()).add(idx)
        if is_positive(event):
            liked = self._liked_set.setdefault(user, set())
            if idx not in liked:
                self._on_positive(user, idx, self._liked.setdefault(user, []))
                liked.add(idx)
                self._liked[user].append(idx)
                self._pop[idx] += 1

    def _on_positive(self, user: str, idx: int, history: list[int]) -> None:
        """Hook called before `idx` joins the user's positive history and pop(idx) increments."""

    def scores(self, user_id: str) -> np.ndarray:
        raise NotImplementedError

    def candidates(self, user_id: str) -> np.ndarray:
        mask = self._alive[: self.n_items].copy()
        touched = self._touched.get(user_id)
        if touched:
            mask[np.fromiter(touched, dtype=np.intp, count=len(touched))] = False
        return mask

    def score_target(
        self, user_id: str, target: str, now_ms: int, k: int
    ) -> tuple[float, list[str]]:
        scores = self.scores(user_id)
        mask = self.candidates(user_id)
        idx = self._index.get(target)
        rank = math.inf if idx is None else rank_in(scores, mask, idx)
        served = [self._ids[i] for i in top_k(scores, mask, k)]
        return rank, served

    def recommend(self, user_id: str, k: int = 10) -> list[str]:
        return [self._ids[i] for i in top_k(self.scores(user_id), self.candidates(user_id), k)]


class GlobalPopularity(IncrementalCatalog):
    """Most-engaged items so far (count of distinct positive users per item)."""

    name = "baseline:popularity"

    def scores(self, user_id: str) -> np.ndarray:
        return self._pop[: self.n_items]


class ItemKNN(IncrementalCatalog):
    """Item-based kNN over co-occurring positive engagements, cosine-normalised by popularity."""

    name = "baseline:item-knn"

    def __init__(self, initial_capacity: int = 1024, max_items: int = 16_384) -> None:
        super().__init__(initial_capacity)
        self.max_items = max_items
        self._co = np.zeros((self._cap, self._cap), dtype=np.float64)

    def _grow(self, cap: int) -> None:
        if cap > self.max_items and self._cap >= self.max_items:
            raise MemoryError(
                f"ItemKNN keeps a dense {cap}² co-occurrence matrix; "
                f"raise max_items (now {self.max_items}) if you have the memory"
            )
        cap = min(cap, max(self.max_items, self._cap + 1))
        co = np.zeros((cap, cap), dtype=np.float64)
        co[: self._cap, : self._cap] = self._co
        self._co = co
        super()._grow(cap)

    def _on_positive(self, user: str, idx: int, history: list[int]) -> None:
        if history:
            h = np.asarray(history, dtype=np.intp)
            self._co[idx, h] += 1.0
            self._co[h, idx] += 1.0

    def scores(self, user_id: str) -> np.ndarray:
        n = self.n_items
        history = self._liked.get(user_id)
        if not history:
            return np.zeros(n)
        h = np.asarray(history, dtype=np.intp)
        weights = 1.0 / np.sqrt(self._pop[h])  # pop(j) >= 1 for every j the user engaged with
        raw = weights @ self._co[h, :n]  # Σ_j co(i,j)/sqrt(pop j)
        pop = self._pop[:n]
        out = np.zeros(n)
        np.divide(raw, np.sqrt(pop), out=out, where=pop > 0)
        # equal neighbourhoods must tie exactly whatever the summation order: drop the last bits
        return np.round(out, 10)
