"""The CPU of one rank, without Kafka, Redis or Bytewax: `python -m scripts.bench_rank`.

Builds every user's state in-process (operators.engine, the bench's seeded workload), then ranks every
user from a pickled copy of their state, `--rounds` times, and prints the best round's CPU time per
rank (process time: less exposed than wall time to other processes on a shared machine) and a
digest of every feed's bytes and choice set. A change that must not change rankings must keep the
digest. `--gc-threshold` sets the cyclic GC's generation-0 threshold for the timed rounds (the
workers use `[stream] gc_threshold`; 0 = Python's default).

`--min-history N` ranks only the users with at least N history entries: the users a tailing
worker ranks are the active ones, whose ranks cost ~2.5× the workload's average.

`--store redis` ranks against the workers' feature store instead of the in-process one: the items,
neighbours, indexes and global model the engine learned are written to a private keyspace of the
real Redis (REDIS_URL) with the workers' writer, and each rank reads them through
`RedisFeatureStore` with a cache of `--ttl-s` (default: the workers' TTLs). A
tailing worker ranks few users per TTL, so most of its reads miss: `--ttl-s 0.01` reads nearly
everything from Redis at every rank. The digest must equal the in-process one (the same features, read
another way); the difference in CPU per rank is what the store costs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import os
import pickle
import time

import orjson

import config
from flows import resources
from operators.backfill import feature_writes
from operators.engine import Engine
from operators.feed import rank
from operators.ingest import decode_message, limits_from
from operators.redis_store import RedisFeatureStore, RedisWriter, connect_to, delete_matching
from schemas.keyspace import Keyspace
from scripts.bench import workload


def main(argv: list[str] | None = None) -> tuple[float, str]:
    """(the best round's CPU µs per rank, the digest of its feeds and choice sets)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gc-threshold", type=int, default=None,
                        help="generation-0 threshold (default: [stream] gc_threshold)")
    parser.add_argument("--store", choices=("memory", "redis"), default="memory",
                        help="the feature store ranks read (redis: REDIS_URL, a private keyspace)")
    parser.add_argument("--min-history", type=int, default=0,
                        help="rank only the users holding at least this many history entries "
                             "(a tailing worker ranks active users: ~14 on the bench workload)")
    parser.add_argument("--ttl-s", type=float, default=None,
                        help="--store redis: one cache TTL for every kind (default: the workers')")
    args = parser.parse_args(argv)
    if args.ttl_s is not None and args.ttl_s <= 0:
        parser.error("--ttl-s must be > 0 (the workers' is at least 0.01 s)")
    settings = config.load()
    engine, limits = Engine(settings), limits_from(settings)
    print(f"learning {args.events:,} events of {args.users:,} users in-process …", flush=True)
    for raw in workload(args.events, args.users, args.seed):
        event = decode_message(orjson.dumps(raw), limits, None)
        if hasattr(event, "user_id"):
            engine.learn_one(event)
    engine.publish()
    frozen = {user: pickle.dumps(state) for user, state in sorted(engine.users.items())
              if len(state.history) >= args.min_history}
    if not frozen:
        parser.error(f"no user holds {args.min_history} history entries: lower --min-history")
    print(f"ranking {len(frozen):,} users (history ≥ {args.min_history})", flush=True)
    if args.store == "redis":
        with redis_store(settings, engine, args.ttl_s) as store:
            return timed_rounds(args, settings, engine, frozen, store)
    return timed_rounds(args, settings, engine, frozen, engine.store)


@contextlib.contextmanager
def redis_store(settings, engine: Engine, ttl_s: float | None):
    """A RedisFeatureStore over what `engine` learned, written to a private keyspace (removed
    after) by the workers' own writer."""
    client = connect_to(settings.redis)
    keyspace = Keyspace(f"bench-rank-{os.getpid()}", "1")
    store = (resources.feature_store_over(settings, client, keyspace) if ttl_s is None
             else RedisFeatureStore(client, keyspace, ttl_s=ttl_s))
    try:  # the workers' writer (its index size, pipelines split by size)
        written = RedisWriter(client, keyspace).write_batch(feature_writes(engine))
        print(f"wrote {written:,} item, neighbour and model records to Redis ({keyspace.base}); "
              f"cache TTL {store.ttl_s:g} s, items and neighbours "
              f"{store.kind_ttl_s.get('item', store.ttl_s):g} s", flush=True)
        yield store
    finally:
        delete_matching(client, f"{keyspace.prefix}:*")


def timed_rounds(args, settings, engine: Engine, frozen: dict[str, bytes],
                 store) -> tuple[float, str]:
    """Rank every user from their frozen state, `args.rounds` times; print the CPU per rank."""
    threshold = settings.stream.gc_threshold if args.gc_threshold is None else args.gc_threshold
    if threshold:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])
    best, digest = float("inf"), ""
    for n in range(1, args.rounds + 1):
        states = [pickle.loads(raw) for raw in frozen.values()]
        start = time.process_time()
        feeds = [rank(state, store, engine.ctx, state.last_ts) for state in states]
        spent = time.process_time() - start
        best = min(best, spent)
        h = hashlib.sha256()
        for state, feed in zip(states, feeds, strict=True):
            h.update(feed.encode())
            if state.choice is not None:
                h.update(state.choice.members.tobytes() + state.choice.rows.tobytes()
                         + state.choice.mean.tobytes())
        digest = h.hexdigest()[:16]
        print(f"  round {n}: {len(feeds):,} ranks, {1e6 * spent / len(feeds):,.0f} µs CPU per rank",
              flush=True)
    print(f"best of {args.rounds}: {1e6 * best / len(frozen):,.0f} µs CPU per rank "
          f"(gc threshold {gc.get_threshold()[0]}); feeds and choice sets digest {digest}")
    return 1e6 * best / len(frozen), digest


if __name__ == "__main__":
    main()
