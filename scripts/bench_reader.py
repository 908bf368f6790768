"""Reader latency: `GET /feed/{user}` through `persona serve` against the raw Redis `GET` of the
same feed keys, under the same load, one after the other in the same run; the ratio is printed.

The load comes from separate processes (scripts/loadgen.py). The headline is an **open loop** at a
fixed rate (`ReaderLoad.rate`, default 500 req/s over 4 keep-alive connections: the "moderate
load" of issue #7, about a quarter of what one server process sustains); `closed` adds a closed loop
at the same number of connections for the maximum throughput. The machine's load average and the
server's CPU time per request are reported with the numbers: on a shared 2-core machine they say
how far to trust them.

`persona bench` runs this as its phase 4 on the feeds its workers wrote; `persona bench-reader`
runs it alone, on an existing keyspace (`--prefix`) or on seeded feeds of the production shape
(schemas.Feed with `feed.size` items, written under a private prefix and removed at the end).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

import redis

from config import Settings
from operators.redis_store import connect_to
from schemas import Feed, FeedItem, Reason
from schemas.keyspace import Keyspace
from scripts import loadgen, runner
from scripts.bench import percentile, ratio
from scripts.bench_config import ReaderLoad

Log = Callable[[str], object]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def latency_summary(result: loadgen.Result) -> dict:
    """Counts and quantiles (ms) of one load run."""
    lat = result.latencies_ms
    seconds = max(result.seconds, 1e-9)
    return {"requests": len(lat), "errors": result.errors, "rps": round(len(lat) / seconds, 1),
            "late_starts": result.late_starts, "client_lag": result.client_lag,
            "empty_replies": result.empty,
            **{f"p{q}_ms".replace(".", "_"): _round(percentile(lat, q))
               for q in (50, 90, 99, 99.9)},
            "max_ms": _round(max(lat) if lat else None)}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group `pgid` (the server and
    its uvicorn workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_pressure() -> float | None:
    """Share of the last 10 s (%) in which some runnable task waited for a CPU (Linux PSI), or
    None where the kernel does not report it: how much the machine's other work delayed ours."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Server:
    """A `persona serve` subprocess (its own process group) and its log: the access log has the
    app's own time per request, which tells the app's cost from the machine's queueing."""

    process: subprocess.Popen
    port: int
    log_path: str

    def log_offset(self) -> int:
        return os.path.getsize(self.log_path)

    def feed_times_ms(self, since: int) -> list[float]:
        """The app's own time of each GET /feed logged after offset `since` (reader.middleware)."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return [float(m.group(1)) for m in FEED_LOG_LINE.finditer(f.read())]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
        self.process.wait(15)
        os.unlink(self.log_path)


FEED_LOG_LINE = re.compile(rb"GET /feed/\{user_id\} 200 ([0-9.]+)ms")


def start_server(settings: Settings, prefix: str, workers: int) -> Server:
    """`persona serve` on a free port, logging to a file (a pipe nobody reads would fill and stall
    it); waits for /healthz."""
    port = runner.free_ports(1)[0]
    rs = settings.redis  # the server gets the bench's Redis and access settings, however given
    env = dict(os.environ, REDIS_URL=rs.url, PERSONA_REDIS__PREFIX=prefix,
               PERSONA_REDIS__USERNAME=rs.username, PERSONA_REDIS__PASSWORD=rs.password,
               PERSONA_REDIS__TLS=str(rs.tls).lower(), PERSONA_REDIS__CA_FILE=rs.ca_file,
               PERSONA_READER__TOKEN=settings.reader.token)
    env.setdefault("PYTHONPATH", ROOT)
    fd, log_path = tempfile.mkstemp(prefix="persona-serve-", suffix=".log")
    with os.fdopen(fd, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "scripts.cli", "serve", "--port",
                                    str(port), "--workers", str(workers)],
                                   env=env, stdout=subprocess.DEVNULL, stderr=log_file,
                                   start_new_session=True)
    server = Server(process, port, log_path)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return server
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                with open(log_path, "rb") as f:
                    tail = f.read().decode(errors="replace")[-2000:]
                server.stop()
                raise RuntimeError("the reader did not start (run `persona serve` to see why):\n"
                                   + tail) from None
            time.sleep(0.2)


def reader_bench(settings: Settings, prefix: str, users: list[str], load: ReaderLoad,
                 log: Log) -> dict:
    """HTTP vs raw Redis under `load` on the feeds of `users` in keyspace `prefix` (active version)."""
    client = _redis(settings)
    version = (client.get(f"{prefix}:active") or b"1").decode()
    keyspace = Keyspace(prefix, version)
    token = settings.reader.token
    http = loadgen.Target("http", "127.0.0.1", 0, tuple(f"/feed/{u}".encode() for u in users),
                          f"Authorization: Bearer {token}\r\n".encode() if token else b"")
    raw = _raw_redis_target(client, tuple(keyspace.feed(u).encode() for u in users))
    out: dict = {"users": len(users), "load": asdict(load), "cpus": os.cpu_count(),
                 "loadavg_1m_before": loadavg(), "cpu_pressure_before": cpu_pressure()}
    server = start_server(settings, prefix, load.server_workers)
    http = loadgen.Target(http.kind, http.host, server.port, http.requests, http.headers)
    try:
        loadgen.run(http, loadgen.Load(1.0, load.connections, None))  # warm-up (imports, caches)
        modes = ([("open", load.rate)] if load.rate else []) + (
            [("closed", None)] if load.closed or not load.rate else [])
        for mode, rate in modes:
            shape = loadgen.Load(load.seconds, load.connections, rate, load.load_processes)
            what = f"{rate:,.0f} req/s open loop" if rate else "closed loop"
            log(f"  reader: GET /feed/{{user}}, {what}, {load.connections} connections, "
                f"{load.seconds:.0f}s")
            cpu0, offset = group_cpu_s(server.process.pid), server.log_offset()
            h = latency_summary(loadgen.run(http, shape))
            h["server_cpu_ms_per_request"] = _round(
                (group_cpu_s(server.process.pid) - cpu0) * 1000 / max(1, h["requests"]))
            time.sleep(0.2)  # the last access lines
            app = server.feed_times_ms(offset)
            h["app_p50_ms"], h["app_p99_ms"] = (_round(percentile(app, q)) for q in (50, 99))
            log("  reader: raw Redis GET, same load")
            r = latency_summary(loadgen.run(raw, shape))
            out[mode] = {"http": h, "redis": r, "p50_ratio": _ratio(h["p50_ms"], r["p50_ms"]),
                         "p99_ratio": _ratio(h["p99_ms"], r["p99_ms"])}
    finally:
        server.stop()
    out["loadavg_1m_after"], out["cpu_pressure_after"] = loadavg(), cpu_pressure()
    # the headline (what `persona bench` has always reported): the first mode run
    head = out["open" if load.rate else "closed"]
    out.update({"mode": "open" if load.rate else "closed", "concurrency": load.connections,
                "http_requests": head["http"]["requests"], "http_rps": head["http"]["rps"],
                "http_p50_ms": head["http"]["p50_ms"], "http_p99_ms": head["http"]["p99_ms"],
                "redis_gets": head["redis"]["requests"], "redis_p50_ms": head["redis"]["p50_ms"],
                "redis_p99_ms": head["redis"]["p99_ms"],
                "p99_ratio_http_to_redis": head["p99_ratio"]})
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    r = ratio(a, b)
    return None if r is None else round(r, 2)


def _redis(settings: Settings):
    client = connect_to(settings.redis)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(f"Redis not reachable at {settings.redis.url} ({exc}): start it with "
                           "`persona up` or set REDIS_URL") from None
    return client


def _raw_redis_target(client, keys: tuple[bytes, ...]) -> loadgen.Target:
    """Raw GETs of `keys` on the server, database and credentials of `client` (plain TCP)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs or client.connection_pool.connection_class.__name__ == "SSLConnection":
        raise RuntimeError("the raw Redis phase speaks RESP over plain TCP: run the reader bench "
                           "against a Redis without TLS or a unix socket")
    setup = []
    if kwargs.get("password"):
        setup.append((b"AUTH", *((kwargs["username"].encode(),) if kwargs.get("username") else ()),
                      kwargs["password"].encode()))
    if kwargs.get("db"):
        setup.append((b"SELECT", str(kwargs["db"]).encode()))
    return loadgen.Target("redis", kwargs.get("host", "127.0.0.1"), int(kwargs.get("port", 6379)),
                          keys, setup=tuple(setup))


