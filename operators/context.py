"""Derived, immutable parameters shared by the operators of one worker (built once from Settings).

Kept out of per-key state so snapshots stay small; rebuilt from config on restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from config import Settings
from operators.decay import Decay
from operators.experiments.assignment import ArmResolver, Arms

# The ranking features, in the order of the scoring vectors. Declared once; hydration fills them.
FEATURES: tuple[str, ...] = (
    "in_network",
    "author_affinity",
    "topic_affinity",
    "interest",
    "group",
    "similar",
    "trending",
    "popularity",
    "engagement_rate",
    "freshness",
)

# The per-user model sees the same features plus the global model's logit (a residual model).
USER_FEATURES: tuple[str, ...] = (*FEATURES, "global_logit")

# Prior of the global model: a sensible ranking before any feedback (the model moves away from it).
PRIOR: dict[str, float] = {
    "in_network": 1.0,
    "author_affinity": 0.5,
    "topic_affinity": 1.0,
    "interest": 0.5,
    "group": 0.3,
    "similar": 2.0,
    "trending": 0.5,
    "popularity": 0.2,
    "engagement_rate": 0.5,
    "freshness": 0.3,
}


@dataclass(frozen=True)
class Context:
    settings: Settings
    affinity: Decay
    popularity: Decay
    # Per-arm contexts of the enabled experiments, built once per arm combination (None: none).
    arms: ArmResolver | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        ctx = cls(
            settings=settings,
            affinity=Decay(settings.features.affinity_half_life_h),
            popularity=Decay(settings.features.popularity_half_life_h),
        )
        if any(e.enabled for e in settings.experiments):
            object.__setattr__(ctx, "arms", ArmResolver(settings, cls.from_settings, default=ctx))
        return ctx

    def for_user(self, user_id: str) -> tuple[Context, Arms]:
        """The context `user_id` is ranked with (their experiment arms' settings) and those arms."""
        if self.arms is None:
            return self, ()
        return self.arms.for_user(user_id)
