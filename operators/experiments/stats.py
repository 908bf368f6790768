"""Confidence intervals for proportions and their differences (95% by default).

Wilson's score interval for one proportion, Newcombe's hybrid score interval (his method 10) for the
difference of two independent proportions: both stay inside [0, 1] / [-1, 1] and behave at small
counts, where the normal approximation does not. Both treat every impression as independent.
`clustered_ratio` treats the user as the unit (users are what is randomised): the delta-method
variance of a ratio of sums, from per-user sums of squares and products.

Those intervals hold at one look planned in advance. A running experiment is looked at again and
again, and stopping at the first look whose interval excludes zero finds "winners" far more often
than 5% of the time when there is no effect. `always_valid_diff` is a confidence *sequence*: the
mixture sequential probability ratio test (Robbins 1970; Johari et al., "Peeking at A/B tests",
KDD 2017) for an asymptotically normal difference, whose intervals cover the true difference at
every look at once with probability 1 − alpha, so the report can be read whenever one likes. It is
wider than the fixed interval at the same alpha, more so the earlier the look.

>>> p, lo, hi = wilson(10, 100)
>>> round(p, 3), round(lo, 3), round(hi, 3)
(0.1, 0.055, 0.174)
>>> d, lo, hi = newcombe_diff(60, 100, 40, 100)
>>> round(d, 3), round(lo, 3), round(hi, 3)
(0.2, 0.061, 0.328)
"""

from __future__ import annotations

import math
from statistics import NormalDist

Z95 = 1.959963984540054
ALPHA = 0.05  # the error rate the always-valid intervals keep over all looks and comparisons
# the mixture's scale, as a relative lift of the control's rate: the lift found soonest (any > 0 is
# valid; 10% is a typical smallest lift worth shipping)
MIXTURE_LIFT = 0.1


def z_of(alpha: float) -> float:
    """The two-sided normal quantile of level 1 − alpha (z_of(0.05) = Z95)."""
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float, float]:
    """(estimate, low, high) of a proportion k/n; (nan, 0, 1) when n = 0."""
    if n <= 0:
        return math.nan, 0.0, 1.0
    k = min(max(k, 0), n)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


def newcombe_diff(k1: int, n1: int, k2: int, n2: int,
                  z: float = Z95) -> tuple[float, float, float]:
    """(p1 - p2, low, high): the difference of arm 1's proportion and arm 2's (e.g. vs control)."""
    p1, l1, u1 = wilson(k1, n1, z)
    p2, l2, u2 = wilson(k2, n2, z)
    if math.isnan(p1) or math.isnan(p2):
        return math.nan, -1.0, 1.0
    d = p1 - p2
    return (d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def ratio_variance(y: float, n: float, yy: float, nn: float, ny: float, users: int) -> float:
    """Variance of R = Σy/Σn over `users` independent users, from Σy², Σn², Σn·y (delta method:
    Σ(y_i − R n_i)² / (Σn)² · m/(m − 1)); nan when undefined."""
    if n <= 0 or users < 2:
        return math.nan
    r = y / n
    resid = max(yy - 2 * r * ny + r * r * nn, 0.0)
    return resid / (n * n) * users / (users - 1)


def clustered_ratio(y: float, n: float, var: float, z: float = Z95) -> tuple[float, float, float]:
    """(R, low, high) with a normal interval of variance `var` (clipped to [0, 1])."""
    if n <= 0 or math.isnan(var):
        return (y / n if n > 0 else math.nan), 0.0, 1.0
    r, half = y / n, z * math.sqrt(var)
    return r, max(0.0, r - half), min(1.0, r + half)


def clustered_diff(r1: float, var1: float, r0: float, var0: float,
                   z: float = Z95) -> tuple[float, float, float]:
    """(r1 − r0, low, high) for two independent groups of users."""
    if any(math.isnan(x) for x in (r1, var1, r0, var0)):
        return (r1 - r0), -1.0, 1.0
    d, half = r1 - r0, z * math.sqrt(var1 + var0)
    return d, d - half, d + half


def always_valid_diff(d: float, var: float, tau2: float,
                      alpha: float = 0.05) -> tuple[float, float, float, float]:
    """(d, low, high, p) of the mixture SPRT for an estimate d ~ N(theta, var) whose variance
    shrinks as data accrue: with a N(0, tau2) mixture over the true difference, the likelihood
    ratio against theta = 0 is L = sqrt(var / (var + tau2)) · exp(tau2 d² / (2 var (var + tau2))),
    the always-valid p-value is min(1, 1/L), and the interval is every theta with L(theta) < 1/alpha.
    tau2 is the squared size of the differences the test is tuned to find soonest; any tau2 > 0 is
    valid. (d, −1, 1, 1) when the variance is unknown."""
    if any(math.isnan(x) for x in (d, var, tau2)) or var <= 0 or tau2 <= 0:
        return d, -1.0, 1.0, 1.0
    total = var + tau2
    half = math.sqrt(var * total / tau2 * (math.log(total / var) + 2.0 * math.log(1.0 / alpha)))
    log_l = 0.5 * math.log(var / total) + tau2 * d * d / (2.0 * var * total)
    p = 1.0 if log_l <= 0 else math.exp(-log_l)
    return d, d - half, d + half, p


def chi2_sf(x: float, df: int) -> float:
    """P(X ≥ x) for a chi-squared variable with integer `df` ≥ 1 degrees of freedom (the upper
    regularised gamma function at df/2, in closed form)."""
    if x <= 0:
        return 1.0
    h = x / 2.0
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= h / i
            total += term
        return min(1.0, math.exp(-h) * total)
    total, term = math.erfc(math.sqrt(h)), math.sqrt(h) / math.gamma(1.5)
    for i in range(1, (df - 1) // 2 + 1):
        total += math.exp(-h) * term
        term *= h / (i + 0.5)
    return min(1.0, total)


def sample_ratio(users: list[int], fractions: list[float]) -> tuple[float, float]:
    """(chi-squared, p) of the users counted per arm against the arms' configured traffic
    fractions (a sample-ratio-mismatch test: a small p means assignment or logging is broken, and
    no difference between the arms can be trusted). (0, 1) with fewer than two arms or no users."""
    total, share = sum(users), sum(fractions)
    if len(users) < 2 or total <= 0 or share <= 0:
        return 0.0, 1.0
    expected = [total * f / share for f in fractions]
    chi2 = sum((u - e) ** 2 / e for u, e in zip(users, expected, strict=True) if e > 0)
    return chi2, chi2_sf(chi2, len(users) - 1)
