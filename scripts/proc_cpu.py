"""CPU time from /proc for `persona bench`: of process trees (a process and its live descendants)
and of the whole machine, and which processes on this host are the configured Kafka broker and
Redis. Linux only; the parsers are pure functions over /proc text.

Every reading is cumulative CPU seconds; cores used over a window = Δseconds / Δwall seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from config import Settings
from scripts import services

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc counts CPU time in these per second
KAFKA_MAIN_CLASS = "kafka.Kafka"


def parse_pid_stat(text: str) -> tuple[int, int]:
    """(ppid, CPU ticks) from /proc/<pid>/stat, CPU = utime + stime + cutime + cstime (the last two:
    its children that exited and were waited for). The command name may hold spaces and parens, so
    fields are counted after the last ')'.

    >>> parse_pid_stat("42 (a) b) S 7 42 42 0 -1 4194560 10 0 0 0 300 50 4 1 20 0 3 0 9")
    (7, 355)
    """
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of proc(5)); utime..cstime are fields 14..17
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def parse_machine_stat(text: str) -> tuple[int, int]:
    """(busy, idle) ticks of all CPUs from /proc/stat's `cpu` line. iowait counts as idle; guest
    time is already inside user time, so it is not added again.

    >>> parse_machine_stat("cpu  100 5 20 700 30 0 3 2 9 0\\ncpu0 50 2 10 350 15 0 1 1 4 0")
    (130, 730)
    """
    line = next(row for row in text.splitlines() if row.startswith("cpu "))
    user, nice, system, idle, iowait, irq, softirq, steal = ([int(v) for v in line.split()[1:]]
                                                             + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal, idle + iowait


def tree_ticks(table: dict[int, tuple[int, int]], roots: Iterable[int]) -> int | None:
    """CPU ticks of the `roots` and all their live descendants, from a {pid: (ppid, ticks)} table;
    None when a root is not in it (gone: its total is unknown from now on).

    >>> tree_ticks({1: (0, 10), 2: (1, 5), 3: (2, 1), 4: (0, 100)}, [1])
    16
    """
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    roots = list(roots)
    if any(pid not in table for pid in roots):
        return None
    total, todo, seen = 0, roots, set()
    while todo:
        pid = todo.pop()
        if pid in seen:  # the same process under two roots counts once
            continue
        seen.add(pid)
        total += table[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def kafka_pids(cmdlines: Iterable[tuple[int, bytes]]) -> list[int]:
    """Pids of JVMs whose main class is Kafka's broker, from (pid, raw /proc/<pid>/cmdline).

    >>> kafka_pids([(5, b"/usr/bin/java\\0-Xmx1g\\0kafka.Kafka\\0server.properties\\0"),
    ...             (6, b"grep\\0kafka.Kafka\\0")])
    [5]
    """
    out = []
    for pid, raw in cmdlines:
        args = raw.decode(errors="replace").split("\0")
        if args and os.path.basename(args[0]) == "java" and KAFKA_MAIN_CLASS in args:
            out.append(pid)
    return out


def redis_pids(info: dict) -> list[int]:
    """Pids from an `INFO server` reply: one dict for a single server, or {node: dict} from a
    cluster client.

    >>> redis_pids({"process_id": 9}), redis_pids({"a:1": {"process_id": 3}, "a:2": {"process_id": 4}})
    ([9], [3, 4])
    """
    if "process_id" in info:
        return [int(info["process_id"])]
    return [int(v["process_id"]) for v in info.values() if isinstance(v, dict) and "process_id" in v]


# ------------------------------------------------------------------------------ reading /proc
def process_table(proc: str = "/proc") -> dict[int, tuple[int, int]]:
    """{pid: (ppid, CPU ticks)} of every process now (one read of each /proc/<pid>/stat)."""
    table = {}
    for entry in os.scandir(proc):
        if entry.name.isdigit():
            try:
                table[int(entry.name)] = parse_pid_stat(Path(entry.path, "stat").read_text())
            except (OSError, IndexError, ValueError):  # exited while scanning
                continue
    return table


def machine_busy_ticks(proc: str = "/proc") -> int:
    return parse_machine_stat(Path(proc, "stat").read_text())[0]


def local_broker_pids(settings: Settings) -> list[int] | None:
    """The Kafka broker's pids when every bootstrap address is this host's loopback, else None:
    the one `persona up` started (its pid file), or failing that every JVM running kafka.Kafka."""
    entries = [e for e in settings.kafka.bootstrap.split(",") if e.strip()]
    if not entries or not all(services.is_loopback(services.split_hostport(e, 9092)[0])
                              for e in entries):
        return None
    pid = services.read_pid(services.kafka_paths(settings)["pid"])
    if pid is not None and services.pid_alive(pid, KAFKA_MAIN_CLASS):
        return [pid]
    cmdlines = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdlines.append((int(entry.name), Path(entry.path, "cmdline").read_bytes()))
            except OSError:
                continue
    return kafka_pids(cmdlines) or None


def local_redis_pids(settings: Settings, client) -> list[int] | None:
    """Redis's pids (`INFO server` → process_id) when its URL is this host (loopback or a unix
    socket), else None; `client` is a connection to it."""
    parts = urlsplit(settings.redis.url)
    if parts.scheme != "unix" and not (parts.hostname and services.is_loopback(parts.hostname)):
        return None
    return redis_pids(client.info("server")) or None


# ------------------------------------------------------------------------------ sampling
@dataclass(frozen=True)
class CpuReading:
    """Cumulative CPU seconds at time t (monotonic); None where a role is unknown or gone."""

    t: float
    workers: float | None
    broker: float | None
    redis: float | None
    machine_busy: float


@dataclass(frozen=True)
class CpuRoles:
    """Whose CPU to read: worker roots (with descendants), broker, Redis (None: not on this host)."""

    workers: list[int]
    broker: list[int] | None
    redis: list[int] | None

    def read(self, t: float) -> CpuReading:
        table = process_table()

        def seconds(pids: list[int] | None) -> float | None:
            ticks = tree_ticks(table, pids) if pids else None
            return None if ticks is None else ticks / CLOCK_TICKS

        return CpuReading(t, seconds(self.workers), seconds(self.broker), seconds(self.redis),
                          machine_busy_ticks() / CLOCK_TICKS)
