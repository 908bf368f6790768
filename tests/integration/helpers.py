"""Running the real pipeline for integration tests: produce a log, run the workers until drained."""

from __future__ import annotations

import hashlib

import orjson
import redis

import config
from scripts import kafka_io, runner


def isolated_env(live, unique: str) -> dict[str, str]:
    bootstrap, url = live
    return {
        "KAFKA_BOOTSTRAP": bootstrap,
        "REDIS_URL": url,
        "PERSONA_KAFKA__EVENTS_TOPIC": f"persona.test.{unique}.events",
        "PERSONA_KAFKA__DEAD_LETTER_TOPIC": f"persona.test.{unique}.dead",
        "PERSONA_REDIS__PREFIX": f"test-{unique}",
    }


def run_pipeline(env: dict[str, str], lines: list[bytes], processes: int = 1):
    """Produce `lines` to a fresh topic and run the Bytewax workers until the topic is drained."""
    settings = config.load(env=env)
    for topic in (settings.kafka.events_topic, settings.kafka.dead_letter_topic):
        kafka_io.recreate_topic(settings.kafka.bootstrap, topic, settings.kafka.partitions)
    kafka_io.produce(settings.kafka.bootstrap, settings.kafka.events_topic, lines)
    code = runner.run(settings, None, processes=processes, tail=False, env_extra=env,
                      log=lambda m: None)
    assert code == 0, f"workers exited with {code}"
    return settings


def feeds(settings, client: redis.Redis) -> dict[str, dict]:
    version = client.get(f"{settings.redis.prefix}:active").decode()
    pattern = f"{settings.redis.prefix}:v{version}:feed:*"
    out = {}
    for key in client.scan_iter(pattern, count=1000):
        value = orjson.loads(client.get(key))
        out[value["user_id"]] = value
    return out


def cleanup(settings, client: redis.Redis) -> None:
    for key in client.scan_iter(f"{settings.redis.prefix}:*", count=1000):
        client.delete(key)


# Kinds of keys (the segment after the version) whose bytes the streaming flow reproduces exactly
# for a given input however it is batched, restarted or delayed. The others depend on the order in
# which Bytewax delivers events across keys and on wall-clock timers (README, "Operating and
# recovery": feeds, ufeat, suggestions, notifs, nbrs, model:global, model:notif).
EXACT_KINDS = frozenset({"item", "trending", "fresh", "graph", "gmembers", "likers",
                         "popular_users", "profile"})


def key_kind(key: str) -> str:
    """'v3:item:{p1}' → 'item'; 'v3:model:global' → 'model:global'; 'active' → 'active'."""
    parts = key.split(":")
    if len(parts) < 2:
        return key
    return ":".join(parts[1:3]) if parts[1] == "model" else parts[1]


def value_bytes(client: redis.Redis, key: bytes) -> bytes:
    kind = client.type(key).decode()
    if kind == "string":
        return client.get(key)
    if kind == "zset":
        return orjson.dumps(client.zrange(key, 0, -1, withscores=True), default=bytes.hex)
    if kind == "set":
        return b"\0".join(sorted(client.smembers(key)))
    raise ValueError(f"unexpected Redis type {kind} at {key!r}")


def key_digests(client: redis.Redis, prefix: str, version: str | None = None) -> dict[str, str]:
    """sha256 of the value of every key under `prefix` (of one keyspace version when given), by
    key with the prefix and version stripped, so two prefixes or versions compare directly."""
    base = f"{prefix}:v{version}:" if version is not None else f"{prefix}:"
    out = {}
    for key in client.scan_iter(f"{base}*", count=1000):
        name = key.decode()[len(base):]
        if version is None and name.startswith("v"):
            name = "v*:" + name.split(":", 1)[1] if ":" in name else name
        out[name] = hashlib.sha256(value_bytes(client, key)).hexdigest()
    return out


def compare_runs(reference: dict[str, str], other: dict[str, str]) -> dict[str, list[str]]:
    """Keys that differ: {"missing": …, "extra": …, "different": exact-kind keys whose bytes
    differ}. Every key must exist in both; exact kinds must be byte-identical."""
    return {
        "missing": sorted(set(reference) - set(other)),
        "extra": sorted(set(other) - set(reference)),
        "different": sorted(k for k in set(reference) & set(other)
                            if key_kind(k) in EXACT_KINDS
                            and reference[k] != other[k]),
    }
