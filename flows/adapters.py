"""Thin Bytewax adapters around the operators: stateful logics (one per partitioned state) and sinks.

Each logic holds one operator state object and delegates to it; snapshots are the pickled state (only
when recovery is on: Bytewax asks for a snapshot of every key touched in an epoch even without it).
Clients are built per worker in the sinks and per process in `resources`, never kept in state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows import failures, metrics, resources
from operators import backlog
from operators.context import FEATURES, PRIOR, Context
from operators.dedup import Dedup
from operators.erasure import (
    MAX_POSTS,
    MAX_REPORTED,
    RESIDENT_OWNERS,
    MentionIndex,
    Reported,
    ungrouped,
)
from operators.experiments.counts import ArmCounts, UserCounts
from operators.feed import rank
from operators.graph import ENDS, Followers, apply_delivery, net
from operators.item_similarity import ItemSimilarity
from operators.item_stats import ItemStats, ItemView
from operators.models import OnlineLogit
from operators.notifications.driver import GlobalModel as NotifGlobalModel
from operators.notifications.driver import handle as notif_handle
from operators.notifications.driver import recipient_of, usable
from operators.notifications.policy import Policy
from operators.notifications.state import RecipientState
from operators.notifications.trending import Audience, TrendingRule
from operators.pacing import UNLIMITED, TimerBudget
from operators.redis_store import RedisFeatureStore
from operators.reorder import AwaitingPost, InOrder
from operators.routing import reads_feed, reranks_now
from operators.suggestions.compute import encode as encode_suggestions
from operators.suggestions.compute import mentioned_users, suggest
from operators.suggestions.likers import LikersOf
from operators.suggestions.search import published_user, search_clicks
from operators.suggestions.search_blend import SearchBlend, SearchSession
from operators.suggestions.state import SocialState
from operators.suggestions.store import MemoryGraphStore, RedisGraphStore
from operators.user_state import UserState
from operators.user_writes import ranked_writes
from schemas import DeadLetter, Event, encode_event
from schemas.erasure import Command
from schemas.notifications import encode_inbox

log = logging.getLogger("persona.flow")
RETAIN = StatefulBatchLogic.RETAIN
ERASED = "erased"  # the state of a post whose author was deleted: it ignores everything after


def _reported(state) -> Reported:
    """The state's record of mentions already reported to the erasure step (added to states
    resumed from before erasure existed)."""
    reported = getattr(state, "reported", None)
    if reported is None:
        reported = state.reported = Reported()
    return reported


def _in_order(state) -> InOrder:
    """The user's event-time order buffer (added to states resumed from before it existed)."""
    buffer = getattr(state, "in_order", None)
    if buffer is None:
        buffer = state.in_order = InOrder()
    return buffer


def _mentions(state, owner: str, ids, cap: int) -> list[tuple]:
    """[("mentions", owner, (user, …))] with the users `owner` starts to mention
    (operators.erasure; its record remembers the newest `cap`: stream.erasure_reported_per_owner),
    or []: one record for all of them, split per mentioned user only in front of the erasure step
    (`flows.feeds`), so the step's other consumers see one item, not dozens."""
    new = tuple(i for i in _reported(state).new(ids, cap) if i != owner)
    return [("mentions", owner, new)] if new else []


def _unmentions(state, owner: str) -> list[tuple]:
    """[("unmentions", owner, (user, …))] with every user the deleted `owner`'s state reported
    mentioning, or []: their erasure indexes drop the owner (`MentionIndex.drop_owner`)."""
    ids = tuple(_reported(state).take())
    return [("unmentions", owner, ids)] if ids else []


class _Logic(StatefulBatchLogic):
    """Holds `self.state`; snapshots it pickled when recovery is enabled.

    Bytewax builders receive only the resume state, not the key, so states that need their key
    (a user id, a post id) are created from the first value, which carries it.
    """

    recovery = False  # set per flow by flows.feeds.build_flow
    settle = False  # … as is this: the input's end recomputes what was read from others (drain)

    def __init_subclass__(cls, **kwargs):
        """Every step's callbacks report what they raise (`flows.failures`: a cluster would only
        say "Send thread panic")."""
        super().__init_subclass__(**kwargs)
        for name in ("on_batch", "on_notify", "on_eof"):
            if name in cls.__dict__:
                setattr(cls, name, failures.reported(cls.__dict__[name]))

    def __init__(self, state, *args):
        self.state = state

    def snapshot(self):
        if not self.recovery:
            return None
        return pickle.dumps(self._snapshot_of(), protocol=5)

    def _snapshot_of(self):
        """What `snapshot` pickles. Timers are not part of Bytewax's snapshot: remember that one
        was pending, or a key dirty at the snapshot would never be ranked / published / released
        after a restart."""
        return _PendingTimer(self.state) if self._timer_pending() else self.state

    def _timer_pending(self) -> bool:
        """Work is waiting on a timer (re-armed by `resume_timer` after a restore)."""
        return self.notify_at() is not None

    def resume_timer(self) -> None:
        """Re-arm the timer of a key restored with one pending (logics with timers)."""

    @classmethod
    def builder(cls, *args):
        def build(resume):
            return cls._resumed(pickle.loads(resume) if resume is not None else None, *args)
        return build

    @classmethod
    def _resumed(cls, value, *args):
        """The logic of a key resumed from its unpickled snapshot `value` (None: a new key)."""
        if isinstance(value, _PendingTimer):
            logic = cls(value.state, *args)
            logic.resume_timer()
            return logic
        return cls(value, *args)


class _PendingTimer:
    """A snapshot of a state whose key had a timer pending."""

    __slots__ = ("state",)

    def __init__(self, state):
        self.state = state


class _KeyedSnapshot:
    """A snapshot of an evicting step's key (`_Evictable`): its key and what `_Logic` snapshots.
    Builders do not get the key, and a key resumed idle is parked before any input names it."""

    __slots__ = ("key", "snapshot")

    def __init__(self, key: str | None, snapshot):
        self.key, self.snapshot = key, snapshot


class DedupLogic(_Logic):
    """key = shard of the actor (a repeat has the same actor). Emits each event once; repeats
    become dead letters (never silent)."""

    def __init__(self, state: Dedup | None, capacity: int):
        super().__init__(state if state is not None else Dedup(capacity))

    def on_batch(self, events):
        return [e if self.state.is_new(e.event_id) else
                DeadLetter(f"duplicate event_id '{e.event_id}'", encode_event(e)) for e in events], RETAIN


