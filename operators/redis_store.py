"""The online feature store and output writer on Redis.

`RedisFeatureStore` implements `FeatureReader` with a short per-process read cache: rankers of one
worker share it, so the hot items (trending, popular) cost one Redis read per TTL, not one per user.
`RedisWriter` applies batches of writes in one pipeline, idempotently (whole-value SET, ZADD of exact
scores), retrying with exponential backoff while Redis is unreachable.
"""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from functools import partial

import orjson
import redis

from config.security import redis_connection, sentinel_target
from config.settings import RedisSettings
from operators.erasure import parse_spill
from operators.feature_store import RecentParks, RecentSpills
from operators.item_stats import ItemView
from operators.suggestions.writes import SOCIAL_WRITES, social_ops
from schemas.keyspace import Keyspace

log = logging.getLogger("persona.redis")

# Write records (produced by the flow's steps, applied by RedisWriter):
#   ("feed", user_id, feed_bytes) | ("item", ItemView) | ("nbrs", post_id, {post: count})
#   ("model", exported_weights) | ("forget_user", user_id) | ("profile", user_id, profile_bytes)
#   ("forget_item", post_id, topics) | ("forget_nbrs", post_id)   (erasure of a deleted author's post)
#   ("notifs", user_id, inbox_bytes) | ("notif_model", exported_weights)   (notifications)
#   social discovery (operators.suggestions.writes): ("graph"|"suggestions"|"user_features", user,
#   bytes) | ("group_member", group, user, joined) | ("liker", author, user, ts)
#   | ("forget_social", user, groups, engaged authors) | ("forget_likers", author)
#   | ("unliker", author, user)   (the likers writes come through step `likers`)
#   ("park", kind, key, pickled state | None): an idle key's worker state (with a TTL), None deletes
#   it (the state was emptied or erased: flows.adapters._Evictable)
#   ("spill_owners", user, members) | ("unspill_owners", user, members) | ("forget_owners", user):
#   the erasure step's spilled owners of a mentioned user (operators.erasure), with the parked TTL
Write = tuple


OUTAGE_TIMEOUT_S = 300.0  # config redis.outage_timeout_s: how long a worker waits out Redis


# what `retrying` waits out: Redis unreachable, slow or loading (BusyLoadingError is a
# ConnectionError), a Redis Cluster whose node has just come back ("The cluster is down" for
# ~1.5 s until the others see it again) or whose slots are being moved (TRYAGAIN), and a Redis
# at its `maxmemory` refusing writes (OOM, with `maxmemory-policy noeviction`, the right one here:
# README "Redis durability"), which an operator can fix while the workers wait, and a primary
# demoted to a replica by a failover (READONLY) while its address moves on to the new primary
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError,
             redis.exceptions.TryAgainError, redis.exceptions.OutOfMemoryError,
             redis.exceptions.ReadOnlyError)
# and two refusals an operator fixes while the workers wait, which redis-py raises as plain
# ResponseErrors: a Redis that cannot persist (MISCONF: its disk full, with the append-only file
# README "Redis durability" asks for) and one with fewer replicas than `min-replicas-to-write`
WAITABLE_REFUSALS = ("MISCONF", "NOREPLICAS")


def transient(exc: BaseException) -> bool:
    """Whether `retrying` waits `exc` out. Not a refused login (AuthenticationError is a
    ConnectionError in redis-py): credentials do not come right by waiting."""
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return False
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(WAITABLE_REFUSALS)


def _what_to_do(exc: Exception) -> str:
    if isinstance(exc, redis.exceptions.BusyLoadingError):
        return "Redis is still loading its data: give it redis.outage_timeout_s to load"
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return "Redis is full: raise its maxmemory or free memory (README \"Redis durability\")"
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return "REDIS_URL names a replica: point it at the primary"
    if isinstance(exc, (redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError)):
        return "check the Redis Cluster's state (CLUSTER INFO on its nodes)"
    if isinstance(exc, redis.sentinel.MasterNotFoundError):
        return ("no Sentinel names a reachable primary: check them (SENTINEL "
                "get-master-addr-by-name <service>) and the service name in REDIS_URL")
    if isinstance(exc, ReplicasBehind):
        return ("check the replicas (INFO replication on the primary), or lower "
                "redis.wait_replicas")
    if str(exc).startswith("MISCONF"):
        return "Redis cannot write its data to disk: free its disk (INFO persistence, its log)"
    if str(exc).startswith("NOREPLICAS"):
        return "fewer replicas than its min-replicas-to-write are attached: check them"
    return "check REDIS_URL or start it with `persona up`"


