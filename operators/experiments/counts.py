"""Per-arm online metrics from the event stream: which counter an event adds to, for which arms.

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
"""

from __future__ import annotations

from config import Settings
from operators.experiments.assignment import arms_of
from schemas import Event

METRICS = ("impressions", "engagements", "negatives", "opens", "dismissals")
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


class ArmCounts:
    """Exact counters of one (experiment, arm). Picklable."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(METRICS, 0)

    def learn_one(self, metric: str, n: int = 1) -> None:
        self.counts[metric] += n
