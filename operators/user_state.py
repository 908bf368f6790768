"""Everything one user's partition knows about that user: graph edges, affinities, history, model.

`UserState.learn_one` applies one of the user's own events (with the item's view from before the
event, when the event is about a post) and returns what other partitions must learn from it:
weighted co-occurrence pairs for item-kNN and training examples for the global model. All containers
are bounded by config, so memory per user is capped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from operators.bounded import RecentSet, add_capped, cap_top
from operators.choice import ChoiceSet
from operators.context import FEATURES, USER_FEATURES, Context
from operators.feature_store import FeatureReader
from operators.feed import controls
from operators.feed.scoring import global_vector
from operators.item_stats import ItemView
from operators.models import OnlineLogit
from operators.touches import SeenFilter, TouchHistory
from schemas import ENGAGEMENT_WEIGHT, NEGATIVE_TYPES, Event
from schemas.exchange import pickled_by_fields

MAX_EDGES = 5000  # follows / groups kept per user
MAX_SAFETY_EDGES = 50_000  # blocks / mutes kept per user (a block past the cap still counts)
MAX_PENDING = 200  # impressions awaiting their label
LABEL_WINDOW_MS = 30 * 60_000  # an impression not engaged within this event time is a rejection
MAX_AFFINITIES = 200  # authors and topics kept per user (strongest win)
REJECTION_WEIGHT = 2.0  # weight of a hide / report (an explicit rejection)


@pickled_by_fields
@dataclass(slots=True)
class Example:
    """A training example for the ranking models: feature row, label, weight.

    The feed learns choice examples (`choice=True`): x holds d = x_engaged − E[x] over the
    candidates of the last feed (`operators.choice`, `OnlineLogit.learn_choice`); a rejection is
    stored as its reverse step. Pointwise examples (engaged or not) remain for other models."""

    x: dict[str, float]
    y: bool
    w: float = 1.0
    choice: bool = False

    def apply(self, model: OnlineLogit) -> None:
        if self.choice:
            model.learn_choice(self.x, self.w)
        else:
            model.learn_one(self.x, self.y, self.w)


@dataclass(slots=True)
class UserOutputs:
    """What a user's event sends to other partitions."""

    co_pairs: list[tuple[str, str, float]] = field(default_factory=list)  # (item, co-touched, weight)
    examples: list[Example] = field(default_factory=list)


