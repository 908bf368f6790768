"""The dataflow list-in/list-out (Bytewax TestingSource/TestingSink, no services): the feature
store is an in-memory one fed by the flow's own write records."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import orjson
import pytest
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSink, TestingSource, run_main

import config
from flows import metrics
from flows.adapters import ErasureLogic
from flows.feeds import build_flow
from operators.feature_store import MemoryFeatureStore
from schemas import Event, encode_event
from schemas.erasure import Command

T = 1_767_225_600_000


@pytest.fixture(autouse=True)
def _tombstones_kept():
    """Tombstones stay resident unless a test says otherwise: `build_flow` sets the class-wide
    `stream.tombstone_idle_evict_s`, which would otherwise leak from one test into the next."""
    from flows.adapters import _Evictable

    before, _Evictable.tombstone_idle_s = _Evictable.tombstone_idle_s, 0.0
    yield
    _Evictable.tombstone_idle_s = before


class _Apply(StatelessSinkPartition):
    def __init__(self, store, feeds):
        self.store, self.feeds = store, feeds

    def write_batch(self, items):
        for w in items:
            if w[0] == "item":
                self.store.put_item(w[1])
            elif w[0] == "nbrs":
                self.store.put_neighbours(w[1], w[2])
            elif w[0] == "model":
                self.store.put_global_model(w[1])
            elif w[0] == "feed":
                self.feeds[w[1]] = orjson.loads(w[2])
            elif w[0] == "forget_user":
                self.feeds.pop(w[1], None)
            elif w[0] == "park":
                self.store.put_parked(w[1], w[2], w[3])
            elif w[0] == "spill_owners":
                self.store.put_owners(w[1], w[2], [])
            elif w[0] == "unspill_owners":
                self.store.put_owners(w[1], [], w[2])
            elif w[0] == "forget_owners":
                self.store.forget_owners(w[1])


class MemoryWrites(DynamicSink):
    """Applies the flow's write records to a MemoryFeatureStore + a dict of feeds."""

    def __init__(self):
        self.store, self.feeds = MemoryFeatureStore(), {}

    def build(self, step_id, worker_index, worker_count):
        return _Apply(self.store, self.feeds)


def events() -> list[Event]:
    return [
        Event("e1", "user_created", T, "u1", interests=("t1",)),
        Event("e2", "post_created", T + 1, "u2", post_id="p1", topics=("t1",)),
        Event("e3", "follow", T + 2, "u1", target_id="u3"),
        Event("e4", "post_created", T + 3, "u3", post_id="p2", topics=("t2",)),
        Event("e5", "like", T + 4, "u4", post_id="p1"),
        Event("e6", "block", T + 5, "u1", target_id="u5"),
        Event("e7", "post_created", T + 6, "u5", post_id="p3", topics=("t1",)),
        Event("e8", "like", T + 7, "u4", post_id="p3"),
    ]


@pytest.fixture
def run():
    def go(payloads):
        writes, dead, decisions = MemoryWrites(), [], []
        flow = build_flow(config.load(env={}), source=TestingSource(payloads),
                          dead_letters=TestingSink(dead), writes=writes,
                          store_of=lambda: writes.store, notifications=TestingSink(decisions))
        run_main(flow)
        return writes, dead
    return go


def test_feeds_fan_out_and_filters(run):
    writes, dead = run([encode_event(e) for e in events()])
    assert dead == []
    u1 = [i["post_id"] for i in writes.feeds["u1"]["items"]]
    assert "p2" in u1, "a followed author's post is delivered"
    assert "p3" not in u1, "a blocked author's post is never served"
    reasons = {r["code"] for i in writes.feeds["u1"]["items"] for r in i["reasons"]}
    assert reasons
    assert writes.feeds["u1"]["generated_at"] == T + 5  # its newest event time, not wall clock


def test_invalid_and_duplicate_events_become_dead_letters(run):
    good = [encode_event(e) for e in events()]
    writes, dead = run(good + [b"{nope", b'{"event_id":"x"}', good[4]])
    assert [d.reason.split(":")[0] for d in dead] == [
        "invalid JSON", "missing envelope field 'type'", "duplicate event_id 'e5'"]
    assert writes.store.items(["p1"])["p1"].likes == 1  # the duplicate like counted once


def test_the_dedup_window_is_stream_dedup_capacity_over_all_shards():
    """`stream.dedup_capacity` ids in all, each of the `dedup_shards` keeping its share (the
    config and README say so): with 64 ids over 4 shards, a repeat 15 of its actor's events later
    is caught, one 16 later (out of the actor's shard's 16) is not."""
    settings = config.load(env={"PERSONA_STREAM__DEDUP_CAPACITY": "64",
                                "PERSONA_STREAM__DEDUP_SHARDS": "4"})

    def dead_letters(gap: int) -> list:
        views = [Event(f"v{i}", "impression", T + i, "u1", post_id="p1") for i in range(gap)]
        first = Event("e0", "user_created", T, "u1", interests=("t1",))
        payloads = [encode_event(e) for e in [first, *views]] + [encode_event(first)]
        dead: list = []
        run_main(build_flow(settings, source=TestingSource(payloads),
                            dead_letters=TestingSink(dead), writes=MemoryWrites()))
        return [d.reason for d in dead]

    assert dead_letters(15) == ["duplicate event_id 'e0'"]
    assert dead_letters(16) == []


def test_user_deleted_removes_the_feed(run):
    payloads = [encode_event(e) for e in events()]
    payloads.append(encode_event(Event("e9", "user_deleted", T + 9, "u4")))
    writes, _ = run(payloads)
    assert "u4" not in writes.feeds and "u1" in writes.feeds


def test_a_deleted_user_is_not_revived_by_later_deliveries(run):
    # u1 follows u3, is deleted, then u3 posts: the fan-out delivery must not create a new feed
    payloads = [encode_event(e) for e in events()]
    payloads += [encode_event(Event("e9", "user_deleted", T + 9, "u1")),
                 encode_event(Event("e10", "post_created", T + 10, "u3", post_id="p4")),
                 encode_event(Event("e11", "like", T + 11, "u1", post_id="p1"))]
    writes, _ = run(payloads)
    assert "u1" not in writes.feeds


def test_a_timer_cancelled_by_user_deleted_writes_nothing():
    # Bytewax can still call on_notify for a timer that was due when the activation began, after
    # the on_batch that deleted the user: that must not write a feed after the forget_user.
    from flows.adapters import UserLogic
    from operators import Context

    store = MemoryFeatureStore()
    logic = UserLogic(None, Context.from_settings(config.load(env={})), lambda: store)
    logic.on_batch([("event", Event("e1", "follow", T, "u1", target_id="u2"), None)])
    assert logic.notify_at() is not None
    out, _ = logic.on_batch([("event", Event("e2", "user_deleted", T + 1, "u1"), None)])
    # (u2's erasure index and followers list drop u1: operators/erasure.py)
    assert out == [("forget_user", "u1"), ("unmentions", "u1", ("u2",)),
                   ("cmd", Command("forget_follower", "u2", "u1"))]
    assert logic.on_notify()[0] == [] and logic.on_eof()[0] == []
    late, _ = logic.on_batch([("event", Event("e3", "follow", T + 2, "u1", target_id="u4"), None)])
    assert late == [("cmd", Command("forget_follower", "u4", "u1"))], "a lagging producer's follow"


def test_a_pending_rank_survives_a_restart(monkeypatch):
    # Bytewax snapshots states, not timers: a user dirty at the snapshot must still be ranked
    from flows.adapters import UserLogic, _Logic
    from operators import Context

    monkeypatch.setattr(_Logic, "recovery", True)
    store, ctx = MemoryFeatureStore(), Context.from_settings(config.load(env={}))
    logic = UserLogic(None, ctx, lambda: store)
    logic.on_batch([("event", Event("e1", "follow", T, "u1", target_id="u2"), None)])
    resumed = UserLogic.builder(ctx, lambda: store)(logic.snapshot())
    assert resumed.notify_at() is not None and resumed.state.user_id == "u1"
    out, _ = resumed.on_notify()
    assert [o[0] for o in out if o[0] == "feed"] == ["feed"]
    logic.on_notify()  # ranked: no rank pending any more, only the idle-eviction deadline
    again = UserLogic.builder(ctx, lambda: store)(logic.snapshot())
    assert again.due is None and again.notify_at() == again.idle_at is not None


