"""The CPU of one rank, without Kafka, Redis or Bytewax: `python -m scripts.bench_rank`.

Builds every user's state in-process (operators.engine, the bench's seeded workload), then ranks every
user from a pickled copy of their state, `--rounds` times, and prints the best round's CPU time per
rank (process time: less exposed than wall time to other processes on a shared machine) and a
digest of every feed's bytes and choice set. A change that must not change rankings must keep the
digest. `--gc-threshold` sets the cyclic GC's generation-0 threshold for the timed rounds (the
workers use `[stream] gc_threshold`; 0 = Python's default).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import pickle
import time

import orjson

import config
from operators.engine import Engine
from operators.feed import rank
from operators.ingest import decode_message, limits_from
from scripts.bench import workload


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gc-threshold", type=int, default=None,
                        help="generation-0 threshold (default: [stream] gc_threshold)")
    args = parser.parse_args(argv)
    settings = config.load()
    engine, limits = Engine(settings), limits_from(settings)
    print(f"learning {args.events:,} events of {args.users:,} users in-process …", flush=True)
    for raw in workload(args.events, args.users, args.seed):
        event = decode_message(orjson.dumps(raw), limits, None)
        if hasattr(event, "user_id"):
            engine.learn_one(event)
    engine.publish()
    frozen = {user: pickle.dumps(state) for user, state in sorted(engine.users.items())}
    threshold = settings.stream.gc_threshold if args.gc_threshold is None else args.gc_threshold
    if threshold:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])
    best, digest = float("inf"), ""
    for n in range(1, args.rounds + 1):
        states = [pickle.loads(raw) for raw in frozen.values()]
        start = time.process_time()
        feeds = [rank(state, engine.store, engine.ctx, state.last_ts) for state in states]
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


if __name__ == "__main__":
    main()
