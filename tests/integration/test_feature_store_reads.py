"""The feature store's batched reads on the real Redis: a rank's reads are prefetched in one round
trip (RedisFeatureStore.prefetch), sorted-set indexes are cached once at the deepest size asked,
and a feed ranked with the prefetch is the feed ranked without it."""

from __future__ import annotations

import pickle
import time
import uuid

import pytest
import redis

from operators import Context
from operators.feature_store import GLOBAL
from operators.feed import rank
from operators.item_stats import ItemView
from operators.redis_store import RedisFeatureStore, RedisWriter
from operators.user_state import UserState
from schemas import Event
from schemas.keyspace import Keyspace
from scripts import bench_rank
from tests.integration.inproc import cleanup, settings_for

T = 1_767_225_600_000
TOPICS = ("t0", "t1", "t2", "t3")


class CountingClient:
    """The redis client, counting round trips (a pipeline execute or a single command)."""

    def __init__(self, client: redis.Redis):
        self.client, self.trips = client, 0

    def pipeline(self, **kw):
        pipe, outer = self.client.pipeline(**kw), self

        class Counted:
            def __getattr__(self, name):
                return getattr(pipe, name)

            def execute(self):
                outer.trips += 1
                return pipe.execute()
        return Counted()

    def __getattr__(self, name):
        self.trips += 1
        return getattr(self.client, name)


def _world(writer: RedisWriter) -> None:
    items = [ItemView(f"p{i}", f"a{i % 7}", (TOPICS[i % 4], TOPICS[(i * 3) % 4]), None,
                      T - 60_000 * i, float(i % 13) - 3.0, float(i % 5), 10 + i) for i in range(120)]
    writer.write_batch([("item", v) for v in items])
    writer.write_batch([("nbrs", f"p{i}", {f"p{(i + k) % 120}": 1.0 + k for k in range(1, 9)})
                        for i in range(120)])


def _user(ctx: Context, store) -> UserState:
    user = UserState("u1", ctx)
    events = [Event("e0", "user_created", T, "u1", interests=("t1", "t2"))]
    events += [Event(f"e{i}", "like", T + i, "u1", post_id=f"p{i}") for i in range(1, 12)]
    events += [Event("f1", "follow", T + 20, "u1", target_id="a3")]
    for e in events:
        view = store.items([e.post_id]).get(e.post_id) if e.post_id else None
        user.learn_one(e, view, ctx, store)
    for i in range(100, 110):
        user.deliver(f"p{i}", T - 60_000 * i, ctx.settings.features.pool_size)
    return user


@pytest.fixture
def ranked_world(live):
    """(client, keyspace, Context, pickled `_user`) over `_world` in a private keyspace."""
    prefix = f"test-reads-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(live[1])
    keyspace = Keyspace(prefix, "1")
    ctx = Context.from_settings(settings_for(live, prefix))
    try:
        _world(RedisWriter(client, keyspace))
        yield client, keyspace, ctx, pickle.dumps(
            _user(ctx, RedisFeatureStore(client, keyspace, ttl_s=60)))
    finally:
        cleanup(client, prefix)


def test_a_prefetched_rank_reads_redis_once_and_ranks_the_same(ranked_world):
    client, keyspace, ctx, frozen = ranked_world
    plain = RedisFeatureStore(CountingClient(client), keyspace, ttl_s=60)
    without = rank(pickle.loads(frozen), _Unbatched(plain), ctx, T + 30)

    counting = CountingClient(client)
    batched = RedisFeatureStore(counting, keyspace, ttl_s=60)
    with_prefetch = rank(pickle.loads(frozen), batched, ctx, T + 30)
    assert with_prefetch.encode() == without.encode() and len(with_prefetch.items) > 10
    # the prefetch, then the items of the posts item-kNN reaches and of the candidates
    assert counting.trips <= 3 < plain.client.trips
    trips = counting.trips
    rank(pickle.loads(frozen), batched, ctx, T + 30)  # everything cached: no round trip
    assert counting.trips == trips


class _Unbatched:
    """A store without `prefetch`: every stage reads for itself (the behaviour before it)."""

    def __init__(self, store: RedisFeatureStore):
        self.store = store

    def __getattr__(self, name):
        if name == "prefetch":
            raise AttributeError(name)
        return getattr(self.store, name)


