"""Keyspace versions in Redis: allocate the next one, switch the active pointer atomically, and
remove retired versions after a grace period (readers cache the pointer for under a second, so a
version must outlive its retirement by more than that)."""

from __future__ import annotations

import time

import redis

from operators.redis_store import delete_matching
from schemas.keyspace import Keyspace


class Versions:
    def __init__(self, client: redis.Redis, prefix: str):
        self.client, self.prefix = client, prefix
        self.active_key = Keyspace(prefix, "").active
        self.seq_key = f"{prefix}:version_seq"
        self.retired_key = f"{prefix}:retired"  # zset: version -> retirement time (s)

    def active(self) -> str | None:
        raw = self.client.get(self.active_key)
        return raw.decode() if raw else None

    def retired(self) -> dict[str, float]:
        """Retired versions still kept → retirement time (s)."""
        return {v.decode(): t for v, t in self.client.zrange(self.retired_key, 0, -1,
                                                              withscores=True)}

    def allocate(self) -> str:
        """A version number never used before (above the active one), unique among concurrent
        callers: each number comes from one INCR / INCRBY, atomic on the server (a read, a set
        and an INCR gave two backfills started together the same version)."""
        version = self.client.incr(self.seq_key)
        active = self.active()
        if active and active.isdigit() and version <= int(active):
            version = self.client.incrby(self.seq_key, int(active) - version + 1)
        return str(version)

    def switch(self, version: str) -> str | None:
        """Atomically make `version` active; the previous one is retired (kept for the grace)."""
        previous = self.client.getset(self.active_key, version)
        self.client.zrem(self.retired_key, version)  # (a rollback: it is not retired any more)
        if previous and previous.decode() != version:
            self.client.zadd(self.retired_key, {previous.decode(): time.time()})
            return previous.decode()
        return None

    def collect(self, grace_s: float) -> list[str]:
        """Delete the keys of versions retired more than `grace_s` ago; return those versions."""
        cutoff = time.time() - grace_s
        removed = []
        for raw in self.client.zrangebyscore(self.retired_key, 0, cutoff):
            version = raw.decode()
            if version == self.active():
                continue
            # asked again before every batch: a rollback to this version during a long
            # collection stops it there (it may have lost one batch of keys, not all of them)
            delete_matching(self.client, f"{Keyspace(self.prefix, version).base}:*",
                            still=lambda v=version: self.active() != v)
            if self.active() == version:
                continue
            self.client.zrem(self.retired_key, version)
            removed.append(version)
        return removed
