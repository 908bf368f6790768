"""Feature hydration: one matrix row per candidate, columns in `operators.context.FEATURES` order.

Used for serving (all candidates at once) and for learning (one row), so training and serving can
never disagree on what a feature means.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from operators.context import FEATURES, Context
from operators.feature_store import FeatureReader
from operators.item_stats import ItemView

if TYPE_CHECKING:
    from operators.user_state import UserState

RECENCY = 0.85  # weight of the k-th most recent like in the item-kNN score: RECENCY**k
FRESH_HALF_LIFE_MS = 24 * 3_600_000
_COL = {name: i for i, name in enumerate(FEATURES)}


def similar_scores(user: UserState, targets: list[ItemView], store: FeatureReader,
                   window: int) -> tuple[np.ndarray, list[str | None]]:
    """Item-kNN score of each target from the user's recent likes (recency-weighted cosine),
    and the liked item that contributed most (for the reason)."""
    liked = user.recent_likes.newest(window)
    scores = np.zeros(len(targets))
    best: list[str | None] = [None] * len(targets)
    if not liked or not targets:
        return scores, best
    nbrs = store.neighbours(liked)
    liked_views = store.items(liked)
    index = {v.post_id: k for k, v in enumerate(targets)}
    best_val = np.zeros(len(targets))
    for rank, j in enumerate(liked):
        row = nbrs.get(j)
        if not row:
            continue
        lj = liked_views[j].likes if j in liked_views else 1.0
        w = RECENCY**rank
        for i, co in row.items():
            k = index.get(i)
            if k is None:
                continue
            contrib = w * co / math.sqrt(max(lj, 1.0) * max(targets[k].likes, 1.0))
            scores[k] += contrib
            if contrib > best_val[k]:
                best_val[k], best[k] = contrib, j
    return scores, best


def hydrate(user: UserState, views: list[ItemView], store: FeatureReader, ctx: Context,
            now: int) -> tuple[np.ndarray, list[str | None]]:
    """(X, similar_to) for `views` as seen by `user` at event time `now`."""
    n = len(views)
    X = np.zeros((n, len(FEATURES)))
    if n == 0:
        return X, []
    lift = user.topic_lift(ctx, now)
    interests = set(user.interests)
    aff, pop = ctx.affinity, ctx.popularity
    for k, v in enumerate(views):
        row = X[k]
        if v.author_id in user.following:
            row[0] = 1.0
        a = user.author_aff.get(v.author_id) if v.author_id else None
        if a is not None:
            row[1] = math.log1p(aff.value(a, now))
        if v.topics:
            row[2] = max(lift.get(t, 0.0) for t in v.topics)
            if interests and not interests.isdisjoint(v.topics):
                row[3] = 1.0
        if v.group_id is not None and v.group_id in user.groups:
            row[4] = 1.0
        row[6] = math.log1p(pop.value(v.pop_log, now))
        row[7] = math.log1p(v.likes) / 3.0
        row[8] = (v.likes + 1.0) / (v.impressions + v.likes + 10.0)
        age = max(0, now - v.created_ts)
        row[9] = 0.5 ** (age / FRESH_HALF_LIFE_MS)
    sim, best = similar_scores(user, views, store, ctx.settings.features.cooccurrence_window * 2)
    X[:, _COL["similar"]] = np.log1p(sim * 10.0)
    return X, best
