"""Scoring: P(engage) from the global model and the user's residual model, vectorised over candidates.

The global model is trained from every user's examples and published to the feature store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from operators.context import FEATURES, PRIOR, Context
from operators.models import sigmoid

if TYPE_CHECKING:
    from operators.user_state import UserState

PRIOR_VECTOR = np.array([PRIOR.get(f, 0.0) for f in FEATURES])


def global_vector(exported: dict | None) -> tuple[np.ndarray, float]:
    if not exported:
        return PRIOR_VECTOR, 0.0
    return np.asarray(exported["w"], dtype=float), float(exported["b"])


def score(user: UserState, X: np.ndarray, exported: dict | None,
          ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """(P(engage), per-feature contributions) for candidate rows X.

    The global model's logit g is the prior; the user's River model learns a residual over
    (X, g), so a new user is ranked by the global model and a known user by their own deviations.
    """
    wg, bg = global_vector(exported)
    g = X @ wg + bg
    if user.model.n == 0:
        return sigmoid(g), X * wg
    wu, bu = user.model.vector()
    w_x, w_g = wu[:-1], wu[-1]
    effective = w_g * wg + w_x  # per-feature weight in the user's logit
    return sigmoid(X @ effective + w_g * bg + bu), X * effective
