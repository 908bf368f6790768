"""Backfills into a new keyspace version: deterministic bytes, the social keys, experiment arm
totals and user features a drained streaming run writes, and readers that follow the switch
without errors or mixed versions."""

from __future__ import annotations

import hashlib
import threading
import time

import orjson
import pytest

import config
from reader import PersonaClient
from scripts.generate import GeneratorConfig, generate, write_log
from scripts.replay import replay
from tests.integration.helpers import (
    cleanup,
    create_run_topics,
    differing_users,
    key_digests,
    produce_log,
    run_env,
    run_to_end,
    user_features_but_model,
)
from tests.unit.test_experiments import EXPERIMENT

LOG = GeneratorConfig(users=80, days=2, seed=21)
# what social discovery writes (operators/suggestions), the deleted users' version counter too
# (one INCR per change of their set: README, "What is reproduced exactly")
SOCIAL_KINDS = frozenset({"graph", "suggestions", "gmembers", "likers", "popular_users",
                          "deleted_users", "deleted_version"})


def social_keys(digests: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in digests.items() if k.split(":")[0] in SOCIAL_KINDS}


def experiment_keys(digests: dict[str, str]) -> dict[str, str]:
    """The arms' totals and the set naming them (exact: operators/experiments/counts.py)."""
    return {k: v for k, v in digests.items() if k.split(":")[0] in ("exp", "experiments")}


@pytest.fixture
def log_file(tmp_path):
    events, truth = generate(LOG)
    path = tmp_path / "log.jsonl"
    write_log(path, events, truth)
    return path


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "experiment.toml"
    path.write_text(EXPERIMENT.format(enabled="true"))  # the replay and the workers count it
    return path


def dump(client, prefix: str, version: str) -> str:
    """sha256 over every key (version-normalised) and value of one keyspace version."""
    h = hashlib.sha256()
    for key, digest in sorted(key_digests(client, prefix, version).items()):
        h.update(f"{key}\0{digest}\0".encode())
    return h.hexdigest()


def test_replaying_a_log_twice_writes_identical_bytes(live, redis_client, unique, log_file,
                                                      experiment):
    settings = config.load(experiment, env={"REDIS_URL": live[1],
                                            "PERSONA_REDIS__PREFIX": f"test-{unique}"})
    try:
        first = replay(settings, [log_file])
        second = replay(settings, [log_file])
        assert first["version"] != second["version"] and second["previous"] == first["version"]
        assert first["writes"] > 100
        assert dump(redis_client, f"test-{unique}", first["version"]) == \
            dump(redis_client, f"test-{unique}", second["version"])
        written = key_digests(redis_client, f"test-{unique}", first["version"])
        kinds = {k.split(":")[0] for k in social_keys(written)}
        assert kinds == SOCIAL_KINDS, f"the replay wrote no {SOCIAL_KINDS - kinds}"
        assert "model:notif" in written and any(k.startswith("notifs:") for k in written)
        # what search re-ranking and the experiment report read: every fed user's features, the
        # blend weight, the arms' totals
        assert {k.split(":", 1)[1] for k in written if k.startswith("ufeat:")} == \
            {k.split(":", 1)[1] for k in written if k.startswith("feed:")}
        assert "model:search_blend" in written
        assert set(experiment_keys(written)) == {"exp:size:control", "exp:size:small",
                                                 "experiments"}
    finally:
        for key in redis_client.scan_iter(f"test-{unique}:*"):
            redis_client.delete(key)


def test_a_replay_writes_the_social_keys_of_a_drained_run(live, redis_client, unique, log_file,
                                                         tmp_path, experiment):
    """The same log drained by the streaming workers (`persona run --until-drained
    --recovery-dir`: erasure passes, then the settling pass that computes every user's suggestions
    from everyone's final records) and replayed: the same social keys and experiment arm totals,
    byte for byte, and the same user features but for their residual model (learned from feeds
    ranked on wall-clock timers)."""
    env = run_env(live, unique, "flow")
    settings = create_run_topics(env)
    replayed = config.load(experiment, env={"REDIS_URL": live[1],
                                            "PERSONA_REDIS__PREFIX": f"test-{unique}"})
    try:
        events, _ = generate(LOG)
        produce_log(settings, events, 1)
        assert run_to_end(settings, env, tmp_path / "recovery", config_path=str(experiment)) == 0
        prefix = settings.redis.prefix
        flow_version = redis_client.get(f"{prefix}:active").decode()
        flow_all = key_digests(redis_client, prefix, flow_version)
        flow = social_keys(flow_all)
        version = replay(replayed, [log_file])["version"]
        got_all = key_digests(redis_client, f"test-{unique}", version)
        got = social_keys(got_all)
        assert {k.split(":")[0] for k in flow} == SOCIAL_KINDS
        assert sum(k.startswith("suggestions:") for k in flow) > 70  # of 80 users
        assert sorted(set(flow) ^ set(got)) == []
        assert sorted(k for k in flow if flow[k] != got[k]) == []
        assert experiment_keys(got_all) == experiment_keys(flow_all) != {}

        flow_features = user_features_but_model(redis_client, prefix, flow_version)
        assert len(flow_features) > 70
        assert differing_users(flow_features, user_features_but_model(
            redis_client, f"test-{unique}", version)) == []
    finally:
        cleanup(settings, redis_client)
        cleanup(replayed, redis_client)


def test_readers_follow_the_switch_without_errors_or_mixing(live, redis_client, unique, log_file):
    prefix = f"test-{unique}"
    settings = config.load(env={"REDIS_URL": live[1], "PERSONA_REDIS__PREFIX": prefix})
    base = replay(settings, [log_file])
    feeds = {k: orjson.loads(redis_client.get(k))
             for k in redis_client.scan_iter(f"{prefix}:v{base['version']}:feed:*")}
    user = max(feeds.values(), key=lambda f: (len(f["items"]), f["user_id"]))["user_id"]
    reader = PersonaClient(redis_client, prefix)
    errors: list[Exception] = []
    seen: list[tuple[str, tuple]] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                page = reader.feed(user, limit=50)
                seen.append((page.version, tuple(i["post_id"] for i in page.items)))
            except Exception as exc:  # noqa: BLE001 - any error is a failure here
                errors.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        second = replay(config.load(env={"REDIS_URL": live[1], "PERSONA_REDIS__PREFIX": prefix,
                                         "PERSONA_FEED__SIZE": "20"}), [log_file])
        time.sleep(1.0)  # past the reader's pointer cache
        expected = {
            v: tuple(i["post_id"] for i in orjson.loads(redis_client.get(
                f"{prefix}:v{v}:feed:{{{user}}}"))["items"][:50])
            for v in (base["version"], second["version"])}
    finally:
        stop.set()
        thread.join()
        for key in redis_client.scan_iter(f"{prefix}:*"):
            redis_client.delete(key)
    assert not errors
    versions = {v for v, _ in seen}
    assert versions == {base["version"], second["version"]}
    assert expected[base["version"]] != expected[second["version"]]
    # each response is one whole value of the version it names, never a mix
    assert all(items == expected[v] for v, items in seen)