def table(report: dict) -> list[tuple[str, str]]:
    """(measure, value) rows for `persona bench-reader` and `persona bench`'s reader phase."""
    rows = []
    lo = report["load"]
    for mode in ("open", "closed"):
        m = report.get(mode)
        if not m:
            continue
        shape = (f"{lo['rate']:,.0f} req/s open loop" if mode == "open" else "closed loop") + \
            f", {lo['connections']} conn"
        for name, key in (("reader GET /feed", "http"), ("raw Redis GET", "redis")):
            s = m[key]
            rows.append((f"{name} ({shape})",
                         f"p50 {_ms(s['p50_ms'])} / p99 {_ms(s['p99_ms'])} / "
                         f"p99.9 {_ms(s['p99_9_ms'])} ms, {s['rps']:,.0f} req/s"
                         + (f", {s['errors']} errors" if s["errors"] else "")))
        rows.append(("  HTTP : Redis, p50 / p99", f"{m['p50_ratio']} / {m['p99_ratio']}"))
        h = m["http"]
        rows.append(("  the app's own time p50 / p99 (access log)",
                     f"{_ms(h['app_p50_ms'])} / {_ms(h['app_p99_ms'])} ms"))
        rows.append(("  server CPU per request", f"{h['server_cpu_ms_per_request']:.3f} ms"))
    rows.append(("server workers / load processes",
                 f"{lo['server_workers']} / {lo['load_processes']}"))
    rows.append(("load average (1 min) before / after",
                 f"{report['loadavg_1m_before']:.2f} / {report['loadavg_1m_after']:.2f} "
                 f"on {report['cpus']} CPUs"))
    if report.get("cpu_pressure_before") is not None:
        rows.append(("CPU pressure (some tasks waiting, 10 s) before / after",
                     f"{report['cpu_pressure_before']:.0f}% / {report['cpu_pressure_after']:.0f}%"))
    return rows


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