class _Evictable(_Logic):
    """A keyed step whose idle keys are evicted: after `_idle_s()` without input (and nothing
    pending) the state is parked in Redis (a ("park", kind, key, bytes) write, with the TTL
    `stream.parked_ttl_s`) and dropped from the worker; the key's next input restores it
    (`_restore`; also within the batch that parks it: `RecentParks`). The idle deadline is the key's
    only timer, so the keys Bytewax scans for due timers are the resident ones, which eviction
    bounds. Subclasses call `_touched()` on input and have `store_of`.

    The state is parked under `key`, which the logic remembers (states need not hold it): given
    to `_resume` (or `_restore`) by the key's input, or kept in the snapshot (`_KeyedSnapshot`).

    An `_empty()` state is dropped, not parked: ("park", kind, key, None) deletes an older parked
    copy it was restored from (else the key's next input would restore that). A deleted user's
    tombstone (`_is_tombstone()`) is never parked (its key would name the user): it stays
    resident until idle for `tombstone_idle_s`, then is dropped, and the key's next input
    restores a tombstone from the deleted users' set in Redis (`_restore`, `_tombstone`)."""

    park_kind = ""  # the parked-state key kind ("user", "social", "notif", "item", "nbrs",
    #                 "followers", "erasure", "expuser"); "" = never
    parks = True  # False: the step's states are never parked, only dropped (no parked-state read)
    tombstone_idle_s = 0.0  # stream.tombstone_idle_evict_s, set per flow (0: kept for ever)

    def __init__(self, state, idle_s: float = 0.0, store_of=None):
        super().__init__(state)
        self.idle_s, self.store_of = idle_s, store_of
        self.idle_at: datetime | None = None  # evicted at this wall clock unless input comes
        self.key: str | None = None  # the key, once an input (or the snapshot) named it
        # Redis holds a parked copy of the state: True (it was restored or rewritten), None
        # (maybe: resumed from a snapshot), False (none; never for a step that `parks` nothing)
        self.parked_copy: bool | None = None if state is not None and self.parks else False

    def _idle_s(self) -> float:
        """`idle_s`, when there is a store to park in (a step's own settings otherwise)."""
        return self.idle_s if self.store_of is not None else 0.0

    def _snapshot_of(self):
        return _KeyedSnapshot(self.key, super()._snapshot_of())

    @classmethod
    def _resumed(cls, value, *args):
        key = None
        if isinstance(value, _KeyedSnapshot):
            key, value = value.key, value.snapshot
        logic = super()._resumed(value, *args)
        # a snapshot from before it held the key: a state that names its user names it, else
        # the key stays resident until its next input names it (`_evict_if_idle`)
        logic.key = key if key is not None else getattr(logic.state, "user_id", None)
        return logic

    def _empty(self) -> bool:
        """The state holds nothing worth parking (its key's next input starts afresh)."""
        return False

    def _is_tombstone(self) -> bool:
        """The state is a deleted user's tombstone (every per-user step keeps one: it drops what
        comes later about the user — a trending candidate, a delivery, a follow of them — which
        would otherwise start a new state that names them again). Never parked: its key would
        name the user."""
        return bool(getattr(self.state, "deleted", False))

    def _tombstone(self, key: str):
        """A tombstone state for `key`, a deleted user (None: the step keeps none)."""
        return None

    def _tombstone_idle_s(self) -> float:
        """How long a tombstone stays resident without input: dropped after that, it is restored
        from the deleted users' set (`_restore`), which needs eviction on and a store."""
        return self.tombstone_idle_s if self._idle_s() > 0 else 0.0

    def _touched(self) -> None:
        """Input arrived (or a state was restored): push the idle deadline back."""
        idle = self._tombstone_idle_s() if self._is_tombstone() else self._idle_s()
        self.idle_at = (datetime.now(UTC) + timedelta(seconds=idle)
                        if idle > 0 and self.park_kind and self.state is not None else None)

    def notify_at(self):
        return self.idle_at

    def _timer_pending(self) -> bool:
        return False  # the idle deadline is re-armed by `_touched` when a state is restored

    def on_notify(self):
        return self._evict_if_idle([])

    def _evict_if_idle(self, out: list):
        if self.idle_at is None or self.idle_at > datetime.now(UTC):
            return out, RETAIN
        if self._is_tombstone():  # idle for `_tombstone_idle_s`: dropped, never parked
            if self._tombstone_idle_s() <= 0:  # (kept for ever)
                self.idle_at = None
                return out, RETAIN
            metrics.EVICTED.labels(self.park_kind).inc()
            return out, StatefulBatchLogic.DISCARD
        key = self.key
        if key is None:  # a key no input named since a resume: it stays until one does
            self.idle_at = None
            return out, RETAIN
        out.extend(self._unpark(key) if self._empty() else [self._park(key, self.store_of())])
        metrics.EVICTED.labels(self.park_kind).inc()
        return out, StatefulBatchLogic.DISCARD

    def _resume(self, key: str, new=None, signup: bool = False):
        """The key's state: resident, else its parked copy (`_restore`), else `new(key)` (None
        without `new`)."""
        self.key = key
        if self.state is None:
            self.state = self._restore(key, self.store_of() if self.store_of else None,
                                       signup) or (new(key) if new is not None else None)
        return self.state

    def _retention(self):
        """RETAIN, or DISCARD for an empty state without an idle deadline: kept, it would only
        spare its key's next input a parked-state read, and without eviction there is none."""
        return RETAIN if self.idle_at is not None or not self._empty() else StatefulBatchLogic.DISCARD

    def _erased_by(self, values) -> bool:
        """The batch holds an erasure command for this state (operators.erasure's "forget")."""
        return any(v[0] == "forget" for v in values)

    def _repark(self, values) -> list[tuple]:
        """After a batch with an erasure command (`_erased_by`), the changed state's copy Redis
        may still hold parked (it was restored from there), which names the deleted user, is
        rewritten at once rather than when the key next idles, which a drained run may never
        reach. The state stays resident. A restart before the next snapshot restores the
        rewritten copy and applies the command again, which changes nothing."""
        if self._is_tombstone() or not self._erased_by(values):
            return []
        return self._rewrite_parked()

    def _rewrite_parked(self) -> list[tuple]:
        """The write that replaces the key's parked copy with its state now, if Redis may hold
        one (else [])."""
        if self.parked_copy is False or self.key is None:
            return []
        store = self.store_of()
        if self.parked_copy is None and store.parked(self.park_kind, self.key) is None:
            self.parked_copy = False  # (resumed from a snapshot without one: an uninterrupted
            return []  # run writes none either)
        self.parked_copy = True
        return [self._park(self.key, store)]

    def _park(self, key: str, store) -> tuple:
        """("park", kind, key, bytes), the write of the state's parked copy; `store` serves the
        bytes until the write lands."""
        raw = pickle.dumps(self.state, protocol=5)
        store.parking(self.park_kind, key, raw)
        return ("park", self.park_kind, key, raw)

    def _unpark(self, key: str) -> list[tuple]:
        """[("park", kind, key, None)], the write that deletes the key's parked copy, if Redis may
        hold one (the state is emptied or erased), else []."""
        if self.parked_copy is False:
            return []
        self.parked_copy = False
        return [("park", self.park_kind, key, None)]

    def _restore(self, key: str, store, signup: bool = False):
        """The parked state of a returning key, or None (new, never parked, or expired).

        `signup`: the key's first input creates it (a user's own `user_created`, a post's
        `post_created`): nothing can be parked, so the Redis read is skipped (a new user otherwise
        costs one GET per step). A replay from the start of the topic also begins each key with
        it, and rebuilds the state from every event instead of applying them again over a
        parked copy."""
        self.key = key
        if not self.park_kind or self._idle_s() <= 0 or signup:
            return None
        raw = store.parked(self.park_kind, key) if self.parks else None
        if raw is None:  # a deleted user's dropped tombstone comes back from the deleted set
            return self._tombstone(key) if self._tombstone_idle_s() > 0 and deleted_user(
                store, key) else None
        metrics.RESTORED.labels(self.park_kind).inc()
        self.parked_copy = True
        return pickle.loads(raw)


