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


class ExactDecayedSum:
    """A decayed sum whose value does not depend on the order of the additions.

    `Decay.add` rounds at every step, so the same observations added in another order can differ in
    the last bit: enough to change published bytes when a stream is processed in a different order
    (a restart, another batching). Here each term exp((t_i - T0)/τ - anchor) is kept exactly as a
    list of non-overlapping float partials (Shewchuk's algorithm, as in `math.fsum`), so the sum is
    exact and its rounding (`log_sum`) is the same for every order. The anchor is a fixed grid point
    (multiples of ANCHOR_STEP decay constants), chosen by the first term and moved up (rescaling, the
    one inexact step, ~once a year of event time at a 24 h half-life) before exponents overflow.

    >>> d = Decay(half_life_h=1.0)
    >>> a, b = ExactDecayedSum(), ExactDecayedSum()
    >>> for ts, w in [(0, 0.1), (3_600_000, 0.7), (60_000, 0.2)]: a.add(d, ts, w)
    >>> for ts, w in [(60_000, 0.2), (0, 0.1), (3_600_000, 0.7)]: b.add(d, ts, w)
    >>> a.log_sum == b.log_sum
    True
    """

    __slots__ = ("anchor", "partials")
    ANCHOR_STEP = 256.0

    def __init__(self, anchor: float | None = None, partials: list[float] | None = None):
        self.anchor = anchor
        self.partials = partials or []

    def add(self, decay: Decay, ts_ms: int, weight: float = 1.0) -> None:
        term = (ts_ms - T0_MS) / decay.tau_ms + math.log(weight)
        if self.anchor is None:
            self.anchor = math.floor(term / self.ANCHOR_STEP) * self.ANCHOR_STEP
        while term - self.anchor > 2 * self.ANCHOR_STEP:  # keep exp() finite
            self.anchor += self.ANCHOR_STEP
            scale = math.exp(-self.ANCHOR_STEP)
            self.partials = [p * scale for p in self.partials]
        self._add_exact(math.exp(term - self.anchor))

    def _add_exact(self, x: float) -> None:
        kept = []
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                kept.append(lo)
            x = hi
        kept.append(x)
        self.partials = kept

    @property
    def log_sum(self) -> float | None:
        if self.anchor is None:
            return None
        total = math.fsum(self.partials)
        return self.anchor + math.log(total) if total > 0 else None
