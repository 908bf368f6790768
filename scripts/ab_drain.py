"""A/B of worker checkouts on one pre-filled topic: the bench workload is produced once to private
topics, then each checkout's real worker (`PERSONA_TAIL=0 python -m bytewax.run`, its own venv and
a fresh Redis prefix per run) drains it in turn, round after round; prints wall time and the
worker's CPU-seconds per run (CPU time moves less than wall time when others share the machine).

    python -m scripts.ab_drain --events 30000 --users 5000 --rounds 3 /work/main /work/wt-x
    python -m scripts.ab_drain --rounds 1 --py-spy /tmp/prof /work/main   # then scripts.profile_steps
    python -m scripts.ab_drain --processes 2 --py-spy /tmp/prof2 /work/main  # one .pI.raw a process

Catch-up mode is off (`stream.backlog_interval_s` = 0) unless the environment or a variant sets it: it ranks less
the older the input, and each run drains the topic later than the one before, so with it on the
first run of a sequence ranks most (100k events / 10k users: 39 s, then 28 s for the same checkout).
Topics and keys are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import time
import uuid

import orjson
from confluent_kafka.admin import AdminClient

import config
from config.security import kafka_config
from operators.redis_store import connect_to, delete_matching
from scripts import kafka_io, runner
from scripts.bench import workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", help="worktrees with a .venv (e.g. /work/main), "
                        "each optionally with settings: /work/main+PERSONA_STREAM__X=1,PERSONA_Y=2")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epoch-s", type=int, help="Bytewax epoch length (`-s`; its default "
                        "without recovery is 10 s): the input waits at each epoch's end until "
                        "the whole dataflow has drained it")
    parser.add_argument("--processes", type=int, default=1, help="worker processes, one Bytewax "
                        "cluster (`-i/-a` on loopback); CPU is summed over them")
    parser.add_argument("--pin", action="store_true", help="pin process i to CPU i, as `persona "
                        "run --pin-cpus` (checkouts before it ignore this)")
    parser.add_argument("--py-spy", metavar="DIR", help="record each run with py-spy (100 Hz, raw) "
                        "into DIR/<checkout>-<n>-<round>.raw (n: its position in the list) for `python -m scripts.profile_steps`; "
                        "its own CPU then counts in the run's")
    args = parser.parse_args()
    settings = config.load()
    boot, url, extra = settings.kafka.bootstrap, settings.redis.url, kafka_config(settings.kafka)
    tag = f"ab-{uuid.uuid4().hex[:6]}"
    topics = [f"{tag}-{name}" for name in ("events", "dead", "notifications", "erasures")]
    for topic in topics:
        kafka_io.recreate_topic(boot, topic, 4, extra=extra)
    n = kafka_io.produce(boot, topics[0], (orjson.dumps(e) for e in workload(
        args.events, args.users, args.seed)), extra=extra)
    print(f"{n:,} events on {topics[0]}; {args.rounds} round(s) of {len(args.checkouts)}", flush=True)
    client = connect_to(settings.redis)
    cpu: dict[str, list[float]] = {c: [] for c in args.checkouts}
    try:
        for round_ in range(args.rounds):
            for n_variant, variant in enumerate(args.checkouts):
                checkout, _, settings_env = variant.partition("+")
                prefix = f"{tag}-{round_}-{n_variant}"
                env = {"PERSONA_STREAM__BACKLOG_INTERVAL_S": "0", **os.environ}
                env = dict(env, **dict(kv.split("=", 1) for kv in settings_env.split(",")
                                       if kv), KAFKA_BOOTSTRAP=boot, REDIS_URL=url, PERSONA_TAIL="0",
                           PERSONA_KAFKA__EVENTS_TOPIC=topics[0],
                           PERSONA_KAFKA__DEAD_LETTER_TOPIC=topics[1],
                           PERSONA_KAFKA__NOTIFICATIONS_TOPIC=topics[2],
                           PERSONA_KAFKA__ERASURE_TOPIC=topics[3], PERSONA_REDIS__PREFIX=prefix)
                load = os.getloadavg()[0]
                before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
                if args.pin:  # the workers pin themselves (`persona run --pin-cpus`)
                    env["PERSONA_PIN_CPUS"] = "1"
                workers = runner.worker_commands(args.processes, 1, None, args.epoch_s or 10,
                                                 python=f"{checkout}/.venv/bin/python")
                if args.py_spy:
                    os.makedirs(args.py_spy, exist_ok=True)
                    name = f"{os.path.basename(checkout.rstrip('/'))}-{n_variant}-{round_}"
                    part = (lambda i: "") if len(workers) == 1 else (lambda i: f".p{i}")
                    workers = [[f"{checkout}/.venv/bin/py-spy", "record", "-r", "100", "--format",
                                "raw", "-o", os.path.join(args.py_spy, f"{name}{part(i)}.raw"),
                                "--", *w] for i, w in enumerate(workers)]
                quiet = subprocess.DEVNULL if args.py_spy else None
                try:  # a failed run's keys go too (a killed cluster leaves ~200k)
                    running = [subprocess.Popen(w, cwd=checkout, env=runner.pinned_env(env, i),
                                                stdout=subprocess.DEVNULL, stderr=quiet)
                               for i, w in enumerate(workers)]
                    codes = _wait_all(running)
                    if any(codes):
                        raise SystemExit(f"{variant}: a worker exited with {codes}")
                    wall = time.monotonic() - t0
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                    cpu[variant].append(used)
                    print(f"round {round_} {variant}: wall {wall:.1f} s ({n / wall:,.0f} events/s), "
                          f"worker CPU {used:.1f} s ({n / used:,.0f} events per CPU-second); "
                          f"load {load:.1f} at start", flush=True)
                finally:
                    delete_matching(client, f"{prefix}*", 5000)
    finally:
        AdminClient({"bootstrap.servers": boot, **extra}).delete_topics(topics)
    for variant, used in cpu.items():
        if used:
            print(f"{variant}: mean worker CPU {sum(used) / len(used):.1f} s over {len(used)} run(s)")


def _wait_all(running: list[subprocess.Popen]) -> list[int]:
    """Every process's exit code; once one fails, the others are stopped (a cluster's survivors
    would wait for their lost peer forever)."""
    while None in [w.poll() for w in running]:  # (a list: poll every one)
        if any(w.returncode for w in running):
            for w in running:
                if w.poll() is None:
                    w.kill()
        time.sleep(0.2)
    return [w.returncode for w in running]


if __name__ == "__main__":
    main()