def test_due_ranks_past_the_timer_budget_wait_for_a_later_slot_and_the_next_input():
    # A catch-up sweep must not rank every due user before reading input again
    # (operators/pacing.py): past the budget a due user is put off, not ranked, and ranked later.
    from flows.adapters import UserLogic
    from operators import Context
    from operators.pacing import TimerBudget

    store, ctx = MemoryFeatureStore(), Context.from_settings(config.load(env={}))
    clock = [0.0]
    budget = TimerBudget(0.5, clock=lambda: clock[0])
    logics = [UserLogic(None, ctx, lambda: store, budget) for _ in range(3)]
    for i, logic in enumerate(logics):
        logic.on_batch([("event", Event(f"e{i}", "follow", T, f"u{i}", target_id="u9"), None)])
    budget.spend(0.6)  # the sweep's first ranks took the budget
    put_off_before = metrics.TIMERS_PUT_OFF._value.get()
    out, _ = logics[0].on_notify()
    assert out == [] and logics[0].due > datetime.now(UTC), "put off to a slot, not ranked"
    assert metrics.TIMERS_PUT_OFF._value.get() == put_off_before + 1
    logics[0].due = datetime.now(UTC)
    logics[0].on_notify()  # put off again: still one key waiting (the gauge counts keys)
    logics[1].due = datetime.now(UTC)
    logics[1].on_notify()
    assert budget.waiting == 2
    logics[1].on_batch([("event", Event("e7", "like", T + 1, "u1", post_id="p1"), None)])
    logics[2].due = datetime.now(UTC)  # (due now: the next input batch restored the budget)
    out, _ = logics[2].on_notify()
    assert [o[0] for o in out if o[0] == "feed"] == ["feed"]
    logics[0].due = datetime.now(UTC)
    logics[0].on_notify()  # ranked at last: no longer waiting
    logics[1].on_batch([("event", Event("e8", "user_deleted", T + 2, "u1"), None)])
    assert budget.waiting == 0, "a key ranked or deleted is not waiting any more"


class CountingStore(MemoryFeatureStore):
    """Counts the parked-state reads (each is a Redis GET in production)."""

    def __init__(self):
        super().__init__()
        self.reads = 0

    def parked(self, kind, key):
        self.reads += 1
        return super().parked(kind, key)


def _user_logic(store, **env):
    from flows.adapters import UserLogic
    from operators import Context

    ctx = Context.from_settings(config.load(env={f"PERSONA_STREAM__{k.upper()}": str(v)
                                                 for k, v in env.items()}))
    return UserLogic(None, ctx, lambda: store)


def test_a_user_reading_a_stale_feed_is_ranked_first_in_the_batch():
    """The choice set an impression is labelled against holds every input before it, whether or
    not the timer ranked in between."""
    from operators.item_stats import ItemView

    store = MemoryFeatureStore()
    p1 = ItemView("p1", "u2", ("music",), created_ts=T + 1)
    store.put_item(p1)
    logic = _user_logic(store, seen_rerank_s=30)
    out, _ = logic.on_batch([("event", Event("e1", "follow", T, "u1", target_id="u2"), None),
                             ("deliver", "u1", "p1", T + 1)])
    assert [o for o in out if o[0] == "feed"] == [] and logic.state.feed_stale
    out, _ = logic.on_batch([("event", Event("e2", "impression", T + 2, "u1", post_id="p1"),
                              p1),
                             ("event", Event("e3", "impression", T + 3, "u1", post_id="p2"),
                              None)])
    feeds = [o for o in out if o[0] == "feed"]
    assert len(feeds) == 1, "one rank, before the first impression: the second reads the same feed"
    assert orjson.loads(feeds[0][2])["generated_at"] == T + 1, "ranked before the impression"
    assert not logic.state.feed_stale and "p1" in logic.state.choice
    assert logic.due is not None, "the impressions re-rank later (seen_rerank_s), on the timer"
    out, _ = logic.on_batch([("event", Event("e4", "impression", T + 4, "u1", post_id="p3"),
                              None)])
    assert [o for o in out if o[0] == "feed"] == [], "a fresh feed is not ranked again"
    out, _ = logic.on_batch([("event", Event("e5", "like", T + 5, "u1", post_id="p1"), p1)])
    assert [o[0] for o in out].count("ex") == 1, "the like is a choice among the feed read"


def test_an_idle_user_is_parked_dropped_and_restored_at_its_next_event():
    from datetime import datetime, timedelta

    from bytewax.operators import StatefulBatchLogic

    store = MemoryFeatureStore()
    logic = _user_logic(store, user_idle_evict_s=600)
    logic.on_batch([("event", Event("e1", "follow", T, "u1", target_id="u2"), None),
                    ("event", Event("e2", "like", T + 1, "u1", post_id="p9"), None)])
    assert logic.notify_at() == logic.due, "a dirty user is ranked first, never evicted"
    out, keep = logic.on_notify()
    assert "feed" in [o[0] for o in out] and keep == StatefulBatchLogic.RETAIN
    assert logic.notify_at() == logic.idle_at > datetime.now(UTC) + timedelta(seconds=590)
    logic.idle_at = datetime.now(UTC) - timedelta(seconds=1)  # 10 idle minutes later
    out, keep = logic.on_notify()
    assert keep == StatefulBatchLogic.DISCARD and [o[:3] for o in out] == [("park", "user", "u1")]
    store.put_parked("user", "u1", out[0][3])

    back = _user_logic(store, user_idle_evict_s=600)  # Bytewax builds a new logic for the key
    back.on_batch([("event", Event("e3", "like", T + 2, "u1", post_id="p8"), None)])
    assert back.state.following == {"u2"} and back.state.events == 3
    assert back.state.seen.contains_many(["p9"]).tolist() == [True], "seen posts stay out of the feed"
    assert _user_logic(MemoryFeatureStore(), user_idle_evict_s=0).notify_at() is None


def _evicted_user(store):
    """u1 (following u2) ranked, then idle past `user_idle_evict_s`: the logic's eviction output."""
    from datetime import datetime, timedelta

    logic = _user_logic(store, user_idle_evict_s=600)
    logic.on_batch([("event", Event("e1", "follow", T, "u1", target_id="u2"), None)])
    logic.on_notify()
    logic.idle_at = datetime.now(UTC) - timedelta(seconds=1)
    return logic.on_notify()


def test_a_user_back_before_the_park_write_lands_gets_the_parked_state():
    # the park record reaches Redis through the sink, later in the same activation: the key's
    # next input in that batch must not start the user cold
    store = MemoryFeatureStore()
    out, _ = _evicted_user(store)
    assert [o[:3] for o in out] == [("park", "user", "u1")]  # not applied to the store
    back = _user_logic(store, user_idle_evict_s=600)
    back.on_batch([("event", Event("e2", "like", T + 2, "u1", post_id="p8"), None)])
    assert back.state.following == {"u2"} and back.state.events == 2
    cold = _user_logic(store, user_idle_evict_s=600)  # taken once: the store's copy after that
    cold.on_batch([("event", Event("e3", "like", T + 3, "u1", post_id="p7"), None)])
    assert cold.state.events == 1


def test_recent_parks_are_taken_once_within_their_window_and_capped():
    from operators.feature_store import RecentParks

    parks = RecentParks(window_s=60.0, capacity=2)
    parks.add("user", "a", b"1")
    parks.add("user", "a", b"2")  # a newer park of the same key replaces it
    assert parks.take("user", "a") == b"2" and parks.take("user", "a") is None
    for user in "bcd":
        parks.add("user", user, user.encode())
    assert parks.take("user", "b") is None and parks.take("user", "d") == b"d"  # oldest dropped
    stale = RecentParks(window_s=-1.0)
    stale.add("notif", "a", b"1")
    assert stale.take("notif", "a") is None  # landed long ago: the stored copy is the truth


def test_a_signup_reads_no_parked_state_and_other_new_keys_do():
    # a new account (its first input its own user_created) costs no Redis read; any other first
    # input of a key not in memory (a returning user, a delivery) still looks for a parked state
    store = CountingStore()
    new = _user_logic(store, user_idle_evict_s=600)
    new.on_batch([("event", Event("e1", "user_created", T, "u1", interests=("t1",)), None),
                  ("event", Event("e2", "follow", T + 1, "u1", target_id="u2"), None)])
    assert store.reads == 0 and new.state.interests == ("t1",)
    back = _user_logic(store, user_idle_evict_s=600)
    back.on_batch([("deliver", "u3", "p1", T)])
    assert store.reads == 1 and back.state.pool == {"p1": T}

    from flows.adapters import LocalNotifWeights, NotificationLogic, SuggestionsLogic
    from operators import Context
    from operators.notifications.policy import Policy

    settings = config.load(env={"PERSONA_STREAM__USER_IDLE_EVICT_S": "600"})
    signup = Event("e1", "user_created", T, "u4")
    SuggestionsLogic(None, Context.from_settings(settings), lambda: store).on_batch(
        [("event", signup, None, (), None)])
    NotificationLogic(None, Policy.from_settings(settings), LocalNotifWeights(), None, 600.0,
                      lambda: store).on_batch([("self", signup, None)])
    assert store.reads == 1, "the other evicting steps skip the read for a sign-up too"
    NotificationLogic(None, Policy.from_settings(settings), LocalNotifWeights(), None, 600.0,
                      lambda: store).on_batch([("self", Event("e2", "follow", T, "u5",
                                                                target_id="u4"), None)])
    assert store.reads == 2


