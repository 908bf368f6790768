"""P(open) of a notification: a global River logistic model (every recipient's feedback) plus each
recipient's residual River model that takes the global logit as an input with prior weight 1 — the
feed's pattern (operators/feed/scoring.py): a recipient with no feedback is scored by the global
model, an active one by their own deviations from it (the types they open, the hours they read).

Features describe the candidate at a delivery time: its kind, the local hour of delivery (one-hot
3-hour buckets, so a recipient's active window is learnable by a linear model), the recipient's
engagement with the actor, whether they follow the actor, how many notifications it aggregates and
how many the recipient already got that day.
"""

from __future__ import annotations

import math

import numpy as np

from operators.models import OnlineLogit, sigmoid
from operators.notifications.candidates import KINDS

BUCKETS = 8  # local hours in 3-hour buckets (one-hot: each bucket learns on its own)
FEATURES: tuple[str, ...] = (*(f"k_{k}" for k in KINDS), *(f"h_{i}" for i in range(BUCKETS)),
                             "actor_aff", "follows_actor", "agg_log", "sent_today")
USER_FEATURES: tuple[str, ...] = (*FEATURES, "global_logit")
PRIOR: dict[str, float] = {**{f"k_{k}": -1.0 for k in KINDS}, "actor_aff": 0.3,
                           "follows_actor": 0.3, "sent_today": -0.1}
PRIOR_VECTOR = np.array([PRIOR.get(f, 0.0) for f in FEATURES])
_HOUR = FEATURES.index("h_0")
_KIND = {k: i for i, k in enumerate(KINDS)}


def row(kind: str, local_hour: float, actor_aff: float, follows: bool, count: int,
        sent_today: int) -> np.ndarray:
    x = np.zeros(len(FEATURES))
    x[_KIND[kind]] = 1.0
    x[_HOUR:_HOUR + BUCKETS] = hour_features(local_hour)
    x[_HOUR + BUCKETS:] = (math.log1p(actor_aff), float(follows), math.log(max(count, 1)),
                     math.log1p(sent_today))
    return x


def hour_bucket(local_hour: float) -> int:
    return min(int(local_hour * BUCKETS / 24.0), BUCKETS - 1)


def hour_features(local_hour: float) -> np.ndarray:
    out = np.zeros(BUCKETS)
    out[hour_bucket(local_hour)] = 1.0
    return out


def at_hours(x: np.ndarray, hours: list[float]) -> np.ndarray:
    """Rows of `x` moved to each local hour in `hours` (for the best-hour search): the hour
    block of each row set to its one-hot at once (not one small array per hour)."""
    X = np.repeat(x[None, :], len(hours), axis=0)
    X[:, _HOUR:_HOUR + BUCKETS] = 0.0
    X[np.arange(len(hours)), [_HOUR + hour_bucket(h) for h in hours]] = 1.0
    return X


def global_vector(exported: dict | None) -> tuple[np.ndarray, float]:
    if not exported:
        return PRIOR_VECTOR, 0.0
    return np.asarray(exported["w"], dtype=float), float(exported["b"])


def new_global(learning_rate: float) -> OnlineLogit:
    return OnlineLogit(FEATURES, prior=PRIOR, learning_rate=learning_rate)


def new_user(learning_rate: float) -> OnlineLogit:
    return OnlineLogit(USER_FEATURES, prior={"global_logit": 1.0}, learning_rate=learning_rate)


def predict(user: OnlineLogit, X: np.ndarray, exported: dict | None) -> np.ndarray:
    """P(open) for rows X: the user's residual over the global logit (global only without data)."""
    wg, bg = global_vector(exported)
    g = X @ wg + bg
    if user.n == 0:
        return sigmoid(g)
    wu, bu = user.vector()
    return sigmoid(X @ wu[:-1] + wu[-1] * g + bu)


def learn_user(user: OnlineLogit, x: np.ndarray, y: bool, exported: dict | None) -> None:
    wg, bg = global_vector(exported)
    d = dict(zip(FEATURES, x.tolist(), strict=True))
    d["global_logit"] = float(x @ wg + bg)
    user.learn_one(d, y)


def as_dict(x: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURES, x.tolist(), strict=True))


def as_dict_list(x: list[float]) -> dict[str, float]:
    return dict(zip(FEATURES, x, strict=True))
