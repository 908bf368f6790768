"""Online experiments declared in config: named arms, each a traffic fraction and a config variant.

An experiment lives in a config file (layered with `--config`), one table per experiment:

    [experiments.ranking_b]
    enabled = true                       # false (or removing the table) stops it: everyone gets the default
    control = "control"                  # the arm others are compared with (default: "control", else the first)
    [experiments.ranking_b.arms.control]
    fraction = 0.5                       # share of users; the arms' sum may be < 1 (the rest is not enrolled)
    [experiments.ranking_b.arms.diverse]
    fraction = 0.5
    feed.mmr_lambda = 0.5                # overrides of [feed] / [notifications] / [controls] keys
    feed.sources = "in_network,topic,trending"

Overrides are typed and bounded exactly like the keys they override. Two enabled experiments may not
override the same key (a user is in one arm of every enabled experiment; their overrides stack).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")  # metric labels and Redis key parts
OVERRIDABLE = ("feed", "notifications", "controls")
SHARED_KEYS = frozenset({"feed.learning_rate", "notifications.learning_rate"})  # global models


class ExperimentError(ValueError):
    pass


@dataclass(frozen=True)
class Arm:
    name: str
    fraction: float
    overrides: tuple[tuple[str, str, Any], ...] = ()  # (section, key, typed value)


@dataclass(frozen=True)
class Experiment:
    name: str
    enabled: bool
    control: str
    arms: tuple[Arm, ...]  # sorted by name: the traffic layout does not depend on file order

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def to_dict(self) -> dict:
        return {"enabled": self.enabled, "control": self.control,
                "arms": {a.name: {"fraction": a.fraction,
                                  **{f"{s}.{k}": v for s, k, v in a.overrides}} for a in self.arms}}


def parse(raw: dict[str, Any], coerce: Callable[[str, str, Any, type, str], Any],
          typed: Callable[[str, str, Any, str], Any]) -> tuple[Experiment, ...]:
    """`raw` is the [experiments] table. `coerce(section, key, value, kind, origin)` converts a
    value to `kind`; `typed(section, key, value, origin)` coerces and bounds one override the way the
    loader does for the key itself. Both raise ConfigError."""
    out = []
    for name, table in sorted(raw.items()):
        where = f"experiments.{name}"
        if not NAME.match(name):
            raise ExperimentError(f"{where}: experiment names are 1-40 of [a-z0-9_-]")
        if not isinstance(table, dict):
            raise ExperimentError(f"{where} must be a table with `arms`")
        unknown = set(table) - {"enabled", "control", "arms"}
        if unknown:
            raise ExperimentError(f"{where}: unknown keys {sorted(unknown)}; known: arms, control, enabled")
        enabled = coerce("experiments", f"{name}.enabled", table.get("enabled", True), bool, "config")
        arms = _arms(where, table.get("arms"), coerce, typed)
        names = [a.name for a in arms]
        control = table.get("control") or ("control" if "control" in names else names[0])
        if control not in names:
            raise ExperimentError(f"{where}.control={control!r} is not one of its arms {names}")
        out.append(Experiment(name, enabled, control, arms))
    _check_disjoint([e for e in out if e.enabled])
    return tuple(out)


def _arms(where: str, raw: Any, coerce, typed) -> tuple[Arm, ...]:
    if not isinstance(raw, dict) or len(raw) < 2:
        raise ExperimentError(f"{where}.arms must declare at least two arms (tables with a fraction)")
    arms = []
    for arm_name, spec in sorted(raw.items()):
        at = f"{where}.arms.{arm_name}"
        if not NAME.match(arm_name):
            raise ExperimentError(f"{at}: arm names are 1-40 of [a-z0-9_-]")
        if not isinstance(spec, dict) or "fraction" not in spec:
            raise ExperimentError(f"{at} needs a fraction (0 < fraction <= 1)")
        fraction = coerce("experiments", f"{at}.fraction", spec["fraction"], float, "config")
        if not 0.0 < fraction <= 1.0:
            raise ExperimentError(f"{at}.fraction={fraction} is out of range; allowed (0, 1]")
        overrides = []
        for section, values in spec.items():
            if section == "fraction":
                continue
            if section not in OVERRIDABLE or not isinstance(values, dict):
                raise ExperimentError(f"{at}.{section}: an arm overrides only keys of "
                                      f"{list(OVERRIDABLE)} (e.g. feed.size = 20)")
            for key, value in values.items():
                if f"{section}.{key}" in SHARED_KEYS:
                    raise ExperimentError(f"{at}.{section}.{key}: the global model is shared by "
                                          f"every arm; it cannot differ per arm")
                overrides.append((section, key, typed(section, key, value, at)))
        arms.append(Arm(arm_name, fraction, tuple(sorted(overrides))))
    total = sum(a.fraction for a in arms)
    if total > 1.0 + 1e-9:
        raise ExperimentError(f"{where}: the arms' fractions sum to {total:.4f} > 1")
    return tuple(arms)


def _check_disjoint(enabled: list[Experiment]) -> None:
    owner: dict[str, str] = {}
    for exp in enabled:
        for key in {f"{s}.{k}" for a in exp.arms for s, k, _ in a.overrides}:
            if key in owner:
                raise ExperimentError(f"experiments {owner[key]!r} and {exp.name!r} both override "
                                      f"{key}; stop one, or fold them into one experiment")
            owner[key] = exp.name
