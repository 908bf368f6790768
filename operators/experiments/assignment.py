"""Deterministic arm assignment and the per-arm settings a user is ranked and notified with.

A user's position in an experiment is blake2b(experiment name + ":" + user id) as a uniform number in
[0, 1); arms (sorted by name) take consecutive slices of [0, 1) by their fraction, and a user past the
last slice is not enrolled. The hash is stable across processes, machines and Python versions (never
Python's `hash()`), and the name salts it, so two experiments' assignments are independent.

>>> bucket("exp", "u1") == bucket("exp", "u1"), 0.0 <= bucket("exp", "u1") < 1.0
(True, True)
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from config import Settings
from config.experiments import Experiment

Arms = tuple[tuple[str, str], ...]  # ((experiment, arm), ...) of the enabled experiments a user is in


def bucket(experiment: str, user_id: str) -> float:
    digest = hashlib.blake2b(f"{experiment}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign(experiment: Experiment, user_id: str) -> str | None:
    """The arm of `user_id` in `experiment`, or None when the user falls outside every arm."""
    x, edge = bucket(experiment.name, user_id), 0.0
    for arm in experiment.arms:
        edge += arm.fraction
        if x < edge:
            return arm.name
    return None


def arms_of(settings: Settings, user_id: str) -> Arms:
    """The user's arm in every enabled experiment (stopped experiments assign nobody)."""
    out = []
    for exp in settings.experiments:
        if exp.enabled:
            arm = assign(exp, user_id)
            if arm is not None:
                out.append((exp.name, arm))
    return tuple(out)


def with_arms(record: dict, arms: Arms) -> dict:
    """`record` (a notification decision) with `"arms": {experiment: arm}` when the recipient is
    in an experiment, so that a delivery service can log exposures per arm; else unchanged (a
    copy: the record itself stays in the recipient's inbox state)."""
    return {**record, "arms": dict(arms)} if arms else record


def variant(settings: Settings, arms: Arms) -> Settings:
    """`settings` with the overrides of `arms` applied (and no experiments: a variant is final)."""
    by_name = {e.name: e for e in settings.experiments}
    sections: dict[str, dict] = {}
    for exp_name, arm_name in arms:
        for section, key, value in by_name[exp_name].arm(arm_name).overrides:
            sections.setdefault(section, {})[key] = value
    changed = {s: replace(getattr(settings, s), **kv) for s, kv in sections.items()}
    return replace(settings, experiments=(), **changed)


class ArmResolver:
    """Per-arm derived objects (a ranking Context, a notification Policy…) built once per arm
    combination by `build(settings)` and cached; users outside every experiment get `default`."""

    def __init__(self, settings: Settings, build, default=None):
        self.settings, self.build = settings, build
        self.default = default if default is not None else build(settings)
        self.enabled = any(e.enabled for e in settings.experiments)
        self._cache: dict[Arms, object] = {(): self.default}

    def arms(self, user_id: str) -> Arms:
        return arms_of(self.settings, user_id) if self.enabled else ()

    def get(self, arms: Arms):
        found = self._cache.get(arms)
        if found is None:
            found = self._cache[arms] = self.build(variant(self.settings, arms))
        return found

    def for_user(self, user_id: str):
        """(the user's derived object, their arms)."""
        arms = self.arms(user_id)
        return self.get(arms), arms
