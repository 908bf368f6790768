"""The system on a real Redis Cluster (three primaries of Debian's redis-server in cluster mode, on
loopback): the streaming workers write through cluster pipelines, both readers (Python client and
HTTP) serve what they wrote, and a backfill switches the version pointer and collects the retired
version on every node. The key design (schemas/keyspace.py) in practice, not only its slot
arithmetic (tests/unit/test_keyspace_cluster.py)."""

from __future__ import annotations

import shutil
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
    start_redis,
    start_redis_cluster,
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
    import threading

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
