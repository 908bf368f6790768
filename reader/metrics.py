"""The reader's metrics: Prometheus counters (GET /metrics) and a rolling window for the inspector's
live charts (GET /inspect/api/stats).

Each app has its own registry (several apps in one test process never collide). Labels are bounded:
`route` is the matched route template (`/feed/{user_id}`, never the raw path, so no user ids), or
"unmatched"; `status` is the numeric HTTP status.
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# the reader's own housekeeping: counted in Prometheus, left out of the inspector's API charts
HOUSEKEEPING = ("/metrics", "/healthz", "/inspect", "/inspect/api/stats", "/inspect/api/user/{user_id}")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ReaderMetrics:
    CONTENT_TYPE = CONTENT_TYPE_LATEST

    def __init__(self, window_s: float = 60.0, max_window: int = 20_000):
        self.registry = CollectorRegistry()
        self.requests = Counter("persona_reader_requests", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("persona_reader_request_seconds", "HTTP request latency by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.feeds = Counter("persona_reader_feed_lookups",
                             "Feed reads by result (hit: a precomputed feed exists)", ["result"],
                             registry=self.registry)
        self.window_s = window_s
        self.started = time.time()
        self._recent: deque[tuple[float, str, int, float]] = deque(maxlen=max_window)
        self._lock = threading.Lock()
        self._totals: Tally = Tally()
        self._children: dict[tuple[str, str, int], tuple] = {}  # bounded: routes x statuses
        self._lookups = {True: self.feeds.labels("hit"), False: self.feeds.labels("miss")}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # labels() locks and hashes on every call: resolve each set once
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                              self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)
        if route in HOUSEKEEPING:
            return
        with self._lock:
            self._recent.append((time.time(), route, status, seconds))
            self._totals["requests"] += 1
            self._totals["errors"] += status >= 500
            self._totals["client_errors"] += 400 <= status < 500

    def feed_lookup(self, hit: bool) -> None:
        self._lookups[hit].inc()
        with self._lock:
            self._totals["hit" if hit else "miss"] += 1

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def snapshot(self) -> dict:
        """API traffic (housekeeping routes excluded) over the last `window_s` seconds, plus totals:
        what the inspector charts poll."""
        now = time.time()
        with self._lock:
            recent = [r for r in self._recent if now - r[0] <= self.window_s]
            totals = dict(self._totals)
        latencies = sorted(r[3] for r in recent)
        span = min(self.window_s, max(now - self.started, 1e-9))
        hits, misses = totals.get("hit", 0), totals.get("miss", 0)
        return {
            "t": now,
            "window_s": self.window_s,
            "requests_total": totals.get("requests", 0),
            "errors_total": totals.get("errors", 0),
            "client_errors_total": totals.get("client_errors", 0),
            "rps": len(recent) / span,
            "error_rate": sum(r[2] >= 500 for r in recent) / len(recent) if recent else 0.0,
            "latency_ms": {f"p{q}": round(_quantile(latencies, q / 100) * 1000, 3)
                           for q in (50, 95, 99)},
            "by_route": dict(Tally(r[1] for r in recent)),
            "feed_hit_rate": hits / (hits + misses) if hits + misses else None,
        }


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]
