"""Which Redis kinds two uninterrupted streaming runs of one log reproduce byte for byte.

`python -m scripts.exactness [--users 120 --days 1 --seed 23 --partitions 4 --processes 1
--runs 2 --kill-run K]` produces one generated log to a fresh topic (shared Kafka), runs the
workers `--runs` times to the end of it (own prefix, recovery on, as the crash-recovery tests),
then prints per key kind how many keys differ from the first run and, with `--show N`, N
differing values of each kind. For the kinds that are not reproduced byte for byte (feeds), it
prints how close each run's feeds are to the first run's: the mean share of a feed's top 10 that
is in the other's; and how many users' features differ but for the residual model (0 expected).
`--kill-run K`: run K is killed (SIGKILL) once its snapshots passed a seeded random 10–50% of the
topic and restarted on its recovery directory, so a recovery's divergence can be set next to an
uninterrupted run's (`--runs 3 --kill-run 2`).
The deleted users' set is compared by size (`key_digests`: its members are keyed by the keyspace).
Removes its Redis keys at the end (its persona.test.exact-* topics stay, as the tests' do).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import tempfile
import time
import uuid

import orjson

import config
from operators.redis_store import connect_to
from scripts import kafka_io
from scripts.generate import GeneratorConfig, generate


def main(argv=None) -> int:
    # the integration tests' run and digest helpers: one definition of "a run" and "same bytes"
    from tests.integration.helpers import (
        cleanup,
        create_run_topics,
        differing_users,
        feeds,
        key_digests,
        key_kind,
        run_env,
        run_to_end,
        start_recovering,
        top_overlap,
        user_features_but_model,
        value_bytes,
        wait_snapshot_offset,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=120)
    p.add_argument("--days", type=float, default=1)
    p.add_argument("--seed", type=int, default=23)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--show", type=int, default=0)
    p.add_argument("--kill-run", type=int, default=-1, help="kill -9 this run mid-way, restart it")
    p.add_argument("--keep", action="store_true", help="keep the runs' keys (prefixes printed)")
    a = p.parse_args(argv)
    live = (os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    unique = "exact-" + uuid.uuid4().hex[:8]
    events, _ = generate(GeneratorConfig(users=a.users, days=a.days, seed=a.seed))
    client = connect_to(config.load(env={"REDIS_URL": live[1]}).redis)
    runs = []
    try:
        for i in range(a.runs):
            env = run_env(live, unique, f"r{i}")
            env["PERSONA_KAFKA__PARTITIONS"] = str(a.partitions)
            env["PERSONA_STREAM__REORDER_WAIT_S"] = "60"  # every like waits for its post
            env["PERSONA_STREAM__REORDER_LAG_S"] = "0"
            env["PERSONA_STREAM__KAFKA_BATCH_SIZE"] = "100"
            settings = create_run_topics(env)
            if i == 0:
                kafka_io.recreate_topic(settings.kafka.bootstrap, settings.kafka.events_topic,
                                        a.partitions)
                kafka_io.produce(settings.kafka.bootstrap, settings.kafka.events_topic,
                                 [orjson.dumps(e) for e in events])
            started, killed = time.monotonic(), ""
            with tempfile.TemporaryDirectory() as rec:
                if i == a.kill_run:
                    fraction = random.Random(a.seed).uniform(0.1, 0.5)
                    procs = start_recovering(settings, env, rec, a.processes)
                    offset = wait_snapshot_offset(rec, procs[0], settings.kafka.events_topic,
                                                  fraction * len(events))
                    for proc in procs:
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait()
                    killed = f", killed after a snapshot at offset {offset:,} and restarted"
                code = run_to_end(settings, env, rec, a.processes)
            if code:
                raise SystemExit(f"run {i} failed with exit code {code}")
            runs.append((settings, key_digests(client, settings.redis.prefix)))
            print(f"run {i}: {len(events)} events, {len(runs[-1][1])} keys, "
                  f"{time.monotonic() - started:.0f} s{killed}", flush=True)
        ref_settings, ref = runs[0]
        for i, (settings, got) in enumerate(runs[1:], 1):
            total, differ = collections.Counter(), collections.defaultdict(list)
            for key in set(ref) | set(got):
                kind = key_kind(key)
                total[kind] += 1
                if ref.get(key) != got.get(key):
                    differ[kind].append(key)
            print(f"run {i} vs run 0: differing keys per kind")
            for kind in sorted(total):
                print(f"  {kind:16} {len(differ[kind]):5} / {total[kind]}")
            print(f"  feeds' top 10 in run 0's top 10: "
                  f"{top_overlap(feeds(ref_settings, client), feeds(settings, client)):.1%}")
            users = differing_users(user_features_but_model(client, ref_settings.redis.prefix),
                                    user_features_but_model(client, settings.redis.prefix))
            print(f"  user features but the residual model: {len(users)} users differ")
            for kind in sorted(differ):
                for key in sorted(differ[kind])[:a.show]:
                    for s in (ref_settings, settings):
                        full = next(client.scan_iter(
                            f"{s.redis.prefix}:{key}"), None)
                        value = value_bytes(client, full) if full else None
                        shown = (value or b"(absent)").decode(errors="replace")
                        print(f"  {s.redis.prefix} {key}: {shown}")
        if a.keep:
            print("kept prefixes:", [s.redis.prefix for s, _ in runs])
    finally:
        if not a.keep:
            for settings, _ in runs:
                cleanup(settings, client)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
