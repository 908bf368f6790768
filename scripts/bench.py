"""`persona bench`: throughput, freshness and memory of the full topology, next to the I/O floor.

One run, on a private topic and Redis prefix (both removed at the end):

1. workload — the first `events` events of `scripts.generate` (seeded; power-law follow graph,
   creators and activity, the generator's event mix), produced to a fresh topic keyed by user;
2. I/O floor — the same messages consumed from Kafka by `processes` plain consumers, decoded with
   orjson and written to Redis (one SET per event, one pipeline per batch), no logic;
3. pipeline — the real workers (`scripts.runner`, `processes` Bytewax processes) drain the topic;
   events/s in steady state comes from the workers' own counters (Prometheus), between 10% and 90%
   of the events, so start-up and the final flush are excluded (both are reported too);
   RSS of every worker process is sampled throughout, and CPU time (/proc) of the workers, the
   Kafka broker and Redis when they run on this host, and the machine, over the same window;
4. freshness — a new topic and tailing workers, which first read the world's opening (each
   user's first `PREFILL_EVENTS_PER_USER` events, unpaced). Then the rate they sustain is
   searched for (`rate_search`): steps of `rate_step_s` at rates bisecting (0, the drain's steady
   rate], each judged by whether the workers stayed out of catch-up mode and kept up with their
   timer work (`step_verdict`), with a pause to settle between steps. Then events are produced
   at half the highest sustained rate (or at `freshness_rate` without a search) with their event
   time set to the produce time, which is also
   their Kafka timestamp; the Redis sink traces when the feed of 1 user in `trace_every` is written
   (`stream.freshness_sample`); an event's freshness is the time from its Kafka timestamp to the
   first write of its user's feed generated at or after it. The share of the phase the workers
   spent in catch-up mode says whether they sustained the rate (0%: they did). A drain sheds
   ranks in catch-up mode, so half its rate can be more than tailing workers sustain.

Memory: peak RSS per process, RSS growth of the workers per user of the workload, Redis bytes per
user (MEMORY USAGE of a sample of users' keys). Reader: see `reader_bench`.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import random
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import orjson
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import config
from config import Settings
from config.security import kafka_config, redis_connection
from operators import backlog
from operators.redis_store import connect, connect_to, delete_matching, traced_user
from operators.routing import SEEN_ONLY_TYPES
from schemas.keyspace import Keyspace
from scripts import kafka_io, proc_cpu, runner
from scripts.bench_config import BenchConfig
from scripts.proc_cpu import CpuReading

Log = Callable[[str], object]


# ------------------------------------------------------------------------------ pure helpers
def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]); None for no values.

    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 99), percentile([], 50)
    (2, 4, None)
    """
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


STEADY = (0.1, 0.9)  # the steady window: between these shares of the events processed


def steady_window(samples: list[tuple[float, int]], total: int, lo: float = STEADY[0],
                  hi: float = STEADY[1], min_window_s: float = 3.0) -> tuple[float, float] | None:
    """(t_lo, t_hi): the moments the counter passed lo·total and hi·total (linear interpolation
    between samples of (time, processed count)); excludes start-up and the tail. None when that
    window is shorter than `min_window_s` (too few samples to mean anything: the workers' counters
    move a Kafka batch at a time).

    >>> steady_window([(0, 0), (10, 0), (20, 50), (30, 100)], 100)
    (12.0, 28.0)
    """
    def crossing(target: float) -> float | None:
        for (t0, c0), (t1, c1) in itertools.pairwise(samples):
            if c0 < target <= c1:
                return t0 + (t1 - t0) * (target - c0) / (c1 - c0)
        return None
    t_lo, t_hi = crossing(lo * total), crossing(hi * total)
    if t_lo is None or t_hi is None or t_hi - t_lo < min_window_s:
        return None
    return t_lo, t_hi


def steady_rate(samples: list[tuple[float, int]], total: int, lo: float = STEADY[0],
                hi: float = STEADY[1], min_window_s: float = 3.0) -> float | None:
    """Events/s over the `steady_window`; None without one.

    >>> round(steady_rate([(0, 0), (10, 0), (20, 50), (30, 100)], 100), 6)
    5.0
    """
    window = steady_window(samples, total, lo, hi, min_window_s)
    if window is None:
        return None
    return (hi - lo) * total / (window[1] - window[0])


def value_at(samples: list[tuple[float, float]], t: float) -> float | None:
    """A cumulative reading sampled as (time, value), linearly interpolated at `t`; None outside
    the samples.

    >>> value_at([(0, 0.0), (2, 1.0), (4, 5.0)], 3), value_at([(0, 0.0), (2, 1.0)], 2.5)
    (3.0, None)
    """
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return None


def increase_over(samples: list[tuple[float, float]],
                  window: tuple[float, float] | None) -> float | None:
    """How much a cumulative reading sampled as (time, value) grew over `window`; None without a
    window or samples covering it.

    >>> increase_over([(0, 0), (10, 100), (20, 300)], (5, 15)), increase_over([(0, 0)], (0, 1))
    (150.0, None)
    """
    if window is None:
        return None
    start, end = value_at(samples, window[0]), value_at(samples, window[1])
    return None if start is None or end is None else end - start


def cores_over(samples: list[tuple[float, float]], window: tuple[float, float]) -> float | None:
    """Cores a cumulative CPU-seconds reading used over `window` (Δseconds / Δwall); None when the
    samples do not cover it."""
    used = increase_over(samples, window)
    return None if used is None or window[1] <= window[0] else used / (window[1] - window[0])


def cpu_share(readings: list[CpuReading], window: tuple[float, float] | None,
              events_per_s: float | None) -> dict:
    """Cores used over the steady `window` by the workers (with their descendants), the broker,
    Redis and the whole machine, and the workers' CPU per event (their cores / the steady events/s:
    what a process pays per event whatever cores the machine could give). None where unknown."""
    def cores(role: str) -> float | None:
        if window is None:
            return None
        return cores_over([(r.t, getattr(r, role)) for r in readings
                           if getattr(r, role) is not None], window)
    workers, broker, redis_, busy = (cores(role) for role in (
        "workers", "broker", "redis", "machine_busy"))
    return {"window_s": None if window is None else round(window[1] - window[0], 2),
            "workers_cores": workers, "broker_cores": broker, "redis_cores": redis_,
            "machine_busy_cores": busy, "cpu_count": os.cpu_count(),
            # the rest of the machine: the bench's own producer and anything else running (a
            # quiet run keeps it near 0; a role not on this host counts 0)
            "other_cores": None if busy is None or workers is None else max(
                0.0, busy - workers - (broker or 0.0) - (redis_ or 0.0)),
            "worker_cpu_us_per_event": ratio(None if workers is None else workers * 1e6,
                                             events_per_s)}


def longest_stall(samples: list[tuple[float, int]], total: int) -> tuple[float, float] | None:
    """(start, end) of the longest span in which a counter sampled as (time, count) did not move,
    between its first move and reaching `total`: the workers consumed nothing. Bytewax's input
    waits at each epoch's end until the whole dataflow has drained the epoch, and the users step
    runs every due timer meanwhile (catch-up mode leaves thousands due together). None without
    such a span.

    >>> longest_stall([(0, 0), (1, 10), (2, 10), (3, 10), (4, 20), (5, 20), (6, 30)], 30)
    (1, 3)
    """
    best, start = None, None
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if c0 == 0 or c0 >= total:
            start = None
            continue
        if c1 == c0:
            start = t0 if start is None else start
            if best is None or t1 - start > best[1] - best[0]:
                best = (start, t1)
        else:
            start = None
    return best


