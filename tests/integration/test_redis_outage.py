"""Redis stopped for a few seconds: writers and feature-store reads wait with backoff and resume,
losing nothing (a private redis-server on a free port, really stopped and restarted)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
import redis

from operators.item_stats import ItemView
from operators.redis_store import RedisFeatureStore, RedisWriter
from schemas.keyspace import Keyspace


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int, tmp) -> subprocess.Popen:
    proc = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port),
                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp)], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


@pytest.mark.skipif(not (shutil.which("redis-server") or os.path.exists("/usr/bin/redis-server")),
                    reason="redis-server not installed")
def test_writes_and_reads_survive_a_restart(tmp_path, live):
    port = free_port()
    proc = start(port, tmp_path)
    client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)
    ks = Keyspace("outage", "1")
    writer = RedisWriter(client, ks, retries=10)
    writer.write_batch([("feed", "u1", b"one")])
    proc.kill()
    proc.wait()

    restarted: list[subprocess.Popen] = []
    timer = threading.Timer(2.0, lambda: restarted.append(start(port, tmp_path)))
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
