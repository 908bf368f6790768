"""The decision for one candidate, by event time only (replays decide the same way).

`Policy` holds the `[notifications]` settings. `choose` picks the delivery time and checks the
value: a candidate due in the recipient's quiet hours (in their timezone) is delayed to the best
allowed hour, never dropped; outside quiet hours it is sent now unless a later hour within
`max_delay_h` is better by `delay_margin` (the recipient's learned best hour). Below `min_p_open` it
is suppressed. The budget is checked by the state on the local day of delivery.

Modes: "learned" (production), and three baselines for evaluation: "send_all" (everything, now,
until the daily budget is spent), "most_recent" (at most one per budget slot of the day: the newest
candidate waiting when the slot opens) and "random" (a seeded random `send_fraction` of the
candidates, now, until the budget: calibrated to send as many as the learned policy). Every mode
also keeps the per-kind daily budgets (`kind_budgets`, each at most the global one).

>>> p = Policy(daily_budget=5, quiet_start_h=22, quiet_end_h=8)
>>> in_quiet(23.5, 22, 8), in_quiet(8.0, 22, 8), in_quiet(12.0, 22, 22)
(True, False, False)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MODES = ("learned", "send_all", "most_recent", "random")


@dataclass(frozen=True, slots=True)
class Policy:
    daily_budget: int = 5
    quiet_start_h: int = 22
    quiet_end_h: int = 8
    aggregate_window_ms: int = 3_600_000
    min_p_open: float = 0.08
    delay_margin: float = 0.03
    max_delay_h: int = 24
    feedback_timeout_ms: int = 4 * 3_600_000
    min_author_engagements: int = 3
    history: int = 50
    learning_rate: float = 0.05
    user_learning_rate: float = 0.3
    mode: str = "learned"
    kind_budgets: tuple[tuple[str, int], ...] = ()  # (kind, daily budget) under the global one
    send_fraction: float = 1.0  # "random" baseline: share of candidates it sends (seeded by id)
    # ids a recipient remembers (decided before; aggregated into a head). Last: states pickled
    # before it unpickle their fields in order (the flow then sets the current policy)
    decided_ids: int = 2000

    def kind_budget(self, kind: str) -> int:
        """The daily budget of one candidate kind (the global budget when none is set)."""
        for k, n in self.kind_budgets:
            if k == kind:
                return min(n, self.daily_budget)
        return self.daily_budget

    @classmethod
    def from_settings(cls, settings, mode: str = "learned") -> Policy:
        n = settings.notifications
        return cls(n.daily_budget, n.quiet_start_h, n.quiet_end_h, n.aggregate_window_s * 1000,
                   n.min_p_open, n.delay_margin, n.max_delay_h, n.feedback_timeout_s * 1000,
                   n.min_author_engagements, n.history, n.learning_rate, n.user_learning_rate,
                   mode, kind_budgets_from(n), decided_ids=n.decided_ids)


def kind_budgets_from(n) -> tuple[tuple[str, int], ...]:
    """`notifications.budget_<kind>` settings as (kind, budget) pairs."""
    from operators.notifications.candidates import KINDS
    return tuple((k, getattr(n, f"budget_{k}")) for k in KINDS)


def chosen_at_random(policy: Policy, notification_id: str) -> bool:
    """The "random" baseline's seeded coin: the same id gets the same draw in every run."""
    h = hashlib.blake2b(notification_id.encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64 < policy.send_fraction


@lru_cache(maxsize=1024)
def zone(name: str | None):
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # unknown: UTC rather than fail the worker (and its restart, on the same event). A
        # producer's string can name a directory ("America": IsADirectoryError) or be too long
        # for a path (ENAMETOOLONG)
        return UTC


def utc_offset_ms(ts: int, tz: str | None) -> int:
    dt = datetime.fromtimestamp(ts / 1000, tz=UTC).astimezone(zone(tz))
    return int(dt.utcoffset().total_seconds() * 1000)


def local_hour(ts: int, offset_ms: int) -> float:
    return ((ts + offset_ms) % DAY_MS) / HOUR_MS


def local_day(ts: int, offset_ms: int) -> int:
    return (ts + offset_ms) // DAY_MS


def in_quiet(hour: float, start: int, end: int) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end


def slots(now: int, max_delay_h: int) -> list[int]:
    """Delivery times considered: now, then each following full hour (UTC) up to max_delay_h."""
    first = (now // HOUR_MS + 1) * HOUR_MS
    return [now] + [first + i * HOUR_MS for i in range(max_delay_h)]


def offsets_at(times: list[int], tz: str | None) -> list[int]:
    """The recipient's UTC offset at each delivery time: one, unless a daylight-saving change
    falls among them (the window is at most `max_delay_h` long: two lookups settle it)."""
    first, last = utc_offset_ms(times[0], tz), utc_offset_ms(times[-1], tz)
    if first == last:
        return [first] * len(times)
    return [utc_offset_ms(t, tz) for t in times]


def choose(policy: Policy, times: list[int], p: list[float], offsets: list[int]
           ) -> tuple[str, str, int, float]:
    """(decision, reason, send_at, p_open) among delivery `times` with predicted P(open) `p`
    (times[0] = now) and the recipient's UTC offset at each (`offsets_at`). decision is "send",
    "delay" or "suppress" (low value; the budget is the state's check)."""
    offset_ms = offsets[0]
    if policy.mode == "send_all":
        return "send", "send_all", times[0], p[0]
    if policy.mode == "random":  # the state drew the coin (chosen_at_random) before asking
        return "send", "random", times[0], p[0]
    if policy.mode == "most_recent":
        slot_ms = DAY_MS // max(policy.daily_budget, 1)
        local = times[0] + offset_ms
        at = (local // slot_ms + 1) * slot_ms - offset_ms
        return "delay", "next_slot", at, p[0]
    allowed = [not in_quiet(local_hour(t, off), policy.quiet_start_h, policy.quiet_end_h)
               for t, off in zip(times, offsets, strict=True)]
    best = max((i for i in range(len(times)) if allowed[i]), key=lambda i: (p[i], -i),
               default=None)
    if best is None:  # every hour is quiet (misconfiguration): send now rather than never
        best = 0
    if allowed[0] and p[best] - p[0] < policy.delay_margin:
        best = 0
    value = p[best]
    if value < policy.min_p_open or math.isnan(value):
        return "suppress", "low_value", times[best], value
    if best == 0:
        return "send", "send_now", times[0], value
    return "delay", ("best_hour" if allowed[0] else "quiet_hours"), times[best], value