def deleted_user(store, user_id: str) -> bool:
    """Whether `user_id` is in the deleted users' set (schemas.keyspace `deleted_users`, written
    by the suggestions step; a worker keeps the answers while the set's version does not move)."""
    if isinstance(store, RedisFeatureStore):
        return bool(RedisGraphStore(store).deleted([user_id]))
    return user_id in store.deleted_users


def _cancel(events) -> list:
    """("cancel", event) for each event about a post the items step drops (not Commands)."""
    return [("cancel", e) for e in events if not isinstance(e, Command)]


class ItemLogic(_Evictable):
    """key = post id. Emits ("user", event, view before) per event, then ("item", view after);
    ("held", event) once for each event it holds past the batch that brought it (below).
    An `erase_post` command (its author was deleted) emits ("forget_item", post, topics) and
    leaves a tombstone that drops every later event about the post, with ("cancel", event) for
    each event dropped (its user waits for it: `operators.reorder.InOrder`).

    Events about a post not created yet wait (operators.reorder) until `post_created` arrives or
    `stream.reorder_wait_s` of wall clock pass, so a like that overtook its post still teaches
    author and topics. A post idle for `stream.item_idle_evict_s` is parked like an idle user
    (`_Evictable`, tombstones too: an erased post must stay erased), so a worker's memory does
    not grow with every post ever made.
    """

    park_kind = "item"

    def __init__(self, state: tuple[ItemStats, AwaitingPost] | str | None, ctx: Context,
                 store_of=None):
        super().__init__(state, ctx.settings.stream.item_idle_evict_s, store_of)
        self.ctx = ctx
        self.deadline: datetime | None = None  # held events are released at this wall clock
        self._touched()

    def on_batch(self, events):
        first = events[0]
        post_id = first.key if isinstance(first, Command) else first.post_id
        self._resume(post_id, signup=any(  # a post's first batch, or a parked post back
            isinstance(e, Event) and e.type == "post_created" for e in events))
        self._touched()
        if self.state == ERASED:  # the author was deleted: nothing about the post is published again
            return _cancel(events), RETAIN
        erase = next((e for e in events if isinstance(e, Command)), None)
        if erase is not None:  # erasure (operators.erasure): drop the item and its index entries
            topics = self.state[0].view.topics if self.state is not None else ()
            held = self.state[1].release() if self.state is not None else []
            self.state, self.deadline = ERASED, None
            # its parked copy (restored from, it names the author) becomes the erased mark
            return ([("forget_item", erase.key, tuple(topics))] + _cancel(held + events)
                    + self._rewrite_parked(), RETAIN)
        if self.state is None:
            self.state = (ItemStats(events[0].post_id), AwaitingPost())
        stats, waiting = self.state
        ready: list = []
        # known from the post_created in this batch too: `stats` learns it only in `_apply` below
        known = stats.view.author_id is not None or stats.view.deleted
        for e in events:
            if e.type == "post_created":
                known = True
                ready.append(e)
                ready.extend(waiting.release())
            elif not known:
                ready.extend(waiting.hold(e))
            else:
                ready.append(e)
        # tell the users of this batch's events still held (their post was not in the batch)
        # that they may stop waiting for them (InOrder)
        new = {e.event_id for e in events} if waiting else ()
        held = [("held", e) for e in waiting.events if e.event_id in new]
        if waiting and self.deadline is None:
            self.deadline = datetime.now(UTC) + timedelta(
                seconds=self.ctx.settings.stream.reorder_wait_s)
        elif not waiting:
            self.deadline = None
        return held + self._apply(ready), RETAIN

    def notify_at(self):
        return self.deadline if self.deadline is not None else self.idle_at  # held: never evicted

    def _timer_pending(self) -> bool:
        return self.deadline is not None

    def resume_timer(self):
        self.deadline = datetime.now(UTC) + timedelta(
            seconds=self.ctx.settings.stream.reorder_wait_s)

    def on_notify(self):
        if self.deadline is None:  # only the idle deadline was pending
            return self._evict_if_idle([])
        if self.deadline > datetime.now(UTC):  # a timer due when the activation began, moved
            return [], RETAIN
        self.deadline = None
        if self.state is None or self.state == ERASED:
            return [], RETAIN
        return self._apply(self.state[1].release()), RETAIN

    def on_eof(self):
        if self.state is None or self.state == ERASED or not self.state[1]:
            return [], RETAIN
        self.deadline = None
        return self._apply(self.state[1].release()), RETAIN

    def _apply(self, events) -> list:
        if not events:
            return []
        stats = self.state[0]
        out = [("user", e, stats.learn_one(e, self.ctx.popularity)) for e in events]
        v = stats.view
        out.append(("item", ItemView(v.post_id, v.author_id, v.topics, v.group_id, v.created_ts,
                                     v.pop_log, v.likes, v.impressions, v.deleted)))
        return out


class FollowersLogic(_Evictable):
    """key = followed user. Values ("edge", kind, follower, ts, key) (kind "user_deleted": the
    follower's `forget_follower` command, operators.erasure, in a parked list too; its ts is
    +inf, it comes after their events) | ("post", post_id, ts, key) | ("erase", ts, key) |
    ("created", ts, key) (the key last: builders do not get it). Emits ("deliver", follower,
    post_id, ts) per follower of a new post, and per kept post a follow processed after it
    precedes; ("undeliver", …) per kept post an unfollow processed after it precedes
    (`operators.graph.Followers`: the same deliveries in any interleaving); ("ended_follows",
    key, (follower,)) at an unfollow (the ended follow is kept: the erasure index records that
    this list names the follower, and sends the list their `forget_follower` at their deletion,
    operators.erasure, which clears it as it does a follow). A batch is applied
    in event-time order (a post reaches the step through the items step, a follow directly). An
    idle key is parked like an idle user's (`_Evictable`, `stream.user_idle_evict_s`); an empty
    one (no followers, kept posts nor ended follows) is dropped. The user's own sign-up
    ("created") starts their state without a parked-state read, so their later follows and posts
    need none either. A deleted user's list stays as a tombstone, never parked (as the erasure
    step's: a follow of them processed later would otherwise be parked under their id), dropped
    after `stream.tombstone_idle_evict_s` without input and restored from the deleted users' set
    (`_Evictable`)."""

    park_kind = "followers"

    def __init__(self, state: Followers | None, max_fanout: int, keep_posts: int,
                 idle_s: float = 0.0, store_of=None):
        super().__init__(state, idle_s, store_of)
        self.max_fanout, self.keep_posts = max_fanout, keep_posts
        self._touched()

    def _empty(self) -> bool:  # (kept posts and ended follows matter to a follow processed late;
        #                         a pulled list holds no one but must stay pulled)
        state = self.state
        return not (state.ids or state.posts or state.ended or state.deleted or state.pulled)

    def _tombstone(self, key: str) -> Followers:
        return Followers(deleted=True)

    def _erased_by(self, values) -> bool:  # a follower's erasure comes as an edge
        return any(v[0] == "edge" and v[1] == "user_deleted" for v in values)

    def on_batch(self, values):
        out: list = []
        values = sorted(values, key=lambda v: v[-2])  # (stable: one event's edges keep their order)
        key, first = values[0][-1], values[0][0]
        if self.state is None and first == "erase":  # emptied anyway: no read, but the parked
            self.parked_copy = None if self._idle_s() > 0 else False  # copy (if any) is deleted
        self._resume(key, lambda _key: Followers(), signup=first in ("created", "erase"))
        for value in values:
            if value[0] == "created":
                self.state.deleted = False  # (a new account under a deleted id)
            elif value[0] == "edge":
                followed = value[2] in self.state.ids
                out.extend(self.state.learn_edge(value[1], value[2], value[3], self.max_fanout,
                                                 self.keep_posts))
                if followed and value[1] in ENDS:  # an ended follow still names the follower:
                    out.append(("ended_follows", key, (value[2],)))  # for `forget_follower`
            elif value[0] == "erase":  # the followed user was deleted: their parked copy too
                self.state = self._tombstone(key)
                out.extend(self._unpark(key))
            else:
                out.extend(self.state.learn_post(value[1], value[2], self.max_fanout,
                                                 self.keep_posts))
        out.extend(self._repark(values))
        self._touched()
        return net(out), self._retention()


