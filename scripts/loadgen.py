"""A small load generator for the reader bench: HTTP/1.1 GETs or Redis GETs over plain sockets.

It runs in its own process(es) (`run`), never in the server's or the bench's interpreter, so the
client does not share a GIL with what it measures. Both targets use the same minimal client code (one
keep-alive connection per lane, a request written whole, the reply read by its length), so the HTTP : Redis
ratio compares the servers, not two client libraries.

Two modes:

- **open loop** (`rate` req/s, the default of the reader bench): request i is due at t0 + i/rate
  and goes to lane i mod `connections`. A request due while its lane still waits for the previous reply
  is charged from its due time (the queueing the server caused is counted: no coordinated
  omission); a request whose lane was idle at its due time is charged from when it is sent (the
  generator's own timer jitter and scheduling delays are not charged to the server; they are
  counted, `client_lag`, so a run whose generator could not keep up shows it).
- **closed loop** (`rate` None): each lane sends its next request as soon as the previous reply is
  in; the throughput it reaches is the server's maximum at that concurrency, and its latencies
  include no queueing in front of the client.

>>> resp_get(b"persona:v1:feed:{u1}")
b'*2\\r\\n$3\\r\\nGET\\r\\n$20\\r\\npersona:v1:feed:{u1}\\r\\n'
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass
from queue import Empty


@dataclass(frozen=True)
class Target:
    """Where to send and what: HTTP GET `requests` (paths) or Redis GET `requests` (keys)."""

    kind: str  # "http" | "redis"
    host: str
    port: int
    requests: tuple[bytes, ...]
    headers: bytes = b""  # extra HTTP header lines, each ending in \r\n (e.g. Authorization)
    setup: tuple[tuple[bytes, ...], ...] = ()  # Redis commands sent once per connection (AUTH, SELECT)


@dataclass(frozen=True)
class Load:
    seconds: float
    connections: int
    rate: float | None = None  # req/s in total over all processes; None = closed loop
    processes: int = 1


@dataclass
class Result:
    latencies_ms: list[float]
    errors: int
    sent: int
    late_starts: int  # open loop: requests charged from their due time (their lane was busy)
    client_lag: int  # open loop: sent late with an idle lane (the generator itself ran late)
    seconds: float
    empty: int = 0  # replies without a body (Redis nil: the key was not there)


def resp_get(key: bytes) -> bytes:
    """The RESP encoding of GET key."""
    return resp(b"GET", key)


def resp(*args: bytes) -> bytes:
    """The RESP encoding of a command."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _wire(target: Target) -> list[bytes]:
    if target.kind == "redis":
        return [resp_get(k) for k in target.requests]
    return [b"GET %s HTTP/1.1\r\nHost: bench\r\n%s\r\n" % (p, target.headers)
            for p in target.requests]


async def _read_http(reader: asyncio.StreamReader) -> int:
    """One reply: its body length, or -1 for a status other than 2xx."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return length if head[9:10] == b"2" else -1  # "HTTP/1.1 2xx"


async def _read_redis(reader: asyncio.StreamReader) -> int:
    """One reply: the bulk string's length (0 for nil or a status), or -1 for an error."""
    line = await reader.readuntil(b"\r\n")
    if line[:1] == b"$":
        n = int(line[1:-2])
        if n >= 0:
            await reader.readexactly(n + 2)
        return max(n, 0)
    return -1 if line[:1] == b"-" else 0


async def _drive(target: Target, load: Load, rate: float | None, offset: int) -> Result:
    wire = _wire(target)
    read = _read_http if target.kind == "http" else _read_redis
    lanes = load.connections
    latencies: list[float] = []
    counts = {"errors": 0, "sent": 0, "late": 0, "client_lag": 0, "empty": 0}
    clock = time.perf_counter
    t0 = clock() + 0.05
    deadline = t0 + load.seconds

    async def lane(k: int) -> None:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        for command in target.setup:
            writer.write(resp(*command))
            if await _read_redis(reader) < 0:
                raise RuntimeError(f"Redis refused {command[0].decode()} (check the credentials)")
        i = k
        done_at = 0.0  # when this lane's previous reply was in
        try:
            while True:
                if rate is None:
                    start = clock()
                    if start >= deadline:
                        break
                else:
                    due = t0 + i / rate
                    if due >= deadline:
                        break
                    now = clock()
                    if now < due:
                        await asyncio.sleep(due - now)
                        start = clock()  # lane idle at its due time: charge from the send
                    elif done_at > due:
                        start = due  # the server kept the lane busy past the due time
                        counts["late"] += 1
                    else:  # the reply was in before the due time, but the client ran late
                        start = now
                        counts["client_lag"] += 1
                writer.write(wire[(i + offset) % len(wire)])
                counts["sent"] += 1
                size = await read(reader)
                done_at = clock()
                counts["empty"] += size == 0
                if size >= 0:
                    latencies.append((clock() - start) * 1000)
                else:
                    counts["errors"] += 1
                i += lanes
        finally:
            writer.close()

    await asyncio.gather(*(lane(k) for k in range(lanes)))
    return Result(latencies, counts["errors"], counts["sent"], counts["late"],
                  counts["client_lag"], clock() - t0, counts["empty"])


def _process(target: Target, load: Load, index: int, out) -> None:
    try:
        import uvloop  # the client's own overhead is part of every latency: keep it small
        uvloop.install()
    except ImportError:
        pass
    rate = load.rate / load.processes if load.rate else None
    try:
        result = asyncio.run(_drive(target, load, rate, offset=index * 7919))
        out.put(("ok", result))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def _next_result(queue, procs, deadline: float):
    """The next (status, value) a generator process reports; fails fast when one died silently."""
    while True:
        try:
            return queue.get(timeout=0.5)
        except Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                return "error", (f"a generator process exited with {dead[0]}" if dead
                                 else "no result in time")


def run(target: Target, load: Load) -> Result:
    """Drive `target` with `load` from `load.processes` fresh processes; their results merged."""
    ctx = multiprocessing.get_context("spawn")  # no inherited threads, sockets or GIL state
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process, args=(target, load, i, queue), daemon=True)
             for i in range(load.processes)]
    for p in procs:
        p.start()
    merged = Result([], 0, 0, 0, 0, 0.0)
    try:
        deadline = time.monotonic() + load.seconds + 60
        for _ in procs:
            status, value = _next_result(queue, procs, deadline)
            if status != "ok":
                raise RuntimeError(f"load generator failed: {value}")
            merged.latencies_ms.extend(value.latencies_ms)
            merged.errors += value.errors
            merged.sent += value.sent
            merged.late_starts += value.late_starts
            merged.client_lag += value.client_lag
            merged.empty += value.empty
            merged.seconds = max(merged.seconds, value.seconds)
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
    return merged


__all__ = ["Load", "Result", "Target", "resp", "resp_get", "run"]
