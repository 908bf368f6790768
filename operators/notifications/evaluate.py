"""Closed-loop evaluation of notification policies on a generated log (`persona
evaluate-notifications LOG`).

Each policy runs the production operators (NotificationDriver: candidates, recipient states, the
policy, the P(open) models) over the same events in event-time order. A notification it sends (now,
or at `send_at` for a delayed one, if not superseded by then) is "opened" when a uniform draw keyed by
its id (the same draw for every policy: common random numbers) falls below the generator's planted
P(open) for that recipient and kind, × 0.25 outside the recipient's active local hours. The outcome
comes back as a `notification_opened` event a minute later (or `notification_dismissed`, or nothing:
a timeout negative), so the learned policy learns from exactly the feedback its own choices earn.
The log's own notification events (ids of no notification of ours) are skipped.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from operators.notifications.driver import NotificationDriver
from operators.notifications.policy import Policy, local_hour, utc_offset_ms
from schemas import Event

OFF_HOURS_FACTOR = 0.25  # scripts.generate.NOTIF_OFF_HOURS_FACTOR
POLICIES = {"learned": "learned policy (P(open) model, quiet/best hours, aggregation)",
            "send_all": "send everything until the budget",
            "most_recent": "send the most recent (one per budget slot)",
            "random": "a random subset of the candidates, as many as the learned policy sends"}
CALIBRATION_ROUNDS = 5  # runs of the random baseline to match the learned policy's deliveries


@dataclass
class PolicyResult:
    name: str
    delivered: int = 0
    opened: int = 0
    decisions: Counter = field(default_factory=Counter)  # (decision, reason) -> count
    user_days: float = 1.0

    @property
    def open_rate(self) -> float:
        return self.opened / self.delivered if self.delivered else 0.0

    def to_dict(self) -> dict:
        return {"policy": self.name, "delivered": self.delivered, "opened": self.opened,
                "open_rate": round(self.open_rate, 4),
                "delivered_per_user_day": round(self.delivered / self.user_days, 3),
                "opens_per_user_day": round(self.opened / self.user_days, 3),
                "decisions": {f"{d}/{r}": n for (d, r), n in sorted(self.decisions.items())}}


def uniform(seed: int, key: str, salt: str = "open") -> float:
    h = hashlib.blake2b(f"{seed}:{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def open_probability(truth, user: str, kind: str, hour: float) -> float:
    p = truth.notif_open.get(user, {}).get(kind, 0.0)
    lo, hi = truth.notif_hours.get(user, [0, 24])
    return p if lo <= hour < hi else p * OFF_HOURS_FACTOR


def run_policy(events: list[Event], truth, policy: Policy, seed: int = 0,
               settings=None) -> PolicyResult:
    driver = (NotificationDriver.from_settings(settings, policy) if settings is not None
              else NotificationDriver(policy))
    result = PolicyResult(policy.mode)
    latest: dict[str, dict] = {}
    deliveries: list[tuple[int, str]] = []  # (send_at, id) heap
    feedback: list[tuple[int, str, str, str]] = []  # (ts, id, user, type) heap
    timezones: dict[str, str | None] = {}
    scheduled: set[str] = set()

    def deliver_until(now: int) -> None:
        while deliveries and deliveries[0][0] <= now:
            at, nid = heapq.heappop(deliveries)
            rec = latest[nid]
            if rec["decision"] not in ("send", "delay") or rec["send_at"] != at:
                continue  # superseded, or rescheduled
            user = rec["user_id"]
            if driver.state(user).deleted:
                continue
            result.delivered += 1
            hour = local_hour(at, utc_offset_ms(at, timezones.get(user)))
            p = open_probability(truth, user, rec["kind"], hour)
            if uniform(seed, nid) < p:
                result.opened += 1
                heapq.heappush(feedback, (at + 60_000, nid, user, "notification_opened"))
            elif uniform(seed, nid, "dismiss") < 0.5:
                heapq.heappush(feedback, (at + 120_000, nid, user, "notification_dismissed"))

    def feed_back_until(now: int) -> None:
        while feedback and feedback[0][0] <= now:
            ts, nid, user, kind = heapq.heappop(feedback)
            ev = Event(f"fb.{nid}"[:128], kind, ts, user, notification_id=nid)
            observe(driver.route([(user, ("self", ev, None))]))

    def observe(records: list[dict]) -> None:
        for rec in records:
            nid = rec["notification_id"]
            latest[nid] = rec
            result.decisions[(rec["decision"], rec["reason"])] += 1
            if rec["decision"] in ("send", "delay") and (nid, rec["send_at"]) not in scheduled:
                scheduled.add((nid, rec["send_at"]))
                heapq.heappush(deliveries, (rec["send_at"], nid))

    first = last = None
    for event in events:
        if event.type.startswith("notification_"):
            continue
        while (deliveries and deliveries[0][0] <= event.ts) or (feedback and feedback[0][0]
                                                                 <= event.ts):
            deliver_until(min(event.ts, feedback[0][0] if feedback else event.ts))
            feed_back_until(min(event.ts, deliveries[0][0] if deliveries else event.ts))
        if event.type == "user_created":
            timezones[event.user_id] = event.timezone
        observe(driver.learn_one(event))
        first = event.ts if first is None else first
        last = event.ts
    if last is not None:
        deliver_until(last)  # deliveries scheduled past the log's end are not counted
        result.user_days = max(len(timezones), 1) * max((last - first) / 86_400_000, 1e-9)
    return result


def evaluate(events: Iterable[Event], truth, base: Policy, seed: int = 0,
             modes: Iterable[str] = tuple(POLICIES), settings=None) -> list[PolicyResult]:
    """One result per mode. "random" sends a seeded random share of the candidates, calibrated
    (a few runs) to deliver as many as "learned" (which must then come first in `modes`)."""
    events = list(events)
    out: list[PolicyResult] = []
    for mode in modes:
        policy = _with(base, mode=mode)
        if mode != "random":
            out.append(run_policy(events, truth, policy, seed, settings))
            continue
        target = out[0].delivered if out and out[0].name == "learned" else None
        tried: list[tuple[float, PolicyResult]] = []  # (fraction, result)
        fraction = 0.5
        for _ in range(CALIBRATION_ROUNDS if target is not None else 1):
            result = run_policy(events, truth, _with(policy, send_fraction=fraction), seed,
                                settings)
            tried.append((fraction, result))
            if target is None or abs(result.delivered - target) <= 0.01 * target:
                break
            fraction = _next_fraction(tried, target)
        out.append(min(tried, key=lambda fr: abs(fr[1].delivered - (target or 0)))[1])
    return out


def _next_fraction(tried: list[tuple[float, PolicyResult]], target: int) -> float:
    """Secant step on deliveries(fraction) (monotone, concave: the budget saturates), from the
    proportional guess when only one point is known."""
    f1, r1 = tried[-1]
    if len(tried) == 1 or tried[-2][1].delivered == r1.delivered:
        f = f1 * target / max(r1.delivered, 1)
    else:
        f0, r0 = tried[-2]
        f = f1 + (target - r1.delivered) * (f1 - f0) / (r1.delivered - r0.delivered)
    return float(min(max(f, 1e-4), 1.0))


def _with(policy: Policy, **changes) -> Policy:
    return Policy(**{**{f: getattr(policy, f) for f in policy.__slots__}, **changes})
