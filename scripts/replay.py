"""`persona replay`: rebuild the Redis contents from event logs into a new keyspace version, then
switch readers to it atomically.

The log (files, or a range of a Kafka topic: `kafka_io.topic_range`) runs through the production operators in event time at full speed (`operators.engine`), and
the resulting state is written with the workers' own writer (`RedisWriter`), so the new version holds
exactly what the streaming workers would have written after consuming the same events. Live workers
may keep consuming meanwhile: they write to the version they started with until restarted.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from config import Settings
from config.security import kafka_config
from operators.backfill import final_writes
from operators.engine import Engine
from operators.evaluation import ReadStats, read_events
from operators.redis_store import RedisWriter, connect_to
from schemas import Event
from schemas.codec import decode_event
from schemas.keyspace import Keyspace
from scripts import kafka_io
from scripts.versions import Versions

BATCH = 2000


def log_files(paths: Iterable[Path]) -> list[Path]:
    """Files of the given paths; directories expand to their *.jsonl / *.jsonl.gz, sorted."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz")))
        elif path.exists():
            out.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist")
    return out


def parse_offsets(text: str) -> dict[int, int]:
    """'0:120,1:98' → {0: 120, 1: 98} (partition:offset pairs)."""
    out: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        partition, sep, offset = part.partition(":")
        if not sep or not partition.strip().isdigit() or not offset.strip().isdigit():
            raise ValueError(f"bad partition:offset {part!r}: expected e.g. 0:120,1:98")
        if int(partition) in out:
            raise ValueError(f"partition {int(partition)} named twice in {text!r}")
        out[int(partition)] = int(offset)
    if not out:
        raise ValueError("no partition:offset given: expected e.g. 0:120,1:98")
    return out


def parse_timestamp_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time ('2026-11-28T10:00:00Z'; no zone = UTC)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad timestamp {text!r}: expected epoch ms or ISO 8601 such as "
                         "2026-11-28T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def topic_events(settings: Settings, rng: kafka_io.TopicRange, stats: ReadStats) -> Iterator[Event]:
    """The range's events, partitions merged in event time (ties: partition, then offset order):
    the same range gives the same order, so the same bytes, however the broker interleaves."""
    stats.path, stats.format = f"kafka:{rng.topic}", "kafka"
    extra = kafka_config(settings.kafka)

    def decoded(partition: int) -> Iterator[Event]:
        for raw in kafka_io.read_partition(settings.kafka.bootstrap, rng, partition, extra=extra):
            stats.lines += 1
            event, reason = decode_event(raw)
            if event is None:
                stats.reject(f"{rng.topic}[{partition}]: {reason}")
                continue
            stats.events += 1
            yield event

    return heapq.merge(*(decoded(p) for p in sorted(rng.end)), key=lambda e: e.ts)


def _file_input(paths: list[Path], stats: ReadStats):
    """(files, events, files done so far): progress in files."""
    files = log_files(paths)
    finished = [0]

    def events() -> Iterator[Event]:
        for path in files:
            yield from read_events(path, stats)
            finished[0] += 1

    return len(files), events(), lambda: finished[0]


def _topic_input(settings: Settings, rng: kafka_io.TopicRange, stats: ReadStats):
    """(messages, events, messages read so far): progress in messages."""
    return rng.messages, topic_events(settings, rng, stats), lambda: stats.lines


def replay(settings: Settings, paths: list[Path] | None = None, *,
           topic: kafka_io.TopicRange | None = None, switch: bool = True, grace_s: float = 60.0,
           console: Console | None = None) -> dict:
    """Replay log files (`paths`) or a range of a Kafka topic into a new version; switch to it
    unless `switch` is False or nothing was read."""
    console = console or Console()
    client = connect_to(settings.redis)
    versions = Versions(client, settings.redis.prefix)
    removed = versions.collect(grace_s)
    version = versions.allocate()
    engine = Engine(settings, social=True, notifications=True, search=True, experiments=True)
    stats = ReadStats()
    t0 = time.time()
    n = 0
    total, events, done = (_topic_input(settings, topic, stats) if topic is not None
                           else _file_input(paths or [], stats))
    with Progress(TextColumn("replaying"), BarColumn(), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("replay", total=total or 1, rate="")
        for event in events:
            engine.learn_one(event)
            n += 1
            if n % 5000 == 0:
                bar.update(task, completed=done(),
                           rate=f"{n:,} events · {n / (time.time() - t0):,.0f}/s")
        bar.update(task, completed=total or 1)
    learn_s = time.time() - t0
    if n == 0 and switch:  # an empty version would blank every reader's feed
        console.print("[yellow]no events in the input: the new version is left inactive "
                      "(nothing switched)[/yellow]")
        switch = False
    writer = RedisWriter(client, Keyspace(settings.redis.prefix, version),
                         outage_timeout_s=settings.redis.outage_timeout_s,
                         wait_replicas=settings.redis.wait_replicas)
    written, batch = 0, []
    for record in final_writes(engine):
        batch.append(record)
        if len(batch) >= BATCH:
            written += writer.write_batch(batch)
            batch.clear()
    written += writer.write_batch(batch)
    previous = versions.switch(version) if switch else None
    summary = {"version": version, "previous": previous, "events": n, "invalid": stats.invalid,
               "users": len(engine.users), "items": len(engine.items), "writes": written,
               "learn_s": round(learn_s, 1), "total_s": round(time.time() - t0, 1),
               "switched": switch, "collected_versions": removed,
               ("messages" if topic is not None else "files"): total}
    console.print(f"replayed {n:,} events ({stats.invalid} invalid) in {learn_s:.1f}s; wrote "
                  f"{written:,} records to version {version}"
                  + (f"; active version {previous} → {version}" if switch else " (not switched)"))
    return summary
