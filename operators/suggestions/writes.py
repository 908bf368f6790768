"""Redis operations for the social write records (applied by operators.redis_store.RedisWriter).

All idempotent: whole-value SET, SADD/SREM, ZADD of exact event-time scores (trimmed to the newest);
the deleted users' version counter only moves (a repeat makes readers check again, nothing more).
"""

from __future__ import annotations

from schemas.keyspace import Keyspace

LIKERS_KEPT = 200
POPULAR_KEPT = 2000
SOCIAL_WRITES = frozenset({"graph", "suggestions", "user_features", "group_member", "liker",
                           "forget_likers", "unliker", "popular_user", "forget_social",
                           "search_blend", "undeleted"})


def social_ops(ks: Keyspace, w: tuple) -> list[tuple]:
    kind = w[0]
    if kind == "graph":
        return [("set", ks.graph(w[1]), w[2])]
    if kind == "suggestions":
        return [("set", ks.suggestions(w[1]), w[2])]
    if kind == "user_features":
        return [("set", ks.user_features(w[1]), w[2])]
    if kind == "group_member":
        return [("sadd" if w[3] else "srem", ks.group_members(w[1]), w[2])]
    if kind == "liker":
        key = ks.likers(w[1])
        # GT: a like applied after a newer one (another batching, a restart) never moves it back
        return [("zadd", key, {w[2]: w[3]}, False, False, False, False, True),
                ("zremrangebyrank", key, 0, -(LIKERS_KEPT + 1))]
    if kind == "forget_likers":  # the author was deleted (operators.suggestions.likers)
        return [("delete", ks.likers(w[1]))]
    if kind == "unliker":  # ("unliker", author, deleted liker)
        return [("zrem", ks.likers(w[1]), w[2])]
    if kind == "popular_user":
        return [("zadd", ks.popular_users, {w[1]: w[2]}),
                ("zremrangebyrank", ks.popular_users, 0, -(POPULAR_KEPT + 1))]
    if kind == "undeleted":
        return [("srem", ks.deleted_users, ks.deleted_tag(w[1])), ("incr", ks.deleted_version)]
    if kind == "search_blend":
        return [("set", ks.search_blend, w[1])]
    if kind == "forget_social":  # ("forget_social", user, groups[, engaged authors])
        # likers sets: step `likers` turns this record into forget_likers / unliker writes
        return [("delete", ks.graph(w[1])), ("delete", ks.suggestions(w[1])),
                ("zrem", ks.popular_users, w[1]),
                ("sadd", ks.deleted_users, ks.deleted_tag(w[1])),
                ("incr", ks.deleted_version)] + [  # after the SADD: a reader sees both
            ("srem", ks.group_members(g), w[1]) for g in w[2]]
    raise ValueError(f"unknown write record {kind!r}")