def _co(pairs: list[tuple[str, str, float]]) -> list[tuple]:
    """[("co", [(item, co-touched item, weight), …])] for a batch's pairs, or []: one record per
    user batch instead of one per pair (up to 2·cooccurrence_window per touch); the flow splits
    it per item in front of the similarity step (`flows.feeds`)."""
    return [("co", pairs)] if pairs else []


def _signs_up(value) -> bool:
    """`value` (a per-user step's input) is its user's own `user_created` event."""
    event = value[1] if len(value) > 1 else None
    return isinstance(event, Event) and event.type == "user_created"


def _catching_up(interval_s: float, stream) -> float:
    """A debounced step's interval while the worker catches up a backlog it needs T seconds to
    read (`operators.backlog`): a feed or a suggestion list recomputed every second is stale
    until then anyway, so a dirty user runs once per T / 2 (capped at
    `stream.backlog_interval_s`), not once per event, and the time goes to catching up. Caught
    up, T = 0 and `interval_s` applies."""
    return max(interval_s, min(backlog.PROCESS.rerun_s(), stream.backlog_interval_s))


class _Debounced(_Evictable):
    """A keyed step that runs `_run` on a wall-clock timer, at most once per `_interval_s()`, and
    only while dirty (`_schedule` after a batch that changed the key; `due = None` cancels).
    Idle keys are evicted (`_Evictable`) once nothing is due."""

    def __init__(self, state, idle_s: float = 0.0, store_of=None, timers=None):
        super().__init__(state, idle_s, store_of)
        self.due: datetime | None = None
        self.last_run: datetime | None = None
        self.timers: TimerBudget = timers or UNLIMITED  # the worker's budget between inputs
        self.put_offs = 0  # times its due run was put off in a row (each waits twice as long)

    interval_setting = ""  # the `stream` setting of the interval caught up ("rank_interval_s", …)

    def _base_interval_s(self) -> float:
        """The interval caught up (the `interval_setting`)."""
        return getattr(self.ctx.settings.stream, self.interval_setting)

    def _stream(self):
        """The `stream` settings that stretch the interval in catch-up mode (None: never)."""
        return self.ctx.settings.stream

    def _interval_s(self) -> float:
        stream = self._stream()
        return self._base_interval_s() if stream is None else _catching_up(
            self._base_interval_s(), stream)

    def _run(self, cause: str) -> list:
        """The debounced work; `cause` says why it runs now: "timer", "eof" (the end of a
        bounded input) or a subclass's own ("read")."""
        raise NotImplementedError

    def _schedule(self, delay_s: float = 0.0) -> None:
        """Run at the next interval boundary, or `delay_s` from now if later; an earlier pending
        run stays."""
        now = datetime.now(UTC)
        interval = self._interval_s()
        if self.last_run is not None:
            earliest = self.last_run + timedelta(seconds=interval)
        else:  # a first run is at once, except while catching up: then it waits the stretch too
            earliest = now + timedelta(seconds=interval - self._base_interval_s())
        due = max(now + timedelta(seconds=delay_s), earliest)
        if self.due is None or due < self.due:
            self.due = due

    def notify_at(self):
        return self.due if self.due is not None else self.idle_at  # a dirty key is never evicted

    def _timer_pending(self) -> bool:
        return self.due is not None

    def resume_timer(self):
        self.due = datetime.now(UTC)

    def on_notify(self):
        # Bytewax may still fire a timer that was due when this activation began, after an
        # on_batch that cancelled it (user_deleted): a tombstone must not be written again
        now = datetime.now(UTC)
        due = self.due is not None and self.due <= now
        if due and not self.timers.allows():  # this sweep spent its budget: read input first
            self.due = now + timedelta(seconds=self.timers.put_off(self.put_offs))
            if self.put_offs == 0:
                self.timers.waiting += 1
            self.put_offs += 1
            metrics.TIMERS_PUT_OFF.inc()
            return [], RETAIN
        self._not_put_off()
        out = self.timers.timed(self._fire, "timer") if due else []
        return self._evict_if_idle(out) if self.due is None else (out, RETAIN)

    def on_eof(self):
        return self._fire("eof"), RETAIN

    def _fire(self, cause: str) -> list:
        return [] if self.due is None else self._run_now(cause)

    def _run_now(self, cause: str) -> list:
        """`_run`, and the pending timer cancelled: the interval restarts now."""
        self._cancel_run()
        self.last_run = datetime.now(UTC)
        return self._run(cause)

    def _cancel_run(self) -> None:
        """No run is pending any more (it runs now, or the key was deleted)."""
        self.due = None
        self._not_put_off()

    def _not_put_off(self) -> None:
        """The key's run is no longer put off (`TimerBudget.waiting` counts those that are)."""
        if self.put_offs:
            self.timers.waiting = max(0, self.timers.waiting - 1)
            self.put_offs = 0


