"""A served feed as a choice set: what the ranking models learn engagements against.

The global model scores every candidate of a feed; read as a conditional logit, the user picks a
post with probability P(i) = softmax(w · x_i) over the candidates. When the user engages with one
of them, the gradient of log P(engaged) is x_engaged − E_P[x]: it raises the weights of what the
engaged post has more of than the model-weighted average candidate. A rejection (hide, report, an
impression left alone) is the reverse step. Only posts that were candidates teach the ranker (an
engagement reached some other way says nothing about how to order the candidates).

Both terms are taken from the feed as it was ranked: the set keeps its candidates' rows (float32,
by hashed id) next to the softmax mean. Re-hydrating the engaged post at engagement time instead
mixes two moments: in the streaming flow a feed is ranked on a wall-clock micro-batch, and while a
backlog is replayed the engaged post has gained trending/popularity since, so every step pushed
those weights up (measured: `trending` +12 after 877 steps, and the planted-preference test
wandered between 0.29 and 0.48). A few kilobytes per user until the next feed.

>>> import numpy as np
>>> cs = ChoiceSet.of(["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 1.0]), 0.0)
>>> "a" in cs, "z" in cs
(True, False)
>>> cs.step("a")
array([ 0.5, -0.5])
"""

from __future__ import annotations

import numpy as np

from operators.touches import post_hash, post_hashes


class ChoiceSet:
    __slots__ = ("mean", "members", "rows")

    def __init__(self, mean: np.ndarray, members: np.ndarray, rows: np.ndarray):
        self.mean = mean  # E_P[x] over the candidates under the global model
        self.members = members  # sorted 64-bit hashes of the candidate ids
        self.rows = rows  # the candidates' feature rows (float32), aligned with members

    @classmethod
    def of(cls, ids: list[str], X: np.ndarray, w: np.ndarray, b: float) -> ChoiceSet | None:
        """The choice set of candidates `ids` with rows `X` under weights (w, b)."""
        if len(ids) == 0:
            return None
        logits = X @ w + b
        p = np.exp(logits - np.maximum.reduce(logits))  # = logits.max(), p.sum(): numpy's own
        p /= np.add.reduce(p)  # reductions without their Python wrappers
        hashes = post_hashes(ids)
        order = hashes.argsort(kind="stable")
        return cls(p @ X, hashes[order], X[order].astype(np.float32))

    def _index(self, post: object) -> int:
        """Position of `post` among the members, or -1."""
        if not isinstance(post, str):
            return -1
        key = np.uint64(post_hash(post)).view(np.int64)
        k = int(np.searchsorted(self.members, key))
        return k if k < len(self.members) and self.members[k] == key else -1

    def __contains__(self, post: object) -> bool:
        return self._index(post) >= 0

    def step(self, post: str) -> np.ndarray:
        """x_post − E_P[x], both as ranked: the log-likelihood gradient of choosing `post` (a
        member)."""
        k = self._index(post)
        if k < 0:
            raise KeyError(post)
        return self.rows[k].astype(float) - self.mean

    def __getstate__(self):
        return (self.mean.tolist(), self.members.tobytes(), self.rows.tobytes(), self.rows.shape)

    def __setstate__(self, state):
        mean, raw, rows, shape = state
        self.mean = np.array(mean)
        self.members = np.frombuffer(raw, dtype=np.int64).copy()
        self.rows = np.frombuffer(rows, dtype=np.float32).reshape(shape).copy()
