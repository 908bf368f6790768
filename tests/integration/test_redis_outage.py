"""Redis stopped for a few seconds, or restarted and still loading its data: writers and
feature-store reads wait with backoff and resume, losing nothing, for up to
`redis.outage_timeout_s` (a private redis-server on a free port, really stopped and restarted)."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import redis

from operators.item_stats import ItemView
from operators.redis_store import RedisFeatureStore, RedisUnavailable, RedisWriter, connect
from schemas.keyspace import Keyspace
from scripts.services import private_redis
from tests.integration.helpers import free_port, redis_server_binary, start_redis


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")
def test_writes_and_reads_survive_a_restart(tmp_path, live):
    port = free_port()
    proc = start_redis(port, tmp_path)
    client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)
    ks = Keyspace("outage", "1")
    writer = RedisWriter(client, ks, outage_timeout_s=30)
    writer.write_batch([("feed", "u1", b"one")])
    proc.kill()
    proc.wait()

    restarted: list[subprocess.Popen] = []
    timer = threading.Timer(2.0, lambda: restarted.append(start_redis(port, tmp_path)))
    timer.start()
    t0 = time.time()
    try:
        writer.write_batch([("feed", "u2", b"two"), ("item", ItemView("p1", "a", ("t",), None,
                                                                        1, 0.5, 1.0, 3, False))])
        waited = time.time() - t0
        assert waited >= 1.5, "the write waited for Redis instead of failing"
        assert client.get(ks.feed("u2")) == b"two"
        store = RedisFeatureStore(client, ks, ttl_s=0.0)
        assert store.items(["p1"])["p1"].impressions == 3
        assert store.trending("", 5) == ["p1"]
    finally:
        timer.join()
        for p in restarted:
            p.kill()


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")
def test_a_restarted_redis_still_loading_is_waited_out(tmp_path, caplog):
    """A restarted Redis answers LOADING ("Redis is loading the dataset in memory") for as long as
    it loads its dump (here ~4 s: 2,000 keys at the debug setting `key-load-delay` 2 ms each). A write within `outage_timeout_s` waits and
    lands; with a budget shorter than the load it fails, saying what to do."""
    import logging

    port = free_port()
    proc = start_redis(port, tmp_path)
    client = connect(f"redis://127.0.0.1:{port}/0")  # the workers' client: no hidden retries
    client.eval("for i = 1, 2000 do redis.call('set', 'k' .. i, i) end", 0)
    client.save()
    proc.kill()
    proc.wait()
    # answer LOADING while loading (events are served every 1 KiB of the dump read)
    loading = ("--key-load-delay", "2000", "--loading-process-events-interval-bytes", "1024")

    # back as soon as it answers, LOADING: not once loaded
    servers = [private_redis(port, tmp_path, ("--appendonly", "no", *loading), loaded=False)]
    try:
        with pytest.raises(RedisUnavailable, match="Redis unavailable for .*still loading its data"):
            RedisWriter(client, Keyspace("loading", "1"), outage_timeout_s=1).write_batch(
                [("feed", "u1", b"early")])
        t0 = time.time()
        with caplog.at_level(logging.WARNING, logger="persona.redis"):
            RedisWriter(client, Keyspace("loading", "1"), outage_timeout_s=60).write_batch(
                [("feed", "u1", b"late")])
        assert time.time() - t0 >= 1.0, "the write did not meet the load"
        assert client.get("k2000") == b"2000", "the dump did not load whole"
        assert client.get(Keyspace("loading", "1").feed("u1")) == b"late"
        lines = [r.getMessage() for r in caplog.records]
        assert any("loading the dataset" in line and line.startswith("Redis degraded: write failed")
                   for line in lines), lines
        assert lines[-1].startswith("Redis write resumed after"), lines
    finally:
        for server in servers:
            server.kill()
            server.wait()


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")
@pytest.mark.parametrize("claim", [True, False])
def test_a_redis_that_lost_its_data_is_noticed(tmp_path, caplog, claim):
    """A Redis without persistence restarted empty under running workers: the next write batch
    notices that the active-version pointer is gone and says so once. The live workers' writer
    (`claim`) sets the pointer back to the version they write, so readers find their new writes
    again instead of falling back to version "1"; a rebuild's writer leaves it."""
    import logging

    from operators.redis_store import KeyspaceGuard
    from reader import PersonaClient

    port = free_port()
    servers = [start_redis(port, tmp_path)]
    client = connect(f"redis://127.0.0.1:{port}/0")
    ks = Keyspace("lost", "3")
    client.set(ks.active, "3")  # the version a rebuild switched to earlier
    writer = RedisWriter(client, ks, guard=KeyspaceGuard(ks, claim=claim))
    try:
        with caplog.at_level(logging.ERROR, logger="persona.redis"):
            writer.write_batch([("feed", "u1", b"one")])
            assert not caplog.records, "a pointer in place was reported lost"
            servers[0].kill()
            servers[0].wait()
            servers.append(start_redis(port, tmp_path))  # empty: no persistence
            writer.write_batch([("feed", "u2", b"two")])
            writer.write_batch([("feed", "u3", b"three")])
        lost = [r.getMessage() for r in caplog.records]
        assert len(lost) == 1 and lost[0].startswith("Redis lost its data: the active-version "
                                                     "pointer lost:active was gone"), lost
        assert "persona replay --topic" in lost[0] and writer.guard.losses == 1
        assert client.get(ks.feed("u3")) == b"three"
        reader = PersonaClient(client, "lost")
        if claim:
            assert client.get(ks.active) == b"3"
            assert reader.raw_feed("u3") == b"three"
        else:
            assert client.get(ks.active) is None
            assert reader.raw_feed("u3") is None  # what readers see until a switch
    finally:
        for server in servers:
            server.kill()
            server.wait()


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")
def test_the_flow_survives_redis_stopped_mid_stream(tmp_path, live, capfd):
    """The whole flow against a private, durable redis-server that is stopped for 3 s while a
    tailing worker has events to write, then restarted: the worker waits (logging each retry),
    resumes, and ends with the same contents as an uninterrupted drained run (every key; exact
    kinds byte for byte)."""
    from tests.integration.helpers import assert_fault_mid_stream_loses_nothing

    data = tmp_path / "redis"
    data.mkdir()
    port = free_port()
    servers = [start_redis(port, data, durable=True)]

    def stop():
        servers[0].terminate()
        servers[0].wait()

    def restart():
        time.sleep(3.0)  # down for a while with the second half of the log to write
        servers.append(start_redis(port, data, durable=True))
    try:
        assert_fault_mid_stream_loses_nothing(live, f"redis://127.0.0.1:{port}/0", stop, restart,
                                              seed=23)
        assert "retrying in" in capfd.readouterr().err, "the degraded worker said nothing"
    finally:
        for server in servers:
            server.kill()
            server.wait()


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")
def test_a_full_redis_is_waited_out_until_it_has_room(tmp_path, caplog):
    """A Redis at its `maxmemory` with `noeviction` refuses writes (OOM), here in the middle of a
    pipeline. The writer waits, saying so, instead of failing the worker at once; an operator
    raising the limit 2 s later lets the batch land whole."""
    import logging
    import threading

    port = free_port()
    server = start_redis(port, tmp_path, extra=("--maxmemory", "2mb",
                                                "--maxmemory-policy", "noeviction"))
    client = connect(f"redis://127.0.0.1:{port}/0")
    ks = Keyspace("full", "1")
    writer = RedisWriter(client, ks, outage_timeout_s=60)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):  # filled past the limit
            for i in range(100):
                client.set(f"filler:{i}", b"x" * 100_000)
        raised = threading.Timer(2.0, lambda: redis.Redis(port=port).config_set("maxmemory", 0))
        raised.start()
        with caplog.at_level(logging.WARNING, logger="persona.redis"):
            # more than the room left: the pipeline's later writes are refused
            writer.write_batch([("feed", f"u{i}", b"y" * 1000) for i in range(500)])
        raised.join()
        assert [client.get(ks.feed(f"u{i}")) for i in range(500)] == [b"y" * 1000] * 500
        lines = [r.getMessage() for r in caplog.records]
        assert any("used memory > 'maxmemory'" in line for line in lines), lines
        assert "resumed after" in lines[-1], lines
    finally:
        server.kill()
        server.wait()


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")
def test_a_primary_demoted_to_a_replica_is_waited_out(tmp_path, caplog):
    """A failover demotes the primary the workers write to: it answers READONLY until its address
    names a primary again (here it is promoted back 2 s later, as a virtual IP moving to the new
    primary would look to the writer). The writer waits, dropping its connections so that new
    ones reach the address's new owner, and the batch lands."""
    import logging
    import threading

    primary = tmp_path / "a"
    other = tmp_path / "b"
    primary.mkdir()
    other.mkdir()
    port, other_port = free_port(), free_port()
    servers = [start_redis(port, primary), start_redis(other_port, other)]
    client = connect(f"redis://127.0.0.1:{port}/0")
    ks = Keyspace("demoted", "1")
    writer = RedisWriter(client, ks, outage_timeout_s=60)
    try:
        writer.write_batch([("feed", "u1", b"before")])
        admin = redis.Redis(port=port)
        admin.replicaof("127.0.0.1", other_port)
        promoted = threading.Timer(2.0, lambda: admin.replicaof("NO", "ONE"))
        promoted.start()
        with caplog.at_level(logging.WARNING, logger="persona.redis"):
            writer.write_batch([("feed", "u2", b"after")])
        promoted.join()
        assert client.get(ks.feed("u2")) == b"after"
        lines = [r.getMessage() for r in caplog.records]
        assert any("read only replica" in line for line in lines), lines
        assert "resumed after" in lines[-1], lines
    finally:
        for server in servers:
            server.kill()
            server.wait()


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")
def test_the_runner_says_which_redis_settings_can_lose_writes(tmp_path):
    """`persona run` reads the Redis's INFO once before the workers start: an evicting policy at
    a memory limit and no append-only file are named, with what to set; a Redis set up as the
    README says gets no warning."""
    import config
    from scripts import runner

    (tmp_path / "risky").mkdir()
    (tmp_path / "safe").mkdir()
    risky_port, safe_port = free_port(), free_port()
    servers = [private_redis(risky_port, tmp_path / "risky", ("--maxmemory", "100mb",
                                                              "--maxmemory-policy", "allkeys-lru")),
               private_redis(safe_port, tmp_path / "safe", ("--appendonly", "yes",
                                                            "--maxmemory", "100mb",
                                                            "--maxmemory-policy", "noeviction"))]
    try:
        said: list[str] = []
        runner.audit_redis(config.load(env={"REDIS_URL": f"redis://127.0.0.1:{risky_port}/0",
                                            "PERSONA_REDIS__WAIT_REPLICAS": "1"}), said.append)
        assert len(said) == 3, said
        assert "maxmemory-policy allkeys-lru" in said[0] and "noeviction" in said[0]
        assert "appendonly yes" in said[1] and "0 replica(s) attached" in said[2]
        quiet: list[str] = []
        runner.audit_redis(config.load(env={"REDIS_URL": f"redis://127.0.0.1:{safe_port}/0"}),
                           quiet.append)
        assert quiet == []
    finally:
        for server in servers:
            server.kill()
            server.wait()
