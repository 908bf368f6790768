"""Feature hydration: one matrix row per candidate, columns in `operators.context.FEATURES` order.

Used for serving (all candidates at once) and for learning (one row), so training and serving can
never disagree on what a feature means. Columns are computed over all candidates at once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from operators.context import FEATURES, Context
from operators.decay import T0_MS
from operators.feature_store import FeatureReader
from operators.feed.neighbourhood import Neighbourhood
from operators.item_stats import ItemView

if TYPE_CHECKING:
    from operators.user_state import UserState

FRESH_HALF_LIFE_MS = 24 * 3_600_000
SIMILAR_SCALE = 10.0  # similar = log1p(SIMILAR_SCALE · knn): ~linear for weak, ~log for strong
_COL = {name: i for i, name in enumerate(FEATURES)}


def _decayed(logs: list[float | None], tau_ms: float, now: int) -> np.ndarray:
    """Vectorised `Decay.value` over log-domain sums (None = 0)."""
    L = np.array([-np.inf if x is None else x for x in logs], dtype=float)
    return np.exp(np.minimum(L - (now - T0_MS) / tau_ms, 700.0))


def hydrate(user: UserState, views: list[ItemView], store: FeatureReader, ctx: Context,
            now: int, knn: Neighbourhood | None = None) -> tuple[np.ndarray, Neighbourhood]:
    """(X, neighbourhood) for `views` as seen by `user` at event time `now`.

    `knn` is the request's neighbourhood when the caller already built it (serving); the returned
    one explains the `similar` column (`Neighbourhood.origin`)."""
    n = len(views)
    X = np.zeros((n, len(FEATURES)))
    if knn is None:
        knn = Neighbourhood(user, store, ctx)
    if n == 0:
        return X, knn
    aff, pop = ctx.affinity, ctx.popularity
    authors = [v.author_id for v in views]
    following = user.following
    if following:
        X[:, _COL["in_network"]] = [a in following for a in authors]
    author_aff = user.author_aff
    if author_aff:
        X[:, _COL["author_affinity"]] = [
            math.log1p(aff.value(author_aff[a], now)) if a in author_aff else 0.0 for a in authors]
    lift = user.topic_lift(ctx, now)
    if lift:
        X[:, _COL["topic_affinity"]] = [
            max([lift.get(t, 0.0) for t in v.topics]) if v.topics else 0.0 for v in views]
    interests = set(user.interests)
    if interests:
        X[:, _COL["interest"]] = [not interests.isdisjoint(v.topics) for v in views]
    if user.groups:
        X[:, _COL["group"]] = [v.group_id is not None and v.group_id in user.groups for v in views]
    X[:, _COL["similar"]] = np.log1p(knn.scores(views) * SIMILAR_SCALE)
    X[:, _COL["trending"]] = np.log1p(_decayed([v.pop_log for v in views], pop.tau_ms, now))
    likes = np.array([v.likes for v in views], dtype=float)
    impressions = np.array([v.impressions for v in views], dtype=float)
    X[:, _COL["popularity"]] = np.log1p(likes) / 3.0
    X[:, _COL["engagement_rate"]] = (likes + 1.0) / (impressions + likes + 10.0)
    age = np.maximum(0, now - np.array([v.created_ts for v in views], dtype=float))
    X[:, _COL["freshness"]] = 0.5 ** (age / FRESH_HALF_LIFE_MS)
    return X, knn