class UserLogic(_Debounced):
    """key = user id. Values ("event", Event, None) and ("await", Event) (the user's own events
    in their order, a post's as a placeholder), ("annotated", Event, ItemView | None) | ("cancel",
    Event) (a post's event from the items step fills its placeholder: `operators.reorder.InOrder`,
    so the user learns in the same order however steps and processes interleave) | ("deliver" |
    "undeliver", user_id, post_id, ts) (operators.graph) | ("forget", Command).

    Marks the user dirty and ranks at most once per `rank_interval_s` (wall clock; longer while
    the worker catches up a backlog, and then a first rank waits too: `backlog_interval_s`) on a
    timer; events that only record what the user saw (`operators.routing.reranks_now`) wait up
    to `seen_rerank_s`. A user who reads their feed (`operators.routing.reads_feed`) while it is
    stale is ranked first, in the batch, so the choice set they learn from never depends on when
    the timers fired. Emits ("co", [(a, b, weight), …]) per batch, ("ex", Example), ("feed",
    user_id, bytes), ("forget_user", user_id), ("mentions", user_id, users) with the users it
    starts to mention (operators.erasure), and
    ("park", "user", user_id, bytes) when idle (see `_Evictable`). At the user's deletion,
    ("unmentions", user_id, users) and ("cmd", Command) `forget_follower` to each followee.
    ("forget", Command) drops a deleted user and their posts (in a parked state too), then re-ranks.
    A deleted user leaves an empty tombstone state that ignores everything after (deliveries from
    the followers step would otherwise create a new state and a new feed).
    """

    park_kind = "user"
    interval_setting = "rank_interval_s"

    def __init__(self, state: UserState | None, ctx: Context, store_of=None, timers=None):
        super().__init__(state, ctx.settings.stream.user_idle_evict_s,
                         store_of or resources.feature_store_of(ctx.settings), timers)
        self.ctx = ctx
        self.reported_cap = ctx.settings.stream.erasure_reported_per_owner  # (`_mentions`)
        self.deferred_at: datetime | None = None  # when a due rank began to wait for the order
        self._touched()

    def on_batch(self, values):
        self.timers.input_arrived()
        out: list = []
        ctx = self.ctx
        store = self.store_of()
        if self.state is None:
            first = next((v for v in values if v[0] != "forget"), None)
            if first is None:  # erasure commands only: forget in the parked state, if any
                self.state = self._restore(values[0][1].key, store)
                if self.state is None:
                    return [], RETAIN
            else:
                user_id = first[1] if first[0] in ("deliver", "undeliver") else first[1].user_id
                self.state = self._restore(user_id, store, signup=_signs_up(first)) or UserState(
                    user_id, ctx)
        self._touched()
        state = self.state
        out: list = []
        if state.deleted:  # a tombstone: later deliveries and events must not revive the user;
            # a late follow of theirs leaves the followee's list again. Their own user_created
            # is a new account under the id (as the other steps and the replay Engine take it):
            # it starts afresh, with what follows it in the batch
            anew = next((i for i, v in enumerate(values) if v[0] == "event"
                         and v[1].type == "user_created" and v[1].user_id == state.user_id),
                        None)
            late = values if anew is None else values[:anew]
            out = [("cmd", Command("forget_follower", v[1].target_id, state.user_id))
                   for v in late if v[0] == "event" and v[1].type == "follow" and v[1].target_id]
            if anew is None:
                return out, RETAIN
            values = values[anew:]
            self.state = state = UserState(state.user_id, ctx)
        now, pairs = False, []  # the batch's co-occurrence pairs leave as one ("co", pairs)
        lag_ms = int(ctx.settings.stream.reorder_lag_s * 1000)
        for value in _in_order(state).admit(values, lag_ms):  # the user's own order, annotated
            if value[0] == "forget":  # erasure: a user this one mentions was deleted
                state.forget(value[1].user, value[1].posts)
                now = state.feed_stale = True  # their posts leave the feed at the next batch
                continue
            if value[0] in ("deliver", "undeliver"):
                apply_delivery(state, value, ctx.settings.features.pool_size)
                now = state.feed_stale = True
                continue
            event, view = value[1], value[2]
            if event.type == "user_deleted":  # keep a small tombstone, not the user's data
                self.state = self._tombstone(state.user_id)
                self._cancel_run()
                self._touched()  # (the tombstone's idle deadline)
                # (earlier events' outputs too); the lists of those they followed drop them
                return out + _co(pairs) + [("forget_user", state.user_id)] + _unmentions(
                    state, state.user_id) + [("cmd", Command("forget_follower", a, state.user_id))
                                             for a in sorted(state.following)], RETAIN
            if state.feed_stale and reads_feed(event):  # rank what the user is reading first
                out.extend(self._rank_now())
            result = state.learn_one(event, view, ctx, store)
            pairs.extend(result.co_pairs)
            out.extend(("ex", ex) for ex in result.examples)
            out.extend(_mentions(state, state.user_id, (
                view.author_id if view is not None else None, event.target_id,
                *(event.recipients or ())), self.reported_cap))
            if reranks_now(event):
                now = state.feed_stale = True
        for _, view in _in_order(state).take_late():  # an event applied without its post's author:
            out.extend(_mentions(state, state.user_id, (view.author_id,),  # who it is, for erasure
                                 self.reported_cap))
        if self.deferred_at is not None and not _in_order(state).blocked:
            now = True  # the rank that waited for the user's held event: at once
        self._schedule(0.0 if now else ctx.settings.stream.seen_rerank_s)
        out.extend(self._repark(values))
        return out + _co(pairs), RETAIN

    def _fire(self, cause: str) -> list:
        if self.due is not None and self._waits_for_order():
            return []
        self.deferred_at = None
        return super()._fire(cause)

    def _tombstone(self, key: str) -> UserState:
        state = UserState(key, self.ctx)
        state.deleted = True
        return state

    def _rank_now(self) -> list:
        """The rank a pending timer would run, at this point of the user's ordered input."""
        self.deferred_at = None
        return self._run_now("read")

    def on_eof(self):
        self.deferred_at = None  # nothing else will come: rank what the user's state holds
        return super()._fire("eof"), RETAIN

    def _waits_for_order(self) -> bool:
        """Whether a due rank waits: some of the user's events queue behind one whose post the
        items step holds (`InOrder.blocked`), so a rank now would use a state that lacks them
        and serve and learn from a stale feed. It runs once the queue drains (`on_batch`), and
        at the latest `stream.reorder_wait_s` after it was first due (the items step releases a
        held event by then, so a queue blocked longer is a chain of holds: rank anyway)."""
        in_order = getattr(self.state, "in_order", None)
        if in_order is None or not in_order.blocked or self.state.deleted:
            return False
        now = datetime.now(UTC)
        if self.deferred_at is None:
            self.deferred_at = now
        latest = self.deferred_at + timedelta(seconds=self.ctx.settings.stream.reorder_wait_s)
        if now >= latest:
            return False
        self.due = latest  # or sooner: on_batch when the held event's annotated copy comes
        metrics.RANKS_DEFERRED.inc()
        return True

    def _run(self, cause: str) -> list:  # rank
        state = self.state
        store = self.store_of()
        out: list = [("ex", ex) for ex in state.flush_pending(state.last_ts, store)]
        with metrics.RANK_SECONDS_BY_CAUSE[cause].time():
            feed = rank(state, store, self.ctx, state.last_ts)
        out.extend(ranked_writes(state, feed, self.ctx))
        out.extend(_mentions(state, state.user_id, (item.author_id for item in feed.items),
                             self.reported_cap))
        return out


