"""kill -9 mid-stream with a 4-partition topic, restarted on its recovery directory: every key of
the uninterrupted run exists, and what 4 partitions reproduce exactly is byte-identical
(helpers.SETTLED_KINDS: suggestions too, both runs end with the drain's settling pass; profiles once `stream.reorder_wait_s` exceeds the partitions' skew, see
README "What is reproduced exactly" and docs/recovery.md "The exact kinds and their fixes").

Same machinery as test_crash_recovery.py (one partition), on a smaller log to keep the suite's
budget: 200 users × 1 day, one seed, one worker process and two, and restarts that change the
number of processes (the reference ran in one: the exact kinds do not depend on how the work is
spread). The kill point is read from the snapshots of
all four partitions (the sum of their committed offsets); with two processes one is killed and the
other stopped, as a supervisor does.
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from types import SimpleNamespace

import orjson
import pytest
import redis

from scripts.generate import GeneratorConfig, generate
from tests.integration.helpers import (
    RANKED_USER_FIELDS,
    SETTLED_KINDS,
    SNAPSHOT_S,
    assert_same_states,
    assert_same_user_features,
    cleanup,
    compare_runs,
    create_run_topics,
    dead_letters_of_first_line,
    explain,
    key_digests,
    key_kind,
    produce_log,
    run_env,
    run_to_end,
    start_recovering,
    wait_snapshot_offset,
)

PARTITIONS = 4
SEED = 4
# longer than the partitions' skew in a replayed backlog: a like waits for its post from another
# partition instead of being applied unannotated at a wall-clock moment or once its user's later
# events are `reorder_lag_s` of event time past it (0: no event-time bound)
REORDER_WAIT_S = "60"
REORDER_LAG_S = "0"
# Worker state that must come back exactly with 4 partitions too. The followers lists (in arrival
# order), the items' and audiences' float sums (in another order) and a user's recent released
# event ids (`in_order`) keep the order the partitions interleaved in: their Redis outputs are
# canonical and compared above, the states are not
EXACT_STATES = [(step, frozenset()) for step in ("dedup", "similarity", "likers")] + [
    ("users", RANKED_USER_FIELDS | {"in_order"})]


def env_for(live, unique: str, run: str) -> dict[str, str]:
    env = run_env(live, unique, run)
    env["PERSONA_KAFKA__PARTITIONS"] = str(PARTITIONS)
    env["PERSONA_STREAM__REORDER_WAIT_S"] = REORDER_WAIT_S
    env["PERSONA_STREAM__REORDER_LAG_S"] = REORDER_LAG_S
    # 4 partitions × 1000 messages per poll would read this log before the first snapshot
    env["PERSONA_STREAM__KAFKA_BATCH_SIZE"] = "100"
    return env


@pytest.fixture(scope="module")
def reference4(live, tmp_path_factory):
    unique = uuid.uuid4().hex[:10]
    env = env_for(live, unique, "ref")
    settings = create_run_topics(env)
    events, _ = generate(GeneratorConfig(users=200, days=1, seed=23))
    produce_log(settings, events, PARTITIONS)
    started = time.monotonic()
    recovery_dir = tmp_path_factory.mktemp("ref4")
    assert run_to_end(settings, env, recovery_dir) == 0
    client = redis.Redis.from_url(live[1])
    yield SimpleNamespace(unique=unique, digests=key_digests(client, settings.redis.prefix),
                          n_events=len(events), seconds=time.monotonic() - started,
                          prefix=settings.redis.prefix, recovery_dir=recovery_dir)
    cleanup(settings, client)


@pytest.mark.parametrize("processes,restarted", [(1, 1), (2, 2), (1, 2), (2, 1)])
def test_kill_9_with_four_partitions_gives_the_uninterrupted_contents(live, reference4, tmp_path,
                                                                      processes, restarted):
    """(1, 2) and (2, 1): the restart also scales out or in, on the same recovery directory (the
    recovery store's SQLite partitions, made for the first run's workers, are not the workers):
    Bytewax routes each resumed state to the worker that now owns its key, and each Kafka
    partition's offset to the worker that now reads it."""
    unique, expected, n_events = reference4.unique, reference4.digests, reference4.n_events
    env = env_for(live, unique, f"kill{SEED}-{processes}-{restarted}")
    settings = create_run_topics(env)
    client = redis.Redis.from_url(live[1])
    topic = settings.kafka.events_topic
    try:
        procs = start_recovering(settings, env, tmp_path, processes)
        rng = random.Random(SEED + processes)
        fraction = rng.uniform(0.15, 0.5)  # the snapshots trail the input by up to an epoch
        offset = wait_snapshot_offset(tmp_path, procs[0], topic, fraction * n_events)
        time.sleep(rng.uniform(0.0, 0.5) * SNAPSHOT_S)
        assert procs[0].poll() is None, (
            f"the worker finished before its snapshots passed {fraction:.0%} of the topic")
        os.kill(procs[0].pid, signal.SIGKILL)  # one process; a supervisor stops the others
        assert procs[0].wait() == -signal.SIGKILL
        for p in procs[1:]:
            p.kill()
            p.wait()
        assert key_digests(client, settings.redis.prefix), "the kill came before any write"

        assert run_to_end(settings, env, tmp_path, restarted) == 0
        got = key_digests(client, settings.redis.prefix)
        diff = compare_runs(expected, got, SETTLED_KINDS)
        assert diff == {"missing": [], "extra": [], "different": []}, (
            f"killed after snapshots at offset {offset} of {n_events}: "
            f"{ {k: (len(v), v[:5]) for k, v in diff.items()} }\n"
            + explain(client, (f"test-{unique}-ref", settings.redis.prefix), diff))
        assert_same_user_features(client, reference4.prefix, settings.redis.prefix)
        assert_same_states(reference4.recovery_dir, tmp_path, EXACT_STATES)
        exact = sorted({key_kind(k) for k in expected} & SETTLED_KINDS)
        print(f"4 partitions, {processes} process(es), restarted with {restarted}: {len(expected)} keys, exact kinds {exact}; reference run "
              f"{reference4.seconds:.0f} s; killed at offset {offset}/{n_events}")
        assert dead_letters_of_first_line(settings) == 1, (
            "the restarted worker re-read the topic from the beginning instead of resuming")
    finally:
        cleanup(settings, client)


