"""The rank's faster stages give exactly what their straightforward versions (kept here as oracles)
give: reasons, explained features, the score order, MMR relevance, hydration, filters and the feed
bytes. `scripts/bench_rank.py`'s digest checks the same end to end on the bench workload."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.feed import filters
from operators.feed.mixing import relevance
from operators.feed.pipeline import EXPLAINED_FEATURES, _by_score, _explained, _reasons
from operators.item_stats import ItemView
from operators.touches import SeenFilter
from schemas import Feed, FeedItem, Reason

_EXPLAINED = [2, 0, 4, 1, 3]  # any 5 columns of a 6-column matrix


# ------------------------------------------------------------------------------------ oracles
def reference_reasons(sources, in_network, explained, similar_to, explored, author):
    out, keys = [], set()
    if in_network > 0:
        out.append(Reason("in_network", author, in_network))
        keys.add(("in_network", author))
    if explored:
        out.append(Reason("fresh"))
        keys.add(("fresh", None))
    for code, detail in sources:
        if code == "in_network" or (code == "fresh" and not explored):
            continue
        if code == "similar":
            detail = similar_to or detail
        if (code, detail) not in keys:
            keys.add((code, detail))
            out.append(Reason(code, detail))
    for name, weight in explained:
        if (name, None) not in keys:
            keys.add((name, None))
            out.append(Reason(name, None, weight))
    if not out:
        for code, detail in sources:
            if (code, detail) not in keys:
                keys.add((code, detail))
                out.append(Reason(code, detail))
    return tuple(out)


def reference_explained(part):
    top = np.argsort(-part, axis=1, kind="stable")[:, :2]
    vals = np.take_along_axis(part, top, axis=1)
    out = []
    for (k0, k1), (v0, v1) in zip(top.tolist(), vals.tolist(), strict=True):
        if v1 > 0.05:
            out.append([(EXPLAINED_FEATURES[k0], v0), (EXPLAINED_FEATURES[k1], v1)])
        else:
            out.append([(EXPLAINED_FEATURES[k0], v0)] if v0 > 0.05 else [])
    return out


def reference_relevance(scores):
    p = np.clip(scores.astype(float), 1e-12, 1 - 1e-12)
    logit = np.log(p / (1 - p))
    sd = float(logit.std())
    return (logit - logit.mean()) / sd if sd > 0 else logit * 0.0


def reference_to_dict(feed):
    return {"user_id": feed.user_id, "generated_at": feed.generated_at, "model": feed.model,
            "arms": dict(sorted(feed.arms.items())),
            "items": [i.to_dict() for i in feed.items]}


# ------------------------------------------------------------------------------------ strategies
codes = st.sampled_from(["in_network", "similar", "topic", "trending", "popular", "fresh"])
details = st.sampled_from([None, "t1", "t2", "p9", "a1"])
source_lists = st.lists(st.tuples(codes, details), min_size=1, max_size=4)
names = st.sampled_from(EXPLAINED_FEATURES)
weights = st.sampled_from([0.0, 0.06, 0.5, -0.2]) | st.floats(-3, 3)


@settings(max_examples=500, deadline=None)
@given(source_lists, st.sampled_from([0.0, 1.0, 0.3]),
       st.lists(st.tuples(names, weights), max_size=2, unique_by=lambda x: x[0]),
       st.sampled_from([None, "p1", "p2"]), st.booleans(), st.sampled_from([None, "a1", "a2"]))
def test_reasons_match_the_reference(sources, in_network, explained, similar_to, explored, author):
    assert _reasons(sources, in_network, explained, similar_to, explored, author) == \
        reference_reasons(sources, in_network, explained, similar_to, explored, author)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 0.05, 0.051, 1.0, -1.0, 0.3]) | st.floats(-2, 2),
                         min_size=6, max_size=6), min_size=1, max_size=30))
def test_explained_matches_a_stable_descending_sort(rows):
    contributions = np.array(rows)
    import operators.feed.pipeline as pipeline

    saved = pipeline._EXPLAINED
    pipeline._EXPLAINED = np.array(_EXPLAINED)
    try:
        got = _explained(contributions)
    finally:
        pipeline._EXPLAINED = saved
    assert got == reference_explained(contributions[:, _EXPLAINED])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.1, 0.5, 0.9, float("nan"), 0.0, 1.0]) | st.floats(0, 1),
                max_size=60), st.randoms(use_true_random=False))
def test_score_order_matches_lexsort(scores, rnd):
    ids = [f"p{rnd.randrange(10**6)}" for _ in scores]
    ids = list(dict.fromkeys(ids))
    scores = np.array(scores[: len(ids)], dtype=float)
    kept = np.flatnonzero([rnd.random() < 0.9 for _ in ids]).astype(np.int64)
    expected = kept[np.lexsort((np.array(ids, dtype=str)[kept], -scores[kept]))].tolist() \
        if len(ids) else []
    assert _by_score(kept, scores, ids) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, 0.5, 1e-13]) | st.floats(0, 1), min_size=1,
                max_size=250))
def test_relevance_is_bitwise_numpys_mean_and_std(scores):
    scores = np.array(scores)
    assert relevance(scores).tobytes() == reference_relevance(scores).tobytes()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a1", "a2", None]), st.sampled_from([None, "t1"]),
                          st.floats(-1, 2), weights), max_size=8))
def test_feed_bytes_match_the_per_object_encoding(rows):
    items = tuple(FeedItem(f"p{n}", author, score,
                           (Reason("in_network", author, w), Reason("topic", detail),
                            Reason("trending"), Reason("see_less", detail, w)))
                  for n, (author, detail, score, w) in enumerate(rows))
    feed = Feed("u1", 7, items, "persona-v1", {"b": "x", "a": "y"})
    assert feed.encode() == orjson.dumps(reference_to_dict(feed))


def test_filters_drop_in_network_only_posts_of_unfollowed_authors_whatever_the_source_order():
    user = SimpleNamespace(user_id="u1", blocked=set(), muted=set(), following={"f"},
                           seen=SeenFilter(100))
    views = {p: ItemView(p, author) for p, author in
             [("p1", "gone"), ("p2", "gone"), ("p3", "gone"), ("p4", "f")]}
    proposals = {"p1": [("in_network", None)],
                 "p2": [("in_network", None), ("trending", None)],
                 "p3": [("topic", "t1"), ("in_network", None)],
                 "p4": [("in_network", None)]}
    assert filters.apply(user, proposals, views) == ["p2", "p3", "p4"]
