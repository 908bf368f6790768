"""Online experiments: deterministic arm assignment, per-arm settings, per-arm online metrics.

`assignment` maps a user to an arm of every enabled experiment (config/experiments.py) and derives
the arm's settings once; `counts` turns the event stream into per-arm counters (a keyed step of the
flow, or a log read by `persona experiments report`); `stats` gives Wilson intervals, Newcombe and
by-user intervals of differences, and always-valid ones for reading a running experiment;
`report` builds the per-arm table.
"""

from operators.experiments.assignment import (
    ArmResolver,
    arms_of,
    assign,
    bucket,
    variant,
    with_arms,
)
from operators.experiments.counts import METRICS, ArmCounts, arm_messages, arm_metrics, metric_of
from operators.experiments.stats import newcombe_diff, wilson

__all__ = [
    "METRICS",
    "ArmCounts",
    "ArmResolver",
    "arm_messages",
    "arm_metrics",
    "arms_of",
    "assign",
    "bucket",
    "metric_of",
    "newcombe_diff",
    "variant",
    "wilson",
    "with_arms",
]