def drop_connections(client) -> None:
    """Close `client`'s pooled connections (`retrying`'s `reconnect`); a Redis Cluster client has
    no single pool and follows its slots' primaries itself."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        pool.disconnect()


class ReplicasBehind(redis.ConnectionError):
    """Fewer replicas than `redis.wait_replicas` acknowledged a write pipeline (Redis WAIT): its
    writes are on the primary alone, and a failover now would lose them. Transient: `retrying`
    runs the (idempotent) pipeline again until enough replicas are attached and caught up."""


class SlotsMoved(redis.exceptions.TryAgainError):
    """A per-node write pipeline (`RedisWriter` on a Redis Cluster with `wait_replicas`) met a
    node that no longer serves its slots (MOVED, ASK, or gone): the slot map was refreshed and
    the (idempotent) pipeline runs again. Transient, as TRYAGAIN."""


class RedisUnavailable(redis.ConnectionError):
    """Redis did not answer within the outage budget. A redis.RedisError, so the HTTP reader's
    handlers answer 503 as for any other Redis failure."""


class Outages:
    """What `retrying` has met in this process, for the workers' metrics (flows/metrics reads it;
    operators import no Prometheus): retries by operation ("read", "write"), calls retrying now,
    give-ups. Plain counts under the GIL: a torn update only misstates a metric."""

    def __init__(self):
        self.retries: Tally[str] = Tally()
        self.retrying = 0
        self.give_ups = 0


OUTAGES = Outages()


def retrying(call, timeout_s: float = OUTAGE_TIMEOUT_S, what: str = "read", reconnect=None):
    """Run `call` (an idempotent Redis operation), retrying with exponential backoff (0.1 s
    doubling to 5 s) while Redis cannot serve it (`transient`), for up to `timeout_s`: the worker waits
    (backpressure) instead of crashing or dropping anything. A budget in time, not in attempts: a
    restarted Redis that loads a large dataset answers LOADING (a ConnectionError) for as long as
    the load takes. 0 = one attempt (the reader answers 503 at once instead). `reconnect()` drops
    the client's connections after a READONLY answer: the open ones stay with the demoted node,
    new ones reach whatever the address (a DNS name, a virtual IP) names now."""
    start = time.monotonic()
    try:
        return call()  # the common case: no more bookkeeping
    except redis.RedisError as exc:
        if not transient(exc):
            raise
        first = exc
    OUTAGES.retrying += 1
    try:
        return _retry(call, first, start, timeout_s, what, reconnect)
    finally:
        OUTAGES.retrying -= 1


def _retry(call, exc: Exception, start: float, timeout_s: float, what: str, reconnect):
    """`retrying` after its first attempt, begun at `start`, failed with `exc`."""
    delay, failures = 0.1, 0
    while True:
        waited = time.monotonic() - start
        if waited + delay > timeout_s:
            OUTAGES.give_ups += 1
            raise RedisUnavailable(
                f"Redis unavailable for {waited:.1f}s, {failures + 1} attempt(s) ({exc}); "
                f"{_what_to_do(exc)}") from exc
        failures += 1
        OUTAGES.retries[what] += 1
        log.warning("Redis degraded: %s failed (%s); retrying in %.1fs (giving up after "
                    "%.0fs)", what, exc, delay, timeout_s)
        if reconnect is not None and isinstance(exc, redis.exceptions.ReadOnlyError):
            reconnect()
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
        try:
            result = call()
        except redis.RedisError as again:
            if not transient(again):
                raise
            exc = again
        else:
            log.warning("Redis %s resumed after %.1fs (%d retries)", what,
                        time.monotonic() - start, failures)
            return result


ITEM_KINDS = ("item", "nbrs")  # what a rank reads per post (`prefetch`)
# cached_many decoders, shared by the per-kind reads and `prefetch`
_DECODE = {"item": lambda i, raw: ItemView.from_wire(i, orjson.loads(raw)),
           "nbrs": lambda _i, raw: orjson.loads(raw),
           "model": lambda _i, raw: orjson.loads(raw)}


class GetQueue:
    """GETs of many keys queued on a pipeline as MGETs (one command each `MGET_KEYS` keys: redis-py
    spends several µs of Python packing and parsing each command, ~0.5 ms of an active user's
    rank whose ~300 reads had expired), or as one GET each on a Redis Cluster, where the keys of
    a read live in different slots. `take(results)` hands back the values in the keys' order and the
    results queued after them."""

    MGET_KEYS = 500

    __slots__ = ("keys", "batched")

    def __init__(self, keys: list[str], batched: bool):
        self.keys, self.batched = keys, batched

    def queue(self, pipe) -> None:
        keys = self.keys
        if not self.batched:
            for key in keys:
                pipe.get(key)
            return
        for at in range(0, len(keys), self.MGET_KEYS):
            pipe.mget(keys[at:at + self.MGET_KEYS])

    def take(self, results: list) -> tuple[list, list]:
        """(the values of the keys, the results after them)."""
        if not self.batched:
            return results[:len(self.keys)], results[len(self.keys):]
        commands = -(-len(self.keys) // self.MGET_KEYS)
        return [v for chunk in results[:commands] for v in chunk], results[commands:]


def batches_gets(client) -> bool:
    """Whether reads of many keys may go as MGET (not on a cluster: their keys span slots)."""
    return not isinstance(client, redis.cluster.RedisCluster)


# Kinds whose absence is not cached: a candidate post without an item key is one the items step
# has emitted but the sink has not written yet (the same activation; a rank at a user's read runs
# mid-batch), so it is read again at the next rank instead of staying unknown for a TTL.
UNCACHED_ABSENCE = frozenset({"item"})


def _cacheable(kind: str, found: object) -> bool:
    """Whether a read of `kind` that found `found` (None or b"": absent) may be cached."""
    return bool(found) or kind not in UNCACHED_ABSENCE


class RedisFeatureStore:
    """FeatureReader over Redis with a TTL cache (staleness ≤ ttl_s, per process)."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace, ttl_s: float = 1.0,
                 kind_ttl_s: dict[str, float] | None = None,
                 outage_timeout_s: float = OUTAGE_TIMEOUT_S):
        self.client = client
        self.outage_timeout_s = outage_timeout_s  # `retrying`'s budget for every read
        self._reconnect = partial(drop_connections, client)
        self.keyspace = keyspace
        self.ttl_s = ttl_s
        self.kind_ttl_s = kind_ttl_s or {}  # cached_many kinds cached longer (or shorter)
        self._cache: dict[tuple, tuple[float, object]] = {}
        self._swept = time.monotonic()
        self._index_depth = 0  # the deepest read of a sorted-set index so far (see `_indexes`)
        self._mget = batches_gets(client)
        self.recent_parks = RecentParks()
        self.recent_spills = RecentSpills()

    def cached_many(self, kind: str, ids: list[str], key_of, decode, read=None,
                    *ttl_s: float) -> dict:
        """Values of `ids` from the cache, the misses read in one pipeline (`read(pipe, key)`,
        default GET); `decode(id, raw)` runs once per read, a missing key is cached as absent.
        `ttl_s`: this request's TTL (see cached_many_of)."""
        return self.cached_many_of([(kind, ids, key_of, decode, read, *ttl_s)])[0]

    def cached_many_of(self, requests: list[tuple]) -> list[dict]:
        """`cached_many` for several requests (kind, ids, key_of, decode, read[, ttl_s]) at once:
        the misses of all of them are read in one pipeline (one round trip). The TTL is the
        request's, else the kind's (`kind_ttl_s`), else `ttl_s`."""
        return self._cached(requests)[0]

    def _cached(self, requests: list[tuple], extra=None) -> tuple[list[dict], list]:
        """(`cached_many_of`'s answers, the results of `extra`): `extra(pipe)`, when given, queues
        more commands after the misses' reads, in the same round trip (one is made only when
        something missed or `extra` is given)."""
        now = time.monotonic()
        cache = self._cache
        outs: list[dict] = []
        missing: list[tuple] = []  # (out, kind, id, key_of, decode, read)
        for kind, ids, key_of, decode, read, *ttl_s in requests:
            ttl = ttl_s[0] if ttl_s else self.kind_ttl_s.get(kind, self.ttl_s)
            out: dict = {}
            outs.append(out)
            for i in ids:
                hit = cache.get((kind, i))
                if hit is not None and now - hit[0] < ttl:
                    if hit[1] is not None:
                        out[i] = hit[1]
                else:
                    missing.append((out, kind, i, key_of, decode, read))
        extra_results: list = []
        if missing or extra is not None:
            # the plain GETs first, batched (`GetQueue`), then each custom read, then `extra`
            plain = [m for m in missing if m[5] is None]
            custom = [m for m in missing if m[5] is not None]
            gets = GetQueue([key_of(i) for _, _, i, key_of, _, _ in plain], self._mget)

            def fetch():
                pipe = self.client.pipeline(transaction=False)
                gets.queue(pipe)
                for _, _, i, key_of, _, read in custom:
                    read(pipe, key_of(i))
                if extra is not None:
                    extra(pipe)
                return pipe.execute()
            values, rest = gets.take(self.read(fetch))
            extra_results = rest[len(custom):]
            for (out, kind, i, _, decode, _), raw in zip(plain + custom, values + rest[:len(custom)],
                                                          strict=True):
                value = decode(i, raw) if raw else None
                if _cacheable(kind, raw):
                    cache[(kind, i)] = (now, value)
                if value is not None:
                    out[i] = value
        self._sweep(now)
        return outs, extra_results

    def read(self, call):
        """`call()`, an idempotent read of this store's Redis, retried as `retrying` says."""
        return retrying(call, self.outage_timeout_s, reconnect=self._reconnect)

    def remember(self, kind: str, ids_values: dict) -> None:
        """Cache values this worker just wrote (None = absent) as fresh `cached_many` entries of
        `kind`: its own reads then see them at once, whatever the kind's TTL."""
        now = time.monotonic()
        for i, value in ids_values.items():
            self._cache[(kind, i)] = (now, value)

    def _sweep(self, now: float) -> None:
        """Drop expired entries every few TTLs (and at once past 200k entries): with ever-new
        users and items the cache would otherwise only grow."""
        full = len(self._cache) > 200_000
        if now - self._swept > max(5.0, 10 * self.ttl_s) or full:
            # full, the kinds cached longer fall back to the short TTL
            keep = self.ttl_s if full else max([self.ttl_s, *self.kind_ttl_s.values()])
            self._swept = now
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < keep}

    def items(self, ids: list[str]) -> dict[str, ItemView]:
        return self.cached_many(*self._request("item", ids))

    def neighbours(self, ids: list[str]) -> dict[str, dict[str, float]]:
        return self.cached_many(*self._request("nbrs", ids))

    def cached_one(self, key: tuple, load):
        """`load()` at most once per TTL for `key` (an index, a model): other readers of this
        worker's Redis state (the social graph store) share the cache through this and
        `cached_many`."""
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        value = self.read(load)
        self._cache[key] = (now, value)
        self._sweep(now)
        return value

    def trending(self, topic: str, n: int) -> list[str]:
        return self._indexes([self.keyspace.trending(topic)], n)[0]

    def fresh(self, n: int) -> list[str]:
        return self._indexes([self.keyspace.fresh], n)[0]

    def _indexes(self, keys: list[str], n: int) -> list[list[str]]:
        """The best `n` members of sorted-set indexes (trending, fresh), best first; the stale
        ones read in one pipeline (see `_stale_indexes`)."""
        now = time.monotonic()
        stale, depth = self._stale_indexes(keys, n, now)
        if stale:
            self._read_with_indexes([], stale, depth)
        out = [self._cache[("index", key)][1][0][:n] for key in keys]
        self._sweep(now)  # (after the reads: what was just stored is never swept first)
        return out

    def _stale_indexes(self, keys: list[str], n: int, now: float) -> tuple[list[str], int]:
        """(keys to read, depth): an index is cached once, at the deepest `n` asked so far, so
        every smaller `n` (the topic source asks n / its number of topics) is a prefix of the
        same read."""
        stale = []
        for key in keys:
            hit = self._cache.get(("index", key))
            if hit is None or now - hit[0] >= self.ttl_s or (
                    len(hit[1][0]) < n and not hit[1][1]):  # too shallow, and not all of it
                stale.append(key)
        self._index_depth = max(n, self._index_depth)
        return stale, self._index_depth

    def _store_indexes(self, keys: list[str], results: list, depth: int, now: float) -> None:
        """Cache (members, whether that is the whole index) per key, read `depth` deep."""
        for key, members in zip(keys, results, strict=True):
            self._cache[("index", key)] = (now, ([m.decode() for m in members],
                                                 len(members) < depth))

    def prefetch(self, *, posts: list[str] = (), topics: list[str] = (), n: int = 0) -> None:
        """Read what one rank will ask for in one pipeline (whatever is not cached): the items
        and neighbour rows of `posts` (the user's history), the trending indexes of `topics`
        and the fresh index `n` deep, and the global model. The rank's reads then hit the cache
        (they were 2-6 round trips)."""
        ks = self.keyspace
        stale, depth = self._stale_indexes(
            [ks.trending(t) for t in topics] + [ks.fresh], n, time.monotonic()) if n else ([], 0)
        self._read_with_indexes([self._request(kind, posts) for kind in ITEM_KINDS]
                                + [self._request("model", [""])], stale, depth)

    def _read_with_indexes(self, requests: list[tuple], stale: list[str], depth: int) -> None:
        """`cached_many_of(requests)`, with the `stale` sorted-set indexes read `depth` deep in
        the same round trip and cached (`_store_indexes`)."""
        def queue(pipe) -> None:
            for key in stale:
                pipe.zrange(key, 0, depth - 1, desc=True)
        _, results = self._cached(requests, queue if stale else None)
        self._store_indexes(stale, results, depth, time.monotonic())

    def _request(self, kind: str, ids: list[str]) -> tuple:
        """The `cached_many` request of a kind a rank reads: "item", "nbrs" or "model" (one id,
        "": the global model)."""
        ks = self.keyspace
        if kind == "model":
            def key_of(_id: str) -> str:
                return ks.global_model
        else:
            key_of = ks.item if kind == "item" else ks.neighbours
        return kind, ids, key_of, _DECODE[kind], None

    def parked(self, kind: str, user_id: str) -> bytes | None:
        """The parked worker state of an evicted user (not cached: read once, at its return);
        this process's own parks of the last seconds first (`RecentParks`)."""
        return self.recent_parks.take_or(kind, user_id, lambda: self.read(
            lambda: self.client.get(self.keyspace.parked(kind, user_id))))

    def parking(self, kind: str, user_id: str, state: bytes) -> None:
        """`state` is on its way to Redis (a park write): serve it until it lands."""
        self.recent_parks.add(kind, user_id, state)

    def spilled_owners(self, user_id: str) -> dict[str, int]:
        """The erasure owners spilled for `user_id` (read once, at the deletion), with this
        process's spills of the last seconds (`RecentSpills`)."""
        stored = self.read(lambda: self.client.smembers(self.keyspace.erasure_owners(user_id)))
        return parse_spill({m.decode() for m in stored} | set(self.recent_spills.of(user_id)))

    def spilling_owners(self, user_id: str, members: list[str]) -> None:
        """`members` are on their way to Redis (a spill_owners write)."""
        self.recent_spills.add(user_id, members)

    def global_model(self) -> dict | None:
        return self.cached_many(*self._request("model", [""])).get("")


