"""Prometheus metrics of the workers, in prometheus_client's default registry.

With BYTEWAX_DATAFLOW_API_ENABLED=1 (`persona run` sets it, one port per process: --metrics-port)
Bytewax serves this registry at :BYTEWAX_DATAFLOW_API_PORT/metrics next to its own per-step counters
and durations and `bytewax_kafka_consumer_lag{step_id,topic,partition}`. Labels are bounded: event
types are validated, dead-letter reasons are mapped to `schemas.rejections.REASON_KINDS`, write kinds
are the RedisWriter's record kinds.
"""

from __future__ import annotations

import gc
import math
import threading
import time
from collections import Counter as Tally
from collections import deque

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from operators import backlog, redis_store
from schemas import DeadLetter, Event
from schemas.rejections import reason_kind

EVENTS = Counter("persona_events", "Valid, unique events processed, by type", ["type"])
DEAD_LETTERS = Counter("persona_dead_letters",
                       "Events sent to the dead-letter topic, by reason kind", ["reason"])
FEEDS_WRITTEN = Counter("persona_feeds_written", "User feeds written to Redis")
REDIS_WRITES = Counter("persona_redis_writes", "Write records applied to Redis, by kind", ["kind"])
RANK_SECONDS = Histogram(
    "persona_rank_seconds", "Time to rank one user's feed (candidates, filters, scoring, mixing), "
    "by cause: `timer` (the debounced rank), `read` (an impression of a stale feed, ranked first "
    "in its batch) or `eof` (the end of a bounded input)", ["cause"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
# the histogram's children, bound once (a `.labels()` lookup per rank takes its lock)
RANK_SECONDS_BY_CAUSE = {cause: RANK_SECONDS.labels(cause) for cause in ("timer", "read", "eof")}
RANKS_DEFERRED = Counter(
    "persona_ranks_deferred", "Due ranks that waited for a user's event held for its post")
TIMERS_PUT_OFF = Counter(
    "persona_timers_put_off",
    "Due ranks and suggestion runs put off to a later slot: the worker's timer work since its last "
    "input batch had spent `stream.timer_budget_s` (operators/pacing.py)")
PUT_OFF_KEYS = Gauge(
    "persona_timers_put_off_keys",
    "Keys whose due rank or suggestion run is put off now (the timer budget was spent): the "
    "process's backlog of timer work, 0 when it keeps up")


def watch_timers(timers) -> None:
    """`PUT_OFF_KEYS` reads this process's timer budget (operators.pacing.TimerBudget)."""
    PUT_OFF_KEYS.set_function(lambda: timers.waiting)


EVICTED = Counter(
    "persona_states_evicted_total",
    "Idle keys' worker states dropped from the worker (parked in Redis unless empty or a tombstone), "
    "by park kind", ["step"])
RESTORED = Counter(
    "persona_states_restored_total", "Parked states restored at the key's next input, by park kind",
    ["step"])
MODEL_LOGLOSS = Gauge(
    "persona_global_model_logloss",
    "Prequential log loss of the global model: each training example scored before it is learned, "
    "weighted mean over the last `window` examples")
MODEL_EXAMPLES = Counter("persona_global_model_examples",
                         "Training examples learned by the global model, by label", ["label"])
MODEL_POSITIVE_RATE = Gauge("persona_global_model_positive_rate",
                            "Weighted share of positive examples over the same window")


class GcPauses:
    """Time this process spends in the cyclic garbage collector, by generation: a worker holds
    millions of long-lived objects (user states), and a full collection scans all of them.

    `gc.callbacks` only adds to plain numbers (a collection can start inside any allocation, even
    one made while a metric's lock is held); the registry reads them at scrape time as
    `persona_gc_seconds_total{generation}`, `persona_gc_collections_total{generation}` and
    `persona_gc_longest_pause_seconds{generation}`."""

    seconds = [0.0, 0.0, 0.0]
    collections = [0, 0, 0]
    longest = [0.0, 0.0, 0.0]
    _started = 0.0
    _installed = False

    @classmethod
    def install(cls) -> None:
        """Once per process (the workers' entry point)."""
        if not cls._installed:
            cls._installed = True
            gc.callbacks.append(cls._callback)
            REGISTRY.register(cls())

    @classmethod
    def _callback(cls, phase: str, info: dict) -> None:
        if phase == "start":
            cls._started = time.perf_counter()
            return
        spent, generation = time.perf_counter() - cls._started, info["generation"]
        cls.seconds[generation] += spent
        cls.collections[generation] += 1
        if spent > cls.longest[generation]:
            cls.longest[generation] = spent

    def collect(self):
        seconds = CounterMetricFamily("persona_gc_seconds", "Time in the cyclic garbage collector",
                                      labels=["generation"])
        runs = CounterMetricFamily("persona_gc_collections", "Cyclic garbage collections",
                                   labels=["generation"])
        longest = GaugeMetricFamily("persona_gc_longest_pause_seconds",
                                    "The longest single collection so far", labels=["generation"])
        for g in range(3):
            seconds.add_metric([str(g)], self.seconds[g])
            runs.add_metric([str(g)], self.collections[g])
            longest.add_metric([str(g)], self.longest[g])
        return [seconds, runs, longest]


class RedisOutages:
    """`operators.redis_store.OUTAGES` as metrics: what the workers' Redis calls waited out."""

    def collect(self):
        outages = redis_store.OUTAGES
        retries = CounterMetricFamily(
            "persona_redis_retries", "Redis calls retried after a transient failure (unreachable, "
            "loading, full, read-only, cluster down, replicas behind), by operation", labels=["op"])
        for op in ("read", "write"):
            retries.add_metric([op], outages.retries[op])
        give_ups = CounterMetricFamily(
            "persona_redis_give_ups", "Redis calls that failed after redis.outage_timeout_s of "
            "retries (each stops the worker)")
        give_ups.add_metric([], outages.give_ups)
        retrying = GaugeMetricFamily(
            "persona_redis_retrying_calls", "Redis calls waiting out a failure now (> 0: the "
            "workers are held back by Redis)")
        retrying.add_metric([], outages.retrying)
        return [retries, give_ups, retrying]


REGISTRY.register(RedisOutages())

INPUT_LAG = Gauge("persona_input_lag_messages",
                  "Messages this process has still to read from its Kafka partitions (their high "
                  "watermarks − its positions, polled every second: operators/backlog.py)")
INPUT_LAG.set_function(lambda: backlog.PROCESS.lag)
CATCH_UP = Gauge("persona_catch_up_seconds",
                 "How long this process needs to read its lag at its rate of the last 30 s (0 caught "
                 "up; +Inf when it read nothing for that long while behind); above twice "
                 "stream.rank_interval_s the worker is in catch-up mode (stream.backlog_interval_s)")
CATCH_UP.set_function(lambda: backlog.PROCESS.seconds())


def count_event(_step_id: str, event: Event) -> None:
    EVENTS.labels(event.type).inc()


def count_dead_letter(_step_id: str, letter: DeadLetter) -> None:
    DEAD_LETTERS.labels(reason_kind(letter.reason)).inc()


def count_writes(records) -> None:
    """After a batch of write records reached Redis."""
    kinds = Tally(r[0] for r in records)
    for kind, n in kinds.items():
        REDIS_WRITES.labels(kind).inc(n)
    if kinds["feed"]:
        FEEDS_WRITTEN.inc(kinds["feed"])


class RollingLogLoss:
    """Weighted mean log loss over the last `window` examples (and the positive rate), exported to
    the gauges above. Thread-safe: several worker threads of one process may own model keys."""

    EPS = 1e-15

    def __init__(self, window: int = 2000):
        self.window = window
        self._items: deque[tuple[float, float, float]] = deque()  # (loss·w, y·w, w)
        self._sums = [0.0, 0.0, 0.0]
        self._lock = threading.Lock()

    def observe(self, p: float, y: bool, w: float = 1.0) -> float:
        p = min(max(float(p), self.EPS), 1.0 - self.EPS)
        loss = -math.log(p if y else 1.0 - p)
        item = (loss * w, float(y) * w, float(w))
        with self._lock:
            self._items.append(item)
            for i in range(3):
                self._sums[i] += item[i]
            if len(self._items) > self.window:
                old = self._items.popleft()
                for i in range(3):
                    self._sums[i] -= old[i]
            total = self._sums[2]
            mean = self._sums[0] / total if total > 0 else 0.0
            MODEL_LOGLOSS.set(mean)
            MODEL_POSITIVE_RATE.set(self._sums[1] / total if total > 0 else 0.0)
        MODEL_EXAMPLES.labels("positive" if y else "negative").inc()
        return mean


MODEL_LOSS = RollingLogLoss()


NOTIFICATION_DECISIONS = Counter(
    "persona_notification_decisions",
    "Notification decision records delivered to the notifications topic, by decision and reason "
    "(schemas.notifications.REASONS; an aggregated notification's head is counted again)",
    ["decision", "reason"])


def count_decisions(records) -> None:
    for (decision, reason), n in Tally((r["decision"], r["reason"]) for r in records).items():
        NOTIFICATION_DECISIONS.labels(decision, reason).inc(n)


EXPERIMENT_COUNTS = Gauge(
    "persona_experiment_events",
    "Per experiment arm (operators/experiments/counts.py): users, and events counted as impressions, "
    "engagements, negatives, opens, dismissals; exact, set from the arm's state",
    ["experiment", "arm", "metric"])
EXPERIMENT_RATES = Gauge(
    "persona_experiment_rate",
    "Per-arm rates with a 95% Wilson interval: rate = engagement_rate | negative_rate | open_rate, "
    "bound = estimate | low | high (differences vs control: `persona experiments report`)",
    ["experiment", "arm", "rate", "bound"])


def set_arm_counts(experiment: str, arm: str, counts: dict[str, int]) -> None:
    """Labels are bounded: experiment and arm names come from the config."""
    from operators.experiments.counts import METRICS as RATE_COUNTERS
    from operators.experiments.report import RATES
    from operators.experiments.stats import wilson

    for metric in ("users", *RATE_COUNTERS):
        EXPERIMENT_COUNTS.labels(experiment, arm, metric).set(counts[metric])
    for rate, (num, den) in RATES.items():
        n = sum(counts[m] for m in den)
        if n:
            for bound, value in zip(("estimate", "low", "high"),
                                    wilson(sum(counts[m] for m in num), n), strict=True):
                EXPERIMENT_RATES.labels(experiment, arm, rate, bound).set(value)
