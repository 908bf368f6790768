"""What `persona bench` and `persona bench-reader` run, with their defaults: one place for both
the benches and the CLI's options (this module imports no client library, so `persona` starts
without loading Kafka or Redis clients)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReaderLoad:
    rate: float | None = 500.0  # open-loop req/s; None: closed loop only
    connections: int = 4
    seconds: float = 10.0
    closed: bool = False  # also a closed loop at `connections` (maximum throughput)
    server_workers: int = 1  # `persona serve --workers`
    load_processes: int = 1  # load generator processes


@dataclass(frozen=True)
class BenchConfig:
    events: int = 1_000_000
    users: int = 100_000
    seed: int = 7
    processes: int = 1
    partitions: int = 4
    scale: bool = False  # also run the other of 1 / 2 processes on the same topic
    freshness_s: float = 60.0  # 0 = skip
    freshness_rate: float | None = None  # default: half the highest sustained rate (searched)
    rate_search_steps: int = 5  # bisection steps of the sustained-rate search (0: half the drain's)
    rate_step_s: float = 20.0  # each search step's length
    # freshness: trace 1 user in N (1 in 20 over 30 s traced 54 events at the default size's
    # 93 events/s: a p99 that was the slowest one; 1 in 5 over 60 s traces ~8× as many)
    trace_every: int = 5
    rank_interval_s: float | None = None  # override stream.rank_interval_s for the run
    backlog_interval_s: float | None = None  # override stream.backlog_interval_s
    pin_cpus: bool = False  # worker process i on CPU i (`persona run --pin-cpus`)
    reader: bool = True
    reader_s: float = 5.0
    reader_concurrency: int = 4  # keep-alive connections
    reader_rate: float | None = 500.0  # open-loop req/s (None: closed loop)
    keep: bool = False  # leave topics and keys for inspection
    churn_s: float = 0.0  # bounded-state phase: ever-new users for this long (0 = skip)
    churn_rate: float = 300.0  # its events/s
    churn_idle_s: float = 10.0  # its stream.user_idle_evict_s (0 = no eviction, for comparison)
    churn_small_caps: bool = True  # its audience-grown caps shrunk to fill in the first half
