"""The feed as named stages: candidates → filter → hydrate → score → mix → feed with reasons.

`rank` is the one ranking code path: the streaming workers, replays and `persona evaluate` all call it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from operators.context import FEATURES, Context
from operators.feature_store import FeatureReader
from operators.feed import candidates, filters, hydrate, mixing, scoring
from schemas import Feed, FeedItem, Reason

if TYPE_CHECKING:
    from operators.user_state import UserState

EXPLAINED_FEATURES = ("author_affinity", "topic_affinity", "interest", "group", "trending")


def rank(user: UserState, store: FeatureReader, ctx: Context, now: int,
         model_name: str = "persona-v1") -> Feed:
    proposals = candidates.gather(user, store, ctx, now)  # post -> [(source, detail)]
    found = store.items(list(proposals))
    ids = [p for p in proposals if p in found and filters.keep(user, found[p], proposals[p])]
    views = [found[p] for p in ids]
    X, similar_to = hydrate.hydrate(user, views, store, ctx, now)
    scores, contributions = scoring.score(user, X, store.global_model(), ctx)
    order = sorted(range(len(ids)), key=lambda k: (-scores[k], ids[k]))
    chosen = mixing.diversify(order, scores, views, ctx)
    fresh = [k for k in order if any(code == "fresh" for code, _ in proposals[ids[k]])]
    chosen, explored = mixing.explore(chosen, fresh, views, user.user_id, now, ctx)
    items = tuple(
        FeedItem(ids[k], views[k].author_id, float(scores[k]),
                 _reasons(proposals[ids[k]], contributions[k], similar_to[k], k in explored,
                          views[k].author_id))
        for k in chosen
    )
    user.remember_served([ids[k] for k in chosen], X[chosen] if chosen else X[:0])
    return Feed(user.user_id, now, items, model_name)


def _reasons(sources: list, contrib: np.ndarray, similar_to: str | None,
             explored: bool, author: str | None) -> tuple[Reason, ...]:
    out: list[Reason] = []
    if explored:
        out.append(Reason("fresh"))
    for code, detail in sources:
        if code == "fresh" and not explored:
            continue
        if code == "similar":
            detail = similar_to or detail
        if code == "in_network":
            continue  # stated below with the author, once
        out.append(Reason(code, detail))
    col = {f: i for i, f in enumerate(FEATURES)}
    if contrib[col["in_network"]] > 0:
        out.insert(0, Reason("in_network", author, float(contrib[col["in_network"]])))
    for name in sorted(EXPLAINED_FEATURES, key=lambda f: -contrib[col[f]])[:2]:
        if contrib[col[name]] > 0.05:
            out.append(Reason(name, weight=float(contrib[col[name]])))
    if not out:  # every served item says why: at least where it came from
        out = [Reason(code, detail) for code, detail in sources]
    seen: set[tuple] = set()
    unique = []
    for r in out:
        if (r.code, r.detail) not in seen:
            seen.add((r.code, r.detail))
            unique.append(r)
    return tuple(unique)
