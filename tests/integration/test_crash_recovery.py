"""kill -9 of the streaming worker mid-stream, restarted on its recovery directory: the final Redis
contents equal an uninterrupted run's (real Kafka and Redis, one partition, one worker process).

What is compared (helpers.EXACT_KINDS, README "Operating and recovery"): every key must exist in
both runs; item features, trending and fresh indices, graph records, group members, likers, popular
users and profiles must be byte-identical. Feeds, suggestions, notification inboxes, user features,
item neighbours and the global models are not compared byte for byte: they depend on the order in
which Bytewax delivers events across keys and on wall-clock rank timers, and differ between two
uninterrupted runs as well.

No doubling: the topic starts with a malformed line. Its dead letter is produced once by the killed
run; a restart that re-read the topic from the beginning would produce it again.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import orjson
import pytest

from scripts import kafka_io, runner
from scripts.generate import GeneratorConfig, generate
from tests.integration.helpers import (
    cleanup,
    compare_runs,
    create_run_topics,
    key_digests,
    run_env,
)

SEEDS = (1, 2, 3)
SNAPSHOT_S = 1
FIRST_LINE = b"not json: the first line of the topic"


def run_to_end(settings, env, recovery_dir) -> int:
    procs = runner.start(settings, None, tail=False, recovery_dir=str(recovery_dir),
                         snapshot_s=SNAPSHOT_S, env_extra=env, log=lambda m: None, metrics_port=0)
    return runner.supervise(procs, log=lambda m: None)


def wait_snapshot_offset(recovery_dir, proc, n: float, timeout_s: float = 180.0) -> int:
    """Wait until the worker's recovery partition holds a *committed* snapshot of the Kafka input
    at an offset ≥ `n` (or the worker exits); return that offset. A snapshot row is written before
    the worker's frontier passes its epoch (`fronts`, from which a restart resumes): on a loaded
    machine a kill between the two resumes from the previous epoch, maybe from the beginning."""
    import pickle
    import sqlite3

    deadline = time.time() + timeout_s
    offset = -1
    while time.time() < deadline and proc.poll() is None:
        for part in Path(recovery_dir).glob("part-*.sqlite3"):
            try:
                with sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1) as db:
                    rows = db.execute(
                        "SELECT ser_change FROM snaps WHERE step_id LIKE '%kafka_in%' AND "
                        "snap_epoch < (SELECT MIN(worker_frontier) FROM fronts WHERE "
                        "ex_num = (SELECT MAX(ex_num) FROM fronts)) "
                        "ORDER BY snap_epoch DESC LIMIT 1").fetchall()
            except sqlite3.Error:
                continue
            if rows and rows[0][0] is not None:
                offset = pickle.loads(rows[0][0])
        if offset >= n:
            return offset
        time.sleep(0.05)
    return offset


def dead_letters_of_first_line(settings) -> int:
    letters = kafka_io.read_topic(settings.kafka.bootstrap, settings.kafka.dead_letter_topic)
    return sum(orjson.loads(m)["raw"] == FIRST_LINE.decode() for m in letters)


@pytest.fixture(scope="module")
def reference(live, tmp_path_factory):
    import uuid

    import redis

    unique = uuid.uuid4().hex[:10]
    env = run_env(live, unique, "ref")
    settings = create_run_topics(env)
    events, _ = generate(GeneratorConfig(users=200, days=1, seed=17))
    kafka_io.recreate_topic(settings.kafka.bootstrap, settings.kafka.events_topic, 1)
    kafka_io.produce(settings.kafka.bootstrap, settings.kafka.events_topic,
                     [FIRST_LINE] + [orjson.dumps(e) for e in events])
    assert run_to_end(settings, env, tmp_path_factory.mktemp("ref")) == 0
    client = redis.Redis.from_url(live[1])
    digests = key_digests(client, settings.redis.prefix)
    yield unique, digests, len(events)
    cleanup(settings, client)


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_and_restart_gives_the_uninterrupted_contents(live, reference, seed, tmp_path):
    import redis

    unique, expected, n_events = reference
    env = run_env(live, unique, f"kill{seed}")
    settings = create_run_topics(env)
    client = redis.Redis.from_url(live[1])
    try:
        procs = runner.start(settings, None, tail=False, recovery_dir=str(tmp_path),
                             snapshot_s=SNAPSHOT_S, env_extra=env, log=lambda m: None,
                             metrics_port=0)
        # a seeded random point: once the Kafka offset in a committed snapshot has passed that
        # fraction of the topic, plus a random part of an epoch (not on a snapshot boundary)
        rng = random.Random(seed)
        fraction = rng.uniform(0.1, 0.5)
        offset = wait_snapshot_offset(tmp_path, procs[0], fraction * n_events)
        time.sleep(rng.uniform(0.0, 0.5) * SNAPSHOT_S)
        assert procs[0].poll() is None, (
            f"the worker finished before its snapshots passed {fraction:.0%} of the topic")
        os.kill(procs[0].pid, signal.SIGKILL)
        assert procs[0].wait() == -signal.SIGKILL
        partial = key_digests(client, settings.redis.prefix)
        assert partial, "the killed run wrote nothing: the kill came too early to test anything"

        assert run_to_end(settings, env, tmp_path) == 0
        got = key_digests(client, settings.redis.prefix)
        diff = compare_runs(expected, got)
        assert diff == {"missing": [], "extra": [], "different": []}, (
            f"seed {seed}, killed after a snapshot at offset {offset} of {n_events}: "
            f"{ {k: (len(v), v[:5]) for k, v in diff.items()} }")
        assert dead_letters_of_first_line(settings) == 1, (
            "the restarted worker re-read the topic from the beginning instead of resuming")
    finally:
        cleanup(settings, client)
