"""Running the production flow in-process (bytewax.testing.run_main) on a small generated log, with
the real Redis sink and feature store: the metrics and inspector tests read what it leaves behind."""

from __future__ import annotations

import orjson
import redis
from bytewax.testing import TestingSink, TestingSource, run_main

import config
from flows.feeds import build_flow
from operators.redis_store import delete_matching
from scripts.generate import GeneratorConfig, generate, malformed_lines

# generator's malformed kinds → schemas.rejections reason kinds
MALFORMED_TO_KIND = {"bad_json": "invalid_json", "missing_field": "missing_field",
                     "wrong_type": "wrong_type", "unknown_type": "unknown_type",
                     "oversized": "too_large", "absurd_ts": "bad_ts"}


def generated_log(users: int = 50, days: float = 2.0, seed: int = 11, bad: int = 24,
                  duplicates: int = 7):
    """(payloads, good events, [(bad payload, kind)], duplicate count): valid events interleaved
    with malformed ones and a few repeated event ids."""
    events, _ = generate(GeneratorConfig(users=users, days=days, seed=seed))
    good = [orjson.dumps(e) for e in events]
    malformed = malformed_lines(bad, seed=seed)
    payloads = list(good)
    for i, (raw, _kind) in enumerate(malformed):
        payloads.insert((i * 97) % len(payloads), raw)
    payloads += good[100:100 + duplicates]  # repeats of seen event ids
    return payloads, events, malformed, duplicates


def run_inprocess(settings, payloads: list[bytes]) -> list:
    """The whole flow, one worker, writing to Redis under settings.redis.prefix; dead letters."""
    dead: list = []
    run_main(build_flow(settings, source=TestingSource(payloads), dead_letters=TestingSink(dead)))
    return dead


def settings_for(live, prefix: str, **env):
    return config.load(env={"KAFKA_BOOTSTRAP": live[0], "REDIS_URL": live[1],
                            "PERSONA_REDIS__PREFIX": prefix, **env})


def cleanup(client: redis.Redis, prefix: str) -> None:
    delete_matching(client, f"{prefix}:*")