class UserState:
    """Picklable per-user state (no clients)."""

    feed_stale = False  # (the default of a state pickled before the attribute existed)

    def __init__(self, user_id: str, ctx: Context):
        f = ctx.settings.features
        self.user_id = user_id
        self.interests: tuple[str, ...] = ()
        self.timezone: str | None = None
        self.following: set[str] = set()
        self.blocked: set[str] = set()
        self.muted: set[str] = set()
        self.groups: set[str] = set()
        self.author_aff: dict[str, float] = {}  # author -> log-domain decayed engagement
        self.topic_aff: dict[str, float] = {}
        self.topic_seen: dict[str, float] = {}  # topic -> log-domain decayed exposures
        self.exposure_log: float | None = None  # all exposures, decayed (base-rate denominator)
        self.engaged_log: float | None = None  # all engagements, decayed
        self.recent_likes = RecentSet(f.history_size)  # engagements (not clicks), newest last
        self.history = TouchHistory(f.history_size)  # touches with their weight (item-kNN)
        self.seen = SeenFilter(f.seen_size)  # impressed, engaged, hidden or own: never served
        self.pool: dict[str, int] = {}  # in-network candidates: post -> created ts
        # Residual model: starts as the global model (weight 1 on its logit) and learns this
        # user's deviations from it.
        arm = ctx.for_user(user_id)[0]  # an experiment arm may set the user's learning rate
        self.model = OnlineLogit(USER_FEATURES, prior={"global_logit": 1.0},
                                 learning_rate=arm.settings.feed.user_learning_rate)
        self.pending: dict[str, tuple[int, np.ndarray, float]] = {}  # impression -> (ts, step, w)
        self.served: list[str] = []  # the last served feed, in order
        self.choice: ChoiceSet | None = None  # the candidates of the last feed (learning context)
        # an input since the last rank changed what the feed would be: a user reading it now
        # reads a feed the worker has not ranked yet (`operators.routing.reads_feed`)
        self.feed_stale = False
        self.controls = controls.Controls()  # see less / more (operators/feed/controls.py)
        self.last_ts = 0  # event time of the newest event applied
        self.own_ts = 0  # … of the user's own newest event (deliveries excluded; see profile_ts)
        self.events = 0
        self.deleted = False

    # --------------------------------------------------------------------------------- learning
    def learn_one(self, event: Event, view: ItemView | None, ctx: Context,
                  store: FeatureReader) -> UserOutputs:
        out = UserOutputs()
        self.events += 1
        self.last_ts = max(self.last_ts, event.ts)
        self.own_ts = max(getattr(self, "own_ts", 0), event.ts)
        self._expire_pending(event.ts, out)
        kind = event.type
        if kind in ENGAGEMENT_WEIGHT and event.post_id:
            self._engage(event, view, ctx, store, out)
        elif kind == "impression" and event.post_id:
            if (ctx.settings.feed.impression_negative_weight > 0 and self.choice is not None
                    and event.post_id in self.choice and event.post_id not in self.pending
                    and event.post_id not in self.seen  # (clicked or hidden already: no rejection)
                    and view is not None
                    and view.author_id and len(self.pending) < MAX_PENDING):
                self.pending[event.post_id] = (event.ts, self.choice.step(event.post_id),
                                               ctx.settings.feed.impression_negative_weight)
            if event.post_id not in self.seen and view is not None:
                self._expose(view, event.ts, ctx)
            self._touch(event.post_id, ctx.settings.features.impression_weight, ctx, out)
            self.seen.add(event.post_id)
        elif kind in NEGATIVE_TYPES and event.post_id:
            self.seen.add(event.post_id)
            self.pending.pop(event.post_id, None)
            # no longer a touch that item-kNN proposes neighbours of, nor a liked origin
            self.history.discard(event.post_id)
            self.recent_likes.discard(event.post_id)
            if view is not None and view.author_id and self.choice is not None \
                    and event.post_id in self.choice:
                out.examples.append(self._choice_example(-self.choice.step(event.post_id),
                                                         REJECTION_WEIGHT))
        elif kind == "dwell" and event.post_id:
            self.seen.add(event.post_id)
        elif kind == "follow":
            add_capped(self.following, event.target_id, MAX_EDGES)
        elif kind == "unfollow":
            self.following.discard(event.target_id)  # its pooled posts drop at rank time
        elif kind == "block":
            add_capped(self.blocked, event.target_id, MAX_SAFETY_EDGES)
            self.following.discard(event.target_id)
        elif kind == "mute":
            add_capped(self.muted, event.target_id, MAX_SAFETY_EDGES)
        elif kind == "group_joined":
            add_capped(self.groups, event.group_id, MAX_EDGES)
        elif kind == "group_left":
            self.groups.discard(event.group_id)
        elif kind == "user_created":
            self.interests = event.interests or ()
            self.timezone = event.timezone
        elif kind == "message_sent":
            for recipient in event.recipients or ():
                self.author_aff[recipient] = ctx.affinity.add(
                    self.author_aff.get(recipient), event.ts, 0.5)
            cap_top(self.author_aff, MAX_AFFINITIES)
        elif kind == "post_created" and event.post_id:
            self.seen.add(event.post_id)  # never recommend users their own posts
        elif kind == "user_deleted":
            self.deleted = True
        if kind in controls.LEARNED:  # (setdefault: a state resumed from before controls existed)
            self.__dict__.setdefault("controls", controls.Controls()).learn_one(
                event, view, ctx.settings.controls)
        self._learn(out.examples, store)
        return out

    def _learn(self, examples: list[Example], store: FeatureReader) -> None:
        """Train the user's residual model; the global logit is an input with prior weight 1."""
        if not examples or not self.model.model.optimizer.learning_rate:
            return
        wg, bg = global_vector(store.global_model())
        for ex in examples:
            x = dict(ex.x)
            x["global_logit"] = float(sum(x[f] * w for f, w in zip(FEATURES, wg, strict=True))
                                      + (0.0 if ex.choice else bg))
            Example(x, ex.y, ex.w, ex.choice).apply(self.model)

    def _expire_pending(self, now: int, out: UserOutputs) -> None:
        """Impressions left alone for the label window are (weak) rejections of a candidate."""
        if self.pending:
            expired = [p for p, (ts, _, _) in self.pending.items() if now - ts > LABEL_WINDOW_MS]
            for post in expired:  # the step was taken from the feed the impression came from
                _, step, weight = self.pending.pop(post)
                out.examples.append(self._choice_example(-step, weight))

    def _engage(self, event: Event, view: ItemView | None, ctx: Context, store: FeatureReader,
                out: UserOutputs) -> None:
        post, weight = event.post_id, ENGAGEMENT_WEIGHT[event.type]
        self.pending.pop(post, None)
        if view is not None and view.author_id:
            if self.choice is not None and post in self.choice:  # a candidate was chosen
                out.examples.append(self._choice_example(self.choice.step(post), weight))
            if post not in self.seen:
                self._expose(view, event.ts, ctx)
            self.engaged_log = ctx.affinity.add(self.engaged_log, event.ts, weight)
            author = view.author_id
            self.author_aff[author] = ctx.affinity.add(self.author_aff.get(author), event.ts, weight)
            cap_top(self.author_aff, MAX_AFFINITIES)
            for topic in view.topics:
                self.topic_aff[topic] = ctx.affinity.add(self.topic_aff.get(topic), event.ts, weight)
            cap_top(self.topic_aff, MAX_AFFINITIES)
        if event.type != "click":
            self.recent_likes.add(post)
        self._touch(post, min(1.0, weight), ctx, out)
        self.seen.add(post)

    @staticmethod
    def _choice_example(d: np.ndarray, weight: float) -> Example:
        return Example(dict(zip(FEATURES, d.tolist(), strict=True)), True, weight, choice=True)

    def _touch(self, post: str, weight: float, ctx: Context, out: UserOutputs) -> None:
        """Add `post` to the history; pair it with the previous touches (item-kNN co-occurrence).

        A pair weighs min(both touch weights) · decay^distance; when a post is touched again with
        a larger weight (an impression, then a like), only the increase is paired."""
        if weight <= 0:
            return
        f = ctx.settings.features
        history = self.history
        old = history.get(post)
        if weight > old:
            scale, decay = 1.0, f.cooccurrence_decay
            for other, w in history.newest(f.cooccurrence_window + (post in history)):
                if other == post:
                    continue
                pair = (min(weight, w) - min(old, w)) * scale
                scale *= decay
                if pair > 0:
                    out.co_pairs.append((other, post, pair))
                    out.co_pairs.append((post, other, pair))
        history.add(post, weight)

    def _expose(self, view: ItemView, ts: int, ctx: Context) -> None:
        self.exposure_log = ctx.affinity.add(self.exposure_log, ts)
        for topic in view.topics:
            self.topic_seen[topic] = ctx.affinity.add(self.topic_seen.get(topic), ts)
        if len(self.topic_seen) > 2 * MAX_AFFINITIES:
            cap_top(self.topic_seen, MAX_AFFINITIES)

    def topic_lift(self, ctx: Context, now: int) -> dict[str, float]:
        """log of (engagement rate on a topic) / (the user's overall rate), smoothed toward 0."""
        aff = ctx.affinity
        exposures = aff.value(self.exposure_log, now)
        base = (aff.value(self.engaged_log, now) + 1.0) / (exposures + 5.0)
        m = 3.0  # pseudo-exposures at the base rate
        lift = {}
        for topic in set(self.topic_seen) | set(self.topic_aff):
            e = aff.value(self.topic_aff.get(topic), now)
            n = aff.value(self.topic_seen.get(topic), now)
            lift[topic] = math.log((e + base * m) / (max(n, e) + m) / base)
        return lift

    def flush_pending(self, now: int, store: FeatureReader) -> list[Example]:
        """Label impressions whose window has passed at event time `now` (at a micro-batch)."""
        out = UserOutputs()
        self._expire_pending(now, out)
        self._learn(out.examples, store)
        return out.examples

    def deliver(self, post_id: str, created_ts: int, pool_size: int) -> None:
        """A followed author posted: add to the in-network candidate pool (newest kept). The
        post's time is the user's newest event time too: their feed is ranked at it."""
        self.pool[post_id] = created_ts
        self.last_ts = max(self.last_ts, created_ts)
        if len(self.pool) > pool_size:
            cap_top(self.pool, pool_size)  # type: ignore[arg-type]

    def undeliver(self, post_id: str) -> None:
        """A delivery taken back: an unfollow processed after the post it precedes
        (operators.graph)."""
        self.pool.pop(post_id, None)

    def forget(self, user_id: str, posts: tuple[str, ...]) -> None:
        """Erasure (operators.erasure): drop a deleted user and their posts from everything this
        state publishes or ranks from (edges, affinities, candidate pool, history, controls)."""
        gone = set(posts)
        for edges in (self.following, self.blocked, self.muted):
            edges.discard(user_id)
        self.author_aff.pop(user_id, None)
        for post in gone:
            self.pool.pop(post, None)
            self.pending.pop(post, None)
            self.recent_likes.discard(post)
            self.history.discard(post)
        self.served = [p for p in self.served if p not in gone]
        controls_ = getattr(self, "controls", None)
        if controls_ is not None:
            controls_.entries.pop(("author", user_id), None)
        reported = getattr(self, "reported", None)
        if reported is not None:
            reported.forget(user_id)

    # --------------------------------------------------------------------------------- features
    def topic_shares(self, ctx: Context, now: int) -> dict[str, float]:
        values = {t: ctx.affinity.value(v, now) for t, v in self.topic_aff.items()}
        total = sum(values.values())
        return {t: v / total for t, v in values.items()} if total > 0 else {}

    def row(self, view: ItemView, ctx: Context, store: FeatureReader, now: int) -> np.ndarray:
        """Feature row of one item for this user (for learning), in FEATURES order."""
        from operators.feed.hydrate import hydrate  # one hydration code path for learn and serve

        X, _ = hydrate(self, [view], store, ctx, now)
        return X[0]

    def features_one(self, view: ItemView, ctx: Context, store: FeatureReader,
                     now: int) -> dict[str, float]:
        """Feature row of one item for this user, as a dict."""
        return dict(zip(FEATURES, self.row(view, ctx, store, now).tolist(), strict=True))

    def remember_served(self, ids: list[str], choice: ChoiceSet | None) -> None:
        """The served feed (in order) and the choice set it was ranked from."""
        self.served = ids
        self.choice = choice
        self.feed_stale = False

    def profile_ts(self) -> int:
        """The event time the profile is read at: the user's own newest event. Affinities change
        only with the user's own events; a followed author's post delivered from another
        partition (whether before or after the user's last event depends on how partitions
        interleave) must not change the profile's bytes."""
        return getattr(self, "own_ts", 0) or self.last_ts

    def affinities(self, ctx: Context, now: int, n: int = 10) -> dict[str, list]:
        """Top decayed affinities (for the inspector and explanations)."""
        def top(d: dict[str, float]) -> list:
            vals = sorted(((k, ctx.affinity.value(v, now)) for k, v in d.items()),
                          key=lambda kv: (-kv[1], kv[0]))
            return [[k, round(v, 4)] for k, v in vals[:n]]
        return {"authors": top(self.author_aff), "topics": top(self.topic_aff)}
