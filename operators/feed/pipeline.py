"""The feed as named stages: candidates → filter → hydrate → score → mix → feed with reasons.

`rank` is the one ranking code path: the streaming workers, replays and `persona evaluate` all call it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from operators.choice import ChoiceSet
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
    kept = np.flatnonzero(shown)
    order = kept[np.lexsort((np.array(ids, dtype=str)[kept], -scores[kept]))].tolist()  # score desc, id
    chosen = mixing.diversify(order, scores, views, ctx)
    fresh_ids = {p for p, sources in proposals.items() if ("fresh", None) in sources}
    fresh = [k for k in order if ids[k] in fresh_ids]
    chosen, explored = mixing.explore(chosen, fresh, views, user.user_id, now, ctx)
    because = knn.origins([ids[k] for k in chosen
                           if any(code == "similar" for code, _ in proposals[ids[k]])])
    why = _explained(contributions[chosen]) if chosen else []
    items = tuple(
        FeedItem(ids[k], views[k].author_id, float(scores[k]),
                 _reasons(proposals[ids[k]], float(contributions[k, _IN_NETWORK]), why[n],
                          because.get(ids[k]), k in explored, views[k].author_id)
                 + controlled.get(k, ()))
        for n, k in enumerate(chosen)
    ) if chosen else ()
    wg, bg = scoring.global_vector(store.global_model())
    user.remember_served([ids[k] for k in chosen], ChoiceSet.of(ids, X, wg, bg))
    return Feed(user.user_id, now, items, model_name, dict(arms))


def _explained(contributions: np.ndarray) -> list[list[tuple[str, float]]]:
    """Per row, the two strongest explained features contributing more than 0.05."""
    part = contributions[:, _EXPLAINED]
    top = np.argsort(-part, axis=1, kind="stable")[:, :2]
    vals = np.take_along_axis(part, top, axis=1)
    return [[(EXPLAINED_FEATURES[k], v) for k, v in zip(ks, vs, strict=True) if v > 0.05]
            for ks, vs in zip(top.tolist(), vals.tolist(), strict=True)]


def _reasons(sources: list, in_network: float, explained: list[tuple[str, float]],
             similar_to: str | None, explored: bool, author: str | None) -> tuple[Reason, ...]:
    """Why an item is in the feed: its sources, then its two strongest explained features."""
    out: list[Reason] = []
    if in_network > 0:
        out.append(Reason("in_network", author, in_network))
    if explored:
        out.append(Reason("fresh"))
    for code, detail in sources:
        if code == "in_network" or (code == "fresh" and not explored):
            continue  # in-network is stated above with the author, once
        out.append(Reason(code, similar_to or detail if code == "similar" else detail))
    out.extend(Reason(name, weight=weight) for name, weight in explained)
    if not out:  # every served item says why: at least where it came from
        out = [Reason(code, detail) for code, detail in sources]
    seen: set[tuple] = set()
    unique = []
    for r in out:
        if (r.code, r.detail) not in seen:
            seen.add((r.code, r.detail))
            unique.append(r)
    return tuple(unique)
