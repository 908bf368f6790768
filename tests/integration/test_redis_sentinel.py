"""Redis behind Sentinel, failed over for real: a primary, its replicas and a Sentinel, each a
private redis-server on loopback; the primary is killed (-9) and the Sentinel promotes a replica.
The workers' writer, the HTTP reader and the whole flow follow the failover through a
`redis+sentinel://` URL; with `redis.wait_replicas` no acknowledged write is lost."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest
import redis

from operators.redis_store import RedisWriter, connect
from schemas.keyspace import Keyspace
from scripts.services import private_redis, private_sentinel
from tests.integration.helpers import (
    free_port,
    redis_server_binary,
    wait_until,
    write_in_background,
)

pytestmark = pytest.mark.skipif(redis_server_binary() is None, reason="redis-server not installed")

SERVICE = "persona-test"


class Group:
    """A primary, `replicas` replicas and one Sentinel; `kill_primary` fails it over."""

    def __init__(self, root, replicas: int, acl_user: tuple[str, str] | None = None):
        self.root = root
        self.procs: dict[int, object] = {}
        self.primary = free_port()
        self._start(self.primary)
        self.replicas = [free_port() for _ in range(replicas)]
        for port in self.replicas:
            self._start(port, "--replicaof", "127.0.0.1", str(self.primary))
        for port in self.replicas:
            _wait(lambda p=port: _info(p)["master_link_status"] == "up", f"replica {port} synced")
        self.sentinel = free_port()
        (root / "sentinel").mkdir()
        self.sentinel_proc = private_sentinel(self.sentinel, root / "sentinel", SERVICE,
                                              self.primary, acl_user=acl_user)
        self.url = f"redis+sentinel://127.0.0.1:{self.sentinel}/{SERVICE}/0"

    def _start(self, port: int, *args: str) -> None:
        data = self.root / f"{port}-{time.monotonic_ns()}"
        data.mkdir()
        self.procs[port] = private_redis(port, data, ("--appendonly", "no", *args))

    def kill_primary(self) -> int:
        """kill -9 the primary; the port of the replica the Sentinel promotes."""
        old = self.primary
        self.procs[old].kill()
        self.procs[old].wait()
        # what clients ask: the address, once the Sentinel sees a primary there (not s_down)
        sentinel = redis.sentinel.Sentinel([("127.0.0.1", self.sentinel)], socket_timeout=1)
        _wait(lambda: sentinel.discover_master(SERVICE)[1] != old,
              "the Sentinel promoted a replica", 30)
        self.primary = sentinel.discover_master(SERVICE)[1]
        _wait(lambda: _info(self.primary)["role"] == "master", "the promoted replica is primary")
        return self.primary

    def restart(self, port: int) -> None:
        """The failed primary back, empty: the Sentinel makes it a replica of the new primary."""
        self._start(port)

    def close(self) -> None:
        for proc in [*self.procs.values(), self.sentinel_proc]:
            proc.send_signal(signal.SIGCONT)  # a paused replica (no-op once it has exited)
            proc.kill()
            proc.wait()


def _info(port: int) -> dict:
    try:
        return redis.Redis(port=port, socket_timeout=1).info("replication")
    except redis.RedisError:
        return {}


def _wait(ready, what: str, timeout_s: float = 20.0) -> None:
    """`wait_until`, through a Sentinel or server that may not answer yet."""
    wait_until(ready, what, timeout_s, passing=(redis.RedisError, KeyError, TypeError))


@pytest.fixture
def group(tmp_path):
    made: list[Group] = []
    yield lambda replicas=1, **kw: made.append(Group(tmp_path, replicas, **kw)) or made[-1]
    for g in made:
        g.close()


def test_a_write_waits_for_a_replica_and_survives_the_failover_that_loses_an_unwaited_one(
        group, caplog):
    """The replica is cut off (paused, its link closed), so it acknowledges nothing. A writer without
    `wait_replicas` gets its write acknowledged by the primary alone; a writer with
    `wait_replicas = 1` keeps retrying. The primary is then killed and the replica resumed and
    promoted: the unwaited write is gone from the new primary, and the waited one lands on it
    once the old primary is back as its replica."""
    g = group()
    ks = Keyspace("sentinel", "1")
    waited = RedisWriter(connect(g.url), ks, outage_timeout_s=90, wait_replicas=1)
    unwaited = RedisWriter(connect(g.url), ks, outage_timeout_s=90)
    waited.write_batch([("feed", "u0", b"before")])
    replica = g.replicas[0]
    # a replica cut off: paused, and its link closed (else what the primary writes waits in the
    # paused replica's socket buffer and reaches it after all)
    os.kill(g.procs[replica].pid, signal.SIGSTOP)
    redis.Redis(port=g.primary).client_kill_filter(_type="replica")
    unwaited.write_batch([("feed", "u1", b"acknowledged by the primary alone")])

    with caplog.at_level(logging.WARNING, logger="persona.redis"):
        writer, errors = write_in_background(waited, [("feed", "u2", b"held by a replica")])
        time.sleep(2.5)
        assert writer.is_alive(), "the write returned though no replica acknowledged it"
        old = g.primary
        g.procs[old].kill()  # before the replica resumes: it never gets the unwaited write
        g.procs[old].wait()
        g.procs[replica].send_signal(signal.SIGCONT)
        assert g.kill_primary() == replica
        time.sleep(1.0)
        assert writer.is_alive(), "the write returned though the new primary has no replica"
        g.restart(old)
        writer.join(60)
    assert not writer.is_alive() and not errors, errors
    new = redis.Redis(port=replica)
    assert new.get(ks.feed("u0")) == b"before"
    assert new.get(ks.feed("u2")) == b"held by a replica"
    assert new.get(ks.feed("u1")) is None, "the unwaited write survived: the test lost its point"
    # a new client finds the new primary through the same URL
    assert connect(g.url).get(ks.feed("u2")) == b"held by a replica"
    lines = [r.getMessage() for r in caplog.records]
    assert any("0 of the 1 replica(s)" in line for line in lines), lines
    assert "resumed after" in lines[-1], lines


def test_the_http_reader_follows_a_failover(group):
    """GET /feed through the reader's hot path on a Sentinel URL: 503 while no primary answers,
    then the promoted replica's copy, with no restart of the reader."""
    from fastapi.testclient import TestClient

    import config
    from reader.http import create_app
    from schemas import Feed, FeedItem, Reason

    g = group()
    ks = Keyspace("sentinelread", "1")
    feed = Feed("u1", 1, (FeedItem("p1", "a1", 0.5, (Reason("topic", "t1"),)),)).encode()
    RedisWriter(connect(g.url), ks, wait_replicas=1).write_batch([("feed", "u1", feed)])
    http = TestClient(create_app(config.load(env={"REDIS_URL": g.url,
                                                  "PERSONA_REDIS__PREFIX": "sentinelread"})))
    assert http.get("/feed/u1").json()["items"][0]["post_id"] == "p1"
    g.procs[g.primary].kill()
    assert http.get("/feed/u1").status_code == 503
    g.kill_primary()
    deadline = time.monotonic() + 10
    while (response := http.get("/feed/u1")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert response.json()["items"][0]["post_id"] == "p1"


def test_the_flow_survives_a_failover_mid_stream(group, live, capfd):
    """The whole flow on a Sentinel URL with `redis.wait_replicas = 1`, a primary and two
    replicas: the primary is killed (-9) while a tailing worker has events to write, the Sentinel
    promotes a replica, and the worker ends with the same contents as an uninterrupted drained
    run (every key; exact kinds byte for byte) — nothing acknowledged was lost with the primary."""
    from tests.integration.helpers import assert_fault_mid_stream_loses_nothing

    g = group(replicas=2)
    assert_fault_mid_stream_loses_nothing(
        live, g.url, lambda: g.procs[g.primary].kill(), g.kill_primary, seed=29,
        env_extra={"PERSONA_REDIS__WAIT_REPLICAS": "1"})
    assert "retrying in" in capfd.readouterr().err, "the degraded worker said nothing"


def test_sentinels_that_let_in_one_acl_user(group):
    """Sentinels whose default user is off: both clients (the workers' and the reader's async one)
    reach the primary with `redis.sentinel_username` and `sentinel_password`; with the password
    alone they are refused."""
    import asyncio

    import config
    from operators.redis_store import connect_async, connect_to

    g = group(acl_user=("watcher", "w-secret"))
    env = {"REDIS_URL": g.url, "PERSONA_REDIS__SENTINEL_PASSWORD": "w-secret"}
    settings = config.load(env={**env, "PERSONA_REDIS__SENTINEL_USERNAME": "watcher"})
    client = connect_to(settings.redis)
    client.set("acl-probe", b"through the Sentinels")
    assert redis.Redis(port=g.primary).get("acl-probe") == b"through the Sentinels"

    async def read():
        from config.security import redis_connection
        url, options = redis_connection(settings.redis)
        async_client = connect_async(url, **options)
        try:
            return await async_client.get("acl-probe")
        finally:
            await async_client.aclose()
    assert asyncio.run(read()) == b"through the Sentinels"
    with pytest.raises(redis.RedisError):
        connect_to(config.load(env=env).redis).get("acl-probe")
