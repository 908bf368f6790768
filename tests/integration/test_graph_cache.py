"""The social graph reads of the suggestions step against the real Redis: several kinds in one
pipeline (`RedisGraphStore.prefetch`), the longer-cached graph kinds with the worker's own writes
seen at once (`remember`), and the deleted-user answers kept while the deleted users' version does
not move (or the whole set, while small) — and dropped within the short TTL when another worker
deletes or restores a user."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from operators.redis_store import RedisFeatureStore, RedisWriter, connect
from operators.suggestions import store as graph_store
from operators.suggestions.store import GRAPH_KINDS, RedisGraphStore
from schemas.keyspace import Keyspace
from tests.integration.inproc import cleanup


@pytest.fixture
def stores(live):
    client = connect(live[1])
    prefix = f"test-graphcache-{uuid.uuid4().hex[:8]}"
    ks = Keyspace(prefix, "1")
    writer = RedisWriter(client, ks)

    def store(graph_ttl_s: float = 10.0) -> RedisGraphStore:  # one worker process's cache
        return RedisGraphStore(RedisFeatureStore(client, ks, ttl_s=0.3, kind_ttl_s={
            kind: graph_ttl_s for kind in GRAPH_KINDS}))
    yield writer, store, client
    cleanup(client, prefix)


def _pipelines(client, monkeypatch) -> list[int]:
    """Counts the pipelines executed through `client` (one round trip each)."""
    executed: list[int] = []
    make = client.pipeline

    def pipeline(*args, **kwargs):
        pipe = make(*args, **kwargs)
        run = pipe.execute

        def execute(*a, **k):
            executed.append(len(pipe.command_stack))
            return run(*a, **k)
        pipe.execute = execute
        return pipe
    monkeypatch.setattr(client, "pipeline", pipeline)
    return executed


def test_prefetch_reads_every_kind_in_one_round_trip(stores, monkeypatch):
    writer, store, client = stores
    writer.write_batch([("graph", "f1", orjson.dumps({"f": ["x"], "g": ["g1"], "a": []})),
                        ("graph", "f2", orjson.dumps({"f": ["y", "z"], "g": [], "a": ["w"]})),
                        ("liker", "author", "l1", 5), ("liker", "author", "l2", 6),
                        ("group_member", "g1", "m1", True)])
    graph = store()
    executed = _pipelines(client, monkeypatch)
    graph.prefetch(graph=["f1", "f2", "nobody"], likers=["author"], members=["g1", "g0"],
                   deleted=["f1"])
    # one pipeline (and one read of the small deleted users' set): the three graphs in one MGET,
    # then the likers' and the members' own reads
    assert executed == [1 + 1 + 2]
    assert graph.graphs(["f1", "f2", "nobody"]) == {
        "f1": {"f": ["x"], "g": ["g1"], "a": []}, "f2": {"f": ["y", "z"], "g": [], "a": ["w"]}}
    assert graph.likers(["author"]) == {"author": ["l2", "l1"]}
    assert graph.group_members(["g1", "g0"]) == {"g1": ["m1"]}
    assert graph.deleted(["f1"]) == set()
    assert len(executed) == 1  # all of it from the cache


def test_graph_kinds_keep_their_ttl_and_the_workers_own_writes_are_seen_at_once(stores):
    writer, store, _ = stores
    writer.write_batch([("graph", "u", orjson.dumps({"f": ["a"], "g": [], "a": []}))])
    mine, other = store(graph_ttl_s=0.6), store(graph_ttl_s=0.6)
    assert other.graphs(["u"])["u"]["f"] == ["a"] and mine.graphs(["u"])["u"]["f"] == ["a"]
    record = ("graph", "u", orjson.dumps({"f": ["a", "b"], "g": [], "a": []}))
    mine.remember([record])  # the owner publishes it: its own reads see it before Redis does
    writer.write_batch([record])
    assert mine.graphs(["u"])["u"]["f"] == ["a", "b"]
    time.sleep(0.4)  # past the short TTL, within the graph kinds' TTL: another worker's copy
    assert other.graphs(["u"])["u"]["f"] == ["a"]
    time.sleep(0.3)
    assert other.graphs(["u"])["u"]["f"] == ["a", "b"]


@pytest.mark.parametrize("whole_set_max", [10_000, 0])  # the set read whole | checks per user
def test_deleted_answers_follow_the_deleted_users_set(stores, monkeypatch, whole_set_max):
    monkeypatch.setattr(graph_store, "DELETED_SET_MAX", whole_set_max)
    writer, store, _ = stores
    graph = store()
    assert graph.deleted(["d", "e"]) == set()
    writer.write_batch([("forget_social", "d", [], [])])  # another worker deletes d
    time.sleep(0.35)  # the version is re-read after the short TTL
    assert graph.deleted(["d", "e"]) == {"d"}
    writer.write_batch([("undeleted", "d")])
    time.sleep(0.35)
    assert graph.deleted(["d", "e"]) == set()
    owner = store()
    owner.remember([("forget_social", "e", [], [])])  # its own deletion: at once, before Redis
    assert owner.deleted(["d", "e"]) == {"e"}


def test_the_deleted_users_version_moves_once_per_change_of_the_set(stores):
    # a restart re-applies the last epoch's writes (and a replay may apply them again): the
    # counter must end where one application leaves it, while every change still moves it
    writer, _, client = stores
    version = writer.keyspace.deleted_version
    deletion, restored = [("forget_social", "d", [], [])], [("undeleted", "d")]
    writer.write_batch(deletion)
    writer.write_batch(deletion)
    assert int(client.get(version)) == 1
    writer.write_batch(restored + restored)
    assert int(client.get(version)) == 2
    writer.write_batch(restored + deletion + deletion)
    assert int(client.get(version)) == 3
    assert client.scard(writer.keyspace.deleted_users) == 1
