"""The system on a real Redis Cluster (three primaries of Debian's redis-server in cluster mode, on
loopback): the streaming workers write through cluster pipelines, both readers (Python client and
HTTP) serve what they wrote, and a backfill switches the version pointer and collects the retired
version on every node. The key design (schemas/keyspace.py) in practice, not only its slot
arithmetic (tests/unit/test_keyspace_cluster.py)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time

import orjson
import pytest
import redis
from fastapi.testclient import TestClient

from operators.redis_store import RedisWriter, connect
from reader import PersonaClient
from reader.http import create_app
from schemas.keyspace import Keyspace
from scripts import runner
from scripts.replay import replay
from scripts.versions import Versions
from tests.integration.helpers import (
    cluster_ports,
    isolated_env,
    redis_server_binary,
    run_pipeline,
    start_cluster_node,
    start_redis,
    start_redis_cluster,
    wait_until,
    write_in_background,
)
from tests.integration.inproc import generated_log

pytestmark = pytest.mark.skipif(redis_server_binary() is None or shutil.which("redis-cli") is None,
                                reason="redis-server / redis-cli not installed")


def _keys_per_node(ports: list[int], pattern: str) -> list[int]:
    return [sum(1 for _ in redis.Redis(port=p).scan_iter(pattern, count=1000)) for p in ports]


def test_workers_readers_and_a_backfill_on_a_redis_cluster(tmp_path, live, unique):
    ports = cluster_ports(3)
    nodes = start_redis_cluster(ports, tmp_path)
    try:
        env = {**isolated_env(live, unique), "REDIS_URL": f"redis://127.0.0.1:{ports[0]}/0",
               "PERSONA_REDIS__CLUSTER": "true"}
        payloads, events, _, _ = generated_log(users=40, days=1.0, seed=5)
        settings = run_pipeline(env, payloads)  # the streaming workers, until drained
        audit: list[str] = []  # what `persona run` says of the nodes' settings: each primary
        runner.audit_redis(settings, audit.append)
        assert len(audit) == 3 and all("no append-only file" in w for w in audit), audit
        prefix = settings.redis.prefix
        cluster = redis.RedisCluster(host="127.0.0.1", port=ports[0])
        version = cluster.get(f"{prefix}:active").decode()
        per_node = _keys_per_node(ports, f"{prefix}:v{version}:*")
        assert min(per_node) > 0, f"keys not spread over the nodes: {per_node}"
        feeds = {k.decode(): orjson.loads(cluster.get(k))
                 for k in cluster.scan_iter(f"{prefix}:v{version}:feed:*", count=1000)}
        assert len(feeds) >= 30
        user = max(feeds.values(), key=lambda f: (len(f["items"]), f["user_id"]))["user_id"]
        stored = [i["post_id"] for i in feeds[f"{prefix}:v{version}:feed:{{{user}}}"]["items"]]
        assert stored, "the busiest user's feed is empty"

        client = PersonaClient.from_settings(settings)
        assert [i["post_id"] for i in client.feed(user, limit=200).items] == stored
        http = TestClient(create_app(settings))
        page = http.get(f"/feed/{user}", params={"limit": 200}).json()
        assert page["version"] == version and [i["post_id"] for i in page["items"]] == stored
        assert http.get(f"/suggestions/{user}").status_code == 200
        # the deleted users' set and its version counter change together in one script (one slot)
        ks = Keyspace(prefix, version)
        deleted = {e["user_id"] for e in events if e["type"] == "user_deleted"}
        assert deleted and cluster.scard(ks.deleted_users) == len(deleted)
        assert int(cluster.get(ks.deleted_version)) == len(deleted)

        log = tmp_path / "log.jsonl"
        log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        backfill = replay(settings, [log], grace_s=0.0)  # a new version, then the switch
        assert backfill["previous"] == version and backfill["writes"] > 100
        time.sleep(1.0)  # past the readers' pointer cache
        page = http.get(f"/feed/{user}").json()
        assert page["version"] == backfill["version"] and page["items"]
        assert client.feed(user).version == backfill["version"]

        collected = Versions(cluster, prefix).collect(grace_s=0.0)
        assert collected == [version]
        assert _keys_per_node(ports, f"{prefix}:v{version}:*") == [0, 0, 0]
        assert min(_keys_per_node(ports, f"{prefix}:v{backfill['version']}:*")) > 0
    finally:
        for node in nodes:
            node.kill()
            node.wait()


def test_writes_wait_out_a_cluster_node_restart(tmp_path, caplog):
    """A primary of the cluster killed and restarted on its data 2 s later: the workers' writer
    (`RedisWriter` on the cluster client of `operators.redis_store.connect`) retries through the
    refused connections and the ~1.5 s of "The cluster is down" after the node is back (until
    the others see it again), and every write lands. Before session 28 the second answer failed
    the worker at once."""
    import logging

    ports = cluster_ports(3)
    nodes = start_redis_cluster(ports, tmp_path)
    restarted = []
    try:
        client = connect(f"redis://127.0.0.1:{ports[0]}/0", cluster=True)
        ks = Keyspace("cluster-outage", "1")
        writer = RedisWriter(client, ks, outage_timeout_s=60)
        users = [f"u{i}" for i in range(60)]  # spread over every node's slots
        writer.write_batch([("feed", u, b"before") for u in users])
        nodes[2].kill()
        nodes[2].wait()
        timer = threading.Timer(2.0, lambda: restarted.append(start_redis(
            ports[2], tmp_path / f"node-{ports[2]}",
            extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))))
        timer.start()
        with caplog.at_level(logging.WARNING, logger="persona.redis"):
            writer.write_batch([("feed", u, b"after") for u in users])
        timer.join()
        assert [client.get(ks.feed(u)) for u in users] == [b"after"] * len(users)
        degraded = " ".join(r.getMessage() for r in caplog.records)
        assert "Connection refused" in degraded and "resumed after" in degraded
    finally:
        for node in nodes + restarted:
            node.kill()
            node.wait()


def _role(port: int) -> str:
    try:
        return redis.Redis(port=port, socket_timeout=1).info("replication")["role"]
    except redis.RedisError:
        return "down"


def test_a_cluster_write_waits_for_the_replica_of_every_primary_it_wrote_to(tmp_path, caplog):
    """`redis.wait_replicas = 1` on a Redis Cluster of 3 primaries with a replica each. A batch
    over every primary lands on every replica. With one primary's replica paused (still attached)
    a write to another primary still returns at once, while a write to that primary waits. (Each
    primary's WAIT runs on the connection that wrote, as WAIT's documented semantics need; this
    Redis 7.0 also makes a WAIT on any other connection wait for every earlier write, so the test
    cannot tell the two apart.) The primary is then
    killed, its replica resumed and promoted by the cluster; the write waits on (the new primary
    has no replica) until the old primary is back as its replica, then lands; nothing written
    before is lost."""
    ports = cluster_ports(6)
    procs = dict(zip(ports, start_redis_cluster(ports, tmp_path, replicas=1,
                                                node_timeout_ms=1000), strict=True))
    try:
        cluster = connect(f"redis://127.0.0.1:{ports[0]}/0", cluster=True)
        ks = Keyspace("cw", "1")
        waited = RedisWriter(cluster, ks, outage_timeout_s=90, wait_replicas=1)
        users = [f"u{i}" for i in range(60)]
        waited.write_batch([("feed", u, b"before") for u in users])
        primary_of = {u: cluster.get_node_from_key(ks.feed(u)).port for u in users}
        assert len(set(primary_of.values())) == 3, "the batch did not span the primaries"
        replica_of = {}
        for port in ports:
            info = redis.Redis(port=port).info("replication")
            if info["role"] == "slave":
                replica_of[info["master_port"]] = port
        for primary, replica in replica_of.items():  # each replica holds its primary's share
            r = redis.Redis(port=replica)
            r.execute_command("READONLY")
            mine = [u for u in users if primary_of[u] == primary]
            assert [r.get(ks.feed(u)) for u in mine] == [b"before"] * len(mine)

        target = users[0]
        primary = primary_of[target]
        replica = replica_of[primary]
        other = next(u for u in users if primary_of[u] != primary)
        # paused with its link open: attached, but acknowledging nothing
        os.kill(procs[replica].pid, signal.SIGSTOP)
        started = time.monotonic()
        waited.write_batch([("feed", other, b"another primary")])
        assert time.monotonic() - started < 0.9, "a primary whose replica is up waited"

        with caplog.at_level(logging.WARNING, logger="persona.redis"):
            writer, errors = write_in_background(waited, [("feed", target, b"held by a replica")])
            time.sleep(2.5)
            assert writer.is_alive(), "the write returned though no replica acknowledged it"
            procs[primary].kill()
            procs[primary].wait()
            procs[replica].send_signal(signal.SIGCONT)
            wait_until(lambda: _role(replica) == "master", "the replica's promotion", 30)
            time.sleep(1.0)
            assert writer.is_alive(), "the write returned though the new primary has no replica"
            procs[primary] = start_cluster_node(primary, tmp_path, 1000)  # back, as a replica
            writer.join(60)
        assert not writer.is_alive() and not errors, errors
        assert _role(primary) == "slave"
        fresh = connect(f"redis://127.0.0.1:{ports[-1]}/0", cluster=True)
        assert fresh.get(ks.feed(target)) == b"held by a replica"
        assert fresh.get(ks.feed(other)) == b"another primary"
        assert all(fresh.get(ks.feed(u)) == b"before" for u in users[1:] if u != other)
        lines = [r.getMessage() for r in caplog.records]
        assert any("0 of the 1 replica(s)" in line for line in lines), lines
        assert "resumed after" in lines[-1], lines
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGCONT)
                finally:
                    proc.kill()
                    proc.wait()