class SuggestionsLogic(_Debounced):
    """key = user id. Values from operators.suggestions.routing.social_messages. Emits side records
    (group members, author likers) at once; on a timer (at most once per `suggest_interval_s`, dirty
    users only) what changed (("graph", …), ("popular_user", …)) and ("suggestions", user, bytes).
    A deleted user leaves a tombstone state (("forget_social", …) emitted once). Idle users are
    parked like the users step's (`stream.user_idle_evict_s`)."""

    park_kind = "social"
    interval_setting = "suggest_interval_s"

    def __init__(self, state: SocialState | None, ctx: Context, store_of=None, timers=None):
        super().__init__(state, ctx.settings.stream.user_idle_evict_s,
                         store_of or resources.feature_store_of(ctx.settings), timers)
        self.ctx = ctx
        self.reported_cap = ctx.settings.stream.erasure_reported_per_owner  # (`_mentions`)
        self._touched()

    def on_batch(self, values):
        self.timers.input_arrived()
        if self.state is None:
            first = next((v for v in values if v[0] != "forget"), None)
            if first is None:  # erasure commands only: forget in the parked state, if any
                self.state = self._restore(values[0][1].key, self.store_of())
                if self.state is None:
                    return [], RETAIN
            else:
                user_id = first[1].user_id if first[0] == "event" else first[-1]
                self.state = self._restore(user_id, self.store_of(), signup=_signs_up(
                    first)) or SocialState(user_id)
        self._touched()
        out: list = []
        for value in values:
            if value[0] == "forget":  # erasure: a user this one mentions was deleted
                if not self.state.deleted:
                    self.state.forget(value[1].user)
                continue
            if value[0] == "event" and value[1].type == "user_deleted":  # keep a tombstone: others'
                out.append(("forget_social", self.state.user_id, list(self.state.groups),
                            sorted(self.state.authors)))
                out.extend(_unmentions(self.state, self.state.user_id))
                self.state = self._tombstone(self.state.user_id)
                self._cancel_run()
                continue  # follows / messages must not revive the deleted user's suggestions
            out.extend(self.state.learn(value))
        if any(r[0] in ("forget_social", "undeleted") for r in out):
            self._graph().remember(out)
        if self.state.deleted:
            self._touched()  # (the tombstone's idle deadline)
            return out, RETAIN
        out.extend(self._repark(values))
        self._schedule()
        return out, RETAIN

    def _tombstone(self, key: str) -> SocialState:
        return SocialState(key, deleted=True)

    def _graph(self):
        features = self.store_of()
        return (RedisGraphStore(features) if isinstance(features, RedisFeatureStore)
                else MemoryGraphStore())

    def on_eof(self):
        # A settling pass (runner.drain: the keyspace is quiet, nothing else writes what a
        # suggestion reads) computes every resident user's suggestions once more, so they no
        # longer depend on when their timer fired before or after others' last writes.
        if self.settle and self.state is not None and not self.state.deleted:
            self.due = datetime.now(UTC)
        return super().on_eof()

    def _run(self, cause: str) -> list:  # suggest
        state = self.state
        out = state.publish()  # graph record, follower count (when changed)
        graph = self._graph()
        graph.remember(out)
        suggestions = suggest(state, graph, self.store_of(), state.last_ts)
        out.append(("suggestions", state.user_id, encode_suggestions(suggestions)))
        out.extend(_mentions(state, state.user_id, mentioned_users(state, suggestions),
                             self.reported_cap))
        return out


class LikersLogic(_Evictable):
    """key = author. Values from `operators.suggestions.likers.likers_messages` and ("forget",
    Command) (erasure); emits the likers write records of that author's key, and ("mentions",
    author, likers) with the likers it writes (operators.erasure: a liker's deletion must reach
    every author whose set holds them, not only those their capped state names).

    A deleted author keeps a tombstone that drops later likes; like the per-user steps' (see
    `_Evictable`), it is dropped when idle and restored from the deleted users' set by the
    author's next input. An author whose batch deleted or re-created them stays resident until
    idle, so a like soon after a re-creation is not checked against a set that may not show it
    yet. Any other author's state is discarded after each batch (it holds nothing): nothing of
    this step is ever parked (`parks`)."""

    park_kind = "likers"  # (the metrics' label)
    parks = False

    def __init__(self, state: LikersOf | None, idle_s: float = 0.0, store_of=None):
        super().__init__(state, idle_s, store_of)
        self._touched()

    def _empty(self) -> bool:
        return True  # (a live author's state holds nothing to park)

    def _tombstone(self, key: str) -> LikersOf:
        state = LikersOf()
        state.deleted = True
        return state

    def on_batch(self, values):
        first = values[0]
        state = self._resume(first[1].key if first[0] == "forget" else first[1],
                             new=lambda _: LikersOf())
        out = state.apply(values)
        written = [w for w in out if w[0] == "liker"]  # ("liker", author, liker, ts)
        if written:  # (the state holds no record of them: the erasure index dedups)
            out.append(("mentions", written[0][1], tuple(dict.fromkeys(w[2] for w in written))))
        if state.deleted or (self._idle_s() > 0 and (self.idle_at is not None or any(
                v[0] in ("forget_likers", "undeleted") for v in values))):
            self._touched()  # (resident: a tombstone, or an author deleted or re-created lately)
            return out, RETAIN
        return out, StatefulBatchLogic.DISCARD


class SearchSessionLogic(_Logic):
    """key = user. Values: the user's `search` and engagement events. At a search, scores its
    results with the user's published features (`search.published_user` + `rerank`, the reader's
    code); emits (shown, clicked) for the first click on a result within the window (whichever of
    the search and the click arrives first)."""

    def __init__(self, state: SearchSession | None, ctx: Context, store_of=None):
        super().__init__(state if state is not None else SearchSession())
        self.ctx = ctx
        self.store_of = store_of or resources.feature_store_of(ctx.settings)

    def on_batch(self, events):
        out: list = []
        features = self.store_of()
        for e in sorted(events, key=lambda e: (e.ts, e.event_id)):  # arrival order varies
            user = published_user(features, e.user_id, self.ctx) if e.type == "search" else None
            out.extend(search_clicks(self.state, e, user, features, self.ctx))
        if not self.state.searches:  # nothing to click: no state for the many who never search
            return out, StatefulBatchLogic.DISCARD
        return out, RETAIN


class SearchBlendLogic(_Logic):
    """key = "global". Values (shown, clicked). Emits ("search_blend", bytes) per batch."""

    def __init__(self, state: SearchBlend | None):
        super().__init__(state if state is not None else SearchBlend())

    def on_batch(self, clicks):
        for shown, clicked in clicks:
            self.state.learn_click(shown, clicked)
        return [self.state.write()], RETAIN


POST_CREATED = "post_created"  # the similarity step's marker of a new post: nothing to restore


def _untupled(state):
    """A similarity state pickled as (post id, ItemSimilarity), before `_Evictable` kept the key."""
    return state[1] if isinstance(state, tuple) else state


