"""Online logistic models: River learners, numpy scoring over all candidates at once.

`OnlineLogit` wraps `river.linear_model.LogisticRegression` (the learner: `learn_one`) and exposes
its weights as a vector so a feed scores hundreds of candidates in one matrix product. A prior weight
vector gives a sensible ranking before any feedback; the learner moves away from it with data.

>>> m = OnlineLogit(("a", "b"), prior={"a": 1.0}, learning_rate=0.5)
>>> m.predict_proba_one({"a": 1.0, "b": 0.0}) > 0.5
True
>>> for _ in range(50): m.learn_one({"a": 0.0, "b": 1.0}, True)
>>> round(float(m.predict_many(np.array([[0.0, 1.0]]))[0]), 2) > 0.9
True
"""

from __future__ import annotations

import numpy as np
from river import linear_model, optim


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))


class OnlineLogit:
    """A River logistic regression over a fixed, named feature set."""

    __slots__ = ("features", "model", "n")

    def __init__(self, features: tuple[str, ...], prior: dict[str, float] | None = None,
                 learning_rate: float = 0.05, l2: float = 0.0):
        self.features = features
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=l2)
        for name, weight in (prior or {}).items():
            self.model._weights[name] = weight  # River keeps weights in a dict keyed by feature
        self.n = 0  # training examples seen

    def learn_one(self, x: dict[str, float], y: bool, w: float = 1.0) -> None:
        self.model.learn_one(x, y, w=w)
        self.n += 1

    def learn_choice(self, d: dict[str, float], w: float = 1.0) -> None:
        """One SGD step of the conditional-logit likelihood of a choice among candidates.

        With P(i) = softmax(w · x_i) over what could have been served, the gradient of log P(chosen)
        is d = x_chosen − E_P[x]: the chosen item against the model-weighted average candidate
        (`operators.choice`). It moves weights only (the intercept cancels in a softmax), and fades
        as the chosen item comes to dominate. Unlike pointwise negatives taken from the top of one's
        own ranking, it has no selection bias: every candidate competes, weighted by its rank."""
        lr = self.model.optimizer.learning_rate * w
        weights = self.model._weights
        for name, value in d.items():
            if value:
                weights[name] = weights.get(name, 0.0) + lr * value
        self.n += 1

    def predict_proba_one(self, x: dict[str, float]) -> float:
        return self.model.predict_proba_one(x)[True]

    def vector(self) -> tuple[np.ndarray, float]:
        """(weights in `features` order, intercept)."""
        weights = self.model._weights
        return (np.array([weights.get(f, 0.0) for f in self.features]), float(self.model.intercept))

    def predict_many(self, X: np.ndarray) -> np.ndarray:
        w, b = self.vector()
        return sigmoid(X @ w + b)

    def export(self) -> dict:
        """Weights as plain data (published to the feature store for the global model)."""
        w, b = self.vector()
        return {"w": [round(float(v), 9) for v in w], "b": round(b, 9), "n": self.n}

    def __getstate__(self):
        w, b = self.vector()
        return (self.features, w.tolist(), b, self.n, self.model.optimizer.learning_rate,
                self.model.l2)

    def __setstate__(self, state):
        features, w, b, n, lr, l2 = state
        self.features = features
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)
        for name, weight in zip(features, w, strict=True):
            if weight:
                self.model._weights[name] = weight
        self.model.intercept = b
        self.n = n

