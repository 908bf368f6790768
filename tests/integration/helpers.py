"""Running the real pipeline for integration tests: produce a log, run the workers until drained."""

from __future__ import annotations

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


def run_pipeline(env: dict[str, str], lines: list[bytes], processes: int = 1,
                 config_path: str | None = None):
    """Produce `lines` to a fresh topic and run the Bytewax workers until the topic is drained
    (with `config_path` layered over the defaults, e.g. an experiment)."""
    settings = config.load(config_path, env=env)
    for topic in (settings.kafka.events_topic, settings.kafka.dead_letter_topic):
        kafka_io.recreate_topic(settings.kafka.bootstrap, topic, settings.kafka.partitions)
    kafka_io.produce(settings.kafka.bootstrap, settings.kafka.events_topic, lines)
    code = runner.run(settings, config_path, processes=processes, tail=False, env_extra=env,
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