def test_indexes_are_read_once_at_the_deepest_size_and_serve_every_prefix(live):
    prefix = f"test-reads-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(live[1])
    keyspace = Keyspace(prefix, "1")
    try:
        _world(RedisWriter(client, keyspace))
        counting = CountingClient(client)
        store = RedisFeatureStore(counting, keyspace, ttl_s=60)

        def truth(topic: str, n: int) -> list[str]:
            return [m.decode() for m in client.zrange(keyspace.trending(topic), 0, n - 1, desc=True)]
        assert store.trending("t1", 10) == truth("t1", 10) and counting.trips == 1
        assert store.trending("t1", 40) == truth("t1", 40) and counting.trips == 2  # deeper
        assert store.trending("t1", 16) == truth("t1", 16) and counting.trips == 2  # a prefix
        assert store.trending("t1", 500) == truth("t1", 500) and counting.trips == 3
        assert store.trending("t1", 1000) == truth("t1", 1000) and counting.trips == 3  # all of it
        assert store.trending("nope", 5) == [] and counting.trips == 4
        assert store.fresh(7) == [m.decode() for m in client.zrange(keyspace.fresh, 0, 6, desc=True)]
        store.prefetch(topics=["t2", "t3", GLOBAL], n=50)
        trips = counting.trips
        assert store.trending("t3", 25) == truth("t3", 25)
        assert store.trending(GLOBAL, 50) == truth(GLOBAL, 50)
        assert counting.trips == trips
    finally:
        cleanup(client, prefix)


def test_an_item_not_written_yet_is_read_again_at_the_next_rank(live):
    """A rank at a user's read runs mid-batch, before the sink writes the batch's new posts: their
    absence must not be cached for the TTL (a drained run's last ranks found no items at all)."""
    prefix = f"test-absent-{uuid.uuid4().hex[:8]}"
    settings = settings_for(live, prefix)
    client = redis.Redis.from_url(settings.redis.url)
    keyspace = Keyspace(prefix, "1")
    try:
        store = RedisFeatureStore(client, keyspace, ttl_s=60)
        store.prefetch(posts=["p1"])
        assert store.items(["p1"]) == {}
        RedisWriter(client, keyspace).write_batch([("item", ItemView("p1", "a1", ("t0",), None, T))])
        assert store.items(["p1"])["p1"].author_id == "a1", "the absence was cached"
        assert store.neighbours(["p1"]) == {}  # (other kinds' absence stays cached: no key is common)
    finally:
        cleanup(client, prefix)


def test_many_keys_are_read_in_mgets_of_bounded_size_as_the_cluster_reads_them(live, monkeypatch):
    """Reads of many keys go as MGETs of at most `GetQueue.MGET_KEYS` keys (a Redis Cluster reads
    one GET per key: its keys span slots); both give the same values, absent keys included, and
    a prefetch puts the global model's read in the same batch."""
    from operators import redis_store

    monkeypatch.setattr(redis_store.GetQueue, "MGET_KEYS", 7)
    prefix = f"test-mget-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(live[1])
    keyspace = Keyspace(prefix, "1")
    try:
        views = [ItemView(f"p{i}", f"a{i % 3}", ("t0",), None, T + i) for i in range(0, 40, 2)]
        RedisWriter(client, keyspace).write_batch(
            [("item", v) for v in views] + [("model", {"w": [0.5], "b": 0.25})])
        ids = [f"p{i}" for i in range(40)]  # every other one absent
        by_mget = CountingClient(client)
        batched = RedisFeatureStore(by_mget, keyspace, ttl_s=60)
        got = batched.items(ids)
        per_key = RedisFeatureStore(client, keyspace, ttl_s=60)
        per_key._mget = False  # as on a cluster
        assert got == per_key.items(ids) == {v.post_id: v for v in views}
        assert list(got) == [v.post_id for v in views] and by_mget.trips == 1
        fresh = RedisFeatureStore(client, keyspace, ttl_s=60)
        fresh.prefetch(posts=ids[:5], n=0)  # 5 items, 5 rows and the model: two MGETs
        assert fresh.global_model() == {"w": [0.5], "b": 0.25}
        assert sorted(fresh.items(ids[:5])) == ["p0", "p2", "p4"]
    finally:
        cleanup(client, prefix)


