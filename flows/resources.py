"""Per-process clients for the flow (built lazily, never pickled into state or snapshots)."""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from config import Settings
from config.security import kafka_config
from config.settings import RedisSettings
from operators import backlog
from operators.redis_store import KeyspaceGuard, RedisFeatureStore, RedisWriter, connect_to
from operators.suggestions.store import GRAPH_KINDS
from schemas.keyspace import Keyspace

DEFAULT_VERSION = "1"


@cache
def client(rs: RedisSettings) -> redis.Redis:
    return connect_to(rs)


def active_version(settings: Settings) -> str:
    """The active keyspace version; initialised to "1" on a fresh Redis."""
    r = client(settings.redis)
    key = Keyspace(settings.redis.prefix, DEFAULT_VERSION).active
    r.set(key, DEFAULT_VERSION, nx=True)
    return r.get(key).decode()


def keyspace(settings: Settings) -> Keyspace:
    """The version the workers write: `redis.write_version` (a rebuild), else the active one."""
    return Keyspace(settings.redis.prefix, settings.redis.write_version or active_version(settings))


@cache
def feature_store(settings: Settings) -> RedisFeatureStore:
    return feature_store_over(settings, client(settings.redis), keyspace(settings))


def feature_store_over(settings: Settings, redis_client, ks: Keyspace) -> RedisFeatureStore:
    """The workers' feature store over `redis_client` and `ks`, with their cache TTLs."""
    graph_ttl_s = settings.stream.graph_cache_ttl_s  # operators.suggestions.store
    return RedisFeatureStore(redis_client, ks, ttl_s=min(1.0, settings.stream.rank_interval_s),
                             kind_ttl_s={kind: graph_ttl_s for kind in GRAPH_KINDS},
                             outage_timeout_s=settings.redis.outage_timeout_s)


@cache
def feature_store_of(settings: Settings) -> Callable[[], RedisFeatureStore]:
    """`feature_store(settings)` as a getter that looks the store up once: the logics ask for it
    per batch and per rank, and hashing the nested settings for the cache was ~2 µs a call."""
    store: RedisFeatureStore | None = None

    def get() -> RedisFeatureStore:
        nonlocal store
        if store is None:
            store = feature_store(settings)
        return store
    return get


@cache
def redis_writer(settings: Settings) -> RedisWriter:
    """The workers' writer. Its KeyspaceGuard claims the active pointer back after a data loss
    only for the workers that write the active version (no `redis.write_version`), never for a
    rebuild writing its own."""
    ks = keyspace(settings)
    live = not settings.redis.write_version
    return RedisWriter(client(settings.redis), ks, guard=KeyspaceGuard(ks, claim=live),
                       index_size=2000, outage_timeout_s=settings.redis.outage_timeout_s,
                       trace_every=settings.stream.freshness_sample,
                       parked_ttl_s=settings.stream.parked_ttl_s,
                       wait_replicas=settings.redis.wait_replicas)


log = logging.getLogger("persona.backlog")


def watch_backlog(settings: Settings, process: backlog.Backlog | None = None,
                  every_s: float = 1.0) -> backlog.Backlog:
    """`process` (default: this process's `operators.backlog.PROCESS`), whose first Kafka
    message starts a thread that reads the high watermarks of the partitions it has seen, every
    `every_s` (one ListOffsets request for all of them: the worker threads never wait on it)."""
    process = backlog.PROCESS if process is None else process
    if id(process) not in _watchers:
        watcher = _watchers[id(process)] = _Watcher(threading.Event(), [])

        def start():
            thread = threading.Thread(target=_watch, args=(settings, process, every_s,
                                                           watcher.stop),
                                      name="persona-backlog", daemon=True)
            watcher.threads.append(thread)
            thread.start()
        process.on_first_message = start
        atexit.register(stop_watching, process)
    return process


FINAL_COMMIT_S = 5.0  # how long an exiting process waits for its watcher's last progress commit


def stop_watching(process: backlog.Backlog) -> None:
    """Stop `process`'s watcher thread and wait (up to FINAL_COMMIT_S) for its last commit of the
    read positions, so a process that exits (a drained run's end, SIGTERM) leaves the lag tools
    its final positions, not those of up to `kafka.progress_commit_s` earlier."""
    watcher = _watchers.pop(id(process), None)
    if watcher is None:
        return
    watcher.stop.set()
    for thread in watcher.threads:
        thread.join(FINAL_COMMIT_S)


@dataclass
class _Watcher:
    stop: threading.Event
    threads: list[threading.Thread]


_watchers: dict[int, _Watcher] = {}  # id(Backlog) → its watcher