# A pipeline carries about this many bytes of values at most: redis-py packs a pipeline's queued
# commands before sending any, and the end of a drained input writes every pending user's feed,
# profile and features in one batch, which one pipeline would pack whole (and Redis would answer
# other clients only after all of it).
PIPELINE_BYTES = 4 << 20


def durability_warnings(info: dict, wait_replicas: int = 0, dev: bool = False) -> list[str]:
    """What in a Redis's INFO (one server's) can lose the workers' writes or stall them, as
    sentences saying what to do (README "Redis durability"). The workers write a key again only
    when its owner changes, so a key evicted or lost in a restart stays gone. `dev`: the local
    Redis `persona up` starts, without persistence on purpose.

    >>> durability_warnings({"role": "master", "maxmemory": 1 << 30,
    ...                      "maxmemory_policy": "allkeys-lru", "aof_enabled": 1})[0][:35]
    'Redis evicts keys at its maxmemory '
    >>> durability_warnings({"role": "master", "maxmemory": 0, "maxmemory_policy": "allkeys-lru",
    ...                      "aof_enabled": 1, "connected_slaves": 1}, wait_replicas=1)
    []
    """
    out = []
    if info.get("role") == "slave":
        out.append("Redis is a replica here (read-only): the workers will wait for it to become "
                   "a primary; point REDIS_URL at the primary, or use a redis+sentinel:// URL")
    policy = info.get("maxmemory_policy", "noeviction")
    if info.get("maxmemory", 0) and policy != "noeviction":
        out.append(f"Redis evicts keys at its maxmemory (maxmemory-policy {policy}): what the "
                   "workers wrote would be dropped silently and not written again until its "
                   "owner changes; set maxmemory-policy noeviction (the workers wait out a full "
                   "Redis)")
    if not dev and not info.get("aof_enabled", 1):
        out.append("Redis has no append-only file (appendonly no): a restart loses what was "
                   "written since its last RDB snapshot, and the workers do not write it again; "
                   "set appendonly yes")
    attached = info.get("connected_slaves", 0)
    if info.get("role", "master") == "master" and wait_replicas > attached:
        out.append(f"redis.wait_replicas is {wait_replicas} but the primary has {attached} "
                   "replica(s) attached: every write waits until enough are")
    return out


