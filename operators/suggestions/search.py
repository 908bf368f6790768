"""Search re-ranking with the feed's features and models (operators.feed.hydrate + scoring).

final score = base relevance + weight × (logit P(engage) − mean logit over the results), so the
user's affinities reorder results of similar relevance without overriding relevance itself. The
weight is learned from search → click (`search_blend.SearchBlend`, published by the flow's
`search_blend` step); PERSONAL_WEIGHT (0.5) is its prior.
Results the feature store does not know keep their base relevance. The output is always a
permutation of the input ids.
"""

from __future__ import annotations

import math

import numpy as np

from operators.context import FEATURES, Context
from operators.feed.hydrate import hydrate
from operators.feed.scoring import score
from operators.suggestions.search_blend import SearchSession
from operators.suggestions.snapshot import decode_user
from operators.user_state import UserState
from schemas import Event

PERSONAL_WEIGHT = 0.5
EXPLAINED = ("in_network", "author_affinity", "topic_affinity", "interest", "group", "similar")


def base_relevance(result_ids) -> list[tuple[str, float]]:
    """A search event's results in their given order as (id, base relevance): −position."""
    return [(p, -float(k)) for k, p in enumerate(dict.fromkeys(result_ids))]


def published_user(features, user_id: str, ctx: Context) -> UserState | None:
    """The user's ranking features as the user step last published them (`…:ufeat:{user}`), or
    None (unknown user, or an in-memory store, which keeps none): what the reader and the flow's
    `search_sessions` step re-rank with."""
    client = getattr(features, "client", None)
    if client is None:
        return None
    raw = features.read(lambda: client.get(features.keyspace.user_features(user_id)))
    return decode_user(raw, ctx) if raw else None


def rerank(user: UserState | None, results: list[tuple[str, float]], features, ctx: Context,
           now: int, weight: float = PERSONAL_WEIGHT) -> list[dict]:
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
        s = float(b) + weight * pers
        out.append({"id": i, "score": round(s if math.isfinite(s) else float(b), 6),
                    "base": b, "personal": round(pers, 6),
                    "reasons": reasons.get(i) or [{"code": "relevance"}], "_pos": pos})
    out.sort(key=lambda r: (-r["score"], r["_pos"]))
    for r in out:
        del r["_pos"]
    return out


def search_clicks(session: SearchSession, event: Event, user: UserState | None, features,
                  ctx: Context) -> list[tuple[list, str]]:
    """One event of a searcher's (step `search_sessions`: `search_blend.search_message`) →
    the (shown, clicked) pairs it completes. A search's results are shown as `rerank` scores them
    for `user`, the searcher's published features (None: none yet)."""
    if event.type == "search":
        base = base_relevance(event.result_ids)
        personal = {r["id"]: r["personal"] for r in rerank(user, base, features, ctx, event.ts)}
        clicks = session.searched(event.ts, [(p, b, personal[p]) for p, b in base])
    else:
        clicks = session.engaged(event.ts, event.post_id)
    return [(shown, clicked) for _, shown, clicked in clicks]
