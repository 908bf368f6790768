"""Candidate sources: each proposes post ids with why (source code + detail). Named, switchable.

Every source is cheap and fails open (an empty list), so one missing index never empties a feed.
A source is `source(user, store, ctx, now, n, knn)`; `knn` is the request's `Neighbourhood`. It
returns its proposals grouped by reason: [((code, detail), [post_id, ...]), ...].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from operators.context import Context
from operators.feature_store import GLOBAL, FeatureReader
from operators.feed import filters
from operators.feed.neighbourhood import Neighbourhood, weighted_history

if TYPE_CHECKING:
    from operators.user_state import UserState

Why = tuple[str, str | None]  # (source code, detail), shared by the posts a source proposes with it
Proposals = list[tuple[Why, list[str]]]


def in_network(user: UserState, store: FeatureReader, ctx: Context, now: int, n: int,
               knn: Neighbourhood):
    """The newest posts delivered by followed authors (fan-out on write) that the user has not
    seen: seen ones stay in the pool (a re-delivery must not bring them back) but must not take
    the source's `n` places, or a user who scrolled past the newest `n` never sees older ones."""
    newest = [post for post, _ in sorted(user.pool.items(), key=lambda kv: (-kv[1], kv[0]))]
    unseen = [p for p, seen in zip(newest, filters.seen_mask(user, newest), strict=True)
              if not seen]
    return [(("in_network", None), unseen[:n])]


def similar(user: UserState, store: FeatureReader, ctx: Context, now: int, n: int,
            knn: Neighbourhood):
    """Item-kNN: the posts the user's recent touches point at most (see `neighbourhood`).

    Asks for extra posts to make up for the ones the filters will drop (already touched)."""
    best = knn.best(2 * n, exclude=user.history.keys())
    unseen = [i for i, seen in zip(best, filters.seen_mask(user, best), strict=True) if not seen]
    return [(("similar", None), unseen[:n])]


def topic(user: UserState, store: FeatureReader, ctx: Context, now: int, n: int,
          knn: Neighbourhood):
    """Trending posts in the user's strongest topics (declared interests for a new user)."""
    topics = strongest_topics(user, ctx, now)
    per_topic = max(1, n // max(1, len(topics)))
    return [(("topic", t), store.trending(t, per_topic)) for t in topics]


def strongest_topics(user: UserState, ctx: Context, now: int) -> list[str]:
    """The (up to 3) topics the `topic` source reads."""
    shares = user.topic_shares(ctx, now)
    return sorted(shares, key=lambda t: (-shares[t], t))[:3] or sorted(user.interests)[:3]


def trending(user: UserState, store: FeatureReader, ctx: Context, now: int, n: int,
             knn: Neighbourhood):
    """Globally trending posts (time-decayed engagement)."""
    code = "trending" if user.recent_likes or user.following else "popular"
    return [((code, None), store.trending(GLOBAL, n))]


def fresh(user: UserState, store: FeatureReader, ctx: Context, now: int, n: int,
          knn: Neighbourhood):
    """The newest posts: exploration candidates, so new items get a bounded first exposure."""
    return [(("fresh", None), store.fresh(n))]


SOURCES: dict[str, Callable[..., Proposals]] = {
    "in_network": in_network,
    "similar": similar,
    "topic": topic,
    "trending": trending,
    "fresh": fresh,
}


def prefetch(user: UserState, store: FeatureReader, ctx: Context, now: int) -> None:
    """With a store that batches reads (RedisFeatureStore.prefetch): one round trip for what
    the neighbourhood and the configured sources will read (history rows and items, indexes)."""
    read = getattr(store, "prefetch", None)
    if read is None:
        return
    names = {name.strip() for name in ctx.settings.feed.sources.split(",")}
    topics = strongest_topics(user, ctx, now) if "topic" in names else []
    read(posts=[p for p, _ in weighted_history(user, ctx)],
         topics=topics + ([GLOBAL] if "trending" in names else []),
         n=ctx.settings.feed.candidates_per_source)


class Candidates(dict):
    """post_id -> [(source, detail), ...], plus the sources' groups as proposed (`groups`)."""

    __slots__ = ("groups",)

    def __init__(self) -> None:
        super().__init__()
        self.groups: Proposals = []

    def posts_of(self, code: str) -> set[str]:
        """The posts a source proposed with reason `code`."""
        return {p for why, posts in self.groups if why[0] == code for p in posts}


def gather(user: UserState, store: FeatureReader, ctx: Context, now: int,
           knn: Neighbourhood | None = None) -> Candidates:
    """post_id -> [(source, detail), ...] over the configured sources, in config order."""
    n = ctx.settings.feed.candidates_per_source
    if knn is None:
        knn = Neighbourhood(user, store, ctx)
    found = Candidates()
    get = found.get
    for name in ctx.settings.feed.sources.split(","):
        source = SOURCES.get(name.strip())
        if source is None:
            continue
        groups = source(user, store, ctx, now, n, knn)
        found.groups.extend(groups)
        for why, posts in groups:
            for post in posts:
                whys = get(post)
                if whys is None:
                    found[post] = [why]
                else:
                    whys.append(why)
    return found
