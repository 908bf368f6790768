"""The feed as named stages: candidates → filter → hydrate → score → mix → feed with reasons.

`rank` is the one ranking code path: the streaming workers, replays and `persona evaluate` all call it.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

from operators.context import FEATURES, Context
from operators.feature_store import FeatureReader
from operators.feed import candidates, controls, filters, hydrate, mixing, scoring
from operators.feed.neighbourhood import Neighbourhood
from schemas import Feed, FeedItem, Reason

if TYPE_CHECKING:
    from operators.user_state import UserState

EXPLAINED_FEATURES = ("author_affinity", "topic_affinity", "interest", "group", "trending")
_EXPLAINED = np.array([FEATURES.index(f) for f in EXPLAINED_FEATURES])
_IN_NETWORK = FEATURES.index("in_network")


def rank(user: UserState, store: FeatureReader, ctx: Context, now: int,
         model_name: str = "persona-v1") -> Feed:
    ctx, arms = ctx.for_user(user.user_id)  # the settings of the user's experiment arms, if any
    knn = Neighbourhood(user, store, ctx)  # the user's item-kNN view, shared by the stages below
    proposals = candidates.gather(user, store, ctx, now, knn)  # post -> [(source, detail)]
    found = store.items(list(proposals))
    ids = filters.apply(user, proposals, found)
    views = [found[p] for p in ids]
    X, _ = hydrate.hydrate(user, views, store, ctx, now, knn)
    scores, contributions = scoring.score(user, X, store.global_model(), ctx)
    scores, shown, controlled = controls.apply(user, views, scores, now, ctx)  # see less / more
    order = sorted((k for k in range(len(ids)) if shown[k]), key=lambda k: (-scores[k], ids[k]))
    chosen = mixing.diversify(order, scores, views, ctx)
    fresh = [k for k in order if any(code == "fresh" for code, _ in proposals[ids[k]])]
    chosen, explored = mixing.explore(chosen, fresh, views, user.user_id, now, ctx)
    items = tuple(
        FeedItem(ids[k], views[k].author_id, float(scores[k]),
                 _reasons(proposals[ids[k]], contributions[k], knn, ids[k], k in explored,
                          views[k].author_id) + controlled.get(k, ()))
        for k in chosen
    )
    user.remember_served([ids[k] for k in chosen], X[chosen] if chosen else X[:0],
                         contrast=_contrast(ids, X, user.user_id, now))
    return Feed(user.user_id, now, items, model_name, dict(arms))


def _contrast(ids: list[str], X: np.ndarray, user_id: str, now: int) -> list:
    """A uniform sample of the candidates (seeded: deterministic), the negatives an engagement
    is learned against: P(engage) among what the ranker could have served."""
    from operators import user_state

    n = min(user_state.CONTRAST, len(ids))
    if n == 0:
        return []
    rng = np.random.default_rng(zlib.crc32(f"{user_id}:{now}:contrast".encode()))
    return [(ids[k], X[k]) for k in sorted(rng.choice(len(ids), n, replace=False).tolist())]


def _reasons(sources: list, contrib: np.ndarray, knn: Neighbourhood, post: str,
             explored: bool, author: str | None) -> tuple[Reason, ...]:
    out: list[Reason] = []
    if explored:
        out.append(Reason("fresh"))
    for code, detail in sources:
        if code == "fresh" and not explored:
            continue
        if code == "similar":
            detail = knn.origin(post) or detail
        if code == "in_network":
            continue  # stated below with the author, once
        out.append(Reason(code, detail))
    if contrib[_IN_NETWORK] > 0:
        out.insert(0, Reason("in_network", author, float(contrib[_IN_NETWORK])))
    explained = contrib[_EXPLAINED].tolist()
    for k in sorted(range(len(EXPLAINED_FEATURES)), key=lambda k: -explained[k])[:2]:
        if explained[k] > 0.05:
            out.append(Reason(EXPLAINED_FEATURES[k], weight=explained[k]))
    if not out:  # every served item says why: at least where it came from
        out = [Reason(code, detail) for code, detail in sources]
    seen: set[tuple] = set()
    unique = []
    for r in out:
        if (r.code, r.detail) not in seen:
            seen.add((r.code, r.detail))
            unique.append(r)
    return tuple(unique)
