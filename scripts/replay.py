"""`persona replay`: rebuild the Redis contents from event logs into a new keyspace version, then
switch readers to it atomically.

The log runs through the production operators in event time at full speed (`operators.engine`), and
the resulting state is written with the workers' own writer (`RedisWriter`), so the new version holds
exactly what the streaming workers would have written after consuming the same events. Live workers
may keep consuming meanwhile: they write to the version they started with until restarted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from config import Settings
from config.security import redis_connection
from operators.backfill import final_writes
from operators.engine import Engine
from operators.evaluation import ReadStats, read_events
from operators.redis_store import RedisWriter, connect
from schemas import Event
from schemas.keyspace import Keyspace
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


def events_of(files: list[Path], stats: ReadStats) -> Iterable[Event]:
    for path in files:
        yield from read_events(path, stats)


def replay(settings: Settings, paths: list[Path], *, switch: bool = True, grace_s: float = 60.0,
           console: Console | None = None) -> dict:
    console = console or Console()
    url, options = redis_connection(settings.redis)  # ACL user, password, TLS from [redis]
    client = connect(url, **options)
    versions = Versions(client, settings.redis.prefix)
    removed = versions.collect(grace_s)
    version = versions.allocate()
    files = log_files(paths)
    total = sum(p.stat().st_size for p in files)
    engine = Engine(settings)
    stats = ReadStats()
    t0 = time.time()
    n = 0
    with Progress(TextColumn("replaying"), BarColumn(), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("replay", total=len(files) or 1, rate="")
        for done_files, path in enumerate(files, 1):
            for event in read_events(path, stats):
                engine.learn_one(event)
                n += 1
                if n % 5000 == 0:
                    bar.update(task, rate=f"{n:,} events · {n / (time.time() - t0):,.0f}/s")
            bar.update(task, completed=done_files)
    learn_s = time.time() - t0
    writer = RedisWriter(client, Keyspace(settings.redis.prefix, version),
                         retries=settings.redis.write_retries)
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
               "switched": switch, "collected_versions": removed, "bytes_read": total}
    console.print(f"replayed {n:,} events ({stats.invalid} invalid) in {learn_s:.1f}s; wrote "
                  f"{written:,} records to version {version}"
                  + (f"; active version {previous} → {version}" if switch else " (not switched)"))
    return summary
