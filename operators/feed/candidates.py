"""Candidate sources: each proposes post ids with why (source code + detail). Named, switchable.

Every source is cheap and fails open (an empty list), so one missing index never empties a feed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from operators.context import Context
from operators.feature_store import GLOBAL, FeatureReader

if TYPE_CHECKING:
    from operators.user_state import UserState

Proposal = tuple[str, str, str | None]  # (post_id, source, detail)


def in_network(user: UserState, store: FeatureReader, ctx: Context, now: int, n: int):
    """Newest posts delivered by followed authors (fan-out on write)."""
    newest = sorted(user.pool.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [(post, "in_network", None) for post, _ in newest]


def similar(user: UserState, store: FeatureReader, ctx: Context, now: int, n: int):
    """Item-kNN: neighbours of the user's most recent likes, strongest co-engagement first."""
    liked = user.recent_likes.newest(ctx.settings.features.cooccurrence_window * 2)
    totals: dict[str, float] = {}
    origin: dict[str, str] = {}
    for rank, j in enumerate(liked):
        w = 0.85**rank
        for i, co in store.neighbours([j]).get(j, {}).items():
            totals[i] = totals.get(i, 0.0) + w * co
            origin.setdefault(i, j)
    top = sorted(totals, key=lambda i: (-totals[i], i))[:n]
    return [(i, "similar", origin[i]) for i in top]


def topic(user: UserState, store: FeatureReader, ctx: Context, now: int, n: int):
    """Trending posts in the user's strongest topics (declared interests for a new user)."""
    shares = user.topic_shares(ctx, now)
    topics = sorted(shares, key=lambda t: (-shares[t], t))[:3] or sorted(user.interests)[:3]
    out: list[Proposal] = []
    per_topic = max(1, n // max(1, len(topics)))
    for t in topics:
        out.extend((i, "topic", t) for i in store.trending(t, per_topic))
    return out


def trending(user: UserState, store: FeatureReader, ctx: Context, now: int, n: int):
    """Globally trending posts (time-decayed engagement)."""
    code = "trending" if user.recent_likes or user.following else "popular"
    return [(i, code, None) for i in store.trending(GLOBAL, n)]


def fresh(user: UserState, store: FeatureReader, ctx: Context, now: int, n: int):
    """The newest posts: exploration candidates, so new items get a bounded first exposure."""
    return [(i, "fresh", None) for i in store.fresh(n)]


SOURCES: dict[str, Callable[..., list[Proposal]]] = {
    "in_network": in_network,
    "similar": similar,
    "topic": topic,
    "trending": trending,
    "fresh": fresh,
}


def gather(user: UserState, store: FeatureReader, ctx: Context, now: int) -> dict[str, list]:
    """post_id -> [(source, detail), ...] over the configured sources, in config order."""
    n = ctx.settings.feed.candidates_per_source
    found: dict[str, list] = {}
    for name in ctx.settings.feed.sources.split(","):
        source = SOURCES.get(name.strip())
        if source is None:
            continue
        for post, code, detail in source(user, store, ctx, now, n):
            found.setdefault(post, []).append((code, detail))
    return found
