"""Derived, immutable parameters shared by the operators of one worker (built once from Settings).

Kept out of per-key state so snapshots stay small; rebuilt from config on restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from config import Settings
from operators.decay import Decay

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

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        return cls(
            settings=settings,
            affinity=Decay(settings.features.affinity_half_life_h),
            popularity=Decay(settings.features.popularity_half_life_h),
        )