def test_seen_only_events_defer_the_rerank():
    from datetime import datetime, timedelta

    store = MemoryFeatureStore()
    logic = _user_logic(store, seen_rerank_s=30)
    logic.on_batch([("event", Event("e1", "impression", T, "u1", post_id="p1"), None)])
    assert logic.due > datetime.now(UTC) + timedelta(seconds=25)
    logic.on_batch([("event", Event("e2", "like", T + 1, "u1", post_id="p1"), None)])
    assert logic.due <= datetime.now(UTC), "an engagement re-ranks at the next batch"


def test_a_user_waiting_for_a_held_event_is_ranked_once_it_comes_not_before():
    # ranking while the user's later events queue behind a like held for its post would serve
    # (and learn from) a feed of a state that lacks them
    from datetime import datetime, timedelta

    from operators.item_stats import ItemView

    store = MemoryFeatureStore()
    logic = _user_logic(store, reorder_wait_s=5)
    like = Event("e2", "like", T + 1, "u1", post_id="p1")
    logic.on_batch([("event", Event("e1", "follow", T, "u1", target_id="u2"), None),
                    ("await", like), ("event", Event("e3", "follow", T + 2, "u1",
                                                     target_id="u3"), None)])
    assert logic.state.following == {"u2"} and logic.state.in_order.blocked
    out, _ = logic.on_notify()
    assert out == [], "no rank while blocked"
    assert datetime.now(UTC) + timedelta(seconds=4) < logic.due, "at the latest after the wait"
    logic.on_batch([("annotated", like, ItemView("p1", "u9", ("t1",), None, T, 0.0, 0, 0,
                                                 False))])
    assert logic.state.following == {"u2", "u3"} and logic.due <= datetime.now(UTC)
    out, _ = logic.on_notify()
    assert "feed" in [o[0] for o in out]
    # blocked past the bound: ranked anyway (a chain of holds must not starve the feed)
    logic.on_batch([("await", Event("e4", "like", T + 3, "u1", post_id="p2"))])
    logic.deferred_at = datetime.now(UTC) - timedelta(seconds=6)
    logic.due = datetime.now(UTC)
    assert "feed" in [o[0] for o in logic.on_notify()[0]]


def test_a_user_reports_the_author_of_a_post_whose_event_was_given_up():
    # a like applied without its post's author (held past reorder_lag_s) puts the post in the
    # user's history; when the post's copy comes, the author is reported to the erasure index,
    # so the author's deletion reaches this user and the post leaves the history
    from operators.item_stats import ItemView

    logic = _user_logic(MemoryFeatureStore(), reorder_lag_s=30)
    like = Event("e1", "like", T, "u1", post_id="p1")
    later = Event("e2", "follow", T + 60_000, "u1", target_id="u2")
    out, _ = logic.on_batch([("await", like), ("held", like), ("event", later, None)])
    assert "p1" in logic.state.history, "given up: applied in its place, unannotated"
    assert ("mentions", "u1", ("u2",)) in out and not any("u9" in str(o) for o in out)
    out, _ = logic.on_batch([("annotated", like, ItemView("p1", "u9", ("t1",), None, T, 0.0, 0,
                                                          0, False))])
    assert ("mentions", "u1", ("u9",)) in out
    assert logic.state.topic_aff == {}, "the late copy is not applied a second time"


def test_the_flow_parks_idle_users_of_every_evicting_step():
    # the park records of the users, suggestions and notifications steps all reach the Redis sink
    from datetime import timedelta

    writes = MemoryWrites()
    settings = config.load(env={"PERSONA_STREAM__USER_IDLE_EVICT_S": "0.2",
                                "PERSONA_STREAM__RANK_INTERVAL_S": "0.05",
                                "PERSONA_STREAM__SUGGEST_INTERVAL_S": "0.05"})  # dirty: not evicted
    payloads = [encode_event(e) for e in events()[:3]]
    flow = build_flow(settings, source=TestingSource(
        payloads + [TestingSource.PAUSE(timedelta(seconds=1.5)),
                    encode_event(Event("e9", "like", T + 9, "u9", post_id="p1"))]),
        dead_letters=TestingSink([]), writes=writes, store_of=lambda: writes.store,
        notifications=TestingSink([]))
    run_main(flow)
    for kind in ("user", "social", "notif"):
        assert writes.store.parked(kind, "u1") is not None, kind


def test_erasure_reaches_a_parked_user_state():
    # a user evicted before another user's deletion still forgets them: the command restores it
    from schemas.erasure import Command

    store = MemoryFeatureStore()
    park = _evicted_user(store)[0][-1]
    store.put_parked("user", "u1", park[3])
    back = _user_logic(store, user_idle_evict_s=600)
    back.on_batch([("forget", Command("forget", "u1", "u2", ()))])
    assert back.state is not None and "u2" not in back.state.following
    assert back.due is not None, "re-ranked without the deleted user's posts"
    assert _user_logic(MemoryFeatureStore()).on_batch(
        [("forget", Command("forget", "u9", "u2", ()))])[0] == []


def test_the_items_step_says_which_events_it_holds_past_their_batch():
    # the user gives up waiting only for those (operators.reorder.InOrder); an event whose post
    # came in the same batch is in transit, not held
    from flows.adapters import ItemLogic
    from operators import Context

    logic = ItemLogic(None, Context.from_settings(config.load(env={})))
    like = Event("e2", "like", T + 1, "u1", post_id="p1")
    created = Event("e1", "post_created", T, "u9", post_id="p1", topics=("t1",))
    out, _ = logic.on_batch([like, created])
    assert "held" not in [o[0] for o in out]
    logic = ItemLogic(None, Context.from_settings(config.load(env={})))
    out, _ = logic.on_batch([like])
    assert out == [("held", like)]
    out, _ = logic.on_batch([created])
    assert [(o[0], o[1].event_id) for o in out if o[0] == "user"] == [("user", "e1"), ("user", "e2")]
    assert "held" not in [o[0] for o in out], "told once"


def test_the_items_step_holds_nothing_after_the_posts_creation_in_the_same_batch():
    # a batch may bring a post's events before and after its post_created (the dedup step is
    # sharded by actor): those after it were held until the wall-clock deadline
    from flows.adapters import ItemLogic
    from operators import Context

    logic = ItemLogic(None, Context.from_settings(config.load(env={})))
    before = Event("e2", "impression", T + 1, "u1", post_id="p1")
    created = Event("e1", "post_created", T, "u9", post_id="p1", topics=("t1",))
    after = Event("e3", "like", T + 2, "u2", post_id="p1")
    out, _ = logic.on_batch([before, created, after])
    assert [o[1].event_id for o in out if o[0] == "user"] == ["e1", "e2", "e3"]
    assert [o[2].author_id for o in out if o[0] == "user"][1:] == ["u9", "u9"]
    assert not logic.state[1] and logic.notify_at() is None, "nothing held"


def _item_logic(store):
    from flows.adapters import ItemLogic
    from operators import Context

    ctx = Context.from_settings(config.load(env={"PERSONA_STREAM__ITEM_IDLE_EVICT_S": "600"}))
    return ItemLogic(None, ctx, lambda: store)


def _evict_idle(logic):
    from datetime import datetime, timedelta

    logic.idle_at = datetime.now(UTC) - timedelta(seconds=1)
    return logic.on_notify()


def test_an_idle_post_is_parked_and_its_next_event_restores_it():
    from bytewax.operators import StatefulBatchLogic

    from schemas.erasure import Command

    store = CountingStore()
    logic = _item_logic(store)
    logic.on_batch([Event("e1", "post_created", T, "u9", post_id="p1", topics=("t1",)),
                    Event("e2", "like", T + 1, "u1", post_id="p1")])
    assert store.reads == 0, "a new post has nothing parked"
    out, keep = _evict_idle(logic)
    assert keep == StatefulBatchLogic.DISCARD and [o[:3] for o in out] == [("park", "item", "p1")]
    store.put_parked("item", "p1", out[0][3])
    back = _item_logic(store)
    out, _ = back.on_batch([Event("e3", "like", T + 2, "u2", post_id="p1")])
    view = out[-1][1]
    assert store.reads == 1 and (view.author_id, view.topics, view.likes) == ("u9", ("t1",), 2)

    held = _item_logic(store)  # a like waiting for its post: never evicted before it is released
    held.on_batch([Event("e4", "like", T + 3, "u1", post_id="p2")])
    assert held.notify_at() == held.deadline and _evict_idle(held)[1] == StatefulBatchLogic.RETAIN

    erased = _item_logic(store)  # an erased post stays erased after its tombstone was parked
    erased.on_batch([Command("erase_post", "p3", "u9")])
    out, _ = _evict_idle(erased)
    store.put_parked("item", "p3", out[0][3])
    again = _item_logic(store)
    like = Event("e5", "like", T + 4, "u1", post_id="p3")
    assert again.on_batch([like])[0] == [("cancel", like)]