def test_more_partitions_and_processes_resume_where_the_first_run_ended(live, reference4,
                                                                        tmp_path):
    """Scaling out a deployment: the first half of the log on a 2-partition topic, drained by one
    process over a recovery directory; then the topic grows to 4 partitions (as `kafka-topics.sh
    --alter --partitions 4` does), the second half arrives keyed over all four, and two processes
    resume on the same directory. Bytewax lists the topic's partitions at start: the old two
    resume from their snapshots, the new two are read from the beginning. The result is the
    uninterrupted 4-partition run's, and nothing was read twice. It is also a second drained run
    over the same recovery directory, which failed before session 28 whatever the partitions:
    the first run's last pass had read the erasure command topic, its offsets were in the
    snapshots, and the next first pass did not list that topic (flows/kafka_source.py)."""
    from scripts import kafka_io

    unique = reference4.unique
    env = env_for(live, unique, "grown")
    env["PERSONA_KAFKA__EVENTS_TOPIC"] = f"persona.test.{unique}-grown.events"
    settings = create_run_topics(env)
    client = redis.Redis.from_url(live[1])
    events, _ = generate(GeneratorConfig(users=200, days=1, seed=23))  # reference4's log
    half = len(events) // 2
    try:
        produce_log(settings, events[:half], 2)
        assert run_to_end(settings, env, tmp_path, 1) == 0
        bootstrap, topic = settings.kafka.bootstrap, settings.kafka.events_topic
        kafka_io.grow_topic(bootstrap, topic, 4)
        kafka_io.produce(bootstrap, topic, [orjson.dumps(e) for e in events[half:]])
        assert run_to_end(settings, env, tmp_path, 2) == 0

        got = key_digests(client, settings.redis.prefix)
        diff = compare_runs(reference4.digests, got, SETTLED_KINDS)
        assert diff == {"missing": [], "extra": [], "different": []}, (
            f"{ {k: (len(v), v[:5]) for k, v in diff.items()} }\n"
            + explain(client, (f"test-{unique}-ref", settings.redis.prefix), diff))
        assert_same_user_features(client, reference4.prefix, settings.redis.prefix)
        assert dead_letters_of_first_line(settings) == 1, (
            "the resumed workers read the old partitions again from the beginning")
    finally:
        cleanup(settings, client)
