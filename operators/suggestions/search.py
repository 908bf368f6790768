"""Search re-ranking with the feed's features and models (operators.feed.hydrate + scoring).

final score = base relevance + PERSONAL_WEIGHT × (logit P(engage) − mean logit over the results), so
the user's affinities reorder results of similar relevance without overriding relevance itself.
Results the feature store does not know keep their base relevance. The output is always a
permutation of the input ids.
"""

from __future__ import annotations

import math

import numpy as np

from operators.context import FEATURES, Context
from operators.feed.hydrate import hydrate
from operators.feed.scoring import score
from operators.user_state import UserState

PERSONAL_WEIGHT = 0.5
EXPLAINED = ("in_network", "author_affinity", "topic_affinity", "interest", "group", "similar")


def rerank(user: UserState | None, results: list[tuple[str, float]], features, ctx: Context,
           now: int) -> list[dict]:
    """results: [(id, base relevance)] → [{"id", "score", "base", "personal", "reasons"}], best first."""
    ids = [r[0] for r in results]
    personal: dict[str, float] = {}
    reasons: dict[str, list[dict]] = {}
    if user is not None and ids:
        found = features.items(list(dict.fromkeys(ids)))
        known = [i for i in dict.fromkeys(ids) if i in found]
        if known:
            X, _ = hydrate(user, [found[i] for i in known], features, ctx, now)
            p, contrib = score(user, X, features.global_model(), ctx)
            logits = np.log(np.clip(p, 1e-9, 1 - 1e-9) / np.clip(1 - p, 1e-9, 1.0))
            centred = logits - logits.mean()
            col = {f: k for k, f in enumerate(FEATURES)}
            for k, i in enumerate(known):
                personal[i] = float(centred[k])
                top = sorted(EXPLAINED, key=lambda f: -contrib[k][col[f]])
                why = [{"code": f, "weight": round(float(contrib[k][col[f]]), 6)}
                       for f in top[:2] if contrib[k][col[f]] > 0.05]
                reasons[i] = why
    out = []
    for pos, (i, b) in enumerate(results):
        pers = personal.get(i, 0.0)
        s = float(b) + PERSONAL_WEIGHT * pers
        out.append({"id": i, "score": round(s if math.isfinite(s) else float(b), 6),
                    "base": b, "personal": round(pers, 6),
                    "reasons": reasons.get(i) or [{"code": "relevance"}], "_pos": pos})
    out.sort(key=lambda r: (-r["score"], r["_pos"]))
    for r in out:
        del r["_pos"]
    return out