def test_an_idle_posts_neighbours_are_parked_and_restored():
    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import POST_CREATED, SimilarityLogic
    from schemas.erasure import Command

    store = CountingStore()
    build = SimilarityLogic.builder(10, 600.0, lambda: store)
    logic = build(None)
    assert logic.on_batch([("p1", POST_CREATED)]) == ([], StatefulBatchLogic.RETAIN)
    assert store.reads == 0, "a new post has nothing parked"
    assert logic.on_batch([("p1", [("p2", 1.0)])])[0] == [("nbrs", "p1", {"p2": 1.0})]
    out, keep = _evict_idle(logic)
    assert keep == StatefulBatchLogic.DISCARD and [o[:3] for o in out] == [("park", "nbrs", "p1")]
    store.put_parked("nbrs", "p1", out[0][3])
    back = build(None)
    assert back.on_batch([("p1", [("p3", 1.0)])])[0] == [("nbrs", "p1", {"p2": 1.0, "p3": 1.0})]
    assert store.reads == 1

    erased = build(None)  # an erased post's tombstone is parked: its stale pairs stay dropped
    erased.on_batch([("p4", [("p2", 1.0)])])
    erased.on_batch([("p4", Command("erase_post", "p4", "u9"))])
    out, _ = _evict_idle(erased)
    store.put_parked("nbrs", "p4", out[0][3])
    assert build(None).on_batch([("p4", [("p5", 1.0)])])[0] == []

    # a state parked or snapshotted as (post id, ItemSimilarity), before the logic kept the key
    from operators.item_similarity import ItemSimilarity
    old = ItemSimilarity(10)
    old.learn_one("p2", 1.0)
    store.put_parked("nbrs", "p6", pickle.dumps(("p6", old)))
    assert build(None).on_batch([("p6", [("p7", 1.0)])])[0] == [
        ("nbrs", "p6", {"p2": 1.0, "p7": 1.0})]
    assert isinstance(build(pickle.dumps(("p6", old))).state, ItemSimilarity)


def test_idle_followers_are_parked_restored_and_dropped_once_empty():
    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import FollowersLogic

    store = CountingStore()
    build = FollowersLogic.builder(10, 0, 600.0, lambda: store)  # (no posts kept: see below)
    logic = build(None)
    logic.on_batch([("edge", "follow", "u2", T - 2, "u1"), ("edge", "follow", "u3", T - 1, "u1")])
    assert store.reads == 1, "a new followed user may have been parked: one read"
    out, keep = _evict_idle(logic)
    assert keep == StatefulBatchLogic.DISCARD and [o[:3] for o in out] == [("park", "followers", "u1")]
    store.put_parked("followers", "u1", out[0][3])
    back = build(None)
    assert back.on_batch([("post", "p1", T, "u1")])[0] == [("deliver", "u2", "p1", T),
                                                            ("deliver", "u3", "p1", T)]
    # emptied by unfollows: dropped, not parked, and the copy it came from is deleted (else the
    # key's next input would restore the old followers)
    back.on_batch([("edge", "unfollow", "u2", T, "u1"), ("edge", "unfollow", "u3", T, "u1")])
    out, keep = _evict_idle(back)
    assert keep == StatefulBatchLogic.DISCARD and out == [("park", "followers", "u1", None)]
    store.put_parked(*out[0][1:])
    assert build(None).on_batch([("post", "p2", T + 1, "u1")])[0] == []
    author = build(None)  # a new author nobody follows: no read, dropped without a write
    reads = store.reads
    author.on_batch([("created", T - 1, "u9")])
    author.on_batch([("post", "p3", T, "u9")])
    assert store.reads == reads and _evict_idle(author) == ([], StatefulBatchLogic.DISCARD)
    # with posts kept for a follow processed late (operators.graph), the author's are parked
    author = FollowersLogic.builder(10, 50, 600.0, lambda: store)(None)
    author.on_batch([("created", T - 1, "u8")])
    author.on_batch([("post", "p4", T, "u8")])
    assert store.reads == reads and [o[:3] for o in _evict_idle(author)[0]] == [
        ("park", "followers", "u8")]
    # a pulled celebrity's list holds no one but is parked, not dropped: dropped, its next
    # follows would start a list (and pushes) again
    star = FollowersLogic.builder(1, 50, 600.0, lambda: store)(None)
    star.on_batch([("created", T - 1, "u7")])
    star.on_batch([("edge", "follow", "u2", T, "u7"), ("edge", "follow", "u3", T, "u7")])
    assert star.state.pulled and not star.state.ids
    assert [o[:3] for o in _evict_idle(star)[0]] == [("park", "followers", "u7")]

    parked = build(None)  # a deleted user's followers: no read, the parked copy deleted
    parked.on_batch([("edge", "follow", "u2", T, "u5")])
    store.put_parked("followers", "u5", _evict_idle(parked)[0][0][3])
    reads = store.reads
    assert build(None).on_batch([("erase", T + 1, "u5")])[0] == [("park", "followers", "u5", None)]
    assert store.reads == reads
    assert FollowersLogic.builder(10, 50)(None).notify_at() is None, "no eviction without a store"


def test_a_post_that_overtook_the_follow_before_it_in_a_batch_reaches_the_follower():
    """A post comes through the items step, a follow directly: one batch of a backlog can bring
    them in either order, and the step applies it in event time (as the in-process Engine)."""
    from flows.adapters import FollowersLogic

    logic = FollowersLogic.builder(10, 50)(None)
    out, _ = logic.on_batch([("post", "p1", T + 5, "u1"), ("edge", "follow", "u2", T, "u1"),
                             ("post", "p0", T - 5, "u1"), ("edge", "follow", "u3", T + 9, "u1")])
    assert out == [("deliver", "u2", "p1", T + 5)]


def test_an_idle_erasure_index_is_parked_and_a_deleted_users_tombstone_stays():
    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import ErasureLogic

    store = CountingStore()
    build = ErasureLogic.builder(600.0, lambda: store)
    logic = build(None)  # a sign-up has nothing parked: kept, so its next inputs read nothing
    assert logic.on_batch([("created", "u1")]) == ([], StatefulBatchLogic.RETAIN)
    logic.on_batch([("post", "p1", "u1"), ("mention", "u2", "u1")])
    assert store.reads == 0
    assert ErasureLogic.builder()(None).on_batch([("created", "u1")])[1] == \
        StatefulBatchLogic.DISCARD, "without eviction an empty state is not kept"
    out, keep = _evict_idle(logic)
    assert keep == StatefulBatchLogic.DISCARD and [o[:3] for o in out] == [("park", "erasure", "u1")]
    store.put_parked("erasure", "u1", out[0][3])

    back = build(None)  # the deletion restores the index: its commands, and the parked copy goes
    out, _ = back.on_batch([("deleted", "u1")])
    assert store.reads == 1
    assert [(c.kind, c.key) for c in out[:-1]] == [("erase_post", "p1"), ("forget", "u2")]
    assert out[-1] == ("park", "erasure", "u1", None)
    # the tombstone is never evicted: a mention reported any time later is still answered
    assert back.notify_at() is None and _evict_idle(back)[1] == StatefulBatchLogic.RETAIN
    late, _ = back.on_batch([("mention", "u3", "u1")])
    assert [(c.kind, c.key, c.posts) for c in late] == [("forget", "u3", ("p1",))]
    back.on_batch([("created", "u1")])  # a new account under the id: empty, dropped when idle
    assert _evict_idle(back) == ([], StatefulBatchLogic.DISCARD)

    fresh = build(None)  # deleted while never parked: nothing to delete in Redis
    out, keep = fresh.on_batch([("mention", "u2", "u7"), ("deleted", "u7")])
    assert [c.kind for c in out] == ["forget"]
    assert keep == StatefulBatchLogic.RETAIN, "a tombstone without posts is kept too"
    unevicted = ErasureLogic.builder()(None)  # without eviction as well
    assert unevicted.on_batch([("deleted", "u8")])[1] == StatefulBatchLogic.RETAIN
    assert [c.key for c in unevicted.on_batch([("mention", "u2", "u8")])[0]] == ["u2"]


