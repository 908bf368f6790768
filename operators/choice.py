"""A served feed as a choice set: what the ranking models learn engagements against.

The global model scores every candidate of a feed; read as a conditional logit, the user picks a
post with probability P(i) = softmax(w · x_i) over the candidates. When the user engages with one
of them, the gradient of log P(engaged) is x_engaged − E_P[x]: it raises the weights of what the
engaged post has more of than the model-weighted average candidate. A rejection (hide, report, an
impression left alone) is the reverse step. Only posts that were candidates teach the ranker (an
engagement reached some other way says nothing about how to order the candidates), so the set keeps
its members, hashed, next to the softmax mean: a few kilobytes per user until the next feed.

>>> import numpy as np
>>> cs = ChoiceSet.of(["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 1.0]), 0.0)
>>> "a" in cs, "z" in cs
(True, False)
>>> cs.step(np.array([1.0, 0.0]))
array([ 0.5, -0.5])
"""

from __future__ import annotations

import numpy as np

from operators.touches import post_hash, post_hashes


class ChoiceSet:
    __slots__ = ("mean", "members")

    def __init__(self, mean: np.ndarray, members: np.ndarray):
        self.mean = mean  # E_P[x] over the candidates under the global model
        self.members = members  # sorted 64-bit hashes of the candidate ids

    @classmethod
    def of(cls, ids: list[str], X: np.ndarray, w: np.ndarray, b: float) -> ChoiceSet | None:
        """The choice set of candidates `ids` with rows `X` under weights (w, b)."""
        if len(ids) == 0:
            return None
        logits = X @ w + b
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return cls(p @ X, np.sort(post_hashes(list(ids))))

    def __contains__(self, post: object) -> bool:
        if not isinstance(post, str):
            return False
        key = np.uint64(post_hash(post)).view(np.int64)
        k = int(np.searchsorted(self.members, key))
        return k < len(self.members) and self.members[k] == key

    def step(self, x: np.ndarray) -> np.ndarray:
        """x − E_P[x]: the log-likelihood gradient of choosing the candidate with row x."""
        return x - self.mean

    def __getstate__(self):
        return (self.mean.tolist(), self.members.tobytes())

    def __setstate__(self, state):
        mean, raw = state
        self.mean = np.array(mean)
        self.members = np.frombuffer(raw, dtype=np.int64).copy()