class KeyspaceGuard:
    """Notices a Redis that lost its data while the workers run (restarted without persistence, a
    failover to a replica that had not caught up, a FLUSHALL): the active-version pointer, which
    nothing deletes, is gone. One command rides along each write pipeline. `claim` (the live
    workers, who write the version that was active at their start) sets the pointer again if it
    is missing (SET NX), since a reader started without it falls back to version "1" and would
    serve nothing from any later version (running readers keep the last one they read); a
    rebuild writing its own version only looks. Either way it logs once per loss what was lost
    and how to rebuild it."""

    def __init__(self, keyspace: Keyspace, claim: bool):
        self.keyspace, self.claim = keyspace, claim
        self.op = ("set_nx", keyspace.active, keyspace.version) if claim else ("exists",
                                                                               keyspace.active)
        self.losses = 0
        self._missing = False

    def check(self, reply) -> None:
        """The reply to `op`: SET NX answers True when it set (the pointer was gone), EXISTS 0."""
        missing = bool(reply) if self.claim else not reply
        if missing and not self._missing:
            self.losses += 1
            restored = (f"set it again to {self.keyspace.version}" if self.claim else
                        "readers fall back to version 1 until `persona versions --switch`")
            log.error(
                "Redis lost its data: the active-version pointer %s was gone (%s). Keys written "
                "before are missing until their next change: rebuild them with `persona replay "
                "--topic …` into a new version, or restart the workers on an empty recovery "
                "directory; run Redis with persistence (README \"Redis durability\")",
                self.keyspace.active, restored)
        self._missing = missing and not self.claim