def match_freshness(events: list[tuple[str, int]],
                    writes: list[tuple[str, int, int]]) -> tuple[list[int], int]:
    """Freshness (ms) of each traced event (user, kafka_ts): the first write (user, generated_at,
    written_ms) of that user's feed with generated_at ≥ kafka_ts (the feed includes the event).
    Returns (latencies, events never reflected by a write).

    >>> match_freshness([("a", 10), ("a", 20), ("b", 5)], [("a", 15, 40), ("a", 20, 70)])
    ([30, 50], 1)
    """
    by_user: dict[str, list[tuple[int, int]]] = {}
    for user, generated, written in writes:
        by_user.setdefault(user, []).append((generated, written))
    for entries in by_user.values():
        entries.sort(key=lambda e: e[1])
    latencies, unmatched = [], 0
    for user, ts in events:
        hit = next((w for g, w in by_user.get(user, ()) if g >= ts and w >= ts), None)
        if hit is None:
            unmatched += 1
        else:
            latencies.append(hit - ts)
    return latencies, unmatched


def workload(events: int, users: int, seed: int) -> Iterator[dict]:
    """The first `events` events of the seeded generator (deterministic for the arguments)."""
    from scripts.generate import GeneratorConfig, generate_stream
    # ~25 events per user-day: enough days that the stream does not run out before `events`
    days = max(1.0, min(365.0, 2.0 * events / (25.0 * users)))
    stream, _truth = generate_stream(GeneratorConfig(users=users, days=days, seed=seed))
    return itertools.islice(stream, events)