def test_a_forget_follower_command_takes_the_follower_out_of_the_fan_out():
    # u2 and u3 follow u1; u2's deletion sends u1 `forget_follower` (read back from the command
    # topic): u1's next post is delivered to u3 only
    from datetime import timedelta

    from bytewax.connectors.kafka import KafkaSourceMessage

    from schemas.erasure import encode_command

    settings = config.load(env={})
    command = KafkaSourceMessage(b"u1", encode_command(Command("forget_follower", "u1", "u2")),
                                 topic=settings.kafka.erasures)
    writes = MemoryWrites()
    source = [encode_event(e) for e in (
        Event("f1", "follow", T, "u2", target_id="u1"),
        Event("f2", "follow", T + 1, "u3", target_id="u1"))] + [
        command, TestingSource.PAUSE(timedelta(seconds=0.5)),
        encode_event(Event("f3", "post_created", T + 2, "u1", post_id="p1", topics=("t1",)))]
    run_main(build_flow(settings, source=TestingSource(source), dead_letters=TestingSink([]),
                        writes=writes, store_of=lambda: writes.store,
                        notifications=TestingSink([]), erasures=TestingSink([])))
    # a delivery moves the follower's newest event time (their feed's generated_at) to the post's
    assert {u: writes.feeds[u]["generated_at"] for u in ("u2", "u3")} == {"u2": T, "u3": T + 2}


def test_a_deleted_users_followers_list_stays_an_unparked_tombstone():
    # a follow of u5 processed after u5's deletion: never parked under u5's id (the key would
    # name them), until the id is created again
    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import FollowersLogic

    store = CountingStore()
    build = FollowersLogic.builder(10, 50, 600.0, lambda: store)
    logic = build(None)
    logic.on_batch([("erase", T - 2, "u5")])
    out, keep = logic.on_batch([("edge", "follow", "u2", T - 1, "u5")])
    assert logic.notify_at() is None and keep == StatefulBatchLogic.RETAIN
    assert _evict_idle(logic) == ([], StatefulBatchLogic.RETAIN)
    assert logic.on_batch([("post", "p1", T, "u5")])[0] == []
    resumed = FollowersLogic.builder(10, 50, 600.0, lambda: store)(pickle.dumps(logic.state))
    assert resumed.state.deleted, "a snapshot keeps the tombstone"
    logic.on_batch([("created", T + 1, "u5"), ("edge", "follow", "u2", T + 2, "u5")])
    assert [o[:3] for o in _evict_idle(logic)[0]] == [("park", "followers", "u5")]


def test_a_deleted_recipient_hands_over_its_mentions_and_reports_no_more():
    # the notifications step at the recipient's deletion: "unmentions" for the actors it
    # reported; a candidate for the tombstone after that (a trending post, a follow of them)
    # must not report its actor as mentioned by the deleted user again
    from flows.adapters import LocalNotifWeights, NotificationLogic
    from operators.notifications.candidates import Candidate
    from operators.notifications.policy import Policy

    logic = NotificationLogic(None, Policy.from_settings(config.load(env={})),
                              LocalNotifWeights())
    out, _ = logic.on_batch([("cand", Candidate("follow.u1.u2", "u1", "follow", "u2", T,
                                                "follow"))])
    assert ("mentions", "u1", ("u2",)) in out
    out, _ = logic.on_batch([("self", Event("e1", "user_deleted", T + 1, "u1"), None)])
    assert ("forget_notifs", "u1") in out and ("unmentions", "u1", ("u2",)) in out
    out, _ = logic.on_batch([("cand", Candidate("follow.u1.u3", "u1", "follow", "u3", T + 2,
                                                "follow"))])
    assert not [o for o in out if o[0] == "mentions"], out


def test_a_deleted_users_tombstones_are_never_evicted():
    # idle, a tombstone was dropped: a trending candidate for the deleted recipient then made a
    # new state that wrote them an inbox (and a delivery a feed), naming them again
    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import LocalNotifWeights, NotificationLogic
    from operators.notifications.candidates import Candidate
    from operators.notifications.policy import Policy

    store = CountingStore()
    notif = NotificationLogic(None, Policy.from_settings(config.load(env={})),
                              LocalNotifWeights(), None, 600.0, lambda: store)
    notif.on_batch([("self", Event("e0", "user_created", T, "u1"), None)])
    notif.on_batch([("self", Event("e1", "user_deleted", T + 1, "u1"), None)])
    assert _evict_idle(notif) == ([], StatefulBatchLogic.RETAIN) and notif.notify_at() is None
    out, _ = notif.on_batch([("cand", Candidate("trending.u1.p1", "u1", "trending", "u9", T + 5,
                                                "trending"))])
    assert [o[0] for o in out] == ["decision"] and out[0][1]["reason"] == "recipient_deleted"

    user = _user_logic(store, user_idle_evict_s=600)  # (its deadline set before the deletion)
    user.on_batch([("event", Event("e2", "user_deleted", T + 1, "u2"), None)])
    assert _evict_idle(user) == ([], StatefulBatchLogic.RETAIN) and user.notify_at() is None
    assert user.on_batch([("deliver", "u2", "p1", T + 2)])[0] == []


def test_idle_tombstones_are_dropped_and_restored_from_the_deleted_users_set(monkeypatch):
    # stream.tombstone_idle_evict_s: a deleted user's tombstone in every per-user step is dropped
    # when idle (never parked: the key would name the user), and the key's next input restores a
    # tombstone from the deleted users' set, which drops that input as the old one did
    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import (
        ExperimentUserLogic,
        FollowersLogic,
        LikersLogic,
        LocalNotifWeights,
        NotificationLogic,
        SuggestionsLogic,
        _Evictable,
    )
    from operators import Context
    from operators.notifications.candidates import Candidate
    from operators.notifications.policy import Policy

    monkeypatch.setattr(_Evictable, "tombstone_idle_s", 3600.0)
    store = CountingStore()
    ctx = Context.from_settings(config.load(env={"PERSONA_STREAM__USER_IDLE_EVICT_S": "600"}))
    policy = Policy.from_settings(ctx.settings)
    deleted = Event("e1", "user_deleted", T + 1, "u1")
    steps = {  # builder, the deletion, a later input about u1
        "user": (lambda: _user_logic(store, user_idle_evict_s=600), [("event", deleted, None)],
                 [("deliver", "u1", "p1", T + 2)]),
        "social": (lambda: SuggestionsLogic(None, ctx, lambda: store),
                   [("event", deleted, None, (), None)],
                   [("event", Event("e2", "follow", T + 2, "u1", target_id="u2"), None, (), None)]),
        "notif": (lambda: NotificationLogic(None, policy, LocalNotifWeights(), None, 600.0,
                                            lambda: store),
                  [("self", deleted, None)],
                  [("cand", Candidate("trending.u1.p1", "u1", "trending", "u9", T + 5,
                                      "trending"))]),
        "followers": (lambda: FollowersLogic.builder(10, 50, 600.0, lambda: store)(None),
                      [("erase", T + 1, "u1")], [("edge", "follow", "u2", T + 2, "u1")]),
        "erasure": (lambda: ErasureLogic.builder(600.0, lambda: store)(None),
                    [("deleted", "u1")], [("mention", "u3", "u1")]),
        "expuser": (lambda: ExperimentUserLogic.builder(600.0, lambda: store)(None),
                    [("deleted", "u1")], [("size/small", "impressions", "u1")]),
        "likers": (lambda: LikersLogic.builder(600.0, lambda: store)(None), [("forget_likers", "u1")],
                   [("liker", "u1", "u2", T + 2)]),
    }
    for kind, (build, deletion, later) in steps.items():
        resident = build()
        resident.on_batch(deletion)
        kept, _ = resident.on_batch(later)  # what the tombstone in memory does with it

        logic = build()
        logic.on_batch(deletion)
        assert logic._is_tombstone(), kind
        idle_for = (logic.idle_at - datetime.now(UTC)).total_seconds()
        assert 3500 < idle_for <= 3600, (kind, "the tombstone's own idle deadline")
        assert _evict_idle(logic) == ([], StatefulBatchLogic.DISCARD), (kind, "dropped, unparked")
        assert store.parked(kind, "u1") is None, kind

        store.deleted_users.add("u1")  # (written by the suggestions step's sink)
        back = build()
        out, keep = back.on_batch(later)
        assert back._is_tombstone() and keep == StatefulBatchLogic.RETAIN, kind
        assert out == kept, (kind, out, kept)
        store.deleted_users.discard("u1")  # created again: the same input starts a live state
        fresh = build()
        fresh.on_batch(later)
        assert fresh.state is not None and not fresh._is_tombstone(), kind

    monkeypatch.setattr(_Evictable, "tombstone_idle_s", 0.0)  # 0: kept for ever
    kept = _user_logic(store, user_idle_evict_s=600)
    kept.on_batch([("event", deleted, None)])
    assert kept.notify_at() is None and _evict_idle(kept)[1] == StatefulBatchLogic.RETAIN


