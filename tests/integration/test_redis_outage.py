"""Redis stopped for a few seconds: writers and feature-store reads wait with backoff and resume,
losing nothing (a private redis-server on a free port, really stopped and restarted)."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import redis

from operators.item_stats import ItemView
from operators.redis_store import RedisFeatureStore, RedisWriter
from schemas.keyspace import Keyspace
from tests.integration.helpers import free_port, redis_server_binary, start_redis


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")
def test_writes_and_reads_survive_a_restart(tmp_path, live):
    port = free_port()
    proc = start_redis(port, tmp_path)
    client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)
    ks = Keyspace("outage", "1")
    writer = RedisWriter(client, ks, retries=10)
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
def test_the_flow_survives_redis_stopped_mid_stream(tmp_path, live, capfd):
    """The whole flow against a private, durable redis-server that is stopped for 3 s while the
    worker is writing, then restarted: the worker waits (logging each retry), resumes, and ends
    with the same contents as an uninterrupted run (every key; exact kinds byte for byte)."""
    import uuid

    import orjson

    from scripts import kafka_io, runner
    from scripts.generate import GeneratorConfig, generate
    from tests.integration.helpers import (
        compare_runs,
        create_run_topics,
        key_digests,
        run_env,
        wait_first_write,
    )

    data = tmp_path / "redis"
    data.mkdir()
    port = free_port()
    servers = [start_redis(port, data, durable=True)]
    url = f"redis://127.0.0.1:{port}/0"
    unique = uuid.uuid4().hex[:10]
    client = redis.Redis.from_url(url)
    try:
        envs = {run: dict(run_env(live, unique, run), REDIS_URL=url) for run in ("ref", "outage")}
        settings = {run: create_run_topics(env) for run, env in envs.items()}
        # enough work to outlast the outage (120 users were drained within it once ranks got
        # cheaper)
        events, _ = generate(GeneratorConfig(users=200, days=1, seed=23))
        topic = settings["ref"].kafka.events_topic
        kafka_io.recreate_topic(settings["ref"].kafka.bootstrap, topic, 1)
        kafka_io.produce(settings["ref"].kafka.bootstrap, topic, [orjson.dumps(e) for e in events])

        assert runner.run(settings["ref"], None, tail=False, env_extra=envs["ref"],
                          log=lambda m: None, metrics_port=0) == 0
        expected = key_digests(client, settings["ref"].redis.prefix)

        procs = runner.start(settings["outage"], None, tail=False, env_extra=envs["outage"],
                             log=lambda m: None, metrics_port=0)
        wait_first_write(settings["outage"], procs[0])
        time.sleep(0.5)
        assert procs[0].poll() is None, "the worker finished before Redis was stopped"
        servers[0].terminate()
        servers[0].wait()
        time.sleep(3.0)
        assert procs[0].poll() is None, "the worker gave up while Redis was down"
        servers.append(start_redis(port, data, durable=True))
        assert runner.supervise(procs, log=lambda m: None) == 0

        got = key_digests(client, settings["outage"].redis.prefix)
        diff = compare_runs(expected, got)
        assert diff == {"missing": [], "extra": [], "different": []}, (
            {k: (len(v), v[:5]) for k, v in diff.items()})
        assert "retrying in" in capfd.readouterr().err, "the degraded worker said nothing"
    finally:
        for server in servers:
            server.kill()
            server.wait()
