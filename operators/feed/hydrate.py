"""Feature hydration: one matrix row per candidate, columns in `operators.context.FEATURES` order.

Used for serving (all candidates at once) and for learning (one row), so training and serving can
never disagree on what a feature means. Columns are computed over all candidates at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


def _decayed(logs: Sequence[float | None], tau_ms: float, now: int) -> np.ndarray:
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
    # one pass over the views; every column below is computed over these tuples
    authors, topics, groups, pop_logs, likes_, impressions_, created = zip(*[
        (v.author_id, v.topics, v.group_id, v.pop_log, v.likes, v.impressions, v.created_ts)
        for v in views], strict=True)
    following = user.following
    if following:
        X[:, _COL["in_network"]] = [a in following for a in authors]
    author_aff = user.author_aff
    if author_aff:  # each author's decayed affinity once (the same float for each of its posts)
        value = {a: math.log1p(aff.value(author_aff[a], now))
                 for a in author_aff.keys() & set(authors)}
        if value:
            X[:, _COL["author_affinity"]] = [value.get(a, 0.0) for a in authors]
    lift = user.topic_lift(ctx, now)
    if lift:
        get = lift.get
        X[:, _COL["topic_affinity"]] = [
            (get(ts[0], 0.0) if len(ts) == 1 else max([get(t, 0.0) for t in ts])) if ts else 0.0
            for ts in topics]
    interests = set(user.interests)
    if interests:
        X[:, _COL["interest"]] = [not interests.isdisjoint(ts) for ts in topics]
    if user.groups:
        mine = user.groups
        X[:, _COL["group"]] = [g is not None and g in mine for g in groups]
    likes = np.array(likes_, dtype=float)
    impressions = np.array(impressions_, dtype=float)
    masses = np.maximum(1.0, likes + knn.imp_w * impressions)  # `neighbourhood.mass`, vectorised
    X[:, _COL["similar"]] = np.log1p(knn.scores(views, masses) * SIMILAR_SCALE)
    X[:, _COL["trending"]] = np.log1p(_decayed(pop_logs, pop.tau_ms, now))
    X[:, _COL["popularity"]] = np.log1p(likes) / 3.0
    X[:, _COL["engagement_rate"]] = (likes + 1.0) / (impressions + likes + 10.0)
    age = np.maximum(0, now - np.array(created, dtype=float))
    X[:, _COL["freshness"]] = 0.5 ** (age / FRESH_HALF_LIFE_MS)
    return X, knn
