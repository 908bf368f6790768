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
    order = _by_score(np.flatnonzero(shown), scores, ids)
    chosen = mixing.diversify(order, scores, views, ctx)
    fresh_ids = proposals.posts_of("fresh")
    fresh = [k for k in order if ids[k] in fresh_ids]
    chosen, explored = mixing.explore(chosen, fresh, views, user.user_id, now, ctx)
    sources = [proposals[ids[k]] for k in chosen]
    because = knn.origins([ids[k] for k, s in zip(chosen, sources, strict=True)
                           if any(code == "similar" for code, _ in s)], user.recent_likes)
    why = _explained(contributions[chosen]) if chosen else []
    chosen_scores = scores[chosen].tolist()  # the same doubles as float(scores[k])
    in_network = contributions[chosen, _IN_NETWORK].tolist()
    items = []
    for n, k in enumerate(chosen):
        post, author = ids[k], views[k].author_id
        reasons = _reasons(sources[n], in_network[n], why[n], because.get(post),
                           k in explored, author)
        control = controlled.get(k)
        items.append(FeedItem(post, author, chosen_scores[n],
                              reasons + control if control else reasons))
    wg, bg = scoring.global_vector(store.global_model())
    user.remember_served([ids[k] for k in chosen], ChoiceSet.of(ids, X, wg, bg))
    return Feed(user.user_id, now, tuple(items), model_name, dict(arms))


def _by_score(kept: np.ndarray, scores: np.ndarray, ids: list[str]) -> list[int]:
    """`kept` by score descending, equal scores by id: a stable numeric sort, then only runs of
    equal scores (NaNs sort last and count as equal, as in `np.lexsort`) ordered by id."""
    neg = -scores[kept]
    by = np.argsort(neg, kind="stable")
    order = kept[by].tolist()
    s = neg[by]
    tied = (s[1:] == s[:-1]) | (np.isnan(s[1:]) & np.isnan(s[:-1]))
    if tied.any():
        ends = np.flatnonzero(np.diff(np.concatenate(([False], tied, [False])).astype(np.int8)))
        for start, stop in zip(ends[::2].tolist(), ends[1::2].tolist(), strict=True):
            order[start:stop + 1] = sorted(order[start:stop + 1], key=ids.__getitem__)
    return order


def _explained(contributions: np.ndarray) -> list[list[tuple[str, float]]]:
    """Per row, the two strongest explained features contributing more than 0.05 (the first of
    equals first: the order of a stable descending sort, by two argmax passes)."""
    part = contributions[:, _EXPLAINED]
    rows = np.arange(len(part))
    k0 = part.argmax(axis=1)
    v0 = part[rows, k0]
    part[rows, k0] = -np.inf  # (a copy: fancy indexing above)
    k1 = part.argmax(axis=1)
    v1 = part[rows, k1]
    names = EXPLAINED_FEATURES
    out = []
    for a, b, x, y in zip(k0.tolist(), k1.tolist(), v0.tolist(), v1.tolist(), strict=True):
        if y > 0.05:  # x >= y
            out.append([(names[a], x), (names[b], y)])
        else:
            out.append([(names[a], x)] if x > 0.05 else [])
    return out


_PLAIN: dict[tuple[str, str | None], Reason] = {}  # (code, detail) -> its weightless Reason
_PLAIN_SIZE = 100_000


def _plain(code: str, detail: str | None) -> Reason:
    """The one weightless Reason of (code, detail) (immutable, so shared by every feed)."""
    reason = _PLAIN.get((code, detail))
    if reason is None:
        if len(_PLAIN) >= _PLAIN_SIZE:
            _PLAIN.clear()
        reason = _PLAIN[(code, detail)] = Reason(code, detail)
    return reason


_FRESH = _plain("fresh", None)


def _reasons(sources: list, in_network: float, explained: list[tuple[str, float]],
             similar_to: str | None, explored: bool, author: str | None) -> tuple[Reason, ...]:
    """Why an item is in the feed: its sources, then its two strongest explained features
    (each (code, detail) once, the first kept)."""
    out: list[Reason] = []
    if in_network > 0:
        out.append(Reason("in_network", author, in_network))
    if explored:
        out.append(_FRESH)
    if len(sources) == 1:  # most posts: one source, no duplicate to drop among the sources
        code, detail = sources[0]
        if code != "in_network" and (code != "fresh" or explored and detail is not None):
            out.append(_plain(code, similar_to or detail if code == "similar" else detail))
        trending = code == "trending" and detail is None
    else:
        keys: set[tuple] = {("fresh", None)} if explored else set()
        for code, detail in sources:
            if code == "in_network" or (code == "fresh" and not explored):
                continue  # in-network is stated above with the author, once
            if code == "similar":
                detail = similar_to or detail
            if (code, detail) not in keys:
                keys.add((code, detail))
                out.append(_plain(code, detail))
        trending = ("trending", None) in keys
    # An explained feature's key (name, None) can only meet a source's as ("trending", None).
    for name, weight in explained:
        if not (trending and name == "trending"):
            out.append(Reason(name, None, weight))
    if not out:  # every served item says why: at least where it came from
        for key in dict.fromkeys(sources):
            out.append(_plain(*key))
    return tuple(out)
