"""A user's ranking features as plain JSON, so request-time code (search re-ranking in the reader)
can hydrate and score with the feed's own code (operators.feed.hydrate / scoring) — no pickle from
Redis, no second implementation of any feature.

Written by the user step with each feed (`("user_features", user, bytes)`); rebuilt into a read-only
`UserState` here.
"""

from __future__ import annotations

import orjson

from operators.context import Context
from operators.user_state import UserState

MAX_FOLLOWING = 2000


def encode_user(state: UserState) -> bytes:
    m = state.model.__getstate__()
    return orjson.dumps({
        "user_id": state.user_id, "last_ts": state.last_ts, "interests": list(state.interests),
        "following": sorted(state.following)[:MAX_FOLLOWING], "groups": sorted(state.groups),
        "author_aff": state.author_aff, "topic_aff": state.topic_aff,
        "topic_seen": state.topic_seen, "exposure_log": state.exposure_log,
        "engaged_log": state.engaged_log, "recent_likes": list(state.recent_likes),
        "model": [list(m[0]), m[1], m[2], m[3], m[4], m[5]],
    })


def decode_user(raw: bytes, ctx: Context) -> UserState:
    d = orjson.loads(raw)
    user = UserState(d["user_id"], ctx)
    user.last_ts = d["last_ts"]
    user.interests = tuple(d["interests"])
    user.following = set(d["following"])
    user.groups = set(d["groups"])
    user.author_aff, user.topic_aff, user.topic_seen = d["author_aff"], d["topic_aff"], d["topic_seen"]
    user.exposure_log, user.engaged_log = d["exposure_log"], d["engaged_log"]
    for post in d["recent_likes"]:
        user.recent_likes.add(post)
    features, w, b, n, lr, l2 = d["model"]
    user.model.__setstate__((tuple(features), w, b, n, lr, l2))
    return user
