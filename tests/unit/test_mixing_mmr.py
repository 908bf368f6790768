"""The incremental MMR in `mixing.diversify` chooses exactly what the straightforward version
(every value recomputed every round, kept here as the oracle) chooses, ties included."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.feed.mixing import MMR_POOL, diversify, relevance
from operators.item_stats import ItemView


def reference_diversify(order, scores, views, lam, size, cap):
    pool = order[: size * MMR_POOL]
    if not pool:
        return []
    rel = relevance(scores[pool])  # the candidates' standardised logits (shared definition)
    vocab: dict[str, int] = {}
    cells = [(row, vocab.setdefault(t, len(vocab))) for row, k in enumerate(pool)
             for t in views[k].topics]
    member = np.zeros((len(pool), max(1, len(vocab))))
    if cells:
        rows, cols = zip(*cells, strict=True)
        member[list(rows), list(cols)] = 1.0
    author_ids: dict = {}
    author = np.array([author_ids.setdefault(views[k].author_id, len(author_ids)) for k in pool])
    per_author = np.zeros(len(author_ids), dtype=int)
    shown = np.zeros(member.shape[1])
    overlap = np.zeros(len(pool))
    open_ = np.ones(len(pool), dtype=bool)
    chosen: list[int] = []
    while len(chosen) < size:
        value = lam * rel - (1.0 - lam) * overlap / (overlap + 2.0)
        value[~open_] = -np.inf
        best = int(np.argmax(value))
        if not open_[best]:
            break
        chosen.append(pool[best])
        open_[best] = False
        a = author[best]
        per_author[a] += 1
        if per_author[a] >= cap:
            open_[author == a] = False
        topics = np.flatnonzero(member[best])
        if len(topics):
            shown[topics] += 1.0
            np.maximum(overlap, (member[:, topics] * shown[topics]).max(axis=1), out=overlap)
    return chosen


candidates = st.lists(st.tuples(
    st.sampled_from([None, "a1", "a2", "a3", "a4", "a5"]),
    st.lists(st.sampled_from(["t1", "t2", "t3", "t4"]), max_size=3),
    st.sampled_from([0.0, 0.5, 1.0, -1.0, 0.25]) | st.floats(-5, 5)), max_size=120)


@settings(max_examples=300, deadline=None)
@given(candidates, st.sampled_from([0.0, 0.3, 0.8, 0.99]), st.integers(1, 30), st.integers(1, 4))
def test_incremental_mmr_matches_the_reference(cands, lam, size, cap):
    views = [ItemView(f"p{i}", author, tuple(topics)) for i, (author, topics, _) in enumerate(cands)]
    scores = np.array([s for _, _, s in cands], dtype=float)
    order = sorted(range(len(cands)), key=lambda k: (-scores[k], k))
    ctx = SimpleNamespace(settings=SimpleNamespace(feed=SimpleNamespace(
        mmr_lambda=lam, size=size, author_cap=cap)))
    assert diversify(order, scores, views, ctx) == reference_diversify(
        order, scores, views, lam, size, cap)
