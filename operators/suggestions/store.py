"""Reading other users' published graph records, group members and author likers.

`RedisGraphStore` reads through the feature store's per-process TTL cache (pipelined, one Redis read
per key per TTL, for graph records, group members and likers alike); `MemoryGraphStore` mirrors it
for in-process evaluation. Writers: the `graph`, `group_member` and `liker` write records
(operators.redis_store.RedisWriter).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Protocol

import orjson

from operators.redis_store import RedisFeatureStore
from operators.suggestions.writes import LIKERS_KEPT

MEMBERS_SAMPLE = 100  # members read per group
GRAPH_KINDS = ("graph", "likers", "members")  # cached `stream.graph_cache_ttl_s` (not "deleted")
DELETED_CACHE_S = 3600.0  # an answer about a deleted user: until the version moves (or a sweep)
DELETED_SET_MAX = 10_000  # a deleted users' set this small is read whole (per worker, per TTL)


class GraphReader(Protocol):
    def graphs(self, ids: list[str]) -> dict[str, dict]: ...
    def group_members(self, groups: list[str]) -> dict[str, list[str]]: ...
    def likers(self, authors: list[str]) -> dict[str, list[str]]: ...
    def popular(self, n: int) -> list[tuple[str, float]]: ...
    def deleted(self, ids: list[str]) -> set[str]: ...
    def prefetch(self, **ids_by_kind) -> None: ...
    def remember(self, records: list[tuple]) -> None: ...


class MemoryGraphStore:
    def __init__(self):
        self._graphs: dict[str, dict] = {}
        self._members: dict[str, dict[str, None]] = {}
        self._likers: dict[str, dict[str, int]] = {}
        self._popular: dict[str, int] = {}
        self._deleted: set[str] = set()
        self._ranked: list[tuple[str, int]] | None = None  # popular users, until one changes

    def apply(self, record: tuple) -> None:
        """Apply a write record as RedisWriter would."""
        kind = record[0]
        if kind == "graph":
            self._graphs[record[1]] = orjson.loads(record[2])
        elif kind == "group_member":
            members = self._members.setdefault(record[1], {})
            if record[3]:
                members[record[2]] = None
            else:
                members.pop(record[2], None)
        elif kind == "liker":
            likers = self._likers.setdefault(record[1], {})
            likers.pop(record[2], None)
            likers[record[2]] = record[3]
            while len(likers) > LIKERS_KEPT:
                del likers[next(iter(likers))]
        elif kind == "forget_likers":
            self._likers.pop(record[1], None)
        elif kind == "unliker":
            self._likers.get(record[1], {}).pop(record[2], None)
        elif kind == "popular_user":
            self._popular[record[1]] = record[2]
            self._ranked = None
        elif kind == "undeleted":
            self._deleted.discard(record[1])
        elif kind == "forget_social":
            self._deleted.add(record[1])
            self._graphs.pop(record[1], None)
            self._popular.pop(record[1], None)
            self._ranked = None
            for g in record[2]:
                self._members.get(g, {}).pop(record[1], None)
            # (likers sets: step `likers` turns the record into forget_likers / unliker records)

    def prefetch(self, **ids_by_kind) -> None:
        pass  # all in memory

    def remember(self, records: list[tuple]) -> None:
        pass  # `apply` is the writer

    def graphs(self, ids):
        return {i: self._graphs[i] for i in ids if i in self._graphs}

    def group_members(self, groups):
        return {g: list(self._members[g])[-MEMBERS_SAMPLE:] for g in groups if g in self._members}

    def likers(self, authors):
        return {a: list(self._likers[a])[::-1] for a in authors if a in self._likers}

    def deleted(self, ids):
        return self._deleted.intersection(ids)

    def popular(self, n):
        if self._ranked is None:  # read by every suggestion, changed by few records
            # as ZRANGE … REV: ties in reverse member order (which of them make the top n)
            self._ranked = sorted(self._popular.items(), key=lambda kv: (kv[1], kv[0]),
                                  reverse=True)
        ranked = self._ranked
        return [(u, c) for u, c in ranked[:n] if c > 0]

    def liked_by(self, user: str) -> list[str]:
        """The authors whose likers set holds `user`, sorted."""
        return sorted(a for a, likers in self._likers.items() if user in likers)

    def set_records(self) -> Iterator[tuple]:
        """Write records that rebuild the group members and likers sets, in a stable order."""
        for group in sorted(self._members):
            for member in sorted(self._members[group]):
                yield ("group_member", group, member, True)
        for author in sorted(self._likers):
            for liker, ts in sorted(self._likers[author].items()):
                yield ("liker", author, liker, ts)


class RedisGraphStore:
    """GraphReader over Redis, sharing the feature store's client, keyspace and TTL cache.
    `prefetch` reads what several of the calls below will want in one round trip."""

    def __init__(self, features: RedisFeatureStore):
        self.features = features
        self.ks = features.keyspace

    def _request(self, kind: str, ids) -> tuple:
        """The feature store's cached_many request (kind, ids, key_of, decode, read) of a kind."""
        ks = self.ks
        if kind == "graph":
            return kind, ids, ks.graph, _decode_graph, None
        if kind == "members":
            return kind, ids, ks.group_members, _decode_members, _read_members
        if kind == "likers":
            return kind, ids, ks.likers, _decode_likers, _read_likers
        if kind == "deleted":  # the member tag; True when in the deleted users' set
            # answers are kept while the set's version does not move (read at the short TTL):
            # as fresh as a check per suggestion, without one round trip per suggestion
            return (self._deleted_kind(), ids, ks.deleted_tag, _deleted,
                    partial(_read_deleted, ks.deleted_users), DELETED_CACHE_S)
        raise ValueError(f"unknown graph read {kind!r}")

    def _deleted_tags(self) -> set[str] | None:
        """Every deleted user's tag, read whole at the short TTL (one bounded read per second per
        worker instead of checks per suggestion) while the set has at most DELETED_SET_MAX; None
        when it is larger (then each user is checked, `_request("deleted")`)."""
        def load():  # the size first: a set past the limit is not read at all
            client, key = self.features.client, self.ks.deleted_users
            if client.scard(key) > DELETED_SET_MAX:
                return None
            return {t.decode() for t in client.smembers(key)}
        return self.features.cached_one(("deleted_tags",), load)

    def _deleted_kind(self) -> str:
        """The cache kind of deleted-user answers: one per version of the deleted users' set."""
        version = self.features.cached_one(
            ("deleted_version",), lambda: self.features.client.get(self.ks.deleted_version))
        return f"deleted@{version.decode() if version else 0}"

    def prefetch(self, **ids_by_kind) -> None:
        """Fill the cache for graphs=, members=, likers=, deleted= ids in one pipeline: the
        suggestions of one user read all of them (one round trip instead of one per kind)."""
        if ids_by_kind.get("deleted") and self._deleted_tags() is not None:
            ids_by_kind = dict(ids_by_kind, deleted=None)  # known without a read
        self.features.cached_many_of([self._request(kind, list(dict.fromkeys(ids)))
                                      for kind, ids in ids_by_kind.items() if ids])

    def remember(self, records: list[tuple]) -> None:
        """This worker's own writes of graph records and deletions, into its cache at once (the
        graph kinds are cached `stream.graph_cache_ttl_s`; only this worker writes these keys)."""
        for record in records:
            kind = record[0]
            if kind == "graph":
                self.features.remember("graph", {record[1]: orjson.loads(record[2])})
            elif kind in ("forget_social", "undeleted"):
                gone = kind == "forget_social"
                if gone:
                    self.features.remember("graph", {record[1]: None})
                self.features.remember(self._deleted_kind(), {record[1]: True if gone else None})
                tags = self._deleted_tags()
                if tags is not None:
                    (tags.add if gone else tags.discard)(self.ks.deleted_tag(record[1]))

    def graphs(self, ids):
        return self.features.cached_many(*self._request("graph", ids))

    def group_members(self, groups):
        return self.features.cached_many(*self._request("members", groups))

    def popular(self, n):
        key = self.ks.popular_users
        return self.features.cached_one(("popular_users", n), lambda: [
            (u.decode(), c) for u, c in self.features.client.zrange(
                key, 0, n - 1, desc=True, withscores=True) if c > 0])

    def deleted(self, ids):
        # staleness ≤ the short TTL either way: the whole (small) set, or each user's answer
        # kept while the set's version does not move (an uncached pipeline per suggestion was
        # 12% of a worker's time, and then a cached check per user still ~8%)
        tags = self._deleted_tags()
        if tags is not None:
            if not tags:  # nobody deleted (the usual case): nothing to tag and look up
                return set()
            tag = self.ks.deleted_tag
            return {i for i in ids if tag(i) in tags}
        return set(self.features.cached_many(*self._request("deleted", list(dict.fromkeys(ids)))))

    def likers(self, authors):
        return self.features.cached_many(*self._request("likers", authors))


def _decode_graph(_user: str, raw: bytes) -> dict:
    return orjson.loads(raw)


def _decode_members(_group: str, raw) -> list[str]:
    return sorted(m.decode() for m in raw)


def _read_members(pipe, key: str) -> None:
    pipe.srandmember(key, MEMBERS_SAMPLE)


def _decode_likers(_author: str, raw) -> list[str]:
    return [m.decode() for m in raw]


def _read_likers(pipe, key: str) -> None:
    pipe.zrange(key, 0, LIKERS_KEPT - 1, desc=True)


def _deleted(_user: str, _is_member) -> bool:
    return True  # called for a true SISMEMBER only (a false one is cached as absent)


def _read_deleted(deleted_users: str, pipe, tag: str) -> None:
    pipe.sismember(deleted_users, tag)