class RedisWriter:
    """Applies write records to Redis in pipelines of at most `PIPELINE_BYTES` per batch, with
    retries (`retrying`, for up to `outage_timeout_s`); `guard` (a KeyspaceGuard) rides along."""

    WAIT_MS = 1000  # how long one attempt waits for `wait_replicas` acknowledgements

    def __init__(self, client: redis.Redis, keyspace: Keyspace, index_size: int = 2000,
                 outage_timeout_s: float = OUTAGE_TIMEOUT_S, trace_every: int = 0,
                 parked_ttl_s: int = 30 * 86400, guard: KeyspaceGuard | None = None,
                 wait_replicas: int = 0):
        self.guard = guard
        self.wait_replicas = wait_replicas  # redis.wait_replicas: see `_pipeline`
        self.parked_ttl_s = parked_ttl_s
        self.client = client
        self.keyspace = keyspace
        self.index_size = index_size
        self.outage_timeout_s = outage_timeout_s
        self._reconnect = partial(drop_connections, client)
        self.trace_every = trace_every  # stream.freshness_sample: trace 1 user's feed in N

    def write_batch(self, writes: Iterable[Write]) -> int:
        ks = self.keyspace
        ops: list[tuple] = []
        trimmed: set[str] = set()
        traced: list[tuple[str, bytes]] = []
        count = 0
        for w in writes:
            kind = w[0]
            count += 1
            if kind == "feed":
                ops.append(("set", ks.feed(w[1]), w[2]))
                if self.trace_every and traced_user(w[1], self.trace_every):
                    traced.append((w[1], w[2]))
            elif kind == "item":
                view: ItemView = w[1]
                ops.append(("set", ks.item(view.post_id), orjson.dumps(view.to_wire())))
                indexes = [ks.trending(None)] + [ks.trending(t) for t in view.topics]
                if view.deleted:
                    ops.extend(("zrem", key, view.post_id) for key in indexes + [ks.fresh])
                elif view.author_id is not None:
                    if view.pop_log is not None:
                        ops.extend(("zadd", key, {view.post_id: view.pop_log}) for key in indexes)
                        trimmed.update(indexes)
                    ops.append(("zadd", ks.fresh, {view.post_id: view.created_ts}))
                    trimmed.add(ks.fresh)
            elif kind == "forget_item":  # ("forget_item", post, topics): its author was deleted
                ops.append(("delete", ks.item(w[1])))
                ops.append(("delete", ks.neighbours(w[1])))
                ops.extend(("zrem", key, w[1]) for key in
                           [ks.trending(None), ks.fresh] + [ks.trending(t) for t in w[2]])
            elif kind == "forget_nbrs":
                ops.append(("delete", ks.neighbours(w[1])))
            elif kind == "nbrs":
                ops.append(("set", ks.neighbours(w[1]), orjson.dumps(w[2])))
            elif kind == "model":
                ops.append(("set", ks.global_model, orjson.dumps(w[1])))
            elif kind == "profile":
                ops.append(("set", ks.profile(w[1]), w[2]))
            elif kind == "forget_user":
                ops.append(("delete", ks.feed(w[1])))
                ops.append(("delete", ks.profile(w[1])))
                ops.append(("delete", ks.user_features(w[1])))  # search re-ranking features
                ops.append(("delete", ks.parked("user", w[1])))
            elif kind == "park":  # ("park", step kind, key, pickled state | None)
                ops.append(("set", ks.parked(w[1], w[2]), w[3], self.parked_ttl_s)
                           if w[3] is not None else ("delete", ks.parked(w[1], w[2])))
                if w[1] == "erasure" and w[3] is not None:
                    # the owners it spilled live as long as the index that counts on them: only
                    # a new spill set their TTL, and they expired under an index re-parked since
                    # (its user's deletion then missed those owners); no-op when none spilled
                    ops.append(("expire", ks.erasure_owners(w[2]), self.parked_ttl_s))
            elif kind == "spill_owners":
                ops.append(("sadd", ks.erasure_owners(w[1]), *w[2]))
                ops.append(("expire", ks.erasure_owners(w[1]), self.parked_ttl_s))
            elif kind == "unspill_owners":
                ops.append(("srem", ks.erasure_owners(w[1]), *w[2]))
            elif kind == "forget_owners":
                ops.append(("delete", ks.erasure_owners(w[1])))
            elif kind == "notifs":
                ops.append(("set", ks.notifications(w[1]), w[2]))
            elif kind == "notif_model":
                ops.append(("set", ks.notif_model, orjson.dumps(w[1])))
            elif kind == "arm_counts":  # ("arm_counts", experiment, arm, counts)
                ops.append(("set", ks.experiment(w[1], w[2]), orjson.dumps(w[3])))
                ops.append(("sadd", ks.experiments, f"{w[1]}/{w[2]}"))
            elif kind == "forget_notifs":
                ops.append(("delete", ks.notifications(w[1])))
                ops.append(("delete", ks.parked("notif", w[1])))
            elif kind in SOCIAL_WRITES:  # operators/suggestions
                ops.extend(social_ops(ks, w))
                if kind == "forget_social":
                    ops.append(("delete", ks.parked("social", w[1])))
            else:
                raise ValueError(f"unknown write record {kind!r}")
        ops.extend(("zremrangebyrank", key, 0, -(self.index_size + 1)) for key in sorted(trimmed))
        if ops and self.guard is not None:
            self.guard.check(self.execute([self.guard.op, *ops])[0])
        elif ops:
            self.execute(ops)
        if traced:
            self._trace(traced)
        return count

    def _trace(self, feeds: list[tuple[str, bytes]]) -> None:
        """Record when sampled feeds were written (after the pipeline returned), for freshness."""
        written_ms = time.time_ns() // 1_000_000
        entries = [f"{user} {orjson.loads(raw)['generated_at']} {written_ms}" for user, raw in feeds]
        retrying(lambda: self.client.rpush(self.keyspace.feed_trace, *entries),
                 self.outage_timeout_s, "write", self._reconnect)

    def execute(self, ops: list[tuple]) -> list:
        """Run `ops` ((command, *args) tuples) in order, in pipelines of at most
        `PIPELINE_BYTES` (`pipeline_chunks`), each retried whole (safe: every write is
        idempotent); the replies of the first pipeline."""
        chunks = pipeline_chunks(ops, PIPELINE_BYTES)
        first = self._pipeline(chunks[0])
        for chunk in chunks[1:]:
            self._pipeline(chunk)
        return first

    def _pipeline(self, ops: list[tuple]) -> list:
        """Run `ops` in one pipeline, with retries. The pipeline is rebuilt per attempt: redis-py
        empties it after execute, even on error. With `wait_replicas` the pipeline ends with a
        WAIT on its own connection, so it returns only once that many replicas hold its writes:
        a failover (Sentinel, or a Cluster promoting a replica) then loses none of them. WAIT
        counts the writes of the connection it runs on, and a cluster pipeline spreads over one
        connection per primary: there each primary's share is a pipeline of its own, with its
        own WAIT (`_per_primary`)."""
        wait = self.wait_replicas
        if wait and isinstance(self.client, redis.cluster.RedisCluster):
            return retrying(partial(self._per_primary, ops, wait), self.outage_timeout_s, "write",
                            self._reconnect)

        def run():
            pipe = self.client.pipeline(transaction=False)
            _queue(pipe, ops)
            if not wait:
                return pipe.execute()
            return _waited(pipe, wait, self.WAIT_MS)
        return retrying(run, self.outage_timeout_s, "write", self._reconnect)

    def _per_primary(self, ops: list[tuple], wait: int) -> list:
        """`ops` grouped by the primary that serves each one's key (in order within a group), one
        pipeline per primary ending with its WAIT; the replies in the order of `ops`."""
        cluster = self.client
        groups: dict[str, tuple] = {}
        try:
            for i, op in enumerate(ops):
                key = op[3] if op[0] == "eval" else op[1]  # EVAL script numkeys key…: its first key
                node = cluster.get_node_from_key(key)
                group = groups.setdefault(node.name, (node, [], []))
                group[1].append(i)
                group[2].append(op)
            replies: list = [None] * len(ops)
            for node, indices, node_ops in groups.values():
                pipe = cluster.get_redis_connection(node).pipeline(transaction=False)
                _queue(pipe, node_ops)
                for i, reply in zip(indices, _waited(pipe, wait, self.WAIT_MS), strict=True):
                    replies[i] = reply
            return replies
        except (redis.exceptions.MovedError, redis.exceptions.AskError, redis.ConnectionError,
                redis.TimeoutError, redis.exceptions.ClusterDownError) as exc:
            if isinstance(exc, (ReplicasBehind, redis.exceptions.AuthenticationError)):
                raise  # (a refused login is no moved slot: `transient` decides about it)
            # where the slots are now: the next attempt's nodes (a cluster still down: the
            # next attempt tries again)
            with contextlib.suppress(redis.RedisError):
                cluster.nodes_manager.initialize()
            raise SlotsMoved(f"a Redis Cluster node did not take its writes ({exc}); slot map "
                             "refreshed") from exc


