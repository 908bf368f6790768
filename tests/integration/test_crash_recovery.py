"""kill -9 of the streaming worker mid-stream, restarted on its recovery directory: the final Redis
contents equal an uninterrupted run's (real Kafka and Redis, one partition, one worker process).

What is compared (helpers.SETTLED_KINDS, README "Operating and recovery"): every key must exist in
both runs; item features, trending and fresh indices, graph records, group members, likers, popular
users, profiles, item neighbours and — both runs drain over a recovery directory and end with the
settling pass (`runner.drain`) — suggestions must be byte-identical, and so must every user's
features but their residual model (`user_features_but_model`): the exact check that no user
state was lost or applied twice. Feeds, notification inboxes, the residual models and the global
models are not compared byte for byte: they depend on wall-clock rank timers and on models
learned in arrival order, and differ between two uninterrupted runs as well. Feeds are compared
by their top 10: the restarted run's must hold at least `MIN_TOP_OVERLAP` of the uninterrupted
run's on average over the users.

No doubling: the topic starts with a malformed line. Its dead letter is produced once by the killed
run; a restart that re-read the topic from the beginning would produce it again.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from scripts.generate import GeneratorConfig, generate
from tests.integration.helpers import (
    SETTLED_KINDS,
    SNAPSHOT_S,
    cleanup,
    compare_runs,
    create_run_topics,
    dead_letters_of_first_line,
    differing_users,
    feeds,
    key_digests,
    produce_log,
    run_env,
    run_to_end,
    start_recovering,
    top_overlap,
    user_features_but_model,
    wait_snapshot_offset,
)

SEEDS = (1, 2, 3)
# Measured in session 23 (docs/recovery.md, "Feeds after a restart"): two uninterrupted runs
# share 94.6–96.7% of their top 10s, a restarted run 91.4–95.1% (89.8% once in CI, against the
# bound of 0.9 then), and a restart whose users step lost all its state 43–67%. The user features
# above catch a smaller loss exactly; this bound catches a ranking that goes cold.
MIN_TOP_OVERLAP = 0.85


@pytest.fixture(scope="module")
def reference(live, tmp_path_factory):
    import uuid

    import redis

    unique = uuid.uuid4().hex[:10]
    env = run_env(live, unique, "ref")
    settings = create_run_topics(env)
    events, _ = generate(GeneratorConfig(users=200, days=1, seed=17))
    produce_log(settings, events, 1)
    assert run_to_end(settings, env, tmp_path_factory.mktemp("ref")) == 0
    client = redis.Redis.from_url(live[1])
    digests = key_digests(client, settings.redis.prefix)
    yield unique, digests, len(events), feeds(settings, client), user_features_but_model(
        client, settings.redis.prefix)
    cleanup(settings, client)


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_and_restart_gives_the_uninterrupted_contents(live, reference, seed, tmp_path):
    import redis

    unique, expected, n_events, expected_feeds, expected_users = reference
    env = run_env(live, unique, f"kill{seed}")
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
        diff = compare_runs(expected, got, SETTLED_KINDS)
        assert diff == {"missing": [], "extra": [], "different": []}, (
            f"seed {seed}, killed after a snapshot at offset {offset} of {n_events}: "
            f"{ {k: (len(v), v[:5]) for k, v in diff.items()} }")
        users = user_features_but_model(client, settings.redis.prefix)
        lost = differing_users(expected_users, users)
        assert not lost, (
            f"seed {seed}: {len(lost)} users' features (but the residual model) differ from the "
            f"uninterrupted run's, e.g. {lost[:5]}: user state was lost or applied twice")
        overlap = top_overlap(expected_feeds, feeds(settings, client))
        print(f"seed {seed}: feeds' top 10 in the uninterrupted run's: {overlap:.1%}")
        assert overlap >= MIN_TOP_OVERLAP, (
            f"seed {seed}: the restarted run's feeds hold {overlap:.1%} of the uninterrupted "
            f"run's top 10 (two uninterrupted runs: 95-97%): the restarted feeds went cold")
        assert dead_letters_of_first_line(settings) == 1, (
            "the restarted worker re-read the topic from the beginning instead of resuming")
    finally:
        cleanup(settings, client)
