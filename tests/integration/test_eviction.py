"""Bounded worker state on the real Redis: an idle key's state (a user's, a post's) is parked (with a TTL) through the
production writer, dropped, restored by the feature store at the key's next input, and erased
with the user."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import redis
from bytewax.operators import StatefulBatchLogic

from flows.adapters import LikersLogic, SuggestionsLogic, UserLogic
from operators import Context
from operators.redis_store import RedisFeatureStore, RedisWriter
from schemas import Event
from schemas.keyspace import Keyspace
from tests.integration.inproc import cleanup, settings_for

T = 1_767_225_600_000


def _writes(out: list) -> list:
    """The records of a step's output that go to the Redis sink (the flow routes the others)."""
    return [w for w in out if w[0] not in ("co", "ex", "mentions")]


def _idle(logic) -> None:
    logic.idle_at = datetime.now(UTC) - timedelta(seconds=1)


@contextmanager
def _private_redis(live, **env):
    """(settings, client, keyspace, feature store, writer) on a private prefix, parked states
    kept an hour; the prefix's keys are removed after."""
    prefix = f"test-evict-{uuid.uuid4().hex[:8]}"
    settings = settings_for(live, prefix, PERSONA_STREAM__PARKED_TTL_S="3600", **env)
    client = redis.Redis.from_url(live[1])
    keyspace = Keyspace(prefix, "1")
    try:
        yield (settings, client, keyspace, RedisFeatureStore(client, keyspace),
               RedisWriter(client, keyspace, parked_ttl_s=settings.stream.parked_ttl_s))
    finally:
        cleanup(client, prefix)


def _other_process(client, keyspace) -> RedisFeatureStore:
    """A feature store without this process's recent parks: reads what reached Redis."""
    return RedisFeatureStore(client, keyspace)


def test_idle_states_park_in_redis_and_come_back(live):
    with _private_redis(live, PERSONA_STREAM__USER_IDLE_EVICT_S="60") as (
            settings, client, keyspace, store, writer):
        ctx = Context.from_settings(settings)
        users = UserLogic(None, ctx, lambda: store)
        users.on_batch([("event", Event("e1", "follow", T, "u1", target_id="u2"), None),
                        ("event", Event("e2", "like", T + 1, "u1", post_id="p1"), None)])
        writer.write_batch(_writes(users.on_notify()[0]))  # the rank: feed, profile, user features
        social = SuggestionsLogic(None, ctx, lambda: store)
        social.on_batch([("event", Event("e1", "follow", T, "u1", target_id="u2"), None, (), None)])
        writer.write_batch(_writes(social.on_notify()[0]))
        for logic in (users, social):
            _idle(logic)
            out, keep = logic.on_notify()
            assert keep == StatefulBatchLogic.DISCARD
            writer.write_batch(_writes(out))
        assert 3500 < client.ttl(keyspace.parked("user", "u1")) <= 3600
        restarted = _other_process(client, keyspace)

        back = UserLogic(None, ctx, lambda: restarted)
        back.on_batch([("event", Event("e3", "like", T + 2, "u1", post_id="p2"), None)])
        assert back.state.following == {"u2"} and back.state.seen.contains_many(["p1"]).tolist() == [True]
        social_back = SuggestionsLogic(None, ctx, lambda: restarted)
        social_back.on_batch([("followed_by", "follow", "u3", T + 3, "u1")])
        assert social_back.state.user_id == "u1" and "u2" in social_back.state.following

        writer.write_batch([("forget_user", "u1")])  # erasure removes the parked copy too
        assert client.exists(keyspace.parked("user", "u1")) == 0


def test_idle_posts_park_in_redis_and_come_back(live):
    from flows.adapters import ItemLogic

    with _private_redis(live, PERSONA_STREAM__ITEM_IDLE_EVICT_S="60") as (
            settings, client, keyspace, store, writer):
        ctx = Context.from_settings(settings)
        items = ItemLogic(None, ctx, lambda: store)
        writer.write_batch(items.on_batch([
            Event("e1", "post_created", T, "u9", post_id="p1", topics=("t1",)),
            Event("e2", "like", T + 1, "u1", post_id="p1")])[0][-1:])  # the item's view
        _idle(items)
        out, keep = items.on_notify()
        assert keep == StatefulBatchLogic.DISCARD
        writer.write_batch(out)
        assert 3500 < client.ttl(keyspace.parked("item", "p1")) <= 3600
        back = ItemLogic(None, ctx, lambda: _other_process(client, keyspace))
        view = back.on_batch([Event("e3", "like", T + 2, "u2", post_id="p1")])[0][-1][1]
        assert (view.author_id, view.likes) == ("u9", 2)