def _queue(pipe, ops: list[tuple]) -> None:
    """Queue write `ops` ((command, *args) tuples) on `pipe`. The bulk of the writes are queued as
    raw commands: redis-py's typed `set` checks its ten options on every call (~15% of the sink's
    time)."""
    command = pipe.execute_command
    for name, *args in ops:
        if name == "set" and len(args) == 2:
            command("SET", *args)
        elif name == "set":  # (key, value, TTL in seconds)
            command("SET", args[0], args[1], "EX", args[2])
        elif name == "delete":
            command("DEL", *args)
        elif name == "set_nx":  # (key, value): KeyspaceGuard's claim
            command("SET", *args, "NX")
        elif name == "eval":  # (script, number of keys, keys…, args…); raw: a cluster
            command("EVAL", *args)  # pipeline has no typed `eval`, but routes EVAL by key
        else:
            getattr(pipe, name)(*args)


def _waited(pipe, wait: int, wait_ms: int) -> list:
    """Execute `pipe` with a WAIT for `wait` replicas at its end (on its connection); its replies
    without the WAIT's, or ReplicasBehind."""
    pipe.execute_command("WAIT", wait, wait_ms)
    *replies, acknowledged = pipe.execute()
    if acknowledged < wait:
        raise ReplicasBehind(f"{acknowledged} of the {wait} replica(s) redis.wait_replicas "
                             f"asks for acknowledged it within {wait_ms} ms")
    return replies