def test_a_deleted_owner_leaves_another_users_parked_erasure_index():
    # u1 mentioned u2 and was deleted: u1's states' "unmentions" restore u2's parked index, which
    # drops u1 and is parked again without them; u2's own deletion then tells only u3
    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import ErasureLogic

    store = CountingStore()
    build = ErasureLogic.builder(600.0, lambda: store)
    logic = build(None)
    logic.on_batch([("mention", "u1", "u2"), ("mention", "u3", "u2")])
    store.put_parked("erasure", "u2", _evict_idle(logic)[0][0][3])
    back = build(None)
    # the parked copy is rewritten at once (a drained run may end before u2 idles again)
    out = back.on_batch([("unmention", "u1", "u2")])[0]
    assert out[0][:3] == ("park", "erasure", "u2") and b"u1" not in out[0][3]
    store.put_parked("erasure", "u2", out[0][3])
    out, _ = _evict_idle(back)
    assert all(b"u1" not in w[3] for w in out if w[0] == "park" and w[3])
    assert [(c.kind, c.key) for c in build(None).on_batch([("deleted", "u2")])[0]
            if isinstance(c, Command)] == [("forget", "u3")]

    only = build(None)  # the index of u4, whom only u1 mentioned: emptied, its parked copy goes
    only.on_batch([("mention", "u1", "u4")])
    store.put_parked("erasure", "u4", _evict_idle(only)[0][0][3])
    emptied = build(None)
    emptied.on_batch([("unmention", "u1", "u4")])
    assert _evict_idle(emptied) == ([("park", "erasure", "u4", None)], StatefulBatchLogic.DISCARD)


def test_a_deleted_users_states_hand_over_whom_they_mention_and_follow():
    # through the flow: u1 follows u2, likes u3's post, messages u4, then is deleted; the
    # followee gets `forget_follower`, and the indexes of everyone u1's states reported drop u1,
    # so when u2, u3 and u4 are deleted afterwards none of them sends u1 a `forget`
    from datetime import timedelta

    settings = config.load(env={})
    log = [Event("d1", "user_created", T, "u1"), Event("d2", "follow", T + 1, "u1", target_id="u2"),
           Event("d3", "post_created", T + 2, "u3", post_id="p9", topics=("t1",)),
           Event("d4", "like", T + 3, "u1", post_id="p9"),
           Event("d5", "message_sent", T + 4, "u1", recipients=("u4",)),
           Event("d6", "user_deleted", T + 5, "u1")]
    later = [Event(f"d{7 + i}", "user_deleted", T + 6 + i, u) for i, u in enumerate(
        ("u2", "u3", "u4"))]
    commands: list = []
    source = [encode_event(e) for e in log] + [TestingSource.PAUSE(timedelta(seconds=0.5))] + [
        encode_event(e) for e in later]
    writes = MemoryWrites()
    run_main(build_flow(settings, source=TestingSource(source), dead_letters=TestingSink([]),
                        writes=writes, store_of=lambda: writes.store,
                        erasures=TestingSink(commands)))
    assert Command("forget_follower", "u2", "u1") in commands
    assert not [c for c in commands if c.key == "u1" and c.user != "u1"], commands


def test_idle_experiment_counters_are_parked_and_restored():
    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import ExperimentUserLogic

    store = CountingStore()
    build = ExperimentUserLogic.builder(600.0, lambda: store)
    logic = build(None)
    out, _ = logic.on_batch([("created", "u1"), ("size/small", "impressions", "u1")])
    assert store.reads == 0 and out[0][1]["users"] == 1
    out, keep = _evict_idle(logic)
    assert keep == StatefulBatchLogic.DISCARD and [o[:3] for o in out] == [("park", "expuser", "u1")]
    store.put_parked("expuser", "u1", out[0][3])
    back = build(None)
    (cell, delta), = back.on_batch([("size/small", "impressions", "u1")])[0]
    assert store.reads == 1 and cell == "size/small"
    assert delta["users"] == 0 and delta["moments"]["impressions*impressions"] == 3  # 2² − 1²
    # deleted: the parked copy goes (its key names the user), the tombstone is never evicted
    assert back.on_batch([("deleted", "u1")])[0] == [("park", "expuser", "u1", None)]
    assert back.notify_at() is None and _evict_idle(back) == ([], StatefulBatchLogic.RETAIN)
    signup = build(None)  # a sign-up with no counted event yet: kept (no read at its next input)
    assert signup.on_batch([("created", "u4")]) == ([], StatefulBatchLogic.RETAIN)
    assert _evict_idle(signup) == ([], StatefulBatchLogic.DISCARD)
    assert ExperimentUserLogic.builder()(None).on_batch([("created", "u4")])[1] == \
        StatefulBatchLogic.DISCARD, "without eviction an empty state is not kept"


def test_the_evicting_steps_resume_from_a_snapshot_and_park_under_its_key(monkeypatch):
    # Bytewax snapshots states, not timers, and its builders do not get the key: a resumed key
    # is evicted when idle like any other, under the key its snapshot kept, before any input
    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import (
        POST_CREATED,
        ErasureLogic,
        ExperimentUserLogic,
        FollowersLogic,
        ItemLogic,
        SimilarityLogic,
        _Logic,
    )
    from operators import Context

    monkeypatch.setattr(_Logic, "recovery", True)
    store = MemoryFeatureStore()
    ctx = Context.from_settings(config.load(env={"PERSONA_STREAM__ITEM_IDLE_EVICT_S": "600"}))
    for build, key, batches in (
            (FollowersLogic.builder(10, 50, 600.0, lambda: store), "u1",
             [[("edge", "follow", "u2", T - 1, "u1")]]),
            (ErasureLogic.builder(600.0, lambda: store), "u1", [[("post", "p1", "u1")]]),
            (ExperimentUserLogic.builder(600.0, lambda: store), "u1",
             [[("size/small", "engagements", "u1")]]),
            (SimilarityLogic.builder(10, 600.0, lambda: store), "p1",
             [[("p1", POST_CREATED), ("p1", [("p2", 1.0)])]]),
            (SimilarityLogic.builder(10, 600.0, lambda: store), "p3",  # a tombstone
             [[("p3", [("p2", 1.0)])], [("p3", Command("erase_post", "p3", "u9"))]]),
            (ItemLogic.builder(ctx, lambda: store), "p4",  # a tombstone
             [[Command("erase_post", "p4", "u9")]])):
        logic = build(None)
        for batch in batches:
            logic.on_batch(batch)
        resumed = build(logic.snapshot())
        assert resumed.notify_at() == resumed.idle_at is not None
        out, keep = _evict_idle(resumed)
        assert keep == StatefulBatchLogic.DISCARD and out[0][:3] == ("park", logic.park_kind, key)
        assert pickle.loads(out[0][3]) is not None


def test_states_and_snapshots_from_before_the_steps_remembered_their_keys_resume_and_park(
        monkeypatch):
    # Followers and UserCounts held their key, only for parking; a snapshot was the bare state
    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import ErasureLogic, ExperimentUserLogic, FollowersLogic
    from operators.erasure import MentionIndex
    from operators.experiments.counts import UserCounts
    from operators.graph import Followers

    store = MemoryFeatureStore()
    build = FollowersLogic.builder(10, 50, 600.0, lambda: store)
    old = Followers()
    old.ids = {"u2": None}  # (a follower without the time of the follow)
    monkeypatch.setattr(Followers, "__getstate__", lambda f: ("u1", list(f.ids), False))
    held_key = pickle.dumps(old)
    monkeypatch.setattr(Followers, "__getstate__", lambda f: list(f.ids))  # earlier still
    ids_only = pickle.dumps(old)
    old.ids = {"u2": T - 1}  # with the follows' times, kept posts and ended follows
    monkeypatch.setattr(Followers, "__getstate__", lambda f: (
        "u1", list(f.ids.items()), f.deleted, list(f.posts.items()), f.ended))
    timed = pickle.dumps(old)
    monkeypatch.undo()

    store.put_parked("followers", "u1", held_key)  # a parked copy: restored by its key
    logic = build(None)
    assert logic.on_batch([("post", "p1", T, "u1")])[0] == [("deliver", "u2", "p1", T)]
    out, _ = _evict_idle(logic)
    assert out[0][:3] == ("park", "followers", "u1") and b"u1" not in out[0][3], \
        "parked again without its key"
    assert pickle.loads(out[0][3]).ids == {"u2": float("-inf")}
    for raw in (held_key, ids_only, timed):  # a snapshot: its key unknown until its next input
        resumed = build(raw)
        assert _evict_idle(resumed) == ([], StatefulBatchLogic.RETAIN)
        assert resumed.on_batch([("post", "p1", T, "u1")])[0] == [("deliver", "u2", "p1", T)]
        assert resumed.notify_at() is not None
        assert _evict_idle(resumed)[0][0][:3] == ("park", "followers", "u1")

    counts = UserCounts()
    counts.learn_many([("size/small", "engagements")])
    counts.user_id = "u1"
    resumed = ExperimentUserLogic.builder(600.0, lambda: store)(pickle.dumps(counts))
    assert "user_id" not in vars(resumed.state), "the old copy of the key is dropped"
    assert _evict_idle(resumed) == ([], StatefulBatchLogic.RETAIN)
    resumed.on_batch([("size/small", "engagements", "u1")])
    out, _ = _evict_idle(resumed)
    assert out[0][:3] == ("park", "expuser", "u1")
    assert pickle.loads(out[0][3]).cells["size/small"]["engagements"] == 2

    index = MentionIndex("u1")  # a state that names its user is parked before any input
    index.posts = {"p1": None}
    resumed = ErasureLogic.builder(600.0, lambda: store)(pickle.dumps(index))
    assert _evict_idle(resumed)[0][0][:3] == ("park", "erasure", "u1")