# ------------------------------------------------------------------------------ measurements
def rss_kb(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in KiB, from /proc (0, 0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


@dataclass
class Scraped:
    """One worker's counters from its /metrics."""

    events: int = 0  # persona_events_total, summed over types
    ranks_by_cause: dict[str, int] = field(default_factory=dict)  # persona_rank_seconds counts …
    rank_s: float = 0.0  # … and sum, all causes
    evicted: dict[str, int] = field(default_factory=dict)  # persona_states_evicted_total by kind
    gc_s: float = 0.0  # persona_gc_seconds_total, all generations
    gc_full: int = 0  # persona_gc_collections_total{generation="2"}
    gc_longest_s: float = 0.0  # persona_gc_longest_pause_seconds, the longest of any generation
    examples: int = 0  # persona_global_model_examples_total: what the global ranker learned from
    put_off: int = 0  # persona_timers_put_off_total: due timers past the budget (operators/pacing)
    catch_up_s: float = 0.0  # persona_catch_up_seconds: how long to read its backlog (a gauge)
    put_off_keys: int = 0  # persona_timers_put_off_keys: its backlog of timer work (a gauge)

    @property
    def ranks(self) -> int:
        return sum(self.ranks_by_cause.values())


def scrape_counters(port: int) -> Scraped | None:
    """A worker's counters (None if its /metrics is not up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return parse_counters(resp.read().decode())
    except OSError:
        return None


def parse_counters(text: str) -> Scraped:
    r"""
    >>> c = parse_counters('persona_events_total{type="like"} 3.0\npersona_events_total{type="follow"} 2.0\n'
    ...                    'persona_gc_collections_total{generation="2"} 4.0\n'
    ...                    'persona_rank_seconds_count{cause="read"} 2.0\npersona_rank_seconds_count{cause="timer"} 5.0')
    >>> c.events, c.gc_full, c.ranks, c.ranks_by_cause, parse_counters(
    ...     'persona_timers_put_off_total 9.0').put_off
    (5, 4, 7, {'read': 2, 'timer': 5}, 9)
    >>> parse_counters('persona_catch_up_seconds +Inf').catch_up_s
    inf
    >>> parse_counters('persona_timers_put_off_keys 4.0').put_off_keys
    4
    """
    out = Scraped()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if name.startswith("persona_events_total{"):
            out.events += int(float(value))
        elif name.startswith("persona_states_evicted_total{"):  # …{step="user"} 12.0
            out.evicted[name.split('step="', 1)[1].split('"', 1)[0]] = int(float(value))
        elif name.startswith("persona_rank_seconds_count{"):  # …{cause="timer"} 12.0
            cause = name.split('cause="', 1)[1].split('"', 1)[0]
            out.ranks_by_cause[cause] = int(float(value))
        elif name.startswith("persona_rank_seconds_sum{"):
            out.rank_s += float(value)
        elif name.startswith("persona_gc_seconds_total{"):
            out.gc_s += float(value)
        elif name == 'persona_gc_collections_total{generation="2"}':
            out.gc_full = int(float(value))
        elif name == "persona_timers_put_off_total":
            out.put_off = int(float(value))
        elif name.startswith("persona_global_model_examples_total{"):
            out.examples += int(float(value))
        elif name.startswith("persona_gc_longest_pause_seconds{"):
            out.gc_longest_s = max(out.gc_longest_s, float(value))
        elif name == "persona_catch_up_seconds":
            out.catch_up_s = float(value)
        elif name == "persona_timers_put_off_keys":
            out.put_off_keys = int(float(value))
    return out


def catch_up_share(samples: list[float], rank_interval_s: float) -> dict:
    """Of a run's samples of its most-behind process's `persona_catch_up_seconds`: the share in
    catch-up mode (`operators.backlog.catching_up`) and the peak.

    >>> catch_up_share([0.0, 0.3, 2.5, float("inf")], 0.5)
    {'catch_up_share': 0.5, 'catch_up_peak_s': inf}
    >>> catch_up_share([], 0.5)
    {'catch_up_share': None, 'catch_up_peak_s': None}
    """
    if not samples:
        return {"catch_up_share": None, "catch_up_peak_s": None}
    behind = sum(1 for t in samples if backlog.catching_up(t, rank_interval_s))
    return {"catch_up_share": behind / len(samples), "catch_up_peak_s": max(samples)}


def free_port_range(n: int) -> int:
    """A base port with base..base+n-1 free on this machine."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000 - n)
        if not any(runner._port_busy(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port range for the workers' metrics")


@dataclass
class Bench:
    """Names of one run's private topics and keys, and the settings the workers get."""

    settings: Settings
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def prefix(self) -> str:
        return f"bench-{self.run_id}"

    def topic(self, name: str) -> str:
        return f"persona.bench.{self.run_id}.{name}"

    def env(self, topic: str, prefix: str, **extra: str) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP": self.settings.kafka.bootstrap,
                "REDIS_URL": self.settings.redis.url,
                "PERSONA_KAFKA__EVENTS_TOPIC": topic,
                "PERSONA_KAFKA__DEAD_LETTER_TOPIC": self.topic("dead"),
                "PERSONA_KAFKA__NOTIFICATIONS_TOPIC": self.topic("notifications"),
                "PERSONA_REDIS__PREFIX": prefix, **extra}

    def redis(self) -> redis.Redis:
        return connect_to(self.settings.redis)

    def cleanup(self, log: Log) -> None:
        client = self.redis()
        deleted = sum(delete_matching(client, f"{prefix}*", 5000)
                      for prefix in (self.prefix, f"{self.prefix}-"))
        admin = AdminClient({"bootstrap.servers": self.settings.kafka.bootstrap,
                             **kafka_config(self.settings.kafka)})
        topics = [t for t in admin.list_topics(timeout=10).topics
                  if t.startswith(f"persona.bench.{self.run_id}.")]
        if topics:
            for f in admin.delete_topics(topics, operation_timeout=30).values():
                f.result()
        log(f"cleaned up {deleted:,} keys and {len(topics)} topics")


def produce_workload(bench: Bench, topic: str, partitions: int, lines: Iterable[bytes],
                     total: int, log: Log) -> int:
    s = bench.settings.kafka
    kafka_io.recreate_topic(s.bootstrap, topic, partitions, extra=kafka_config(s))
    t0 = time.monotonic()
    n = kafka_io.produce(s.bootstrap, topic, lines, extra=kafka_config(s), progress=lambda k: (
        k % 100_000 == 0 and log(f"  produced {k:,}/{total:,}")))
    log(f"  produced {n:,} events in {time.monotonic() - t0:.1f}s")
    return n


# ------------------------------------------------------------------------------ I/O floor
def _floor_worker(bootstrap: str, extra: dict, topic: str, parts: list[tuple[int, int, int]],
                  redis_url: str, redis_options: dict, prefix: str, batch_size: int, out) -> None:
    """Consume `parts` [(partition, low, high)] to their end, `batch_size` messages a call at most
    (the workers' `stream.kafka_batch_size`); orjson decode; one SET per event, one pipeline per
    consumed batch. Sends (first message time, end time, count) to `out`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-floor",
                         "enable.auto.commit": False, "fetch.min.bytes": 1, **extra})
    client = connect(redis_url, **redis_options)
    consumer.assign([TopicPartition(topic, p, low) for p, low, _ in parts])
    remaining = {p: high for p, _, high in parts if high > 0}
    done = {p for p, low, high in parts if high <= low}
    n, first = 0, None
    while len(done) < len(parts):
        msgs = consumer.consume(batch_size, timeout=1.0)
        if not msgs:
            continue
        first = first or time.monotonic()
        pipe = client.pipeline(transaction=False)
        for m in msgs:
            if m.error() is not None:
                continue
            value = m.value()
            event = orjson.loads(value)
            pipe.set(f"{prefix}:floor:{{{event['user_id']}}}", value)
            n += 1
            if m.offset() + 1 >= remaining.get(m.partition(), 0):
                done.add(m.partition())
        pipe.execute()
    end = time.monotonic()
    consumer.close()
    out.put((first or end, end, n))


def io_floor(bench: Bench, topic: str, processes: int) -> dict:
    """Kafka → orjson → pipelined Redis SET, no logic, in `processes` processes (partitions split
    round-robin). Events/s from the first message of any process to the end of the last."""
    s = bench.settings
    consumer = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": f"{bench.prefix}-wm",
                         **kafka_config(s.kafka)})
    meta = consumer.list_topics(topic, timeout=10)
    parts = []
    for p in sorted(meta.topics[topic].partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        parts.append((p, low, high))
    consumer.close()
    url, options = redis_connection(s.redis)
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    procs = [mp.Process(target=_floor_worker, args=(
        s.kafka.bootstrap, kafka_config(s.kafka), topic, parts[i::processes], url, options,
        f"{bench.prefix}-io", s.stream.kafka_batch_size, out)) for i in range(processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
    n = sum(r[2] for r in results)
    # each process from its own first message (spawn times differ), rates added up
    rate = sum(count / max(1e-9, end - first) for first, end, count in results)
    return {"events": n, "seconds": round(max(r[1] for r in results) - min(r[0] for r in results), 3),
            "events_per_s": rate}


# ------------------------------------------------------------------------------ pipeline runs
@dataclass
class WorkerRun:
    """Samples taken while a Bytewax cluster runs: (t, events counted), RSS per process."""

    processes: int
    counts: list[tuple[float, int]] = field(default_factory=list)  # (time, events processed)
    ranked: list[tuple[float, int]] = field(default_factory=list)  # (time, feeds ranked)
    last: list[Scraped] = field(default_factory=list)  # each process's counters, last scrape
    ready_rss: list[int] = field(default_factory=list)  # KiB per process once serving metrics
    rss: list[tuple[float, list[int]]] = field(default_factory=list)  # KiB per process
    peak_kb: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    cpu: list[CpuReading] = field(default_factory=list)  # workers, broker, Redis, machine
    redis_commands: list[tuple[float, int]] = field(default_factory=list)  # (time, processed)
    catch_up_s: list[float] = field(default_factory=list)  # the most behind process, per sample
    put_off_keys: list[int] = field(default_factory=list)  # all processes, per sample (the same)
    gc: list[tuple[float, float, int]] = field(default_factory=list)  # (time, GC s, full GCs)
    started: float = 0.0
    ended: float = 0.0
    code: int | None = None

    @property
    def ranks(self) -> int:  # users ranked (feeds computed), all processes
        return sum(c.ranks for c in self.last)

    @property
    def rank_s(self) -> float:  # time spent ranking, all processes
        return sum(c.rank_s for c in self.last)

    @property
    def ranks_by_cause(self) -> dict[str, int]:  # timer / read / eof, all processes
        return {k: sum(c.ranks_by_cause.get(k, 0) for c in self.last)
                for k in sorted({k for c in self.last for k in c.ranks_by_cause})}

    @property
    def evicted(self) -> dict[str, int]:  # idle states dropped, by park kind
        return {k: sum(c.evicted.get(k, 0) for c in self.last)
                for k in sorted({k for c in self.last for k in c.evicted})}


def run_workers(bench: Bench, env: dict[str, str], processes: int, *, tail: bool, log: Log,
                expected: int | None = None, stop_when: Callable[[], bool] | None = None,
                on_running: Callable[[WorkerRun], object] | None = None,
                interval_s: float = 0.5) -> WorkerRun:
    """Run the real workers (`scripts.runner`) while sampling their counters, RSS and CPU. Without
    tail the run ends when the topic is drained; with tail, once `stop_when()` is true."""
    settings = config.load(env=dict(os.environ, **env))
    base = free_port_range(processes)
    result = WorkerRun(processes)
    procs_box: list = []
    finished, interrupted = threading.Event(), threading.Event()

    def started(procs):
        procs_box.extend(procs)
        if interrupted.is_set():  # Ctrl-C came during the start-up: the runner stops them
            raise KeyboardInterrupt

    def target():
        result.started = time.monotonic()
        try:
            result.code = runner.run(settings, None, processes=processes, tail=tail,
                                     env_extra=env, log=lambda m: None, metrics_port=base,
                                     on_start=started)
        except KeyboardInterrupt:
            result.code = 130
        finally:
            result.ended = time.monotonic()
            finished.set()

    # the broker and Redis share this machine's cores with the workers when they run on it
    broker_pids = proc_cpu.local_broker_pids(bench.settings)
    stats_client = bench.redis()  # (Redis's pid, then its commands processed at every sample)
    redis_pids = proc_cpu.local_redis_pids(bench.settings, stats_client)

    def sample():  # the workers' counters, RSS and CPU into `result` until the run ends
        last_log, announced = 0.0, False
        while not finished.is_set():
            time.sleep(interval_s)
            now = time.monotonic()
            pids = [p.pid for p in procs_box]
            if not pids:
                continue
            result.pids = pids
            result.cpu.append(proc_cpu.CpuRoles(pids, broker_pids, redis_pids).read(now))
            processed = redis_commands_processed(stats_client)
            if processed is not None:
                result.redis_commands.append((now, processed))
            mem = [rss_kb(pid) for pid in pids]
            scraped = [scrape_counters(base + i) for i in range(processes)]
            if all(c is not None for c in scraped):
                if not announced:
                    announced = True
                    result.ready_rss = [m[0] for m in mem]
                    if on_running is not None:
                        on_running(result)
                result.counts.append((now, sum(c.events for c in scraped)))
                result.ranked.append((now, sum(c.ranks for c in scraped)))
                result.put_off_keys.append(sum(c.put_off_keys for c in scraped))
                result.catch_up_s.append(max(c.catch_up_s for c in scraped))
                result.gc.append((now, sum(c.gc_s for c in scraped),
                                  sum(c.gc_full for c in scraped)))
                result.last = scraped
            if all(m[0] for m in mem):  # every process alive (an exited one reads 0)
                result.rss.append((now, [m[0] for m in mem]))
            peaks = result.peak_kb + [0] * (len(mem) - len(result.peak_kb))
            result.peak_kb = [max(peak, m[1]) for peak, m in zip(peaks, mem, strict=True)]
            if now - last_log >= 5:
                last_log = now
                done = result.counts[-1][1] if result.counts else 0
                of = f"/{expected:,}" if expected else ""
                log(f"  {processes} process(es): {done:,}{of} events, RSS "
                    f"{', '.join(f'{m[0] / 1024:.0f}' for m in mem)} MiB")
            if stop_when is not None and announced and stop_when():
                runner.stop(procs_box)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        with runner.terminate_as_interrupt():
            sample()
    except BaseException:  # interrupted: the workers run in sessions of their own, so they are
        interrupted.set()  # stopped here, before the bench removes their topics and keys; a
        runner.stop(procs_box)  # start-up still running stops its own (`started`): wait for it
        thread.join()
        raise
    thread.join()
    return result


def stall_report(run: WorkerRun, total: int) -> dict:
    """The longest time the workers consumed nothing, and the feeds they ranked meanwhile."""
    stall = longest_stall(run.counts, total)
    if stall is None:
        return {"longest_input_stall_s": 0.0, "ranks_during_stall": 0}
    ranked = dict(run.ranked)
    return {"longest_input_stall_s": round(stall[1] - stall[0], 1),
            "ranks_during_stall": ranked.get(stall[1], 0) - ranked.get(stall[0], 0)}


def redis_commands_processed(client) -> int | None:
    """Redis's count of commands processed (INFO stats; a pipeline's count each), or None (a
    Redis Cluster answers per node: not summed here)."""
    try:
        value = client.info("stats").get("total_commands_processed")
    except redis.RedisError:
        return None
    return value if isinstance(value, int) else None


def summarise_run(run: WorkerRun, total: int, users: int) -> dict:
    first = next((t for t, c in run.counts if c > 0), run.started)
    window = steady_window(run.counts, total)
    steady = steady_rate(run.counts, total)
    baseline = run.ready_rss or [0] * run.processes  # imports done, no events yet
    last_rss = run.rss[-1][1] if run.rss else [0] * run.processes
    growth = sum(max(0, b - a) for a, b in zip(baseline, last_rss, strict=False)) * 1024
    worker_s = run.processes * (run.ended - first)
    return {
        "processes": run.processes,
        "events": total,
        "events_per_s_steady": steady,
        "events_per_s_including_startup": total / (run.ended - run.started),
        "events_per_s_first_event_to_exit": total / max(1e-9, run.ended - first),
        "startup_s": round(first - run.started, 2),
        "wall_s": round(run.ended - run.started, 2),
        "users_ranked": run.ranks,
        "ranks_by_cause": run.ranks_by_cause,
        "timers_put_off": sum(c.put_off for c in run.last),
        **stall_report(run, total),
        "events_per_rank": ratio(total, run.ranks),
        "mean_rank_ms": ratio(run.rank_s * 1000, run.ranks),
        "rank_share_of_worker_time": ratio(run.rank_s, worker_s),
        "global_model_examples": sum(c.examples for c in run.last),
        "gc_share_of_worker_time": ratio(sum(c.gc_s for c in run.last), worker_s),
        "gc_full_collections": sum(c.gc_full for c in run.last),
        "gc_longest_pause_s": max((round(c.gc_longest_s, 3) for c in run.last), default=None),
        "peak_rss_mib": [round(kb / 1024, 1) for kb in run.peak_kb],
        "worker_rss_growth_bytes_per_user": round(growth / max(1, users)),
        "rss_flatness_second_half": rss_flatness(run.rss),
        "cpu_steady": cpu_share(run.cpu, window, steady),
        "redis_commands_per_event": ratio(increase_over(run.redis_commands, window),
                                          (STEADY[1] - STEADY[0]) * total),
        "exit_code": run.code,
    }


def window_costs(run: WorkerRun, window: tuple[float, float]) -> dict:
    """What the workers did over `window` of a run: events read, feeds ranked per event, cores
    used and CPU per event, cyclic GC's share of the window and its full collections in it (a
    full one can pause a worker for a second: a freshness tail), and the cores the rest of the
    machine used meanwhile (`cpu_share`'s `other_cores`) (None where the samples do not cover
    it). The window ends at the last sample if that came earlier (samples are 0.5 s apart)."""
    if run.counts:
        window = (window[0], min(window[1], run.counts[-1][0]))
    events = increase_over([(t, float(c)) for t, c in run.counts], window)
    ranks = increase_over([(t, float(r)) for t, r in run.ranked], window)
    rate = ratio(events, window[1] - window[0])
    cpu = cpu_share(run.cpu, window, rate)
    gc_s = increase_over([(t, s) for t, s, _ in run.gc], window)
    full = increase_over([(t, float(f)) for t, _, f in run.gc], window)
    return {"events_per_s": rate, "ranks_per_event": ratio(ranks, events),
            "worker_cores": cpu["workers_cores"],
            "worker_cpu_us_per_event": cpu["worker_cpu_us_per_event"],
            "gc_share_of_window": ratio(gc_s, window[1] - window[0]),
            "gc_full_collections": None if full is None else round(full),
            "other_cores": cpu["other_cores"]}


def rss_flatness(samples: list[tuple[float, list[int]]]) -> float | None:
    """(max − min) / mean of the total worker RSS over the second half of the run.

    >>> round(rss_flatness([(0, [10]), (1, [50]), (2, [100]), (3, [110])]), 4)
    0.0952
    """
    if len(samples) < 4:
        return None
    half = [sum(r) for _, r in samples[len(samples) // 2:]]
    mean = sum(half) / len(half)
    return (max(half) - min(half)) / mean if mean else None


# ------------------------------------------------------------------------------ freshness
def paced_produce(bench: Bench, topic: str, events: Iterable[dict], rate: float, seconds: float,
                  trace_every: int, log: Log) -> list[tuple[str, int]]:
    """Produce at `rate` events/s for `seconds`, each event's `ts` and Kafka timestamp = the wall
    clock at produce time. Returns (user, ts) of the traced users' feed-changing events
    (`operators.routing.reranks_now`; the others are reflected within `stream.seen_rerank_s`)."""
    s = bench.settings.kafka
    producer = Producer({"bootstrap.servers": s.bootstrap, "linger.ms": 2, "acks": 1,
                         **kafka_config(s)})
    traced: list[tuple[str, int]] = []
    t0 = time.monotonic()
    sent, last_log = 0, t0
    it = iter(events)
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        due = int((now - t0) * rate) - sent
        for event in itertools.islice(it, max(0, due)):
            ts = time.time_ns() // 1_000_000
            event["ts"] = ts
            user = event["user_id"]
            producer.produce(topic, orjson.dumps(event), key=user.encode(), timestamp=ts)
            if trace_every and traced_user(user, trace_every) and event["type"] not in SEEN_ONLY_TYPES:
                traced.append((user, ts))  # seen-only events re-rank later (stream.seen_rerank_s)
            sent += 1
        producer.poll(0)
        if now - last_log >= 5:
            last_log = now
            log(f"  paced producer: {sent:,} events in {now - t0:.0f}s")
        time.sleep(0.002)
    producer.flush(30)
    return traced


def read_traces(client: redis.Redis, key: str) -> list[tuple[str, int, int]]:
    out = []
    for raw in client.lrange(key, 0, -1):
        user, generated, written = raw.decode().split(" ")
        out.append((user, int(generated), int(written)))
    return out


# ------------------------------------------------------------------------------ Redis memory
USER_KEYS = ("feed", "profile", "user_features", "suggestions", "graph", "notifications")


def redis_bytes_per_user(client: redis.Redis, keyspace: Keyspace, users: list[str]) -> dict:
    """Mean MEMORY USAGE of the per-user keys over a sample of users."""
    pipe = client.pipeline(transaction=False)
    for user in users:
        for kind in USER_KEYS:
            pipe.memory_usage(getattr(keyspace, kind)(user), samples=0)
    values = pipe.execute()
    per_kind = {kind: 0 for kind in USER_KEYS}
    for i, v in enumerate(values):
        per_kind[USER_KEYS[i % len(USER_KEYS)]] += v or 0
    n = max(1, len(users))
    return {"sampled_users": len(users), "bytes_per_user": round(sum(per_kind.values()) / n),
            "by_key": {k: round(v / n) for k, v in per_kind.items()}}


# ------------------------------------------------------------------------------ reader
def reader_bench(bench: Bench, prefix: str, users: list[str], cfg: BenchConfig, log: Log) -> dict:
    """Phase 4: scripts/bench_reader.py on the feeds the workers just wrote."""
    from scripts import bench_reader
    load = bench_reader.ReaderLoad(rate=cfg.reader_rate, connections=cfg.reader_concurrency,
                                   seconds=cfg.reader_s)
    return bench_reader.reader_bench(bench.settings, prefix, users, load, log)


# ------------------------------------------------------------------------------ the command
def run(settings: Settings, cfg: BenchConfig, log: Log = print) -> dict:
    bench = Bench(settings)
    report: dict = {"config": asdict(cfg), "run_id": bench.run_id,
                    "note": "indicative when other processes share the CPU"}
    log(f"bench {bench.run_id}: {cfg.events:,} events, {cfg.users:,} users, "
        f"{cfg.processes} process(es), {cfg.partitions} partitions")
    try:
        _run(bench, cfg, report, log)
    finally:
        if not cfg.keep:
            bench.cleanup(log)
    return report


def _run(bench: Bench, cfg: BenchConfig, report: dict, log: Log) -> None:
    extra = {}
    if cfg.rank_interval_s is not None:
        extra["PERSONA_STREAM__RANK_INTERVAL_S"] = str(cfg.rank_interval_s)
    if cfg.backlog_interval_s is not None:
        extra["PERSONA_STREAM__BACKLOG_INTERVAL_S"] = str(cfg.backlog_interval_s)
    if cfg.pin_cpus:
        extra["PERSONA_PIN_CPUS"] = "1"
    topic = bench.topic("events")
    log("1/5 workload → Kafka")
    t = time.monotonic()
    for name in ("dead", "notifications"):  # the workers' output topics
        kafka_io.recreate_topic(bench.settings.kafka.bootstrap, bench.topic(name), cfg.partitions,
                                extra=kafka_config(bench.settings.kafka))
    users_seen: set[str] = set()
    types: Counter[str] = Counter()

    def lines() -> Iterator[bytes]:
        for event in workload(cfg.events, cfg.users, cfg.seed):
            users_seen.add(event["user_id"])
            types[event["type"]] += 1
            yield orjson.dumps(event)
    total = produce_workload(bench, topic, cfg.partitions, lines(), cfg.events, log)
    report["workload"] = {"events": total, "users": len(users_seen),
                          "by_type": dict(types.most_common()),
                          "generate_and_produce_s": round(time.monotonic() - t, 1)}

    log("2/5 I/O floor: Kafka → orjson → pipelined Redis SET, no logic")
    floor = io_floor(bench, topic, cfg.processes)
    report["io_floor"] = floor
    log(f"  {floor['events_per_s']:,.0f} events/s")

    log(f"3/5 full pipeline, {cfg.processes} process(es), until the topic is drained")
    pipeline_prefix = bench.prefix
    env = bench.env(topic, pipeline_prefix, **extra)
    wrun = run_workers(bench, env, cfg.processes, tail=False, log=log, expected=total)
    _check_exit(wrun)
    main = summarise_run(wrun, total, len(users_seen))
    report["pipeline"] = main
    report["ratio_to_io_floor"] = ratio(_rate(main), floor["events_per_s"])
    log(f"  steady {main['events_per_s_steady'] or 0:,.0f} events/s "
        f"({report['ratio_to_io_floor'] or 0:.2f} of the floor); exit {wrun.code}")

    client = bench.redis()
    keyspace = Keyspace(pipeline_prefix, (client.get(f"{pipeline_prefix}:active") or b"1").decode())
    sample = random.Random(cfg.seed).sample(sorted(users_seen), min(300, len(users_seen)))
    report["redis_memory"] = redis_bytes_per_user(client, keyspace, sample)

    if cfg.scale:
        other = 2 if cfg.processes == 1 else 1
        # the same workload produced again: catch-up mode ranks less the older the input is
        # (`stream.backlog_interval_s`), so a phase draining the first topic a drain later would
        # rank far less (1M / 100k: 132k timer ranks instead of 317k, a ×2.81 "scale-out")
        log(f"3b/5 scale-out: {other} process(es) on the same workload, produced again")
        scale_topic = bench.topic("events-scale")
        produce_workload(bench, scale_topic, cfg.partitions, (orjson.dumps(e) for e in workload(
            cfg.events, cfg.users, cfg.seed)), cfg.events, log)
        srun = run_workers(bench, bench.env(scale_topic, f"{bench.prefix}-scale", **extra), other,
                           tail=False, log=log, expected=total)
        _check_exit(srun)
        scaled = summarise_run(srun, total, len(users_seen))
        report["pipeline_scale"] = scaled
        one, two = (main, scaled) if cfg.processes == 1 else (scaled, main)
        report["scale_ratio_2_to_1"] = ratio(_rate(two), _rate(one))
        # > 1: what going to 2 processes costs per event (exchange, epochs), apart from the cores
        report["scale_worker_cpu_per_event_2_to_1"] = ratio(
            two["cpu_steady"]["worker_cpu_us_per_event"], one["cpu_steady"]["worker_cpu_us_per_event"])

    if cfg.reader:
        log("4/5 reader: HTTP vs raw Redis")
        with_feed = [u for u in sample if client.exists(keyspace.feed(u))] or sample
        report["reader"] = reader_bench(bench, pipeline_prefix, with_feed, cfg, log)

    if cfg.churn_s > 0:
        log(f"bounded state: ever-new users at {cfg.churn_rate:,.0f} events/s for "
            f"{cfg.churn_s:.0f}s, idle users evicted after {cfg.churn_idle_s:g}s")
        report["churn"] = churn(bench, cfg, extra, log)

    if cfg.freshness_s > 0:
        drained = _rate(main)
        searched = not cfg.freshness_rate and cfg.rate_search_steps > 0
        log("5/5 freshness: tailing workers, " + (
            f"the sustained rate searched below {drained:,.0f} events/s in "
            f"{cfg.rate_search_steps} steps of {cfg.rate_step_s:.0f}s, then half of it"
            if searched else
            f"{cfg.freshness_rate or 0.5 * drained:,.0f} events/s") +
            f" for {cfg.freshness_s:.0f}s")
        report["freshness"] = freshness(bench, cfg, drained, extra, log)


def _rate(summary: dict) -> float:
    """Steady events/s, or first event → exit when the run was too short for a steady window."""
    return summary["events_per_s_steady"] or summary["events_per_s_first_event_to_exit"]


def _check_exit(run: WorkerRun) -> None:
    if run.code != 0:
        raise RuntimeError(f"the workers exited with {run.code} (their error is printed above); "
                           "the numbers of this run would be meaningless")


def step_verdict(catch_up_s: list[float], put_off_keys: list[int], interval_s: float,
                 tolerance: float = 0.05) -> dict:
    """Whether tailing workers sustained a step's rate, from samples taken during it
    (`WorkerRun.catch_up_s`, `.put_off_keys`), with what decided it: at most `tolerance` of the
    step's second half in catch-up mode (over capacity, the input backlog grows until they stay
    in it; one sample, a pause such as a full GC, passes), and, some time in its last quarter, no
    due rank or suggestion run put off (the timer work kept up: a rate whose ranks cannot keep up
    leaves feeds stale while the input is read on time). With 20% allowed, steps 10–15% in
    catch-up mode (shedding ranks) passed, and freshness at half the rate found missed 1 s
    (session 18).

    >>> step_verdict([0, 0, 0.2, 0.1], [0, 3, 2, 0], 0.5)["sustained"]
    True
    >>> step_verdict([0, 0.4, 1.5, 3.0], [0] * 4, 0.5)
    {'sustained': False, 'catch_up_second_half': 1.0, 'fewest_put_off_last_quarter': 0}
    >>> step_verdict([0] * 4, [0, 5, 9, 12], 0.5)
    {'sustained': False, 'catch_up_second_half': 0.0, 'fewest_put_off_last_quarter': 12}
    >>> step_verdict([], [], 0.5)["sustained"]
    False
    """
    behind = catch_up_share(catch_up_s[len(catch_up_s) // 2:], interval_s)["catch_up_share"]
    fewest = min(put_off_keys[len(put_off_keys) * 3 // 4:], default=None)
    return {"sustained": behind is not None and behind <= tolerance and fewest == 0,
            "catch_up_second_half": behind, "fewest_put_off_last_quarter": fewest}


def rate_search(upper: float, steps: int,
                sustained_at: Callable[[float], bool]) -> tuple[float, float, list[tuple[float, bool]]]:
    """Bisect (0, `upper`] for the highest rate `sustained_at` holds: (highest sustained, 0 if
    none; lowest not sustained, `upper` if none; [(rate, sustained)] in the order tried).

    >>> rate_search(1000.0, 3, lambda r: r <= 600)
    (500.0, 625.0, [(500.0, True), (750.0, False), (625.0, False)])
    """
    lo, hi, tried = 0.0, upper, []
    for _ in range(steps):
        rate = (lo + hi) / 2
        ok = sustained_at(rate)
        tried.append((rate, ok))
        lo, hi = (rate, hi) if ok else (lo, rate)
    return lo, hi, tried


SETTLE_TIMEOUT_S = 180.0
PREFILL_EVENTS_PER_USER = 20  # freshness: each user's first events, read before it is paced
FRESHNESS_WORLD_SHARE = 10  # freshness: its world has the workload's users / this


def wait_settled(run: WorkerRun, interval_s: float, read: int = 0,
                 timeout_s: float = SETTLE_TIMEOUT_S) -> bool:
    """Wait until the workers have counted `read` events and their latest samples show no input
    backlog (out of catch-up mode) and no timer work put off (False: timed out). After a step over
    capacity, keys put off in a row wait up to 64 slots (operators/pacing.py): measured then,
    freshness measures that step. (`read`: a process that has read nothing yet is "caught up".)"""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (run.catch_up_s and not backlog.catching_up(run.catch_up_s[-1], interval_s)
                and run.put_off_keys[-1] == 0 and run.counts[-1][1] >= read):
            return True
        time.sleep(0.5)
    return False


def freshness(bench: Bench, cfg: BenchConfig, drained: float, extra: dict, log: Log) -> dict:
    """The tailing phase: the sustained-rate search (unless `cfg.freshness_rate` or no steps),
    then freshness at half the highest sustained rate, in one run of the workers."""
    topic = bench.topic("fresh")
    prefix = f"{bench.prefix}-fresh"
    kafka_io.recreate_topic(bench.settings.kafka.bootstrap, topic, cfg.partitions,
                            extra=kafka_config(bench.settings.kafka))
    env = bench.env(topic, prefix, PERSONA_STREAM__FRESHNESS_SAMPLE=str(cfg.trace_every), **extra)
    interval_s = cfg.rank_interval_s or bench.settings.stream.rank_interval_s
    steps = 0 if cfg.freshness_rate else cfg.rate_search_steps
    # a world of a tenth of the workload's users, whatever the drain's rate (sized from it, the
    # live rates of two runs were not comparable); its first 20 events per user (the generator's
    # opening: sign-ups, first follows) are produced before the workers start, unpaced, so the
    # search and the measurement run on a world past its onboarding, whose cost per event drifts
    # less (without it, a 3k-user world sustained 955 events/s in the search and not 477 at its end)
    seconds = steps * cfg.rate_step_s + cfg.freshness_s
    paced = int(drained * seconds) + 1  # (at the drain's rate: an upper bound, the stream is lazy)
    users = max(10, cfg.users // FRESHNESS_WORLD_SHARE)
    prefill = PREFILL_EVENTS_PER_USER * users
    events = workload(prefill + paced, users, cfg.seed + 1)
    now_ms = time.time_ns() // 1_000_000
    kafka_io.produce(bench.settings.kafka.bootstrap, topic, (
        orjson.dumps({**e, "ts": now_ms}) for e in itertools.islice(events, prefill)),
        extra=kafka_config(bench.settings.kafka))
    log(f"  {users:,} users' first {prefill:,} events produced before the workers start")
    traced: list[tuple[str, int]] = []
    phase: dict = {"rate": cfg.freshness_rate or 0.5 * drained, "search": None}
    done, failed = threading.Event(), []

    read = int(0.99 * prefill)  # (the prefill read, but for any dead letter among it)

    def produce(run: WorkerRun) -> None:
        settle_s: list[float] = []  # before each step: how long the workers took to settle
        costs: list[dict] = []  # each step's `step_verdict` numbers and `window_costs`

        def step(rate: float) -> bool:
            waited = time.monotonic()
            if not wait_settled(run, interval_s, read):
                log(f"  the workers did not settle in {SETTLE_TIMEOUT_S:.0f} s; the next step "
                    "starts anyway")
            settle_s.append(round(time.monotonic() - waited, 1))
            first, t0 = len(run.catch_up_s), time.monotonic()
            paced_produce(bench, topic, events, rate, cfg.rate_step_s, 0, lambda m: None)
            samples, put_off = run.catch_up_s[first:], run.put_off_keys[first:]
            verdict = step_verdict(samples, put_off, interval_s)
            ok = verdict.pop("sustained")
            costs.append({**verdict, **window_costs(run, (t0, time.monotonic()))})
            log(f"  {rate:,.0f} events/s: {'sustained' if ok else 'not sustained'} (catch-up "
                f"mode {verdict['catch_up_second_half'] or 0:.0%} of the step's second half; "
                f"fewest keys' timer work put off in its last quarter "
                f"{verdict['fewest_put_off_last_quarter'] or 0:,}; "
                f"{costs[-1]['ranks_per_event'] or 0:.2f} ranks per event)")
            return ok

        try:
            if steps:
                lo, hi, tried = rate_search(drained, steps, step)
                phase["search"] = {"steps": steps, "step_s": cfg.rate_step_s, "upper": drained,
                                   "max_sustained": lo, "min_not_sustained": hi,
                                   "tried": [{"rate": r, "sustained": ok, "settle_s": w, **c}
                                             for (r, ok), w, c in zip(tried, settle_s, costs,
                                                                      strict=True)]}
                # none sustained: half the lowest rate tried
                phase["rate"] = 0.5 * (lo or min(r for r, _ in tried))
                log(f"  highest sustained {lo:,.0f} events/s; freshness at {phase['rate']:,.0f}")
            waited = time.monotonic()
            if not wait_settled(run, interval_s, read):
                log(f"  the workers did not settle in {SETTLE_TIMEOUT_S:.0f} s; measuring anyway")
            phase["settle_s"] = round(time.monotonic() - waited, 1)
            phase["first"], t0 = len(run.catch_up_s), time.monotonic()
            traced.extend(paced_produce(bench, topic, events, phase["rate"], cfg.freshness_s,
                                        cfg.trace_every, log))
            phase["window"] = (t0, time.monotonic())
            time.sleep(3 * max(1.0, interval_s))
        except BaseException as exc:  # re-raised below, once the workers are stopped
            failed.append(exc)
        finally:
            done.set()

    run = run_workers(bench, env, cfg.processes, tail=True, log=log, stop_when=done.is_set,
                      on_running=lambda r: threading.Thread(target=produce, args=(r,),
                                                            daemon=True).start())
    if failed:
        raise failed[0]
    writes = read_traces(bench.redis(), Keyspace(prefix, "").feed_trace)
    latencies, unmatched = match_freshness(traced, writes)
    return {"rate": phase["rate"], "seconds": cfg.freshness_s, "users": users, "prefill": prefill,
            "settle_s": phase.get("settle_s"),
            **(window_costs(run, phase["window"]) if "window" in phase else {}),
            "traced_events": len(traced), "reflected": len(latencies),
            "never_reflected": unmatched, "rate_search": phase["search"],
            # whether the workers sustained the rate: caught up, a dirty user is ranked every
            # rank interval; in catch-up mode (operators/backlog.py) feeds wait for the backlog
            **catch_up_share(run.catch_up_s[phase.get("first", 0):], interval_s),
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies) if latencies else None,
            "peak_rss_mib": [round(kb / 1024, 1) for kb in run.peak_kb]}


# ------------------------------------------------------------------------------ bounded state
def churn_workload(seed: int, creators: int = 100, posts_per_creator: int = 3,
                   concurrent: int = 40) -> Iterator[dict]:
    """Ever-new users (endless): creators sign up and post first; then users arrive one after
    another, each plays one short session (sign-up, 3 follows, 8 impressions, 2 likes, a click)
    interleaved with `concurrent` others, and never comes back. `ts` is set by the producer.

    >>> events = list(itertools.islice(churn_workload(1, creators=2, posts_per_creator=1), 40))
    >>> [e["type"] for e in events[:4]], len({e["user_id"] for e in events}) > 3
    (['user_created', 'post_created', 'user_created', 'post_created'], True)
    """
    rng = random.Random(seed)
    ids = itertools.count(1)
    topics = [f"t{i}" for i in range(10)]

    def event(kind: str, user: str, **fields) -> dict:
        return {"v": 1, "event_id": f"x{next(ids):010d}", "type": kind, "ts": 0,
                "user_id": user, **fields}

    posts: list[str] = []
    for c in range(creators):
        yield event("user_created", f"c{c:04d}", interests=[rng.choice(topics)])
        for j in range(posts_per_creator):
            posts.append(f"cp{c:04d}_{j}")
            yield event("post_created", f"c{c:04d}", post_id=posts[-1], topics=[rng.choice(topics)])

    def session(user: str) -> Iterator[dict]:
        yield event("user_created", user, interests=[rng.choice(topics)])
        for c in rng.sample(range(creators), min(3, creators)):
            yield event("follow", user, target_id=f"c{c:04d}")
        shown = rng.sample(posts, min(8, len(posts)))
        for position, post in enumerate(shown):
            yield event("impression", user, post_id=post, surface="feed", position=position)
        for post in shown[:2]:
            yield event("like", user, post_id=post)
        yield event("click", user, post_id=shown[-1])

    sessions: dict[str, Iterator[dict]] = {}
    arrived = 0
    while True:
        while len(sessions) < concurrent:
            arrived += 1
            user = f"n{arrived:08d}"
            sessions[user] = session(user)
        user = rng.choice(list(sessions))
        e = next(sessions[user], None)
        if e is None:
            del sessions[user]
        else:
            yield e


CHURN_DEDUP_CAPACITY = 10_000
# The caps of what grows with a creator's audience (README "Configuration", memory bounds), shrunk
# so they are full before the second half, as the dedup window is. At 400 events/s (27 new users
# a second, 3 follows each, 100 creators) a creator gains ~0.8 followers a second: at the
# defaults its followers list fills (and is pulled) after ~3.5 hours, its states' reported
# mentions (~1.1 new users a second) after ~75 minutes; shrunk, within ~20 minutes.
CHURN_CAPS = {"PERSONA_FEATURES__MAX_FOLLOWERS_FANOUT": "1000",
              "PERSONA_STREAM__ERASURE_REPORTED_PER_OWNER": "1000",
              "PERSONA_NOTIFICATIONS__DECIDED_IDS": "500",
              "PERSONA_NOTIFICATIONS__TRENDING_AUDIENCE_SIZE": "1000"}
USER_PARK_KINDS = ("user", "social", "notif", "followers", "erasure", "expuser")  # keyed by user


def churn(bench: Bench, cfg: BenchConfig, extra: dict, log: Log) -> dict:
    """Tailing workers fed ever-new users at a fixed rate: worker RSS over time (flat ±10% over
    the second half when idle users are evicted), evictions, and what an inactive user still
    costs: worker bytes (RSS growth per user over the second half) and Redis bytes (its parked
    states and published keys)."""
    topic = bench.topic("churn")
    prefix = f"{bench.prefix}-churn"
    kafka_io.recreate_topic(bench.settings.kafka.bootstrap, topic, cfg.partitions,
                            extra=kafka_config(bench.settings.kafka))
    # the dedup window (a bounded FIFO of event ids, 200k by default) is shrunk so that it is full
    # before the second half, where flatness is measured; at its default a full window is ~90
    # bytes an id: ~18 MB a shard, ~1.1 GB for all 64 (12.8M events, hours of this churn)
    caps = CHURN_CAPS if cfg.churn_small_caps else {}
    env = bench.env(topic, prefix, PERSONA_STREAM__USER_IDLE_EVICT_S=str(cfg.churn_idle_s),
                    PERSONA_STREAM__DEDUP_CAPACITY=str(CHURN_DEDUP_CAPACITY), **caps, **extra)
    users: list[str] = []
    done = threading.Event()

    def counted(events: Iterator[dict]) -> Iterator[dict]:
        for e in events:
            if e["type"] == "user_created" and e["user_id"].startswith("n"):
                users.append(e["user_id"])
            yield e

    def produce():
        paced_produce(bench, topic, counted(churn_workload(cfg.seed)), cfg.churn_rate, cfg.churn_s,
                      0, log)
        time.sleep(2.0)
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    run = run_workers(bench, env, cfg.processes, tail=True, log=log,
                      on_running=lambda _: producer.start(), stop_when=done.is_set)
    producer.join()
    rss = [(t, sum(r)) for t, r in run.rss]
    t0 = rss[0][0] if rss else 0.0
    half = rss[len(rss) // 2:]
    # users that arrived during the second half of the samples (arrivals are uniform in time)
    late_users = len(users) * (half[-1][0] - half[0][0]) / max(1e-9, rss[-1][0] - t0) if half else 0
    growth = (half[-1][1] - half[0][1]) * 1024 if half else 0
    client = bench.redis()
    keyspace = Keyspace(prefix, (client.get(f"{prefix}:active") or b"1").decode())
    sample = random.Random(cfg.seed).sample(users[:-100], min(300, max(0, len(users) - 100)))
    pipe = client.pipeline(transaction=False)
    for user in sample:
        for kind in USER_PARK_KINDS:
            pipe.memory_usage(keyspace.parked(kind, user), samples=0)
    sizes = pipe.execute()
    parked = {kind: sum(v or 0 for v in sizes[i::len(USER_PARK_KINDS)]) // max(1, len(sample))
              for i, kind in enumerate(USER_PARK_KINDS)}
    published = redis_bytes_per_user(client, keyspace, sample)
    step = max(1, len(rss) // 20)
    return {"rate": cfg.churn_rate, "seconds": cfg.churn_s, "idle_evict_s": cfg.churn_idle_s,
            "dedup_capacity": CHURN_DEDUP_CAPACITY,
            "caps": {k.removeprefix("PERSONA_").lower().replace("__", "."): int(v)
                     for k, v in caps.items()},
            "users": len(users), "evicted_states": sum(run.evicted.values()),
            "evicted_by_kind": run.evicted,
            "rss_mib_over_time": [[round(t - t0, 1), round(kb / 1024, 1)] for t, kb in rss[::step]],
            "rss_flatness_second_half": rss_flatness(run.rss),
            "worker_bytes_per_inactive_user": round(growth / max(1.0, late_users)),
            "redis_parked_bytes_per_user": sum(parked.values()),
            "redis_parked_bytes_per_user_by_kind": parked,
            "redis_published_bytes_per_user": published["bytes_per_user"],
            "peak_rss_mib": [round(kb / 1024, 1) for kb in run.peak_kb]}


def table(report: dict) -> list[tuple[str, str]]:
    """The report as (measure, value) rows for printing."""
    def num(v, fmt="{:,.0f}"):
        return "—" if v is None else fmt.format(v)
    def cpu_rows(summary: dict) -> list[tuple[str, str]]:
        c = summary.get("cpu_steady")
        if not c:
            return []
        return [("  cores, steady: workers / broker / Redis / machine busy",
                 " / ".join(num(c[k], "{:.2f}") for k in (
                     "workers_cores", "broker_cores", "redis_cores", "machine_busy_cores"))
                 + f" (of {num(c['cpu_count'])})"),
                ("  worker CPU per event, steady", f"{num(c['worker_cpu_us_per_event'])} µs"),
                ("  Redis commands per event, steady",
                 num(summary.get("redis_commands_per_event"), "{:.2f}"))]

    rows = []
    w = report.get("workload", {})
    rows.append(("workload", f"{num(w.get('events'))} events, {num(w.get('users'))} users"))
    if w.get("by_type"):  # the mix decides the cost: follows re-rank at once, impressions later
        mix = ", ".join(f"{kind} {n / max(1, w['events']):.0%}"
                        for kind, n in list(w["by_type"].items())[:5])
        rows.append(("  event mix (top 5)", mix))
    f = report.get("io_floor")
    if f:
        rows.append(("I/O floor (Kafka → orjson → Redis)", f"{num(f['events_per_s'])} events/s"))
    p = report.get("pipeline")
    if p:
        rows.append((f"pipeline, {p['processes']} process(es), steady",
                     f"{num(p['events_per_s_steady'])} events/s"))
        rows.append(("  per worker process", num(ratio(p["events_per_s_steady"],
                                                         p["processes"])) + " events/s"))
        rows.append(("  first event → exit (incl. final flush)",
                     f"{num(p['events_per_s_first_event_to_exit'])} events/s"))
        rows.append(("  start-up", f"{p['startup_s']} s"))
        rows.append(("ratio to the I/O floor", num(report.get("ratio_to_io_floor"), "{:.3f}")))
        rows.append(("  feeds ranked / events per rank", f"{num(p['users_ranked'])} / "
                     f"{num(p['events_per_rank'], '{:.1f}')}"))
        rows.append(("  ranks by cause; due timers put off", (", ".join(
            f"{cause} {num(n)}" for cause, n in p.get("ranks_by_cause", {}).items()) or "-")
            + f"; {num(p.get('timers_put_off'))}"))
        rows.append(("  mean rank time / share of worker time",
                     f"{num(p['mean_rank_ms'], '{:.2f}')} ms / "
                     f"{num(p['rank_share_of_worker_time'], '{:.0%}')}"))
        rows.append(("  longest input stall / feeds ranked during it",
                     f"{num(p.get('longest_input_stall_s'), '{:.1f}')} s / "
                     f"{num(p.get('ranks_during_stall'))}"))
        rows.append(("  examples the global ranker learned", num(p.get("global_model_examples"))))
        rows.append(("  cyclic GC: share of worker time / full collections / longest pause",
                     f"{num(p.get('gc_share_of_worker_time'), '{:.1%}')} / "
                     f"{num(p.get('gc_full_collections'))} / "
                     f"{num(p.get('gc_longest_pause_s'), '{:.2f}')} s"))
        rows += cpu_rows(p)
        rows.append(("peak RSS per worker process", ", ".join(f"{v} MiB" for v in p["peak_rss_mib"])))
        rows.append(("worker RSS growth per user", f"{num(p['worker_rss_growth_bytes_per_user'])} B"))
        rows.append(("RSS spread, second half", num(p["rss_flatness_second_half"], "{:.1%}")))
    m = report.get("redis_memory")
    if m:
        rows.append(("Redis bytes per user", f"{num(m['bytes_per_user'])} B "
                     f"({m['sampled_users']} users sampled)"))
    s = report.get("pipeline_scale")
    if s:
        rows.append((f"pipeline, {s['processes']} process(es), steady",
                     f"{num(s['events_per_s_steady'])} events/s"))
        rows += cpu_rows(s)
        rows.append(("scale-out ratio 2 : 1 processes",
                     num(report.get("scale_ratio_2_to_1"), "{:.2f}")))
        rows.append(("worker CPU per event 2 : 1 processes",
                     num(report.get("scale_worker_cpu_per_event_2_to_1"), "{:.2f}")))
    if report.get("reader"):
        from scripts import bench_reader
        rows += bench_reader.table(report["reader"])
    c = report.get("churn")
    if c:
        rows.append((f"ever-new users: {num(c['users'])} at {num(c['rate'])} events/s, "
                     f"evict after {c['idle_evict_s']:g} s", f"{num(c['evicted_states'])} states "
                     "evicted (" + ", ".join(f"{k} {num(v)}" for k, v in c.get(
                         "evicted_by_kind", {}).items()) + ")"))
        if c.get("caps"):
            rows.append(("  caps (shrunk to fill in the first half)",
                         ", ".join(f"{k} {num(v)}" for k, v in c["caps"].items())))
        rows.append(("  worker RSS spread, second half",
                     f"{num(c['rss_flatness_second_half'], '{:.1%}')} (peak "
                     f"{', '.join(f'{v} MiB' for v in c['peak_rss_mib'])})"))
        rows.append(("  worker bytes per inactive user", f"{num(c['worker_bytes_per_inactive_user'])} B"))
        rows.append(("  Redis bytes per inactive user", f"{num(c['redis_parked_bytes_per_user'])} B "
                     f"parked + {num(c['redis_published_bytes_per_user'])} B published"))
    fr = report.get("freshness")
    if fr and fr.get("rate_search"):
        rs = fr["rate_search"]
        rows.append((f"highest rate tailing workers sustained ({rs['steps']} steps of "
                     f"{rs['step_s']:g} s below the drain's {num(rs['upper'])})",
                     f"{num(rs['max_sustained'])} events/s (not {num(rs['min_not_sustained'])}); "
                     "tried " + ", ".join(f"{num(t['rate'])} {'✓' if t['sustained'] else '✗'}"
                                          for t in rs["tried"])))
        rows.append(("  time to settle before each step and the measurement (input read, no "
                     "timer work put off)", ", ".join(f"{t['settle_s']:g}" for t in rs["tried"])
                     + f"; {fr['settle_s']:g} s"))
        rows.append(("  each step: catch-up mode in its second half; fewest keys put off in its "
                     "last quarter", ", ".join(
                         f"{num(t.get('catch_up_second_half'), '{:.0%}')}; "
                         f"{num(t.get('fewest_put_off_last_quarter'))}" for t in rs["tried"])))
        rows.append(("  each step: ranks per event; worker cores",
                     ", ".join(f"{num(t['ranks_per_event'], '{:.2f}')}; "
                               f"{num(t['worker_cores'], '{:.2f}')}" for t in rs["tried"])))
    if fr:
        rows.append((f"freshness at {num(fr['rate'])} events/s, p50 / p99 (feed-changing events)",
                     f"{num(fr['p50_ms'])} / {num(fr['p99_ms'])} ms "
                     f"({fr['reflected']:,} traced events, {fr['never_reflected']} never reflected)"))
        rows.append(("  its ranks per event; worker cores; worker CPU per event",
                     f"{num(fr.get('ranks_per_event'), '{:.2f}')}; "
                     f"{num(fr.get('worker_cores'), '{:.2f}')}; "
                     f"{num(fr.get('worker_cpu_us_per_event'))} µs"))
        rows.append(("  share of it in catch-up mode (rate not sustained); longest backlog",
                     f"{num(fr['catch_up_share'], '{:.0%}')}; "
                     f"{num(fr['catch_up_peak_s'], '{:.1f}')} s"))
        rows.append(("  cores busy outside the workers, broker and Redis meanwhile (the bench "
                     "itself, anything else)", num(fr.get("other_cores"), "{:.2f}")))
        rows.append(("  cyclic GC in it: share of the phase / full collections",
                     f"{num(fr.get('gc_share_of_window'), '{:.1%}')} / "
                     f"{num(fr.get('gc_full_collections'))}"))
    return rows


__all__ = ["BenchConfig", "match_freshness", "percentile", "ratio", "run", "steady_rate",
           "table", "workload"]
