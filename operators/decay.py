"""Exponentially decayed sums kept in the log domain, so they never need rescaling.

A decayed count S(t) = Σ exp(-(t - t_i)/τ) is stored as L = log Σ exp((t_i - T0)/τ). Adding an
observation is one `logaddexp`; reading at time t is exp(L - (t - T0)/τ). Orderings by L are
time-invariant, which is what makes a Redis sorted set of trending items exact without re-scoring.

>>> d = Decay(half_life_h=1.0)
>>> L = d.add(None, 0, 1.0)
>>> round(d.value(L, 3_600_000), 3)   # one half-life later
0.5
"""

from __future__ import annotations

import math

T0_MS = 1_577_836_800_000  # 2020-01-01: reference epoch keeps exponents small


class Decay:
    """Log-domain exponential decay with a half-life in hours."""

    __slots__ = ("tau_ms",)

    def __init__(self, half_life_h: float):
        self.tau_ms = half_life_h * 3_600_000.0 / math.log(2.0)

    def add(self, log_sum: float | None, ts_ms: int, weight: float = 1.0) -> float:
        """Return the log-sum after adding `weight` observed at `ts_ms`."""
        term = (ts_ms - T0_MS) / self.tau_ms + math.log(weight)
        if log_sum is None:
            return term
        hi, lo = (log_sum, term) if log_sum > term else (term, log_sum)
        return hi + math.log1p(math.exp(lo - hi))

    def value(self, log_sum: float | None, now_ms: int) -> float:
        """The decayed sum read at `now_ms`."""
        if log_sum is None:
            return 0.0
        return math.exp(min(log_sum - (now_ms - T0_MS) / self.tau_ms, 700.0))
