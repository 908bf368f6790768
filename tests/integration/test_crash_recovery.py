"""kill -9 of the streaming worker mid-stream, restarted on its recovery directory: the final Redis
contents equal an uninterrupted run's (real Kafka and Redis, one partition, one worker process).

What is compared (helpers.SETTLED_KINDS, README "Operating and recovery"): every key must exist in
both runs; item features, trending and fresh indices, graph records, group members, likers, popular
users, profiles, item neighbours and — both runs drain over a recovery directory and end with the
settling pass (`runner.drain`) — suggestions must be byte-identical, and so must every user's
features but their residual model (`user_features_but_model`). Inside the workers, the states at
the last snapshot must be equal too (`differing_states`: Bytewax's recovery store, compared by
content): dedup shards, items, followers lists, item neighbours, notification audiences, likers
and every user's state but what a rank sets (`RANKED_USER_FIELDS`), the count of events applied included.
These are the exact checks that no state was lost or applied twice. Feeds, notification
inboxes, the residual models and the global models are not compared byte for byte: they depend
on wall-clock rank timers and on models learned in arrival order, and differ between two
uninterrupted runs as well. Feeds are compared by their top 10: the restarted run's must hold at
least `MIN_TOP_OVERLAP` of the uninterrupted run's on average over the users.

No doubling: the topic starts with a malformed line. Its dead letter is produced once by the killed
run; a restart that re-read the topic from the beginning would produce it again.
"""

from __future__ import annotations

import os
import random
import signal
import time
from types import SimpleNamespace

import pytest

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
    feeds,
    key_digests,
    produce_log,
    run_env,
    run_to_end,
    start_recovering,
    top_overlap,
    wait_snapshot_offset,
)

SEEDS = (1, 2, 3)
# Measured in session 23 (docs/recovery.md, "User features, worker state, and feeds after a
# restart"): two uninterrupted runs share 94.6–96.7% of their top 10s, a restarted run 89.6–95.1%
# (30 runs; 89.8% failed CI once against the bound of 0.9 then), and a restart whose users step
# lost all its state 43–67%. The exact checks above catch a smaller loss (one epoch of 20 users'
# state: feeds still at 92%); this bound catches a ranking that goes cold.
MIN_TOP_OVERLAP = 0.85
# Worker state (the steps' states at the last snapshot) that must come back exactly too: the steps
# whose state is a function of their input in order, and each user's state but what a rank sets
EXACT_STATES = [(step, frozenset()) for step in ("dedup", "items", "followers", "similarity",
                                                 "notif_audience", "likers")
                ] + [("users", RANKED_USER_FIELDS)]


@pytest.fixture(scope="module")
def reference(live, tmp_path_factory):
    import uuid

    import redis

    unique = uuid.uuid4().hex[:10]
    env = run_env(live, unique, "ref")
    settings = create_run_topics(env)
    events, _ = generate(GeneratorConfig(users=200, days=1, seed=17))
    produce_log(settings, events, 1)
    recovery_dir = tmp_path_factory.mktemp("ref")
    assert run_to_end(settings, env, recovery_dir) == 0
    client = redis.Redis.from_url(live[1])
    yield SimpleNamespace(
        unique=unique, n_events=len(events), recovery_dir=recovery_dir,
        digests=key_digests(client, settings.redis.prefix), feeds=feeds(settings, client),
        prefix=settings.redis.prefix)
    cleanup(settings, client)


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_and_restart_gives_the_uninterrupted_contents(live, reference, seed, tmp_path):
    import redis

    n_events = reference.n_events
    env = run_env(live, reference.unique, f"kill{seed}")
    settings = create_run_topics(env)
    client = redis.Redis.from_url(live[1])
    try:
        procs = start_recovering(settings, env, tmp_path)
        # a seeded random point: once the Kafka offset in a committed snapshot has passed that
        # fraction of the topic, plus a random part of an epoch (not on a snapshot boundary)
        rng = random.Random(seed)
        fraction = rng.uniform(0.1, 0.5)
        offset = wait_snapshot_offset(tmp_path, procs[0], settings.kafka.events_topic,
                                      fraction * n_events)
        time.sleep(rng.uniform(0.0, 0.5) * SNAPSHOT_S)
        assert procs[0].poll() is None, (
            f"the worker finished before its snapshots passed {fraction:.0%} of the topic")
        os.kill(procs[0].pid, signal.SIGKILL)
        assert procs[0].wait() == -signal.SIGKILL
        partial = key_digests(client, settings.redis.prefix)
        assert partial, "the killed run wrote nothing: the kill came too early to test anything"

        assert run_to_end(settings, env, tmp_path) == 0
        got = key_digests(client, settings.redis.prefix)
        diff = compare_runs(reference.digests, got, SETTLED_KINDS)
        assert diff == {"missing": [], "extra": [], "different": []}, (
            f"seed {seed}, killed after a snapshot at offset {offset} of {n_events}: "
            f"{ {k: (len(v), v[:5]) for k, v in diff.items()} }")
        assert_same_user_features(client, reference.prefix, settings.redis.prefix,
                                  f"seed {seed}: ")
        assert_same_states(reference.recovery_dir, tmp_path, EXACT_STATES, f"seed {seed}: ")
        overlap = top_overlap(reference.feeds, feeds(settings, client))
        print(f"seed {seed}: feeds' top 10 in the uninterrupted run's: {overlap:.1%}")
        assert overlap >= MIN_TOP_OVERLAP, (
            f"seed {seed}: the restarted run's feeds hold {overlap:.1%} of the uninterrupted "
            f"run's top 10 (two uninterrupted runs: 95-97%): the restarted feeds went cold")
        assert dead_letters_of_first_line(settings) == 1, (
            "the restarted worker re-read the topic from the beginning instead of resuming")
    finally:
        cleanup(settings, client)
