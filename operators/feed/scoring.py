"""Scoring: P(engage) from the user's online model blended with the global model, vectorised.

The global model is trained from every user's examples and published to the feature store; the user's
own model takes over as the user teaches it (weight n / (n + k)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from operators.context import FEATURES, PRIOR, Context
from operators.models import blend, sigmoid

if TYPE_CHECKING:
    from operators.user_state import UserState

PRIOR_VECTOR = np.array([PRIOR.get(f, 0.0) for f in FEATURES])


def global_vector(exported: dict | None) -> tuple[np.ndarray, float]:
    if not exported:
        return PRIOR_VECTOR, 0.0
    return np.asarray(exported["w"], dtype=float), float(exported["b"])


def score(user: UserState, X: np.ndarray, exported: dict | None,
          ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """(scores, per-feature contributions of the global model) for candidate rows X."""
    wg, bg = global_vector(exported)
    contributions = X * wg
    p_global = sigmoid(contributions.sum(axis=1) + bg)
    if user.model.n == 0:
        return p_global, contributions
    p_user = user.model.predict_many(X)
    return blend(p_user, p_global, user.model.n, ctx.settings.feed.global_blend_k), contributions
