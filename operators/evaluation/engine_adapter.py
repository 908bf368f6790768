"""The production engine as a prequential `Recommender`: the feed it would serve, scored fairly."""

from __future__ import annotations

import math

from config import Settings
from operators.engine import Engine
from operators.evaluation.metrics import TiedRank
from schemas import Event


class PersonaRecommender:
    """Serves `Engine.feed` (the streaming workers' ranking code) and learns every event."""

    def __init__(self, settings: Settings, name: str = "persona"):
        self.name = name
        self.engine = Engine(settings)

    def learn_one(self, event: Event) -> None:
        self.engine.learn_one(event)

    def score_target(self, user_id: str, target: str, now_ms: int, k: int) -> tuple[float, list[str]]:
        feed = self.engine.feed(user_id, now_ms)
        served = [item.post_id for item in feed.items]
        top = served[:k]
        if target not in served:
            return math.inf, top
        position = served.index(target)
        score = feed.items[position].score
        # Equal scores are ordered by id inside the feed; count them as ties (expected position).
        tied_before = sum(1 for item in feed.items[:position] if item.score == score)
        tied_after = sum(1 for item in feed.items[position + 1:] if item.score == score)
        return TiedRank(position - tied_before, tied_before + tied_after), top
