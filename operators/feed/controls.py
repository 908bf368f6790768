"""User controls, a ranking stage between scoring and mixing: what the user asked to see less or more of.

Large feeds answer "see less" with a strong filter for a while, then a discount that fades, so one
tap is neither ignored nor permanent. All durations are event time (`[controls]` settings):

| control (event)                 | target                | effect on candidates                          |
|---------------------------------|-----------------------|-----------------------------------------------|
| `see_less` (target_id / topic)  | an author and/or topic | not shown for filter_h, then score × discount rising linearly to 1 over fade_h |
| `not_interested`, `hide` (post) | the post's author     | the post is never shown (filters: seen); author's score × post_discount → 1 over fade_h |
| `see_more` (topic)              | a topic               | score × (1 + see_more_boost) → 1 over fade_h  |

The latest control on a target replaces an earlier one, except that a post-level control never
weakens a `see_less` of the same author. Every adjusted item carries the control as a reason
(code, target, multiplier). `mute` is a permanent filter (filters.py), not a control here.

>>> from config import load
>>> cfg = load(env={}).controls
>>> effect("see_less", 0, 1 * HOUR_MS, cfg)
(True, 0.0)
>>> effect("see_less", 0, int((cfg.filter_h + cfg.fade_h / 2) * HOUR_MS), cfg)[1]
0.65
>>> effect("see_less", 0, int((cfg.filter_h + cfg.fade_h) * HOUR_MS), cfg)
(False, 1.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from schemas import Event, Reason

if TYPE_CHECKING:
    from config.settings import ControlSettings
    from operators.context import Context
    from operators.item_stats import ItemView

HOUR_MS = 3_600_000
LEARNED = frozenset({"see_less", "see_more", "not_interested", "hide"})  # events Controls.learn_one uses

Target = tuple[str, str]  # ("author", user id) | ("topic", topic)


def effect(kind: str, ts: int, now: int, cfg: ControlSettings) -> tuple[bool, float]:
    """(filtered, score multiplier) of a control of `kind` made at `ts`, at event time `now`."""
    age_h = max(0, now - ts) / HOUR_MS
    if kind == "see_less":
        if age_h < cfg.filter_h:
            return True, 0.0
        start, into = cfg.discount, age_h - cfg.filter_h
    elif kind == "not_interested":
        start, into = cfg.post_discount, age_h
    else:  # see_more
        start, into = 1.0 + cfg.see_more_boost, age_h
    if into >= cfg.fade_h:
        return False, 1.0
    return False, round(start + (1.0 - start) * into / cfg.fade_h, 6)


class Controls:
    """A user's controls in force: target -> (kind, event ts). Picklable, bounded."""

    def __init__(self) -> None:
        self.entries: dict[Target, tuple[str, int]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def learn_one(self, event: Event, view: ItemView | None, cfg: ControlSettings) -> None:
        kind = event.type
        if kind == "see_less":
            targets = [t for t in (("author", event.target_id), ("topic", event.topic)) if t[1]]
        elif kind == "see_more":
            targets = [("topic", event.topic)] if event.topic else []
        elif kind in ("not_interested", "hide"):
            kind = "not_interested"
            targets = [("author", view.author_id)] if view is not None and view.author_id else []
        else:
            return
        for target in targets:
            old = self.entries.get(target)
            if kind == "not_interested" and old is not None and old[0] == "see_less" \
                    and effect("see_less", old[1], event.ts, cfg) != (False, 1.0):
                continue  # a post-level control never weakens a see_less still in force
            self.entries.pop(target, None)  # re-inserted: newest last
            self.entries[target] = (kind, event.ts)
        self._prune(event.ts, cfg)

    def _prune(self, now: int, cfg: ControlSettings) -> None:
        if len(self.entries) > cfg.max_entries:
            over = [t for t, (k, ts) in self.entries.items() if effect(k, ts, now, cfg) == (False, 1.0)]
            for t in over:
                del self.entries[t]
            while len(self.entries) > cfg.max_entries:  # still too many: the oldest go
                del self.entries[next(iter(self.entries))]


def apply(user, views: list[ItemView], scores: np.ndarray, now: int,
          ctx: Context) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[Reason, ...]]]:
    """(adjusted scores, shown mask, control reasons by candidate index) for the scored candidates."""
    shown = np.ones(len(views), dtype=bool)
    controls: Controls | None = getattr(user, "controls", None)
    if not controls or not len(views):
        return scores, shown, {}
    cfg, entries = ctx.settings.controls, controls.entries
    adjusted = np.array(scores, dtype=float, copy=True)
    reasons: dict[int, tuple[Reason, ...]] = {}
    for k, view in enumerate(views):
        applied: list[Reason] = []
        targets = [("author", view.author_id), *(("topic", t) for t in view.topics)]
        for target in targets:
            entry = entries.get(target)  # type: ignore[arg-type]
            if entry is None:
                continue
            filtered, factor = effect(entry[0], entry[1], now, cfg)
            if filtered:
                shown[k] = False
                break
            if factor != 1.0:
                # on the odds, not the probability: × 1.5 took a score of 0.7 past 1, clipped
                # to the same top relevance as every other boosted item, which no diversity
                # penalty could then reorder
                p = adjusted[k]
                adjusted[k] = p * factor / (p * factor + (1.0 - p))
                applied.append(Reason(entry[0], target[1], factor))
        if applied and shown[k]:
            reasons[k] = tuple(applied)
    return adjusted, shown, reasons
