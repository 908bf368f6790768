"""Per-arm online metrics from the event stream: which counter an event adds to, per user and per arm.

Counted per (experiment, arm) of the acting user (their arm is a function of the user id and the
config, so no join with the served feeds is needed):

| counter      | events                                                        |
|--------------|---------------------------------------------------------------|
| impressions  | `impression` on the feed (surface "feed" or absent)           |
| engagements  | `like` (one per user and post: a proportion of impressions)   |
| negatives    | `hide`, `report`, `not_interested`, `see_less`                |
| opens        | `notification_opened`                                         |
| dismissals   | `notification_dismissed`                                      |

Rates: engagements / impressions, negatives / impressions, opens / (opens + dismissals).

Events of one user are correlated, so the unit of randomisation (the user) matters for intervals:
`UserCounts` (state keyed by user) keeps each user's counters and emits, per batch, the change of the
arm's totals *and* of the arm's sums of per-user products (Σ c_a·c_b over users), from which
`stats.clustered_ratio` computes a user-clustered interval. `ArmCounts` (keyed by arm) adds them up.
Both are exact, so a replay or a log count gives the same numbers as the stream.
"""

from __future__ import annotations

from config import Settings
from operators.experiments.assignment import arms_of
from schemas import Event

METRICS = ("impressions", "engagements", "negatives", "opens", "dismissals")
PAIRS = tuple(f"{a}*{b}" for i, a in enumerate(METRICS) for b in METRICS[i:])
_METRIC_OF = {
    "like": "engagements",
    "hide": "negatives",
    "report": "negatives",
    "not_interested": "negatives",
    "see_less": "negatives",
    "notification_opened": "opens",
    "notification_dismissed": "dismissals",
}


def metric_of(event: Event) -> str | None:
    if event.type == "impression":
        return "impressions" if event.surface in (None, "feed") else None
    return _METRIC_OF.get(event.type)


def arm_metrics(event: Event, settings: Settings) -> list[tuple[str, str]]:
    """[("experiment/arm", counter)] for each enabled experiment the actor is enrolled in."""
    metric = metric_of(event)
    if metric is None:
        return []
    return [(f"{exp}/{arm}", metric) for exp, arm in arms_of(settings, event.user_id)]


def arm_messages(event: Event, settings: Settings) -> list[tuple[str, tuple]]:
    """What the per-user counters (step `experiment_users`, keyed by user; the key last: builders
    do not get it) learn from an event: (user, ("experiment/arm", counter, user)) per enrolled arm
    (`arm_metrics`); for a user enrolled in any, (user, ("created", user)) at their `user_created`
    (a new user's counters start without a look for a parked copy) and (user, ("deleted", user))
    at their `user_deleted` (the parked copy goes: its key names them)."""
    user = event.user_id
    if event.type in ("user_created", "user_deleted"):
        return [(user, (event.type[5:], user))] if arms_of(settings, user) else []
    return [(user, (cell, counter, user)) for cell, counter in arm_metrics(event, settings)]


def empty_delta() -> dict:
    return {"users": 0, "counts": dict.fromkeys(METRICS, 0), "moments": dict.fromkeys(PAIRS, 0)}


class UserCounts:
    """One user's counters per arm cell. `learn_many` returns the change of each arm's totals.
    `deleted`: the user was deleted (the state stays, never evicted nor parked)."""

    deleted = False

    def __init__(self) -> None:
        self.cells: dict[str, dict[str, int]] = {}

    def __setstate__(self, state: dict) -> None:
        # pickled when it held its key for parking (`flows.adapters._Evictable` remembers it)
        state.pop("user_id", None)
        self.__dict__.update(state)

    def learn_many(self, pairs: list[tuple[str, str]]) -> dict[str, dict]:
        """`pairs` of (cell, counter) → {cell: delta} (see `empty_delta`)."""
        deltas: dict[str, dict] = {}
        for cell, metric in pairs:
            delta = deltas.get(cell)
            if delta is None:
                delta = deltas[cell] = empty_delta()
            mine = self.cells.get(cell)
            if mine is None:
                mine = self.cells[cell] = dict.fromkeys(METRICS, 0)
                delta["users"] += 1
            # (c + e_m)(c + e_m)ᵀ − c cᵀ for the unit vector e_m: row/column m gains c, (m, m) also 1
            for pair in PAIRS:
                a, b = pair.split("*")
                delta["moments"][pair] += (mine[b] if a == metric else 0) + \
                    (mine[a] if b == metric else 0) + (1 if a == b == metric else 0)
            mine[metric] += 1
            delta["counts"][metric] += 1
        return deltas


class ArmCounts:
    """Exact totals of one (experiment, arm): users, counters, Σ over users of counter products."""

    def __init__(self) -> None:
        self.users = 0
        self.counts = dict.fromkeys(METRICS, 0)
        self.moments = dict.fromkeys(PAIRS, 0)

    def add(self, delta: dict) -> None:
        self.users += delta["users"]
        for k, v in delta["counts"].items():
            self.counts[k] += v
        for k, v in delta["moments"].items():
            self.moments[k] += v

    def to_dict(self) -> dict:
        return {"users": self.users, **self.counts, "moments": dict(self.moments)}


class ExperimentCounts:
    """The steps `experiment_users` (every user's `UserCounts`) and `experiment_counts` (every
    arm's `ArmCounts`) in one process, for replays and a log's report: `learn_one` each event
    once; `final_writes` gives the records the flow's `experiment_counts` step leaves behind."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.users: dict[str, UserCounts] = {}
        self.cells: dict[str, ArmCounts] = {}  # "experiment/arm" → totals

    def learn_one(self, event: Event) -> None:
        pairs = arm_metrics(event, self.settings)
        if not pairs:
            return
        user = self.users.get(event.user_id)
        if user is None:
            user = self.users[event.user_id] = UserCounts()
        for cell, delta in user.learn_many(pairs).items():
            totals = self.cells.get(cell)
            if totals is None:
                totals = self.cells[cell] = ArmCounts()
            totals.add(delta)

    def final_writes(self) -> list[tuple]:
        """("arm_counts", experiment, arm, totals) of every arm that counted something (as the
        flow: an arm no event reached has no key), by cell."""
        return [("arm_counts", *cell.split("/", 1), self.cells[cell].to_dict())
                for cell in sorted(self.cells)]