def test_idle_notification_recipients_park_and_come_back(live):
    from flows.adapters import LocalNotifWeights, NotificationLogic
    from operators.notifications.policy import Policy

    with _private_redis(live) as (settings, client, keyspace, store, writer):
        policy = Policy.from_settings(settings)
        logic = NotificationLogic(None, policy, LocalNotifWeights(), None, 60.0, lambda: store)
        logic.on_batch([("self", Event("e1", "user_created", T, "u1"), None)])
        assert logic.notify_at() == logic.idle_at is not None
        _idle(logic)
        out, keep = logic.on_notify()
        assert keep == StatefulBatchLogic.DISCARD and out[0][:3] == ("park", "notif", "u1")
        writer.write_batch(out)
        restarted = _other_process(client, keyspace)
        back = NotificationLogic(None, policy, LocalNotifWeights(), None, 60.0, lambda: restarted)
        back.on_batch([("self", Event("e2", "follow", T + 1, "u1", target_id="u2"), None)])
        assert back.state.user_id == "u1" and back.state.last_ts == T + 1
        writer.write_batch([("forget_notifs", "u1")])
        assert client.exists(keyspace.parked("notif", "u1")) == 0


def test_idle_followers_erasure_indices_and_experiment_counters_park_and_come_back(live):
    from flows.adapters import ErasureLogic, ExperimentUserLogic, FollowersLogic

    builders = {"followers": lambda store: FollowersLogic.builder(10, 50, 60.0, lambda: store),
                "erasure": lambda store: ErasureLogic.builder(60.0, lambda: store),
                "expuser": lambda store: ExperimentUserLogic.builder(60.0, lambda: store)}
    first = {"followers": [("edge", "follow", "u2", T - 1, "u1")],
             "erasure": [("post", "p1", "u1"), ("mention", "u2", "u1")],
             "expuser": [("size/small", "impressions", "u1")]}
    with _private_redis(live) as (settings, client, keyspace, store, writer):
        for kind, build in builders.items():
            logic = build(store)(None)
            logic.on_batch(first[kind])
            _idle(logic)
            out, keep = logic.on_notify()
            assert keep == StatefulBatchLogic.DISCARD and out[0][:3] == ("park", kind, "u1")
            writer.write_batch(out)
            assert 3500 < client.ttl(keyspace.parked(kind, "u1")) <= 3600, kind
        restarted = _other_process(client, keyspace)

        followers = builders["followers"](restarted)(None)
        assert followers.on_batch([("post", "p2", T, "u1")])[0] == [("deliver", "u2", "p2", T)]
        counters = builders["expuser"](restarted)(None)
        (_, delta), = counters.on_batch([("size/small", "impressions", "u1")])[0]
        assert delta["users"] == 0 and delta["counts"]["impressions"] == 1
        # the user's deletion: the index answers with its commands, and every parked copy goes
        erasure = builders["erasure"](restarted)(None)
        out, _ = erasure.on_batch([("deleted", "u1")])
        assert [(c.kind, c.key) for c in out[:-1]] == [("erase_post", "p1"), ("forget", "u2")]
        writer.write_batch(out[-1:] + followers.on_batch([("erase", "u1")])[0]
                           + counters.on_batch([("deleted", "u1")])[0])
        assert [client.exists(keyspace.parked(kind, "u1")) for kind in builders] == [0, 0, 0]


def test_idle_tombstones_are_dropped_and_come_back_from_the_deleted_users_set(live):
    # stream.tombstone_idle_evict_s: the users, suggestions and likers steps' tombstones of u1
    # are dropped when idle, never parked; another process's later input about u1 (a delivery, a
    # follow of them, a like of their post) finds u1 in the deleted users' set the suggestions
    # step wrote, and starts a tombstone again: no feed, no suggestions, nothing parked under u1
    from flows.adapters import _Evictable

    with _private_redis(live, PERSONA_STREAM__USER_IDLE_EVICT_S="60") as (
            settings, client, keyspace, store, writer):
        ctx = Context.from_settings(settings)
        before, _Evictable.tombstone_idle_s = _Evictable.tombstone_idle_s, 120.0
        try:
            deleted = Event("e1", "user_deleted", T, "u1")
            users, social = UserLogic(None, ctx, lambda: store), SuggestionsLogic(None, ctx, lambda: store)
            likers = LikersLogic(None, 60.0, lambda: store)
            writer.write_batch(_writes(users.on_batch([("event", deleted, None)])[0]))
            writer.write_batch(_writes(social.on_batch([("event", deleted, None, (), None)])[0]))
            writer.write_batch(_writes(likers.on_batch([("forget_likers", "u1")])[0]))
            assert client.scard(keyspace.deleted_users) == 1
            for logic in (users, social, likers):
                assert logic._is_tombstone() and logic.idle_at is not None
                _idle(logic)
                assert logic.on_notify() == ([], StatefulBatchLogic.DISCARD)
            restarted = _other_process(client, keyspace)

            back = UserLogic(None, ctx, lambda: restarted)
            out, _ = back.on_batch([("deliver", "u1", "p1", T + 1)])
            assert back._is_tombstone() and out == []
            social_back = SuggestionsLogic(None, ctx, lambda: restarted)
            out, _ = social_back.on_batch([("followed_by", "follow", "u3", T + 2, "u1")])
            assert social_back._is_tombstone() and social_back.notify_at() is not None
            likers_back = LikersLogic(None, 60.0, lambda: restarted)  # a like of u1's post, late
            assert likers_back.on_batch([("liker", "u1", "u3", T + 3)])[0] == []
            assert likers_back._is_tombstone()
            assert not [k for k in client.scan_iter(f"{keyspace.base}:*u1*")], "nothing names u1"
        finally:
            _Evictable.tombstone_idle_s = before
