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
    wait_first_write,
)

SEEDS = (1, 2, 3)
SNAPSHOT_S = 1
FIRST_LINE = b"not json: the first line of the topic"


def run_to_end(settings, env, recovery_dir) -> tuple[int, float, float]:
    """(exit code, seconds to the first Redis write, seconds in all)."""
    t0 = time.time()
    procs = runner.start(settings, None, tail=False, recovery_dir=str(recovery_dir),
                         snapshot_s=SNAPSHOT_S, env_extra=env, log=lambda m: None, metrics_port=0)
    first = wait_first_write(settings, procs[0])
    code = runner.supervise(procs, log=lambda m: None)
    return code, first - t0, time.time() - t0


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
    events, _ = generate(GeneratorConfig(users=150, days=1, seed=17))
    kafka_io.recreate_topic(settings.kafka.bootstrap, settings.kafka.events_topic, 1)
    kafka_io.produce(settings.kafka.bootstrap, settings.kafka.events_topic,
                     [FIRST_LINE] + [orjson.dumps(e) for e in events])
    code, first_write_s, total_s = run_to_end(settings, env, tmp_path_factory.mktemp("ref"))
    assert code == 0
    client = redis.Redis.from_url(live[1])
    digests = key_digests(client, settings.redis.prefix)
    yield unique, digests, first_write_s, total_s, len(events)
    cleanup(settings, client)


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_and_restart_gives_the_uninterrupted_contents(live, reference, seed, tmp_path):
    import redis

    unique, expected, first_write_s, total_s, n_events = reference
    env = run_env(live, unique, f"kill{seed}")
    settings = create_run_topics(env)
    client = redis.Redis.from_url(live[1])
    try:
        procs = runner.start(settings, None, tail=False, recovery_dir=str(tmp_path),
                             snapshot_s=SNAPSHOT_S, env_extra=env, log=lambda m: None,
                             metrics_port=0)
        wait_first_write(settings, procs[0])
        # a random point of the processing time measured by the uninterrupted run
        kill_after = random.Random(seed).uniform(0.15, 0.6) * (total_s - first_write_s)
        time.sleep(kill_after)
        assert procs[0].poll() is None, (
            f"the worker finished before the kill point ({kill_after:.1f}s): use a larger log")
        os.kill(procs[0].pid, signal.SIGKILL)
        assert procs[0].wait() == -signal.SIGKILL
        partial = key_digests(client, settings.redis.prefix)
        assert partial, "the killed run wrote nothing: the kill came too early to test anything"

        code = runner.supervise(runner.start(
            settings, None, tail=False, recovery_dir=str(tmp_path), snapshot_s=SNAPSHOT_S,
            env_extra=env, log=lambda m: None, metrics_port=0), log=lambda m: None)
        assert code == 0
        got = key_digests(client, settings.redis.prefix)
        diff = compare_runs(expected, got)
        assert diff == {"missing": [], "extra": [], "different": []}, (
            f"seed {seed}, killed after {kill_after:.1f}s of {n_events} events: "
            f"{ {k: (len(v), v[:5]) for k, v in diff.items()} }")
        assert dead_letters_of_first_line(settings) == 1, (
            "the restarted worker re-read the topic from the beginning instead of resuming")
    finally:
        cleanup(settings, client)
