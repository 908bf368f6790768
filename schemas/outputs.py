"""Output records written to Redis: the ranked feed of a user, with scores and reasons.

A feed is one whole value per user (orjson), replaced as a whole, so a replay of the same events writes
the same bytes: no wall-clock time inside (`generated_at` is the event time of the last event seen).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

# Reason codes carried by feed items (what produced the candidate, and which feature drove its score).
REASON_CODES = {
    "in_network": "posted by someone you follow",
    "similar": "similar to a post you engaged with",
    "topic": "matches a topic you engage with",
    "trending": "trending now",
    "fresh": "new post, shown to explore",
    "popular": "popular overall (you are new here)",
    "author_affinity": "from an author you engage with",
    "group": "from a group you are in",
    "topic_affinity": "about a topic you engage with",
    "interest": "matches an interest you chose",
    "similar_features": "like posts you engaged with",
    # User controls (operators/feed/controls.py): weight = the score multiplier applied.
    "see_less": "shown less: you asked to see less of this",
    "see_more": "shown more: you asked to see more of this",
    "not_interested": "shown less: you were not interested in a post of this author",
}


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    detail: str | None = None  # e.g. the followed author, the similar post, the topic
    weight: float | None = None  # contribution of this reason's feature to the score

    def to_dict(self) -> dict:
        out: dict = {"code": self.code}
        if self.detail is not None:
            out["detail"] = self.detail
        if self.weight is not None:
            out["weight"] = round(self.weight, 6)
        return out


@dataclass(frozen=True, slots=True)
class FeedItem:
    post_id: str
    author_id: str | None
    score: float
    reasons: tuple[Reason, ...] = ()

    def to_dict(self) -> dict:
        return {
            "post_id": self.post_id,
            "author_id": self.author_id,
            "score": round(self.score, 6),
            "reasons": [r.to_dict() for r in self.reasons],
        }


@dataclass(frozen=True, slots=True)
class Feed:
    user_id: str
    generated_at: int  # event time (ms) of the newest event reflected in this feed
    items: tuple[FeedItem, ...] = field(default_factory=tuple)
    model: str = "persona-v1"  # ranking model/config identity, for debugging and experiments
    # The user's arm in every enabled experiment ({experiment: arm}; {} when in none): the feed was
    # ranked with those arms' settings (operators/experiments).
    arms: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        items = []
        for i in self.items:  # FeedItem.to_dict and Reason.to_dict inlined: ~50 items per feed
            reasons = []
            for r in i.reasons:
                d = {"code": r.code}
                if r.detail is not None:
                    d["detail"] = r.detail
                if r.weight is not None:
                    d["weight"] = round(r.weight, 6)
                reasons.append(d)
            items.append({"post_id": i.post_id, "author_id": i.author_id,
                          "score": round(i.score, 6), "reasons": reasons})
        return {
            "user_id": self.user_id,
            "generated_at": self.generated_at,
            "model": self.model,
            "arms": dict(sorted(self.arms.items())),
            "items": items,
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())


def decode_feed(payload: bytes) -> dict:
    return orjson.loads(payload)


def encode_profile(user_id: str, generated_at: int, affinities: dict) -> bytes:
    """A user's top affinities (`{"authors": [[id, value]], "topics": [...]}`) for the inspector."""
    return orjson.dumps({"user_id": user_id, "generated_at": generated_at, **affinities})