def pipeline_chunks(ops: list[tuple], max_bytes: int) -> list[list[tuple]]:
    """`ops` in order, cut into runs of at most about `max_bytes`: a command counts as the length
    of its value when that is bytes (("set", key, value[, TTL])), else 64 (a single larger command
    is a run of its own).

    >>> [len(c) for c in pipeline_chunks([("set", "k", b"x" * 6)] * 5, 12)]
    [2, 2, 1]
    """
    chunks: list[list[tuple]] = []
    start, size = 0, 0
    for i, op in enumerate(ops):
        value = op[2] if len(op) > 2 else None
        n = len(value) if type(value) is bytes else 64
        if size + n > max_bytes and i > start:
            chunks.append(ops[start:i])
            start, size = i, 0
        size += n
    chunks.append(ops[start:] if start else ops)
    return chunks


def delete_matching(client: redis.Redis, pattern: str, batch: int = 1000,
                    still: Callable[[], bool] | None = None) -> int:
    """UNLINK every key matching `pattern` (SCAN, `batch` keys per command: a cluster client
    splits them by slot); the number removed. `still()`, asked before each UNLINK, stops the
    deletion when it turns false (a version being collected made active again)."""
    removed, keys = 0, []
    for key in client.scan_iter(match=pattern, count=batch):
        keys.append(key)
        if len(keys) >= batch:
            if still is not None and not still():
                return removed
            removed += client.unlink(*keys)
            keys.clear()
    if keys and (still is None or still()):
        removed += client.unlink(*keys)
    return removed