class SimilarityLogic(_Debounced):
    """key = post id. Values (post_id, [(co-touched post id, weight), …] | Command |
    `POST_CREATED`). Emits ("nbrs", post_id, neighbours) at most once per `interval_s` while the
    counts changed (`_Debounced`: a wall-clock timer, stretched in catch-up mode, and at the end
    of a bounded input; 0 = after every batch), at once after an erased neighbour is forgotten;
    on `erase_post` a `forget_nbr` command to each neighbour and ("forget_nbrs", post_id), leaving
    a tombstone. A post idle for `stream.item_idle_evict_s` is parked like the items step's (its
    counts are up to 2 × `features.neighbours` floats); `POST_CREATED` starts a new post without a
    Redis read.

    Why debounced: a touch pairs a post with the user's ~20 previous touches both ways, so each
    event changes ~40 posts' counts. Published per batch, a tailing worker (small batches) sorted
    and wrote ~40 neighbour lists per event: 18% of its time in `ItemSimilarity.top` and much of
    its Redis time (py-spy, session 18). The ranks read neighbours through a cache anyway."""

    park_kind = "nbrs"

    def __init__(self, state: ItemSimilarity | str | None, capacity: int,
                 idle_s: float = 0.0, store_of=None, interval_s: float = 0.0, stream=None,
                 timers=None):
        super().__init__(_untupled(state), idle_s, store_of, timers)
        self.capacity, self.interval_s, self.stream = capacity, interval_s, stream
        self._touched()

    def _base_interval_s(self) -> float:
        return self.interval_s

    def _stream(self):
        return self.stream

    def _restore(self, key: str, store, signup: bool = False):
        return _untupled(super()._restore(key, store, signup))

    def on_batch(self, pairs):
        created = any(v == POST_CREATED for _, v in pairs)
        self._resume(pairs[0][0], (lambda _post: ItemSimilarity(self.capacity))
                     if created else None, signup=created)
        self._touched()
        values = [v for _, v in pairs if v != POST_CREATED]
        if self.state == ERASED or not values:  # an erased post: later pairs (from stale
            return [], RETAIN  # histories) are dropped
        if self.state is None:
            if all(isinstance(v, Command) for v in values):
                return [], RETAIN  # erasure commands for a post without neighbours
            self.state = ItemSimilarity(self.capacity)
        post_id, similarity, forgot = self.key, self.state, False
        for value in values:
            if not isinstance(value, Command):
                for other, weight in value:
                    similarity.learn_one(other, weight)
            elif value.kind == "erase_post":  # tell the neighbours (they name it), then go
                out = [("cmd", Command("forget_nbr", q, value.user, (post_id,)))
                       for q in sorted(similarity.counts)]
                self.state = ERASED
                self._cancel_run()
                return out + [("forget_nbrs", post_id)] + self._rewrite_parked(), RETAIN
            else:  # forget_nbr: an erased neighbour
                similarity.forget(value.posts[0])
                forgot = True
        if forgot:  # (erasure: its post leaves the list, and the parked copy, at once)
            return self._run_now("batch") + self._rewrite_parked(), RETAIN
        if self._interval_s() <= 0:
            return self._run_now("batch"), RETAIN
        self._schedule()
        return [], RETAIN

    def _run(self, cause: str) -> list:  # publish
        if not isinstance(self.state, ItemSimilarity):
            return []
        return [("nbrs", self.key, self.state.top())]


class GlobalModelLogic(_Logic):
    """key = "global". Values: Examples from every user. Emits ("model", weights) per batch."""

    def __init__(self, state: OnlineLogit | None, ctx: Context):
        super().__init__(state if state is not None else OnlineLogit(
            FEATURES, prior=PRIOR, learning_rate=ctx.settings.feed.learning_rate))

    def on_batch(self, examples):
        for ex in examples:  # prequential: score each example before learning it
            metrics.MODEL_LOSS.observe(self.state.predict_proba_one(ex.x), ex.y, ex.w)
            ex.apply(self.state)
        return [("model", self.state.export())], RETAIN


class ExperimentUserLogic(_Evictable):
    """key = user id. Values ("experiment/arm", counter, key) | ("created", key) | ("deleted", key)
    (operators.experiments.counts.arm_messages). Emits, per batch and arm cell, the change of the
    arm's totals (operators.experiments.counts.UserCounts): ("experiment/arm", delta). An idle user
    is parked like in the users step (`_Evictable`; a sign-up reads no parked copy); a deleted
    user's parked copy is deleted and their state stays a tombstone, never parked (dropped and
    restored as `_Evictable` says)."""

    park_kind = "expuser"

    def __init__(self, state: UserCounts | None, idle_s: float = 0.0, store_of=None):
        super().__init__(state, idle_s, store_of)
        self._touched()

    def _empty(self) -> bool:  # (a tombstone is not: it stays)
        return not (self.state.cells or self.state.deleted)

    def _tombstone(self, key: str) -> UserCounts:
        state = UserCounts()
        state.deleted = True
        return state

    def on_batch(self, values):
        key = values[0][-1]
        self._resume(key, lambda _key: UserCounts(), signup=values[0][0] == "created")
        out: list = []
        for value in values:
            if value[0] == "deleted":  # their parked copy goes (its key names them)
                self.state.deleted = True
                out.extend(self._unpark(key))
            elif value[0] == "created":
                self.state.deleted = False
        out.extend(self.state.learn_many([v[:2] for v in values if v[0] not in (
            "created", "deleted")]).items())
        self._touched()
        return out, self._retention()


class ArmCountsLogic(_Logic):
    """key = "experiment/arm". Values: (key, delta) from ExperimentUserLogic. Emits the arm's exact
    totals per batch, ("arm_counts", experiment, arm, totals), and sets their gauges."""

    def __init__(self, state: ArmCounts | None):
        super().__init__(state if state is not None else ArmCounts())

    def on_batch(self, values):
        for _, delta in values:
            self.state.add(delta)
        experiment, arm = values[0][0].split("/", 1)
        totals = self.state.to_dict()
        metrics.set_arm_counts(experiment, arm, totals)
        return [("arm_counts", experiment, arm, totals)], RETAIN


class ErasureLogic(_Evictable):
    """key = user id. Values ("post", post_id, key) | ("mention", owner, key) | ("ended_follow",
    owner, key) (the owner's followers list names the user) | ("unmention", deleted owner, key) |
    ("deleted", key) | ("created", key) (operators.erasure.MentionIndex; the key last: builders
    do not get it); mentions, ended follows and unmentions arrive grouped per batch as
    ("mentioned", ((kind, owner), …), key) (`operators.erasure.mention_messages`).
    Emits erasure Commands for the flow's command topic, and ("park", …) writes: an idle index is
    parked like an idle user's (`_Evictable`; a sign-up reads no parked copy), an empty one dropped.
    An index past its resident owners (a user everyone mentions, who never idles) spills the
    oldest to a Redis set (("spill_owners", …) writes), read back at the deletion.

    A deleted user's index (the tombstone that answers late mentions with commands) is never
    parked, and its parked copy is deleted at the deletion: parked, it would put the deleted
    user's id (in the key) and their post ids back in Redis, which erasure empties of them
    (schemas.keyspace `deleted_users`). It stays resident until idle for
    `stream.tombstone_idle_evict_s`; then it is dropped, and a mention reported later restores a
    tombstone from the deleted users' set (`_tombstone`), which answers without the post ids."""

    park_kind = "erasure"

    def __init__(self, state: MentionIndex | None, idle_s: float = 0.0, store_of=None,
                 resident_owners: int = RESIDENT_OWNERS, posts_per_author: int = MAX_POSTS):
        super().__init__(state, idle_s, store_of)
        self.resident_owners, self.posts_per_author = resident_owners, posts_per_author
        self._touched()

    def _empty(self) -> bool:  # (a tombstone without posts is not: it stays)
        return not (self.state.deleted or self.state.owners or self.state.posts)

    def _tombstone(self, key: str) -> MentionIndex:
        """Restored from the deleted set, without the posts the dropped one named: a mention
        reported that late is answered without them (their item tombstones drop their events)."""
        state = MentionIndex(key)
        state.deleted = True
        return state

    def on_batch(self, values):
        out: list = []
        unmentioned = False
        self._resume(values[0][-1], MentionIndex, signup=values[0][0] == "created")
        for value in ungrouped(values):
            kind = value[0]
            if kind == "post":
                out.extend(self.state.learn_post(value[1], self.posts_per_author))
            elif kind in ("mention", "ended_follow"):
                out.extend(self.state.learn_mention(
                    value[1], "forget" if kind == "mention" else "forget_follower",
                    self.resident_owners))
            elif kind == "unmention":  # the owner was deleted (in a parked index too)
                removed = self.state.drop_owner(value[1])
                if removed:
                    out.append(("unspill_owners", self.key, removed))
                unmentioned = True
            elif kind == "deleted":
                spilled = self.state.spilled
                out.extend(self.state.delete(
                    self.store_of().spilled_owners(self.key) if spilled else None))
                if spilled:
                    out.append(("forget_owners", self.key))
                out.extend(self._unpark(value[-1]))
            else:
                self.state.undelete()
        spill = self.state.take_spill()
        if spill:
            self.store_of().spilling_owners(self.key, spill)
            out.append(("spill_owners", self.key, spill))
        if unmentioned:  # the parked copy it was restored from still names the deleted owner
            out.extend(self._rewrite_parked())
        self._touched()
        return out, self._retention()


