"""Prequential (test-then-train) evaluation of incremental recommenders over an event stream.

For each event, in order:

1. if it is a positive engagement (type in `ENGAGEMENT_WEIGHT`) of a user who already has history
   (at least one earlier event as actor) on an item that user has not touched yet, it is a *target*:
   every recommender is asked, BEFORE seeing the event, where it would rank that item for that user
   now (`score_target`) and what top-k it would serve;
2. then every recommender learns the event (`learn_one`).

Items already touched by the user (any post action, or their own post) are never targets, and
recommenders are expected to serve only untouched items. The ranking metrics use fair ties (see
`operators.evaluation.metrics`).

A log of served feeds (the project's JSONL) shows a post before the user engages with it: the
impression (and a dwell) come first, so every engagement would be on a touched post and nothing
would be a target. `fold_exposures` reads such a log the way MovieLens reads (a rating ≥ 4 is a like,
with no separate impression): the exposures of a post that lead to the user's first engagement with
it are part of that engagement, so the engagement asks "would the recommender have shown this
post?". Exposures that lead to no engagement stay impressions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from operators.evaluation.metrics import ExposureAccumulator, RankingAccumulator, WindowedSeries
from operators.evaluation.report import RecommenderResult, Report
from schemas.events import ENGAGEMENT_WEIGHT, POST_ACTIONS, Event

# Event types after which the actor has "touched" the post: it is never served to them again.
TOUCH_TYPES = POST_ACTIONS | {"post_created"}
POSITIVE_TYPES = frozenset(ENGAGEMENT_WEIGHT)
PROGRESS_EVERY = 10_000


@runtime_checkable
class Recommender(Protocol):
    name: str

    def learn_one(self, event: Event) -> None: ...

    def score_target(
        self, user_id: str, target: str, now_ms: int, k: int
    ) -> tuple[float, list[str]]:
        """Expected 1-based rank of target in what this recommender would serve now (math.inf if not
        served), and the top-k item ids served (for coverage/Gini).

        Return the rank as a `metrics.TiedRank` to get fair-tie metrics; a plain float is taken as a
        deterministic position."""
        ...


def touched_post(event: Event) -> str | None:
    """The post the actor touches with this event, if any."""
    return event.post_id if event.type in TOUCH_TYPES else None


def is_positive(event: Event) -> bool:
    return event.type in POSITIVE_TYPES and event.post_id is not None


EXPOSURE_TYPES = frozenset({"impression", "dwell"})


def fold_exposures(events: Iterable[Event]) -> list[Event]:
    """`events` without the impressions and dwells of a (user, post) that come before the user's
    first engagement with that post (see the module docstring). Two passes over the list: which
    pairs are engaged is only known at the engagement."""
    events = list(events)
    first_engaged: dict[tuple[str, str], int] = {}
    for n, e in enumerate(events):
        if is_positive(e):
            first_engaged.setdefault((e.user_id, e.post_id), n)
    return [e for n, e in enumerate(events)
            if not (e.type in EXPOSURE_TYPES and e.post_id is not None
                    and n < first_engaged.get((e.user_id, e.post_id), -1))]


def evaluate(
    events: Iterable[Event],
    recommenders: list[Recommender],
    k: int = 10,
    progress: Callable[[int, int], None] | None = None,
    window: int = 2000,
    step: int = 0,
) -> Report:
    """Run the prequential loop; `progress(n_events, n_targets)` is called every 10k events and at
    the end. `window`/`step`: sliding window (in targets) and sampling period of the time series."""
    names = [r.name for r in recommenders]
    if len(set(names)) != len(names):
        raise ValueError(f"recommender names must be unique, got {names}")
    ranking = [RankingAccumulator(k) for _ in recommenders]
    exposure = [ExposureAccumulator() for _ in recommenders]
    series = [WindowedSeries(k, window, step) for _ in recommenders]
    elapsed = [0.0] * len(recommenders)

    actors: set[str] = set()
    touched: dict[str, set[str]] = {}
    catalog: set[str] = set()
    n_events = n_positives = n_targets = no_history = already_touched = 0
    first_ts = last_ts = None
    started = time.perf_counter()
    clock = time.perf_counter

    for event in events:
        n_events += 1
        if first_ts is None:
            first_ts = event.ts
        last_ts = event.ts
        user = event.user_id
        if is_positive(event):
            n_positives += 1
            if user not in actors:
                no_history += 1
            elif event.post_id in touched.get(user, ()):
                already_touched += 1
            else:
                n_targets += 1
                for i, rec in enumerate(recommenders):  # test: strictly before any learn_one
                    t0 = clock()
                    rank, served = rec.score_target(user, event.post_id, event.ts, k)
                    elapsed[i] += clock() - t0
                    served = list(served)[:k]
                    values = ranking[i].update(rank)
                    exposure[i].update(served)
                    series[i].update(values, served, event.ts, len(catalog))
        for i, rec in enumerate(recommenders):  # then train
            t0 = clock()
            rec.learn_one(event)
            elapsed[i] += clock() - t0
        actors.add(user)
        post = touched_post(event)
        if post is not None:
            touched.setdefault(user, set()).add(post)
            catalog.add(post)
        if progress is not None and n_events % PROGRESS_EVERY == 0:
            progress(n_events, n_targets)
    if progress is not None:
        progress(n_events, n_targets)

    results = []
    for i, rec in enumerate(recommenders):
        r, e = ranking[i].result(), exposure[i].result(len(catalog))
        results.append(
            RecommenderResult(
                name=rec.name,
                hr=r.hr,
                ndcg=r.ndcg,
                mrr=r.mrr,
                coverage=e.coverage,
                gini=e.gini,
                n_targets=r.n,
                not_served=r.not_served,
                elapsed_s=elapsed[i],
                series=series[i].points,
            )
        )
    return Report(
        k=k,
        window=window,
        n_events=n_events,
        n_positives=n_positives,
        n_targets=n_targets,
        skipped_no_history=no_history,
        skipped_touched=already_touched,
        catalog_size=len(catalog),
        first_ts=first_ts,
        last_ts=last_ts,
        elapsed_s=time.perf_counter() - started,
        results=results,
    )