def traced_user(user_id: str, every: int) -> bool:
    """The deterministic 1-in-`every` sample of users whose feed writes are traced."""
    return zlib.crc32(user_id.encode()) % every == 0


def connect(url: str, *, cluster: bool = False, timeout_s: float = 10.0,
            **options) -> redis.Redis:
    """A client of one Redis, or with `cluster` of a Redis Cluster whose node `url` names (the
    keyspace keeps each user's and each post's keys in one slot: schemas/keyspace.py; pipelines
    are split by node). `options`: access settings (username, password, ssl_*; config.security)."""
    if not cluster:
        options["health_check_interval"] = 30
    return _from_url(redis, url, cluster, timeout_s, 5.0, options)


def connect_to(rs: RedisSettings, **kwargs) -> redis.Redis:
    """`connect` to the configured Redis: `redis.url` with its access options (ACL user,
    password, TLS, Sentinels, cluster: config.security); `kwargs` as `connect`'s (a timeout)."""
    url, options = redis_connection(rs)
    return connect(url, **options, **kwargs)


def connect_async(url: str, *, cluster: bool = False, timeout_s: float = 5.0, **options):
    """The asyncio twin of `connect` (the HTTP reader's hot path)."""
    from redis import asyncio as aredis

    return _from_url(aredis, url, cluster, timeout_s, 2.0, options)


def _from_url(module, url: str, cluster: bool, timeout_s: float, connect_max_s: float,
              options: dict):
    """`module`'s (redis or redis.asyncio) client of `url`: connecting takes at most
    `connect_max_s`, any other call `timeout_s`. A `redis+sentinel://` URL gives a client of the
    service's primary as its Sentinels name it: each new connection asks them, and a connection
    to a primary demoted by a failover is dropped (redis-py's SentinelManagedConnection turns its
    READONLY into a ConnectionError, which `retrying` waits out)."""
    timeouts = {"socket_timeout": timeout_s,
                "socket_connect_timeout": min(connect_max_s, timeout_s)}
    # the Sentinels' own login (an ACL user, or the default user's password)
    sentinel_login = {"password": options.pop("sentinel_password", None)}
    if options.get("sentinel_username"):
        sentinel_login["username"] = options.pop("sentinel_username")
    options.pop("sentinel_username", None)
    target = sentinel_target(url)
    if target is None:
        client = module.RedisCluster if cluster else module.Redis
        return client.from_url(url, **timeouts, **options)
    if cluster:
        raise ValueError("a redis+sentinel:// url names one primary, not a Redis Cluster")
    tls = {k: options.pop(k) for k in [k for k in options if k.startswith("ssl_")]}  # both ends
    if target.tls:
        tls["ssl"] = True
    # the URL's credentials win over the options', as redis-py's from_url does
    options.update({k: v for k, v in (("username", target.username),
                                      ("password", target.password)) if v is not None})
    sentinels = module.sentinel.Sentinel(
        target.sentinels, sentinel_kwargs={**timeouts, **tls, **sentinel_login})
    return sentinels.master_for(target.service, db=target.db, **timeouts, **options, **tls)