# ------------------------------------------------------------------------------ standalone
def seed_feeds(settings: Settings, prefix: str, users: int, seed: int) -> list[str]:
    """`users` feeds of `feed.size` items in the production shape (schemas.Feed: in-network,
    similar, topic, trending and fresh reasons with details and weights), version 1 active."""
    rng = random.Random(seed)
    keyspace = Keyspace(prefix, "1")
    codes = ("in_network", "similar", "topic", "trending", "fresh")
    client = _redis(settings)
    pipe = client.pipeline(transaction=False)
    ids = [f"u{n:06d}" for n in range(users)]
    for user in ids:
        items = []
        for rank in range(settings.feed.size):
            author = f"u{rng.randrange(users):06d}"
            reasons = tuple(Reason(code, {"in_network": author, "similar": f"p{rng.randrange(10**6)}",
                                          "topic": f"t{rng.randrange(20):02d}"}.get(code),
                                   round(rng.random(), 6))
                            for code in rng.sample(codes, rng.choice((1, 2, 2, 3))))
            items.append(FeedItem(f"p{rng.randrange(10**7)}", author, 1.0 - rank / 100, reasons))
        pipe.set(keyspace.feed(user), Feed(user, 1_700_000_000_000 + rng.randrange(10**8),
                                           tuple(items), arms={"ranking": "control"}).encode())
    pipe.set(keyspace.active, "1")
    pipe.execute()
    return ids


def existing_users(settings: Settings, prefix: str, limit: int) -> list[str]:
    """Up to `limit` users with a feed in the active version of keyspace `prefix`."""
    client = _redis(settings)
    version = (client.get(f"{prefix}:active") or b"1").decode()
    pattern = Keyspace(prefix, version).feed("*")
    users = []
    for key in client.scan_iter(pattern, count=5000):
        users.append(key.decode().rsplit("{", 1)[1].rstrip("}"))
        if len(users) >= limit:
            break
    return users


def run(settings: Settings, load: ReaderLoad, users: int, prefix: str | None, seed: int,
        log: Log = print) -> dict:
    """`persona bench-reader`: on `prefix`'s feeds, or on `users` seeded feeds (removed after)."""
    own = prefix is None
    prefix = prefix or f"bench-reader-{uuid.uuid4().hex[:8]}"
    try:
        if own:
            log(f"seeding {users:,} feeds of {settings.feed.size} items under {prefix}")
            ids = seed_feeds(settings, prefix, users, seed)
        else:
            ids = existing_users(settings, prefix, users)
            if not ids:
                raise RuntimeError(f"no feeds under {prefix!r} (active version): run the workers "
                                   "or `persona demo` first, or leave out --prefix to seed some")
        random.Random(seed).shuffle(ids)
        report = reader_bench(settings, prefix, ids, load, log)
        report["feeds"] = "seeded" if own else f"existing under {prefix}"
        report["prefix"] = prefix
        return report
    finally:
        if own:
            client = _redis(settings)
            keys = list(client.scan_iter(f"{prefix}:*", count=5000))
            for i in range(0, len(keys), 5000):
                client.unlink(*keys[i:i + 5000])


__all__ = ["ReaderLoad", "Server", "latency_summary", "reader_bench", "run", "seed_feeds",
           "start_server", "table"]