class PartitionCount:
    """The events topic's partition count as the backlog watcher first saw it, soon after the
    start. Bytewax lists a topic's partitions only when the workers start, so partitions added
    later are not read until a restart: say so, once per new count, in every process."""

    def __init__(self, topic: str):
        self.topic = topic
        self.first: int | None = None
        self.reported = 0

    def look(self, admin, timeout_s: float) -> None:
        try:
            meta = admin.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
        except Exception:  # (the watermark poll reports an unreachable broker)
            return
        if meta is None or meta.error is not None:
            return
        self.seen(len(meta.partitions))

    def seen(self, count: int) -> None:
        if self.first is None:
            self.first = count
        elif count > max(self.first, self.reported):
            self.reported = count
            log.warning("Kafka topic %s has %d partitions now, %d when the workers started: "
                        "restart them to read the new ones (README \"Changing the number of "
                        "processes\"); their messages wait until then", self.topic, count,
                        self.first)


PARTITIONS_EVERY = 10  # the watcher looks at the events topic's partition count every N polls


class Failing:
    """A recurring call's failures, logged once when they start and once when they end, not at
    every poll: `failed(err)` / `ok()`. `started` is a format with one %s (the error)."""

    def __init__(self, started: str, ended: str):
        self.started, self.ended, self.now = started, ended, False

    def failed(self, err: Exception) -> None:
        if not self.now:
            log.warning(self.started, err)
        self.now = True

    def ok(self) -> None:
        if self.now:
            log.warning(self.ended)
        self.now = False


class ProgressCommits:
    """Commits a process's read positions (`Backlog.positions`: the next offset of every partition
    it decoded from) to a consumer group, so Kafka's own lag tools (kafka-consumer-groups.sh,
    Burrow, exporters) see the workers. Monitoring only: Bytewax resumes from the offsets in its
    snapshots, never from the group. Committed by a consumer of the group that never joins it
    (the workers assign their partitions, so the group has no members and takes such commits),
    not by the AdminClient: librdkafka's admin offset calls crash the process when the group's
    coordinator moves (scripts.kafka_io.group_offsets)."""

    def __init__(self, group: str, config: dict):
        self.group = group
        self.config = {**config, "group.id": group, "enable.auto.commit": False}
        self.consumer: Consumer | None = None  # made at the first commit, in the watcher thread
        self.committed: dict[tuple[str, int], int] = {}
        self.failing = Failing(
            f"Kafka progress: committing read positions to consumer group {group} failed (%s); "
            "lag tools see its last positions until it works again (a consumer of that group "
            "running elsewhere? set kafka.progress_group)",
            f"Kafka progress: consumer group {group} committed again")

    def commit(self, positions: dict[tuple[str, int], int]) -> None:
        changed = {tp: offset for tp, offset in positions.items()
                   if self.committed.get(tp) != offset}
        if not changed:
            return
        try:
            if self.consumer is None:
                self.consumer = Consumer(self.config)
            self.consumer.commit(offsets=[TopicPartition(topic, partition, offset)
                                          for (topic, partition), offset in sorted(changed.items())],
                                 asynchronous=False)
        except Exception as err:  # KafkaException mostly: monitoring never stops a worker
            self.failing.failed(err)
            return
        self.failing.ok()
        self.committed.update(changed)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()


def _watch(settings: Settings, process: backlog.Backlog, every_s: float,
           stop: threading.Event) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap,
                         **kafka_config(settings.kafka)})
    # (the Kafka input's own error callback reports the broker too)
    watermarks = Failing("backlog: high watermarks unreadable (%s); catch-up mode keeps its last "
                         "estimate until Kafka answers again",
                         "backlog: high watermarks readable again")
    partitions = PartitionCount(settings.kafka.events_topic)
    group = settings.progress_group
    progress = ProgressCommits(group, {"bootstrap.servers": settings.kafka.bootstrap,
                                       **kafka_config(settings.kafka)}) if group else None
    commit_every = max(1, round(settings.kafka.progress_commit_s / every_s))
    polls = 0
    while not stop.wait(every_s):
        polls += 1
        if polls % PARTITIONS_EVERY == 1:
            partitions.look(admin, every_s)
        if progress is not None and polls % commit_every == 0:
            progress.commit(dict(process.positions))
        try:
            asked = admin.list_offsets({TopicPartition(*tp): OffsetSpec.latest()
                                        for tp in process.partitions()}, request_timeout=every_s)
            high = {(tp.topic, tp.partition): f.result().offset for tp, f in asked.items()}
        except Exception as err:  # KafkaException mostly: the thread outlives any error
            watermarks.failed(err)
            continue
        watermarks.ok()
        process.observe(high)
    if progress is not None:
        progress.commit(dict(process.positions))  # the last ones, as the process stops
        progress.close()
