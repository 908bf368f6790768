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
    candidates.prefetch(user, store, ctx, now)  # one Redis round trip for the reads below
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
    chosen_scores = scores[chosen].tolist()  # the same doubles as float(scores[k])
    in_network = contributions[chosen, _IN_NETWORK].tolist()
    items = []
    for n, k in enumerate(chosen):
        post, author = ids[k], views[k].author_id
        reasons = _reasons(proposals[post], in_network[n], why[n], because.get(post),
                           k in explored, author)
        control = controlled.get(k)
        items.append(FeedItem(post, author, chosen_scores[n],
                              reasons + control if control else reasons))
    wg, bg = scoring.global_vector(store.global_model())
    user.remember_served([ids[k] for k in chosen], ChoiceSet.of(ids, X, wg, bg))
    return Feed(user.user_id, now, tuple(items), model_name, dict(arms))


def _explained(contributions: np.ndarray) -> list[list[tuple[str, float]]]:
    """Per row, the two strongest explained features contributing more than 0.05."""
    part = contributions[:, _EXPLAINED]
    top = np.argsort(-part, axis=1, kind="stable")[:, :2]
    vals = np.take_along_axis(part, top, axis=1)
    names = EXPLAINED_FEATURES
    out = []
    for (k0, k1), (v0, v1) in zip(top.tolist(), vals.tolist(), strict=True):  # unrolled: hot
        if v1 > 0.05:  # v0 >= v1
            out.append([(names[k0], v0), (names[k1], v1)])
        else:
            out.append([(names[k0], v0)] if v0 > 0.05 else [])
    return out


def _reasons(sources: list, in_network: float, explained: list[tuple[str, float]],
             similar_to: str | None, explored: bool, author: str | None) -> tuple[Reason, ...]:
    """Why an item is in the feed: its sources, then its two strongest explained features
    (each (code, detail) once, the first kept)."""
    out: list[Reason] = []
    keys: set[tuple] = set()
    if in_network > 0:
        out.append(Reason("in_network", author, in_network))
        keys.add(("in_network", author))
    if explored:
        out.append(Reason("fresh"))
        keys.add(("fresh", None))
    for code, detail in sources:
        if code == "in_network" or (code == "fresh" and not explored):
            continue  # in-network is stated above with the author, once
        if code == "similar":
            detail = similar_to or detail
        if (code, detail) not in keys:
            keys.add((code, detail))
            out.append(Reason(code, detail))
    for name, weight in explained:
        if (name, None) not in keys:
            keys.add((name, None))
            out.append(Reason(name, None, weight))
    if not out:  # every served item says why: at least where it came from
        for code, detail in sources:
            if (code, detail) not in keys:
                keys.add((code, detail))
                out.append(Reason(code, detail))
    return tuple(out)