class NotificationLogic(_Evictable):
    """key = recipient. Values ("self", Event, author) | ("cand", Candidate) | ("withdraw",
    Candidate) (a new post's delivery taken back) | ("forget", Command) (operators.notifications).

    Emits ("decision", record) per decision, ("notif_ex", (x, y)) per feedback label for the global
    model, and per batch the recipient's whole inbox ("notifs", user, bytes) or ("forget_notifs",
    user) once the recipient is deleted (the state stays as a small tombstone: later candidates
    are suppressed with reason recipient_deleted).
    """

    park_kind = "notif"

    def __init__(self, state: RecipientState | None, policy: Policy, weights, policy_of=None,
                 idle_s: float = 0.0, store_of=None, reported_cap: int = MAX_REPORTED):
        super().__init__(state, idle_s, store_of)
        self.policy, self.weights = policy, weights
        self.reported_cap = reported_cap  # stream.erasure_reported_per_owner
        self.policy_of = policy_of or (lambda _user: policy)  # the recipient's experiment arm's
        self._touched()

    def on_batch(self, values):
        if self.state is None:
            v = next((v for v in values if v[0] not in ("forget", "withdraw")), None)
            user = recipient_of(values[0] if v is None else v)
            self.state = self._restore(user, self.store_of(), signup=v is not None and _signs_up(
                v)) if self.store_of else None
            if self.state is None:
                if v is None:  # erasure commands or withdrawals for a user with no state:
                    return [], RETAIN  # nothing to forget or withdraw
                self.state = RecipientState(user, self.policy_of(user))
        self._touched()
        state, exported = self.state, self.weights.get()
        # A resumed state follows the current [notifications] config (of the recipient's arm).
        state.policy = self.policy_of(state.user_id)
        was_deleted, out, changed = state.deleted, [], False
        for value in values:
            if value[0] == "forget":  # erasure: an actor this recipient mentions was deleted
                if not state.deleted:
                    changed = state.forget(value[1].user, value[1].posts) or changed
                continue
            if value[0] == "cand" and not state.deleted:  # (a tombstone mentions nobody: its
                out.extend(_mentions(state, state.user_id, (value[1].actor,),  # owner is gone)
                                     self.reported_cap))
            records, examples = notif_handle(state, value, usable(exported, value[1].ts))
            out.extend(("decision", r) for r in records)
            out.extend(("notif_ex", (x, y, state.last_ts)) for x, y in examples)
            changed = changed or bool(records)
        if state.deleted and not was_deleted:
            out.append(("forget_notifs", state.user_id))
            out.extend(_unmentions(state, state.user_id))
            self._touched()  # (the tombstone's idle deadline)
        elif changed and not state.deleted:
            out.append(("notifs", state.user_id,
                        encode_inbox(state.user_id, state.last_ts, state.inbox())))
        out.extend(self._repark(values))
        return out, RETAIN

    def _tombstone(self, key: str) -> RecipientState:
        state = RecipientState(key, self.policy_of(key))
        state.deleted = True
        return state


class AudienceLogic(_Logic):
    """key = "topic:{t}" | "group:{g}". Values from operators.notifications.trending
    .audience_messages. Emits (recipient, ("cand", Candidate)) for each trending post."""

    def __init__(self, state: Audience | None, rule: TrendingRule, affinity):
        super().__init__(state if state is not None else Audience(rule, affinity))
        self.state.rule = rule  # a resumed audience follows the current config

    def on_batch(self, values):
        out: list = []
        for value in values:
            out.extend(self.state.learn(value))
        return out, RETAIN


class NotifModelLogic(_Logic):
    """key = "global". Values: (x, y, event time) labels from every recipient. Emits ("notif_model",
    weights) with "ts", the newest label's event time (see driver.usable)."""

    def __init__(self, state: NotifGlobalModel | None, policy: Policy, weights):
        super().__init__(state if state is not None else NotifGlobalModel(policy))
        self.weights = weights

    def on_batch(self, examples):
        self.state.learn(examples)
        exported = self.state.export()
        self.weights.put(exported)
        return ([("notif_model", exported)] if exported else []), RETAIN


class LocalNotifWeights:
    """The global P(open) weights shared in-process (tests and in-memory runs)."""

    def __init__(self):
        self.value: dict | None = None

    def get(self) -> dict | None:
        return self.value

    def put(self, value: dict | None) -> None:
        self.value = value


class RedisNotifWeights(LocalNotifWeights):
    """The global P(open) weights as published to Redis, cached per process for `ttl_s`; fails open
    (the prior) while Redis is unreachable, since a notification decision must not stop the flow."""

    def __init__(self, settings, ttl_s: float = 1.0):
        super().__init__()
        self.settings, self.ttl_s, self.read_at = settings, ttl_s, float("-inf")

    def get(self) -> dict | None:
        now = time.monotonic()
        if now - self.read_at >= self.ttl_s:
            self.read_at = now
            try:
                raw = resources.client(self.settings.redis).get(
                    resources.keyspace(self.settings).notif_model)
                self.value = orjson.loads(raw) if raw else self.value
            except Exception as exc:  # noqa: BLE001 - fail open, logged
                log.warning("notification model weights unavailable (%s); using the last ones", exc)
        return self.value

    def put(self, value: dict | None) -> None:
        pass  # published through the Redis sink


# ------------------------------------------------------------------------------------------- sinks
def note_dataflow_end(worker_index: int) -> None:
    """Tell the runner (`scripts.runner.supervise`) that this worker's dataflow has ended, so it
    can kill the process once all its workers have, if Bytewax then hangs on its way out
    (PERSONA_ENDED_DIR; else nothing). Per worker: with `-w 2` one worker's sink can close while
    the other's still writes its last batch."""
    ended = os.environ.get("PERSONA_ENDED_DIR")
    if ended:
        with contextlib.suppress(OSError):
            Path(ended, f"{os.getpid()}.{worker_index}").touch()


class _RedisPartition(StatelessSinkPartition):
    def __init__(self, settings, worker_index: int = 0):
        self.writer = resources.redis_writer(settings)
        self.worker_index = worker_index

    @failures.reported
    def write_batch(self, items):
        self.writer.write_batch(items)
        metrics.count_writes(items)

    def close(self):  # at the end of a bounded input: every write of this worker is applied
        note_dataflow_end(self.worker_index)


class RedisSink(DynamicSink):
    """Applies write records (see operators.redis_store) in one pipeline per batch, per worker."""

    def __init__(self, settings):
        self.settings = settings

    def build(self, step_id, worker_index, worker_count):
        return _RedisPartition(self.settings, worker_index)
