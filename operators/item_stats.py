"""Per-item statistics: metadata, decayed popularity, engagement counts.

One `ItemStats` per post, keyed by post id in the flow. `learn_one` returns the item's view *before*
the event (so a training example never contains its own label) and updates in place; `view()` is what
the online feature store serves to rankers.
"""

from __future__ import annotations

from dataclasses import dataclass

from operators.decay import Decay, ExactDecayedSum
from schemas import ENGAGEMENT_WEIGHT, Event
from schemas.exchange import pickled_by_fields


@pickled_by_fields
@dataclass(slots=True)
class ItemView:
    """The features of one item, as stored in the feature store and read by rankers."""

    post_id: str
    author_id: str | None = None
    topics: tuple[str, ...] = ()
    group_id: str | None = None
    created_ts: int = 0
    pop_log: float | None = None  # log-domain decayed engagement (see operators.decay)
    likes: float = 0.0  # positive engagements, undecayed (item-kNN normalisation)
    impressions: int = 0
    deleted: bool = False

    def to_wire(self) -> list:
        return [self.author_id, list(self.topics), self.group_id, self.created_ts, self.pop_log,
                self.likes, self.impressions, self.deleted]

    @classmethod
    def from_wire(cls, post_id: str, w: list) -> ItemView:
        return cls(post_id, w[0], tuple(w[1]), w[2], w[3], w[4], w[5], w[6], w[7])


class ItemStats:
    """State of one item; picklable, no clients."""

    __slots__ = ("view", "popularity")

    def __init__(self, post_id: str):
        self.view = ItemView(post_id)
        # exact, so pop_log is the same bytes whatever order a post's events were applied in
        self.popularity = ExactDecayedSum()

    def learn_one(self, event: Event, popularity: Decay) -> ItemView:
        """Apply `event`; return a copy of the view as it was before it."""
        v = self.view
        before = ItemView(v.post_id, v.author_id, v.topics, v.group_id, v.created_ts, v.pop_log,
                          v.likes, v.impressions, v.deleted)
        kind = event.type
        if kind == "post_created":
            v.author_id = event.user_id
            v.topics = event.topics or ()
            v.group_id = event.group_id
            v.created_ts = event.ts
            self.popularity.add(popularity, event.ts, 0.5)  # a new post starts slightly warm
            v.pop_log = self.popularity.log_sum
        elif kind == "post_deleted":
            if v.author_id in (None, event.user_id):
                v.deleted = True
        elif kind == "impression":
            v.impressions += 1
        elif kind in ENGAGEMENT_WEIGHT:
            weight = ENGAGEMENT_WEIGHT[kind]
            self.popularity.add(popularity, event.ts, weight)
            v.pop_log = self.popularity.log_sum
            if kind != "click":
                v.likes += 1.0
        return before

    def __getstate__(self):
        return self.view.to_wire() + [self.view.post_id, self.popularity.anchor,
                                      self.popularity.partials]

    def __setstate__(self, state):
        if len(state) == 9:  # a snapshot from before exact popularity: one rounded partial
            state = state + [state[4], [1.0] if state[4] is not None else []]
        self.view = ItemView.from_wire(state[8], state[:8])
        self.popularity = ExactDecayedSum(state[9], list(state[10]))
