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
    """The whole flow against a private, durable redis-server that is stopped for 3 s while a
    tailing worker has events to write, then restarted: the worker waits (logging each retry),
    resumes, and ends with the same contents as an uninterrupted drained run (every key; exact
    kinds byte for byte). The second half of the log is produced while Redis is down, so the
    worker has work during the outage however fast it drained the first half."""
    import uuid

    import orjson

    from scripts import kafka_io, runner
    from scripts.generate import GeneratorConfig, generate
    from tests.integration.helpers import (
        assert_same_user_features,
        compare_runs,
        create_run_topics,
        key_digests,
        run_env,
        wait_first_write,
        wait_quiet,
    )

    data = tmp_path / "redis"
    data.mkdir()
    port = free_port()
    servers = [start_redis(port, data, durable=True)]
    url = f"redis://127.0.0.1:{port}/0"
    unique = uuid.uuid4().hex[:10]
    client = redis.Redis.from_url(url)
    procs: list = []
    try:
        envs = {run: dict(run_env(live, unique, run), REDIS_URL=url,
                          # every timer shorter than the quiet window below (graph records are
                          # published by the suggestions timer, up to its interval after input)
                          PERSONA_STREAM__SEEN_RERANK_S="1", PERSONA_STREAM__SUGGEST_INTERVAL_S="1",
                          PERSONA_STREAM__BACKLOG_INTERVAL_S="0")  # no catch-up stretch
                for run in ("ref", "outage")}
        settings = {run: create_run_topics(env) for run, env in envs.items()}
        events, _ = generate(GeneratorConfig(users=120, days=1, seed=23))
        # without the generator's deletions: the tailing worker reads its erasure commands back
        # and applies them, the drained reference (no recovery directory) does not
        events = [e for e in events if e["type"] != "user_deleted"]
        # the last event: a new user, whose feed shows that the end of the topic was processed
        events.append({"event_id": "sentinel", "type": "user_created", "ts": events[-1]["ts"] + 1,
                       "user_id": "zz-sentinel", "interests": ["t01"]})
        half = len(events) // 2
        bootstrap, topic = settings["ref"].kafka.bootstrap, settings["ref"].kafka.events_topic
        kafka_io.recreate_topic(bootstrap, topic, 1)
        kafka_io.produce(bootstrap, topic, [orjson.dumps(e) for e in events[:half]])

        procs = runner.start(settings["outage"], None, tail=True, env_extra=envs["outage"],
                             log=lambda m: None, metrics_port=0)
        wait_first_write(settings["outage"], procs[0])
        servers[0].terminate()
        servers[0].wait()
        kafka_io.produce(bootstrap, topic, [orjson.dumps(e) for e in events[half:]])
        time.sleep(3.0)
        assert procs[0].poll() is None, "the worker gave up while Redis was down"
        servers.append(start_redis(port, data, durable=True))
        # quiet for longer than the rank interval and stream.reorder_wait_s
        got = wait_quiet(client, settings["outage"].redis.prefix, procs[0], 8.0,
                         sentinel="v*:feed:{zz-sentinel}")
        runner.stop(procs)

        assert runner.run(settings["ref"], None, tail=False, env_extra=envs["ref"],
                          log=lambda m: None, metrics_port=0) == 0
        expected = key_digests(client, settings["ref"].redis.prefix)
        diff = compare_runs(expected, got)
        assert diff == {"missing": [], "extra": [], "different": []}, (
            {k: (len(v), v[:5]) for k, v in diff.items()})
        assert_same_user_features(client, settings["ref"].redis.prefix,
                                  settings["outage"].redis.prefix)
        assert "retrying in" in capfd.readouterr().err, "the degraded worker said nothing"
    finally:
        runner.stop(procs)
        for server in servers:
            server.kill()
            server.wait()