def test_spilled_erasure_owners_round_trip_through_redis(live):
    """The erasure step's spilled owners (operators.erasure) on the real Redis: added with the
    parked TTL, ORed back per owner, a deleted owner's members removed, the set deleted."""
    prefix = f"test-owners-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(live[1])
    keyspace = Keyspace(prefix, "1")
    try:
        writer = RedisWriter(client, keyspace, parked_ttl_s=600)
        store = RedisFeatureStore(client, keyspace, ttl_s=60)
        writer.write_batch([("spill_owners", "c1", ["1:a", "2:b"]),
                            ("spill_owners", "c1", ["2:a", "1:c"])])
        assert store.spilled_owners("c1") == {"a": 3, "b": 2, "c": 1}
        assert 0 < client.ttl(keyspace.erasure_owners("c1")) <= 600
        writer.write_batch([("unspill_owners", "c1", ["1:a", "2:a", "3:a"])])
        assert store.spilled_owners("c1") == {"b": 2, "c": 1}
        store.spilling_owners("c1", ["1:d"])  # on its way: served before it lands
        assert store.spilled_owners("c1") == {"b": 2, "c": 1, "d": 1}
        writer.write_batch([("forget_owners", "c1")])
        assert not client.exists(keyspace.erasure_owners("c1"))
    finally:
        cleanup(client, prefix)


def test_a_batch_larger_than_a_pipeline_is_written_whole_and_in_order(live, monkeypatch):
    """A write batch past `PIPELINE_BYTES` (the end of a drain writes every pending feed at once)
    goes in several pipelines, in order: a key written twice keeps its later value."""
    from operators import redis_store

    monkeypatch.setattr(redis_store, "PIPELINE_BYTES", 10_000)
    prefix = f"test-chunks-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(live[1])
    keyspace = Keyspace(prefix, "1")
    try:
        counting = CountingClient(client)
        writer = RedisWriter(counting, keyspace)
        feeds = [("feed", f"u{i}", b"%d:" % i + b"x" * 1_000) for i in range(50)]
        writer.write_batch(feeds + [("feed", "u0", b"last")])
        assert counting.trips == 6, "about 10 kB per pipeline"
        assert client.get(keyspace.feed("u0")) == b"last"
        assert [client.get(keyspace.feed(f"u{i}"))[:3] for i in (1, 49)] == [b"1:x", b"49:"]
    finally:
        cleanup(client, prefix)


def test_ranks_over_redis_equal_the_in_process_ranks_on_the_bench_workload(live, monkeypatch):
    """`scripts.bench_rank --store redis`: every user of a seeded workload ranked through the
    workers' Redis feature store (what the engine learned, written by the workers' writer; a
    short cache TTL, so reads expire mid-run) gives the in-process store's feeds and choice sets
    byte for byte; the private keyspace is removed after."""
    monkeypatch.setenv("REDIS_URL", live[1])
    args = ["--events", "6000", "--users", "800", "--rounds", "1"]
    _, in_process = bench_rank.main(args)
    _, over_redis = bench_rank.main([*args, "--store", "redis", "--ttl-s", "0.01"])
    assert over_redis == in_process
    client = redis.Redis.from_url(live[1])
    assert not list(client.scan_iter(match="bench-rank-*", count=10_000))


def test_item_features_are_cached_their_own_ttl_and_the_indexes_theirs(ranked_world):
    """A kind's own TTL (`kind_ttl_s`) holds in the prefetch too: a rank after the indexes' TTL
    re-reads the indexes and the global model (one round trip) but not the items and neighbour
    rows, still within theirs."""
    client, keyspace, ctx, frozen = ranked_world
    counting = CountingClient(client)
    store = RedisFeatureStore(counting, keyspace, ttl_s=0.05,
                              kind_ttl_s={"item": 60.0, "nbrs": 60.0})
    first = rank(pickle.loads(frozen), store, ctx, T + 30)
    time.sleep(0.1)
    trips = counting.trips
    again = rank(pickle.loads(frozen), store, ctx, T + 30)
    assert counting.trips == trips + 1  # the indexes and the model, in the prefetch's one trip
    assert again.encode() == first.encode()
    single = RedisFeatureStore(counting, keyspace, ttl_s=0.05)  # one TTL for every kind
    rank(pickle.loads(frozen), single, ctx, T + 30)
    time.sleep(0.1)
    trips = counting.trips
    rank(pickle.loads(frozen), single, ctx, T + 30)
    assert counting.trips > trips + 1  # the items are read again too
