"""The reader bench's load generator against a local HTTP server that stalls once: the open loop
charges the requests that queued behind the stall from their due time (no coordinated omission);
the closed loop, by construction, sees the stall once."""

from __future__ import annotations

import asyncio

from scripts import loadgen

STALL_S = 0.2


async def _serve(stall_first: bool):
    """A keep-alive HTTP/1.1 server answering 2 bytes; the very first request waits STALL_S."""
    state = {"n": 0}

    async def handle(reader, writer):
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            state["n"] += 1
            if stall_first and state["n"] == 1:
                await asyncio.sleep(STALL_S)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _measure(rate, stall_first=True):
    server, port = await _serve(stall_first)
    async with server:
        target = loadgen.Target("http", "127.0.0.1", port, (b"/x",))
        return await loadgen._drive(target, loadgen.Load(1.0, 1, rate), rate, 0)


def test_open_loop_charges_queueing_behind_a_stall():
    result = asyncio.run(_measure(100.0))
    assert result.errors == 0 and 95 <= result.sent <= 101  # the rate was kept up after the stall
    slow = [ms for ms in result.latencies_ms if ms > 50]
    # the stalled request and the ~19 due during the stall all count the wait
    assert len(slow) >= 15 and max(result.latencies_ms) >= STALL_S * 1000 * 0.9
    assert result.late_starts >= 15


def test_closed_loop_sees_the_stall_once():
    result = asyncio.run(_measure(None))
    assert len([ms for ms in result.latencies_ms if ms > 0.9 * STALL_S * 1000]) == 1, sorted(
        result.latencies_ms)[-5:]
    assert result.late_starts == 0 and result.sent > 100


def test_without_a_stall_the_open_loop_is_not_charged_its_own_timer_jitter():
    result = asyncio.run(_measure(200.0, stall_first=False))
    # (a few replies may still land after the next due time when this machine is busy)
    assert result.late_starts <= 0.1 * result.sent
    assert sorted(result.latencies_ms)[len(result.latencies_ms) // 2] < 5
