"""Selection and mixing: author cap, topic diversity (MMR), exploration slots (Thompson sampling).

Deterministic for a given user and event time (seeded), so replays write identical feeds.
"""

from __future__ import annotations

import zlib

import numpy as np

from operators.context import Context
from operators.item_stats import ItemView

MMR_POOL = 4  # MMR considers the best size*MMR_POOL candidates


def diversify(order: list[int], scores: np.ndarray, views: list[ItemView], ctx: Context) -> list[int]:
    """Greedy MMR over topics with a per-author cap, from candidates sorted by score."""
    cfg = ctx.settings.feed
    lam, size, cap = cfg.mmr_lambda, cfg.size, cfg.author_cap
    pool = order[: size * MMR_POOL]
    chosen: list[int] = []
    per_author: dict[str | None, int] = {}
    shown_topics: dict[str, int] = {}
    while pool and len(chosen) < size:
        best, best_val = -1, -np.inf
        for pos, k in enumerate(pool):
            v = views[k]
            if per_author.get(v.author_id, 0) >= cap:
                continue
            overlap = max((shown_topics.get(t, 0) for t in v.topics), default=0)
            redundancy = overlap / (overlap + 2.0)
            val = lam * scores[k] - (1.0 - lam) * redundancy
            if val > best_val:
                best, best_val = pos, val
            if lam >= 1.0:
                break
        if best < 0:
            break
        k = pool.pop(best)
        chosen.append(k)
        author = views[k].author_id
        per_author[author] = per_author.get(author, 0) + 1
        for t in views[k].topics:
            shown_topics[t] = shown_topics.get(t, 0) + 1
    return chosen


def explore(chosen: list[int], fresh: list[int], views: list[ItemView], user_id: str, now: int,
            ctx: Context) -> tuple[list[int], set[int]]:
    """Insert under-exposed items at the exploration positions, picked by Thompson sampling on
    Beta(likes + 1, impressions - likes + 1). Returns the new order and the explored indices."""
    cfg = ctx.settings.feed
    if cfg.exploration_slots == 0 or not fresh:
        return chosen, set()
    taken = set(chosen)
    eligible = [k for k in fresh if k not in taken
                and views[k].impressions < cfg.exploration_max_impressions]
    if not eligible:
        return chosen, set()
    rng = np.random.default_rng(zlib.crc32(f"{user_id}:{now}".encode()))
    a = np.array([views[k].likes + 1.0 for k in eligible])
    b = np.array([max(views[k].impressions - views[k].likes, 0.0) + 1.0 for k in eligible])
    draws = rng.beta(a, b)
    picks = [eligible[i] for i in np.argsort(-draws, kind="stable")[: cfg.exploration_slots]]
    out = list(chosen)
    explored: set[int] = set()
    for slot, k in enumerate(picks):
        position = cfg.exploration_start - 1 + slot * 10
        if position > len(out):
            break
        out.insert(position, k)
        explored.add(k)
    return out[: cfg.size], explored
