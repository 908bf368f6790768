"""Backfills: the state an in-process replay built, as the write records the workers emit.

`Engine` applies a log with the production operators in event time (deterministic: no wall clock,
seeded exploration, stable orders); `final_writes` turns its state into the same write records the
streaming flow sends to Redis — item features, neighbours, the global model, every user's feed,
profile and user features ranked at their last event time, and with `Engine(social=True)` the
social records (graph records, group members, likers, popular users, deleted users, suggestions:
`SocialSteps.final_writes`), with `notifications=True` the inboxes and P(open) weights, with
`search=True` the search blend and with `experiments=True` every arm's totals — in a stable order,
so two replays of one log write identical bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

from operators.engine import Engine
from operators.item_stats import ItemView
from operators.user_writes import ranked_writes


def final_writes(engine: Engine) -> Iterator[tuple]:
    engine.settle()
    engine.publish()
    yield from feature_writes(engine)
    for user_id in sorted(engine.users):
        state = engine.users[user_id]
        if state.deleted:
            yield ("forget_user", user_id)
            continue
        yield from ranked_writes(state, engine.feed(user_id, state.last_ts), engine.ctx)
    if engine.social is not None:
        yield from engine.social.final_writes(engine.store)
    if engine.notifications is not None:
        yield from engine.notifications.final_writes()
    if engine.search is not None:
        yield from engine.search.final_writes()
    if engine.experiments is not None:
        yield from engine.experiments.final_writes()


def feature_writes(engine: Engine) -> Iterator[tuple]:
    """What a rank reads from the feature store: item features (and with them the trending and
    fresh indexes), item-kNN neighbours and the global model, in a stable order."""
    for post_id in sorted(engine.items):
        v = engine.items[post_id].view
        yield ("item", ItemView(v.post_id, v.author_id, v.topics, v.group_id, v.created_ts,
                                v.pop_log, v.likes, v.impressions, v.deleted))
    for post_id in sorted(engine.similar):
        yield ("nbrs", post_id, engine.similar[post_id].top())
    yield ("model", engine.global_model.export())
