"""Redis operations for the social write records (applied by operators.redis_store.RedisWriter).

All idempotent: whole-value SET, SADD/SREM, ZADD of exact event-time scores (trimmed to the newest),
and the deleted users' version counter moves only with a change of their set (`TOGGLE_DELETED`), so
writes applied again (a retry, the epoch a restart re-emits, a replay) leave it as they found it.
"""

from __future__ import annotations

from schemas.keyspace import Keyspace

LIKERS_KEPT = 200  # newest likers kept per author: the writer trims the sorted set, readers read them
POPULAR_KEPT = 2000
# SADD or SREM (ARGV[1]) of a tag in the deleted users' set (KEYS[1]), then INCR of their version
# counter (KEYS[2]) only if the set changed; both keys share a hash tag (one Redis Cluster slot)
TOGGLE_DELETED = """local changed = redis.call(ARGV[1], KEYS[1], ARGV[2])
if changed == 1 then redis.call('INCR', KEYS[2]) end
return changed"""
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
        return [_toggle_deleted(ks, "SREM", w[1])]
    if kind == "search_blend":
        return [("set", ks.search_blend, w[1])]
    if kind == "forget_social":  # ("forget_social", user, groups[, engaged authors])
        # likers sets: step `likers` turns this record into forget_likers / unliker writes
        return [("delete", ks.graph(w[1])), ("delete", ks.suggestions(w[1])),
                ("zrem", ks.popular_users, w[1]),
                _toggle_deleted(ks, "SADD", w[1])] + [
            ("srem", ks.group_members(g), w[1]) for g in w[2]]
    raise ValueError(f"unknown write record {kind!r}")


def _toggle_deleted(ks: Keyspace, command: str, user_id: str) -> tuple:
    """The op that adds (SADD) or removes (SREM) the user's tag, counting only a change."""
    return ("eval", TOGGLE_DELETED, 2, ks.deleted_users, ks.deleted_version, command,
            ks.deleted_tag(user_id))