class _Recording(MemoryWrites):
    """MemoryWrites that also keeps every write record (parks applied, so restores find them)."""

    def __init__(self):
        super().__init__()
        self.records: list = []

    def build(self, step_id, worker_index, worker_count):
        apply, records = _Apply(self.store, self.feeds), self.records

        class _Partition(StatelessSinkPartition):
            def write_batch(self, items):
                records.extend(items)
                apply.write_batch(items)
        return _Partition()


def test_eviction_does_not_change_the_followers_erasure_and_experiment_outputs(tmp_path):
    # one generated day (follows, posts, deletions) with an experiment on, run with keys evicted
    # after 0.2 s idle (the input pauses past it between chunks) and without eviction (the same
    # pauses): the same arm counters (exact), erasure commands and notification candidates (the
    # followers fan-out). Commands are compared as a set: how often a late mention is answered
    # again depends on when ranks run (commands are idempotent)
    from datetime import timedelta

    from flows import metrics
    from scripts.generate import GeneratorConfig, generate

    path = tmp_path / "exp.toml"
    path.write_text("[experiments.evict]\nenabled = true\n[experiments.evict.arms.a]\n"
                    "fraction = 0.5\n[experiments.evict.arms.b]\nfraction = 0.5\n")
    events, _ = generate(GeneratorConfig(users=40, days=1, seed=4))
    assert {"user_deleted", "follow", "post_created"} <= {e["type"] for e in events}
    payloads = [orjson.dumps(e) for e in events]

    def run_with(idle_s: str):
        settings = config.load(path, env={"PERSONA_STREAM__USER_IDLE_EVICT_S": idle_s})
        source: list = []
        for i in range(0, len(payloads), len(payloads) // 4 + 1):
            source += payloads[i:i + len(payloads) // 4 + 1] + [
                TestingSource.PAUSE(timedelta(seconds=0.8))]
        writes, commands, decisions = _Recording(), [], []
        run_main(build_flow(settings, source=TestingSource(source), dead_letters=TestingSink([]),
                            writes=writes, store_of=lambda: writes.store,
                            notifications=TestingSink(decisions), erasures=TestingSink(commands)))
        parks = {(w[1], w[3] is not None) for w in writes.records if w[0] == "park"}
        return ({(w[1], w[2]): w[3] for w in writes.records if w[0] == "arm_counts"},
                {(c.kind, c.key, c.user, c.posts) for c in commands},
                sorted(d["notification_id"] for d in decisions), parks)

    kinds = ("followers", "erasure", "expuser")
    restored = [metrics.RESTORED.labels(k)._value.get() for k in kinds]
    *evicting, parks = run_with("0.2")
    assert all(metrics.RESTORED.labels(k)._value.get() > n for k, n in zip(kinds, restored,
                                                                           strict=True))
    *kept, no_parks = run_with("0")
    assert {(k, True) for k in kinds} <= parks
    assert no_parks == set()
    assert evicting == kept
    assert kept[0] and kept[1] and kept[2]


def test_the_likers_step_reports_its_likers_and_drops_a_forgotten_one():
    # a deleted liker's own state names at most MAX_AUTHORS authors: every other author whose
    # set holds them learns the deletion from the erasure index, which the likers step feeds
    from flows.adapters import LikersLogic
    from schemas.erasure import Command

    logic = LikersLogic(None)
    out, _ = logic.on_batch([("liker", "a1", "u1", 5), ("liker", "a1", "u2", 6),
                             ("liker", "a1", "u1", 7)])
    assert out[-1] == ("mentions", "a1", ("u1", "u2"))
    out, _ = LikersLogic(None).on_batch([("forget", Command("forget", "a1", "u2", ()))])
    assert out == [("unliker", "a1", "u2")], "no mention: nothing written"


def test_a_recreated_author_is_not_taken_for_a_dropped_tombstone(monkeypatch):
    # the deleted users' set the likers step checks lags a re-creation (the sink's write, the
    # cached set's TTL): the re-created author stays resident, so their next like is written
    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import LikersLogic, _Evictable

    monkeypatch.setattr(_Evictable, "tombstone_idle_s", 3600.0)
    store = CountingStore()
    store.deleted_users.add("a1")  # (not yet removed when the author's next like comes)
    build = LikersLogic.builder(600.0, lambda: store)
    logic = build(None)
    assert logic.on_batch([("undeleted", "a1")]) == ([], StatefulBatchLogic.RETAIN)
    out, keep = logic.on_batch([("liker", "a1", "u1", 5)])
    assert out[0] == ("liker", "a1", "u1", 5) and keep == StatefulBatchLogic.RETAIN
    other = build(None)  # an author never deleted is not kept
    out, keep = other.on_batch([("liker", "a2", "u1", 5)])
    assert out[0] == ("liker", "a2", "u1", 5) and keep == StatefulBatchLogic.DISCARD
    gone = build(None)  # a dropped tombstone comes back, and drops the like as before
    assert gone.on_batch([("liker", "a1", "u2", 6)]) == ([], StatefulBatchLogic.RETAIN)
    assert gone._is_tombstone() and gone.notify_at() is not None
    resumed = build(pickle.dumps(gone.state))  # a snapshot's state is resident again, with
    assert resumed.notify_at() is not None  # its idle deadline (none is snapshotted)


def _behind_by(monkeypatch, seconds: float) -> None:
    """This process's backlog (operators.backlog.PROCESS) as `seconds` of reading: 100 messages
    a second read over the last 10 s, 100 · `seconds` still to read."""
    from types import SimpleNamespace as Message

    from operators import backlog

    t = [0.0]
    process = backlog.Backlog(clock=lambda: t[0])
    monkeypatch.setattr(backlog, "PROCESS", process)
    process.observe({})
    for offset in range(1000):
        process.note(Message(topic="events", partition=0, offset=offset))
    t[0] = 10.0
    process.observe({("events", 0): 1000 + int(100 * seconds)})


def test_catching_up_a_backlog_stretches_the_rank_and_suggestion_intervals(monkeypatch):
    from flows.adapters import SuggestionsLogic, UserLogic
    from operators import Context

    env = {"PERSONA_STREAM__BACKLOG_INTERVAL_S": "60", "PERSONA_STREAM__RANK_INTERVAL_S": "0.5",
           "PERSONA_STREAM__SUGGEST_INTERVAL_S": "10"}
    ctx = Context.from_settings(config.load(env=env))
    users = UserLogic(None, ctx, lambda: MemoryFeatureStore())
    social = SuggestionsLogic(None, ctx, lambda: MemoryFeatureStore())
    # a dirty user runs once half the backlog is read (operators.backlog.RERUN_SHARE)
    for behind_s, rank_s, suggest_s in ((0.0, 0.5, 10.0), (40.0, 20.0, 20.0), (3600.0, 60.0, 60.0)):
        _behind_by(monkeypatch, behind_s)
        assert users._interval_s() == pytest.approx(rank_s, abs=0.01), behind_s
        assert social._interval_s() == pytest.approx(suggest_s, abs=0.01), behind_s
        assert metrics.REGISTRY.get_sample_value("persona_catch_up_seconds") == pytest.approx(
            behind_s, abs=0.01), "the gauge operators watch for catch-up mode"
        assert metrics.REGISTRY.get_sample_value("persona_input_lag_messages") == pytest.approx(
            100 * behind_s, abs=1)


def test_while_catching_up_a_first_run_waits_the_stretch_too(monkeypatch):
    """A user never ranked (or restored) runs at once when caught up; 300 s behind a backlog, the
    first run waits what the catch-up interval adds (150 − 0.5 s), like every later one."""
    from datetime import timedelta

    from flows.adapters import SuggestionsLogic, UserLogic
    from operators import Context

    env = {"PERSONA_STREAM__BACKLOG_INTERVAL_S": "600", "PERSONA_STREAM__RANK_INTERVAL_S": "0.5",
           "PERSONA_STREAM__SUGGEST_INTERVAL_S": "10"}
    ctx = Context.from_settings(config.load(env=env))
    for behind_s, rank_wait, suggest_wait in ((0.0, 0.0, 0.0), (300.0, 149.5, 140.0)):
        _behind_by(monkeypatch, behind_s)
        for logic, wait in ((UserLogic(None, ctx, MemoryFeatureStore), rank_wait),
                            (SuggestionsLogic(None, ctx, MemoryFeatureStore), suggest_wait)):
            before = datetime.now(UTC)
            logic._schedule()
            waits = (logic.due - before) / timedelta(seconds=1)
            assert wait - 0.5 <= waits <= wait + 0.5, (type(logic).__name__, behind_s, waits)


def test_the_erasure_step_reads_back_spilled_owners_at_the_deletion():
    """A mentioned user with more owners than stay resident: the oldest go to the store (the
    spill write; before it lands, the process's recent spills), and the deletion commands every
    owner; a deleted owner's spilled members are removed, and the deletion deletes the set."""
    from schemas.erasure import Command

    for landed in (False, True):
        store = MemoryFeatureStore()
        logic = ErasureLogic(None, 0.0, lambda store=store: store, resident_owners=4)
        out, _ = logic.on_batch([("mention", f"o{i}", "c1") for i in range(7)])
        assert [w[:2] for w in out] == [("spill_owners", "c1")]
        if landed:  # the write landed and this process's recent spills are gone
            store.put_owners("c1", out[0][2], [])
            store.recent_spills.spills.clear()
        out, _ = logic.on_batch([("unmention", "o0", "c1")])
        assert out == [("unspill_owners", "c1", ["1:o0", "2:o0", "3:o0"])]
        store.put_owners("c1", [], out[0][2])
        out, _ = logic.on_batch([("deleted", "c1")])
        told = sorted(c.key for c in out if isinstance(c, Command))
        assert told == [f"o{i}" for i in range(1, 7)] if landed else [f"o{i}" for i in range(7)]
        assert ("forget_owners", "c1") in out


def test_a_hot_keys_recent_spills_expire_one_by_one():
    """A creator spills every few seconds: each spill leaves the recent ones after the window
    (one entry per key, renewed at each spill, kept them all: +15 MB a minute in a churn)."""
    import time

    from operators.feature_store import RecentSpills

    spills = RecentSpills(window_s=0.2)
    for i in range(3):
        spills.add("c1", [f"1:o{i}"])
    time.sleep(0.25)
    spills.add("c1", ["1:o3"])
    assert spills.of("c1") == ["1:o3"] and len(spills.spills) == 1


def test_neighbours_are_published_once_per_interval_and_at_the_end_of_the_input(monkeypatch):
    # stream.neighbours_interval_s: a post's changed counts are published on a timer, not after
    # every batch; an erased neighbour leaves the list at once; an erased post publishes nothing
    # more; a bounded input's end publishes what is pending, and a snapshot keeps the timer
    from datetime import timedelta

    from bytewax.operators import StatefulBatchLogic

    from flows.adapters import SimilarityLogic, _Logic

    monkeypatch.setattr(_Logic, "recovery", True)
    store = MemoryFeatureStore()
    build = SimilarityLogic.builder(10, 600.0, lambda: store, 2.0)
    logic = build(None)
    assert logic.on_batch([("p1", "post_created"), ("p1", [("p2", 1.0), ("p3", 0.5)])]) == (
        [], StatefulBatchLogic.RETAIN)
    assert logic.due is not None and logic.notify_at() == logic.due
    assert logic.on_notify()[0] == [("nbrs", "p1", {"p2": 1.0, "p3": 0.5})]
    logic.on_batch([("p1", [("p4", 1.0)])])  # within the interval: the next run waits for it
    assert logic.due >= logic.last_run + timedelta(seconds=1.9)
    resumed = build(logic.snapshot())  # a restart before it ran: still pending
    assert resumed.on_eof()[0] == [("nbrs", "p1", {"p2": 1.0, "p3": 0.5, "p4": 1.0})]
    out, _ = logic.on_batch([("p1", Command("forget_nbr", "p1", "u9", ("p2",)))])
    assert out == [("nbrs", "p1", {"p3": 0.5, "p4": 1.0})] and logic.due is None, "at once"
    logic.on_batch([("p1", [("p5", 1.0)])])
    out, _ = logic.on_batch([("p1", Command("erase_post", "p1", "u1"))])
    assert out[-1] == ("forget_nbrs", "p1") and logic.due is None and logic.on_eof()[0] == []
    per_batch = SimilarityLogic.builder(10, 600.0, lambda: store)(None)  # interval 0
    assert per_batch.on_batch([("p6", [("p2", 1.0)])])[0] == [("nbrs", "p6", {"p2": 1.0})]


def test_an_erased_post_and_a_forgotten_neighbour_rewrite_their_parked_copies():
    """The items and similarity steps restore a parked state to apply an erasure command; its
    parked copy (which names the deleted author or post) is rewritten at once, not when the key
    next idles, which a drained run may never reach."""
    from datetime import UTC, datetime, timedelta

    from flows.adapters import POST_CREATED, ItemLogic, SimilarityLogic
    from operators import Context
    from operators.feature_store import MemoryFeatureStore

    store = MemoryFeatureStore()
    ctx = Context.from_settings(config.load(env={}))

    def evict(logic):
        logic.idle_at = datetime.now(UTC) - timedelta(seconds=1)
        for w in logic.on_notify()[0]:
            if w[0] == "park":
                store.put_parked(w[1], w[2], w[3])
        store.recent_parks.states.clear()

    item = ItemLogic.builder(ctx, lambda: store)(None)
    item.on_batch([Event("e1", "post_created", T, "victim", post_id="p1", topics=("t1",))])
    evict(item)
    assert b"victim" in store.parked("item", "p1")
    out, _ = ItemLogic.builder(ctx, lambda: store)(None).on_batch(
        [Command("erase_post", "p1", "victim")])
    parks = [w for w in out if w[0] == "park"]
    assert parks and parks[0][1:3] == ("item", "p1") and b"victim" not in parks[0][3]

    sim = SimilarityLogic.builder(10, 86400.0, lambda: store)(None)
    sim.on_batch([("q1", POST_CREATED), ("q1", [("p1", 1.0), ("p2", 1.0)])])
    sim.due = None
    evict(sim)
    out, _ = SimilarityLogic.builder(10, 86400.0, lambda: store)(None).on_batch(
        [("q1", Command("forget_nbr", "q1", "victim", ("p1",)))])
    parks = [w for w in out if w[0] == "park"]
    assert parks and parks[0][1:3] == ("nbrs", "q1") and b"p1" not in parks[0][3]


def test_a_new_account_under_a_deleted_users_id_starts_afresh_in_every_step():
    """A deleted user's id created again is a new account (as the suggestions and followers steps
    and the replay Engine take it): the users step ranks it and follows what it follows, the
    notifications step decides for it; events before its user_created stay dropped."""
    from flows.adapters import LocalNotifWeights, NotificationLogic, UserLogic
    from operators import Context
    from operators.feature_store import MemoryFeatureStore
    from operators.notifications.candidates import Candidate
    from operators.notifications.policy import Policy

    store = MemoryFeatureStore()
    ctx = Context.from_settings(config.load(env={}))
    users = UserLogic(None, ctx, lambda: store)
    users.on_batch([("event", Event("e1", "user_created", T, "u1"), None)])
    users.on_batch([("event", Event("e2", "user_deleted", T + 1, "u1"), None)])
    out, _ = users.on_batch([
        ("event", Event("e3", "follow", T + 2, "u1", target_id="u9"), None),  # late: dropped
        ("event", Event("e4", "user_created", T + 3, "u1", interests=("t2",)), None),
        ("event", Event("e5", "follow", T + 4, "u1", target_id="u2"), None)])
    assert [o for o in out if o[0] == "cmd"] == [
        ("cmd", Command("forget_follower", "u9", "u1"))]
    assert not users.state.deleted and users.state.following == {"u2"}
    assert any(o[0] == "feed" for o in users.on_eof()[0])

    notifs = NotificationLogic(None, Policy.from_settings(ctx.settings), LocalNotifWeights())
    for i, kind in enumerate(("user_created", "user_deleted", "user_created")):
        notifs.on_batch([("self", Event(f"n{i}", kind, T + i, "u1"), None)])
    out, _ = notifs.on_batch([("cand", Candidate("follow.u1.u9", "u1", "follow", "u9", T + 5,
                                                 "follow"))])
    decisions = [o[1] for o in out if o[0] == "decision"]
    assert decisions and decisions[0]["reason"] != "recipient_deleted"
