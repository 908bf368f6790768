"""`persona dead-letters`: what the workers rejected, and re-driving it once it can be read.

A dead letter (schemas.codec.DeadLetter) holds the rejected payload, the reason and where it came
from. `summary` counts the dead-letter topic's letters by reason kind (schemas.rejections).
`redrive` produces the payloads that today's decoder accepts back to the events topic, keyed by
user as `persona produce` does, in event-time order (the dead-letter topic has no key, so a user's
letters may sit in several partitions): after a fix, an upgrade that reads a new type or schema
version, a raised limit, a producer's clock put right. What it still rejects stays where it is
and is counted by its reason now. Repeats (`duplicate`) are not re-driven unless asked for by
kind: they were dropped on purpose. The workers deduplicate by event id (within
`stream.dedup_capacity`), so a letter re-driven twice is applied once while its first copy is in
that window; `--from-timestamp` (the letters' Kafka time) starts a later redrive where the last
one ended.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import orjson

from config import Settings
from config.security import kafka_config
from operators.ingest import decode_message, limits_from
from schemas import Event
from schemas.rejections import REASON_KINDS, reason_kind
from scripts import kafka_io

NOT_REDRIVEN = frozenset({"duplicate"})  # by default


def payload(letter: dict) -> bytes:
    """The rejected payload of a decoded dead letter: its hex copy when it was not UTF-8."""
    if letter.get("raw_hex"):
        return bytes.fromhex(letter["raw_hex"])
    return str(letter.get("raw", "")).encode()


def letters(settings: Settings, from_ts_ms: int | None = None) -> Iterator[dict | None]:
    """The dead-letter topic's letters (from `from_ts_ms`, Kafka time), decoded; None for a
    record that is not a dead letter."""
    extra = kafka_config(settings.kafka)
    rng = kafka_io.topic_range(settings.kafka.bootstrap, settings.kafka.dead_letter_topic,
                               from_ts_ms=from_ts_ms, timeout_s=settings.kafka.connect_timeout_s,
                               extra=extra)
    for partition in sorted(rng.start):
        for value in kafka_io.read_partition(settings.kafka.bootstrap, rng, partition,
                                             extra=extra):
            try:
                letter = orjson.loads(value)
            except orjson.JSONDecodeError:
                letter = None
            yield letter if isinstance(letter, dict) and "reason" in letter else None


def sort_letters(found: Iterable[dict | None], settings: Settings,
                 kinds: frozenset[str]) -> tuple[list[tuple[Event, bytes]], dict]:
    """Which letters to re-drive: those of `kinds` that today's decoder accepts, as (event,
    payload) in event-time order; and the counts: letters by kind, re-drivable, still rejected
    by their reason kind now, skipped (another kind), unreadable records."""
    limits = limits_from(settings)
    accepted: list[tuple[Event, bytes]] = []
    by_kind, still, skipped = Counter(), Counter(), Counter()
    unreadable = 0
    for letter in found:
        if letter is None:
            unreadable += 1
            continue
        kind = reason_kind(letter["reason"])
        by_kind[kind] += 1
        if kind not in kinds:
            skipped[kind] += 1
            continue
        raw = payload(letter)
        decoded = decode_message(raw, limits, settings.stream.max_future_skew_ms)
        if isinstance(decoded, Event):
            accepted.append((decoded, raw))
        else:
            still[reason_kind(decoded.reason)] += 1
    accepted.sort(key=lambda pair: (pair[0].ts, pair[0].event_id))
    return accepted, {"letters": sum(by_kind.values()), "by_kind": dict(by_kind.most_common()),
                      "redrivable": len(accepted), "still_rejected": dict(still.most_common()),
                      "skipped": dict(skipped.most_common()), "unreadable": unreadable}


def redrive(settings: Settings, kinds: Iterable[str] | None = None,
            from_ts_ms: int | None = None, dry_run: bool = False,
            log: Callable[[str], object] = print) -> dict:
    """Produce the dead letters of `kinds` (default: every kind but a repeat) that decode now to
    the events topic; the counts of `sort_letters`, and `produced`."""
    wanted = frozenset(kinds) if kinds else frozenset(REASON_KINDS) - NOT_REDRIVEN
    unknown = wanted - set(REASON_KINDS)
    if unknown:
        raise ValueError(f"unknown reason kind(s) {sorted(unknown)}: one of {list(REASON_KINDS)}")
    accepted, report = sort_letters(letters(settings, from_ts_ms), settings, wanted)
    log(f"{report['letters']:,} dead letters read from {settings.kafka.dead_letter_topic}; "
        f"{report['redrivable']:,} decode now")
    produced = 0
    if accepted and not dry_run:
        produced = kafka_io.produce(settings.kafka.bootstrap, settings.kafka.events_topic,
                                    (raw for _event, raw in accepted),
                                    extra=kafka_config(settings.kafka))
        log(f"produced {produced:,} to {settings.kafka.events_topic}")
    return {**report, "produced": produced, "dry_run": dry_run}
