"""Backfills into a new keyspace version: deterministic bytes, and readers that follow the switch
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


@pytest.fixture
def log_file(tmp_path):
    events, truth = generate(GeneratorConfig(users=80, days=2, seed=21))
    path = tmp_path / "log.jsonl"
    write_log(path, events, truth)
    return path


def dump(client, prefix: str, version: str) -> str:
    """sha256 over every key (version-normalised) and value of one keyspace version."""
    base = f"{prefix}:v{version}:"
    h = hashlib.sha256()
    for key in sorted(client.scan_iter(f"{base}*", count=1000)):
        kind = client.type(key).decode()
        value = (client.get(key) if kind == "string"
                 else orjson.dumps(client.zrange(key, 0, -1, withscores=True), default=bytes.hex))
        h.update(key[len(base):] + b"\0" + value + b"\0")
    return h.hexdigest()


def test_replaying_a_log_twice_writes_identical_bytes(live, redis_client, unique, log_file):
    settings = config.load(env={"REDIS_URL": live[1], "PERSONA_REDIS__PREFIX": f"test-{unique}"})
    try:
        first = replay(settings, [log_file])
        second = replay(settings, [log_file])
        assert first["version"] != second["version"] and second["previous"] == first["version"]
        assert first["writes"] > 100
        assert dump(redis_client, f"test-{unique}", first["version"]) == \
            dump(redis_client, f"test-{unique}", second["version"])
    finally:
        for key in redis_client.scan_iter(f"test-{unique}:*"):
            redis_client.delete(key)


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
