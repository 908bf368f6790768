"""Running the real pipeline for integration tests: produce a log, run the workers until drained."""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import redis

import config
from config.security import kafka_config
from flows.adapters import _KeyedSnapshot, _PendingTimer
from operators.redis_store import connect_to, delete_matching
from scripts import kafka_io, runner, services
from scripts.recovery_store import FLOW, SNAPSHOTS, resume_offsets, store_rows


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


def user_features_but_model(client: redis.Redis, prefix: str,
                            version: str | None = None) -> dict[str, bytes]:
    """Every user's published features (`…:ufeat:{user}`, of the active keyspace version unless
    given) without the residual model, by user: the affinities, exposures, engagements, follows
    and recent likes are functions of the user's own events in order, so a restart, a replay and
    a drain must agree on them byte for byte; the model learns from choice sets ranked at
    wall-clock moments and is not comparable (docs/recovery.md)."""
    version = version or client.get(f"{prefix}:active").decode()
    out = {}
    for key in client.scan_iter(f"{prefix}:v{version}:ufeat:*", count=1000):
        value = orjson.loads(client.get(key))
        del value["model"]
        out[value["user_id"]] = orjson.dumps(value)
    return out


def differing_users(expected: dict[str, bytes], got: dict[str, bytes]) -> list[str]:
    """The users whose `user_features_but_model` differ between two runs, or exist in one only."""
    return sorted(u for u in expected.keys() | got.keys() if expected.get(u) != got.get(u))


def assert_same_user_features(client: redis.Redis, expected_prefix: str, got_prefix: str,
                              context: str = "") -> None:
    """Fail, naming some users, unless two runs' `user_features_but_model` (their active
    versions) are equal: user state was lost or applied twice."""
    lost = differing_users(user_features_but_model(client, expected_prefix),
                           user_features_but_model(client, got_prefix))
    assert not lost, (f"{context}{len(lost)} users' features (but the residual model) differ from "
                      f"the uninterrupted run's, e.g. {lost[:5]}: user state was lost or applied "
                      f"twice")


def top_overlap(ref: dict[str, dict], got: dict[str, dict], k: int = 10) -> float:
    """Over the users with a feed in `ref` (`feeds`), the mean share of their top `k` there that
    is in their top `k` in `got` (0 for a feed missing from `got`)."""
    shares = []
    for user, feed in ref.items():
        top = [item["post_id"] for item in feed["items"][:k]]
        other = {item["post_id"] for item in got.get(user, {"items": []})["items"][:k]}
        if top:
            shares.append(sum(i in other for i in top) / len(top))
    return sum(shares) / max(1, len(shares))


def cleanup(settings, client: redis.Redis) -> None:
    delete_matching(client, f"{settings.redis.prefix}:*")


# Kinds of keys (the segment after the version) whose bytes the streaming flow reproduces exactly
# for a given input however it is batched, restarted or delayed. The others depend on wall-clock
# rank timers and on reading other partitions' outputs from Redis at wall-clock moments (README,
# "Operating and recovery": feeds, ufeat, suggestions, notifs, model:global, model:notif).
EXACT_KINDS = frozenset({"item", "trending", "fresh", "graph", "gmembers", "likers",
                         "popular_users", "profile", "nbrs", "deleted_version"})
# … and when both runs drained over a recovery directory (`runner.drain`, as `run_to_end`): its
# settling pass computes every user's suggestions again from everyone's final records
SETTLED_KINDS = EXACT_KINDS | {"suggestions"}


def key_kind(key: str) -> str:
    """'v3:item:{p1}' → 'item'; 'v3:model:global' → 'model:global'; 'active' → 'active'."""
    parts = key.split(":")
    if len(parts) < 2:
        return key
    return ":".join(parts[1:3]) if parts[1] == "model" else parts[1]


def value_bytes(client: redis.Redis, key: bytes) -> bytes | None:
    """The value as comparable bytes; None when the key went since it was listed (a live worker
    deletes keys, e.g. an erasure, while a scan runs)."""
    kind = client.type(key).decode()
    if kind == "none":
        return None
    if kind == "string":
        return client.get(key)
    if kind == "zset":
        return orjson.dumps(client.zrange(key, 0, -1, withscores=True), default=bytes.hex)
    if kind == "set":
        return b"\0".join(sorted(client.smembers(key)))
    raise ValueError(f"unexpected Redis type {kind} at {key!r}")


def key_digests(client: redis.Redis, prefix: str, version: str | None = None) -> dict[str, str]:
    """sha256 of the value of every key under `prefix` (of one keyspace version when given), by
    key with the prefix and version stripped, so two prefixes or versions compare directly. The
    deleted users' set stands by its size: its members are hashes keyed by the keyspace
    (`Keyspace.deleted_tag`), so no two prefixes or versions share its bytes."""
    base = f"{prefix}:v{version}:" if version is not None else f"{prefix}:"
    out = {}
    for key in client.scan_iter(f"{base}*", count=1000):
        name = key.decode()[len(base):]
        if version is None and name.startswith("v"):
            name = "v*:" + name.split(":", 1)[1] if ":" in name else name
        if "deleted_users" in name.split(":")[:2]:
            value = b"size %d" % client.scard(key)
        else:
            value = value_bytes(client, key)
        if value is not None:
            out[name] = hashlib.sha256(value).hexdigest()
    return out


def compare_runs(reference: dict[str, str], other: dict[str, str],
                 exact: frozenset[str] = EXACT_KINDS) -> dict[str, list[str]]:
    """Keys that differ: {"missing": …, "extra": …, "different": keys of the `exact` kinds whose
    bytes differ}. Every key must exist in both; exact kinds must be byte-identical."""
    return {
        "missing": sorted(set(reference) - set(other)),
        "extra": sorted(set(other) - set(reference)),
        "different": sorted(k for k in set(reference) & set(other)
                            if key_kind(k) in exact and reference[k] != other[k]),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str | None:
    return services.redis_server_path()


def start_redis(port: int, data_dir, durable: bool = False,
                extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """A private redis-server on loopback (never the shared one). `durable`: every write is in
    the append-only file before it is acknowledged, so a stop and restart on the same `data_dir`
    keeps everything, as a production Redis with persistence would."""
    persistence = (("--appendonly", "yes", "--appendfsync", "always") if durable
                   else ("--appendonly", "no"))
    return services.private_redis(port, data_dir, (*persistence, *extra))


def cluster_ports(n: int) -> list[int]:
    """`n` free ports for Redis Cluster nodes: each node also listens on its port + 10000 (the
    cluster bus), so both must be free and the port at most 55535."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port > 55535 or port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def start_cluster_node(port: int, data_dir: Path, node_timeout_ms: int = 15000) -> subprocess.Popen:
    """One node of a private Redis Cluster, its data (and nodes.conf) in `data_dir/node-{port}`:
    started again on the same directory, it rejoins the cluster it was in."""
    node_dir = data_dir / f"node-{port}"
    node_dir.mkdir(parents=True, exist_ok=True)
    return start_redis(port, node_dir, extra=(
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(node_timeout_ms)))


def start_redis_cluster(ports: list[int], data_dir: Path, replicas: int = 0,
                        node_timeout_ms: int = 15000) -> list[subprocess.Popen]:
    """A private Redis Cluster on loopback (`cluster_ports`): `replicas` replicas per primary
    (`len(ports)` nodes in all), every slot assigned, the cluster state ok on every node and
    every replica's link to its primary up."""
    procs = [start_cluster_node(port, data_dir, node_timeout_ms) for port in ports]
    subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                    *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", str(replicas),
                    "--cluster-yes"], check=True, stdout=subprocess.DEVNULL, timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline:
        states = [redis.Redis(port=p).cluster("info")["cluster_state"] for p in ports]
        links = [info.get("master_link_status", "up") for info in (
            redis.Redis(port=p).info("replication") for p in ports)]
        if all(state == "ok" for state in states) and all(link == "up" for link in links):
            return procs
        time.sleep(0.1)
    raise RuntimeError(f"Redis Cluster on ports {ports} did not reach cluster_state ok")


def run_env(live, unique: str, run: str) -> dict[str, str]:
    """Several runs over one events topic (`unique`): dead letters, notifications and Redis keys
    per run; one partition."""
    env = isolated_env(live, f"{unique}-{run}")
    env["PERSONA_KAFKA__EVENTS_TOPIC"] = f"persona.test.{unique}.events"
    env["PERSONA_KAFKA__NOTIFICATIONS_TOPIC"] = f"persona.test.{unique}-{run}.notifs"
    env["PERSONA_KAFKA__ERASURE_TOPIC"] = f"persona.test.{unique}-{run}.erasures"
    env["PERSONA_KAFKA__PARTITIONS"] = "1"
    return env


def create_run_topics(env: dict[str, str]):
    """Empty dead-letter and notification topics of one run; returns the run's settings."""
    settings = config.load(env=env)
    for topic in (settings.kafka.dead_letter_topic, settings.kafka.notifications_topic):
        kafka_io.recreate_topic(settings.kafka.bootstrap, topic, 1)
    return settings


def wait_until(ready, what: str, timeout_s: float = 20.0,
               passing: tuple[type[Exception], ...] = ()) -> None:
    """Poll `ready()` every 0.1 s until it is true; fail naming `what` after `timeout_s`.
    Exceptions of the `passing` types count as not yet (a service coming back)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except passing:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting: {what}")


def wait_first_write(settings, proc, timeout_s: float = 120.0) -> float:
    """Wait until the worker `proc` has written a key under the run's prefix (or has exited)."""
    client = connect_to(settings.redis)  # any URL the workers take (Sentinel too)
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        try:
            if next(client.scan_iter(f"{settings.redis.prefix}:v*", count=1000), None):
                return time.time()
        except redis.ConnectionError:
            pass
        time.sleep(0.05)
    return time.time()


class PrivateKafka:
    """A private single-node KRaft broker on free ports with its data in `home` (never the shared
    broker), started by scripts/services.py from the project's cached jars: `start()`, `stop()`
    (keeps the data: a restart resumes the same log), `bootstrap`. `access`: [kafka] access
    settings as environment (a SASL_PLAINTEXT broker with that user: scripts/services.py)."""

    def __init__(self, home, access: dict[str, str] | None = None):
        from scripts import services

        self.services = services
        project = config.load(env={})
        version = project.services.kafka_version
        jars = services.kafka_paths(project)
        services.resolve_jars(project, jars, log=lambda m: None)  # no-op when cached
        port, controller = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        self.settings = config.load(env={
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "PERSONA_SERVICES__CACHE_DIR": str(home),
            "PERSONA_SERVICES__KAFKA_PORT": str(port),
            "PERSONA_SERVICES__KAFKA_CONTROLLER_PORT": str(controller),
            **(access or {}),
        })
        lib = services.kafka_paths(self.settings)["lib"]
        lib.parent.mkdir(parents=True, exist_ok=True)
        if not lib.exists():
            lib.symlink_to(jars["lib"].resolve(), target_is_directory=True)
        assert self.settings.services.kafka_version == version

    def start(self) -> None:
        self.services.ensure_kafka(self.settings, log=lambda m: None)

    def stop(self) -> None:
        """Stops only the broker whose pid file is in this broker's own home."""
        self.services.down(self.settings, log=lambda m: None)


def wait_quiet(client: redis.Redis, prefix: str, proc, quiet_s: float, sentinel: str,
               timeout_s: float = 240.0) -> dict[str, str]:
    """For a tailing worker (it never ends by itself): wait until the key `sentinel` (written
    when the last event of the topic has been processed) exists and nothing under `prefix` has
    changed for `quiet_s` (longer than the rank interval); return the digests. Fails if the worker
    exits or never settles."""
    deadline = time.time() + timeout_s
    last, since = None, time.time()
    while time.time() < deadline:
        assert proc.poll() is None, f"the worker exited with {proc.returncode}"
        if not next(client.scan_iter(f"{prefix}:{sentinel}"), None):
            time.sleep(0.5)
            continue
        now = key_digests(client, prefix)
        if now != last:
            last, since = now, time.time()
        elif time.time() - since >= quiet_s:
            return now
        time.sleep(0.5)
    raise AssertionError(f"the worker did not settle within {timeout_s:.0f}s")


def explain(client: redis.Redis, prefixes: tuple[str, str], diff: dict[str, list[str]],
            n: int = 3) -> str:
    """Both runs' values of the first `n` differing keys, for an assertion message."""
    lines = []
    for name in diff["different"][:n]:
        for prefix in prefixes:
            keys = list(client.scan_iter(f"{prefix}:{name.replace('v*:', 'v*:', 1)}"))
            lines.append(f"{prefix} {name}: "
                         + ((value_bytes(client, keys[0]) or b"")[:600].decode(errors="replace")
                            if keys else "(absent)"))
    return "\n".join(lines)


# A malformed first line of a topic: dead-lettered once per run, so a second dead letter shows a
# restart that re-read the topic from the beginning instead of resuming.
FIRST_LINE = b"not json: the first line of the topic"


SNAPSHOT_S = 1  # the recovery tests' snapshot interval (and epoch), seconds


def start_recovering(settings, env, recovery_dir, processes: int = 1):
    """Drain the topic with `processes` workers snapshotting into `recovery_dir` every
    SNAPSHOT_S; returns the processes (`runner.supervise` waits for them)."""
    return runner.start(settings, None, processes=processes, tail=False,
                        recovery_dir=str(recovery_dir), snapshot_s=SNAPSHOT_S, env_extra=env,
                        log=lambda m: None, metrics_port=0)


def run_to_end(settings, env, recovery_dir, processes: int = 1,
               config_path: str | None = None) -> int:
    """Drain the topic as `start_recovering` does, then read the run's erasure commands back
    (`runner.drain`): what `persona run --until-drained --recovery-dir [-c config_path]` does."""
    return runner.run(settings, config_path, processes=processes, tail=False,
                      recovery_dir=str(recovery_dir), snapshot_s=SNAPSHOT_S, env_extra=env,
                      log=lambda m: None, metrics_port=0)


def produce_log(settings, events, partitions: int) -> None:
    """A fresh events topic holding FIRST_LINE, then `events`."""
    kafka_io.recreate_topic(settings.kafka.bootstrap, settings.kafka.events_topic, partitions)
    kafka_io.produce(settings.kafka.bootstrap, settings.kafka.events_topic,
                     [FIRST_LINE] + [orjson.dumps(e) for e in events])


def wait_snapshot_offset(recovery_dir, proc, topic: str, n: float,
                         timeout_s: float = 180.0) -> int:
    """Wait until the workers' committed snapshots hold the Kafka input at an offset ≥ `n` (or
    `proc` exits); return that offset (`committed_offset`)."""
    deadline = time.time() + timeout_s
    offset = 0
    while time.time() < deadline and proc.poll() is None:
        offset = committed_offset(recovery_dir, topic)
        if offset >= n:
            return offset
        time.sleep(0.05)
    return offset


def dead_letters_of_first_line(settings) -> int:
    letters = kafka_io.read_topic(settings.kafka.bootstrap, settings.kafka.dead_letter_topic)
    return sum(orjson.loads(m)["raw"] == FIRST_LINE.decode() for m in letters)


def committed_offset(recovery_dir, topic: str) -> int:
    """The sum over `topic`'s partitions of the Kafka offsets a restart on the recovery directory
    would resume from (`scripts.recovery_store.resume_offsets`: those of a *committed* snapshot,
    one of an epoch every worker's frontier has passed; a kill between a snapshot row and its
    frontier resumes from the previous epoch, maybe from the beginning)."""
    return sum(max(offset, 0) for (t, _), offset in resume_offsets(recovery_dir).items()
               if t == topic)


def worker_states(recovery_dir, step: str) -> dict[str, object]:
    """Each key's state in the flow's step `step` (e.g. "users") at its newest snapshot in the
    recovery directory, as a restart would resume it: unpickled, without the flow's wrappers (a
    pending timer, an evictable key's own key: `flows.adapters._Logic.snapshot`). Keys whose
    newest snapshot is a discard are left out."""
    (rows,) = store_rows(recovery_dir, (SNAPSHOTS, (f"{FLOW}.{step}",)))
    newest = {key: change for key, _, change in rows}  # a key lives in one partition
    states = {}
    for key, change in newest.items():
        if change is None:  # discarded
            continue
        value = pickle.loads(pickle.loads(change))  # Bytewax pickles what `snapshot` pickled
        if isinstance(value, _KeyedSnapshot):
            value = value.snapshot
        if isinstance(value, _PendingTimer):
            value = value.state
        if value is not None:
            states[key] = value
    return states


def comparable(value, depth: int = 0):
    """`value` as plain data that compares by content: sets sorted, arrays as lists, objects as
    their `__getstate__` or their attributes and slots (a set pickles in insertion order, and
    most state classes have no `__eq__`)."""
    if depth > 12:
        raise ValueError(f"state nested deeper than 12 levels: {type(value).__name__}")
    deeper = depth + 1
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): comparable(v, deeper)
                for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(repr(comparable(v, deeper)) for v in value)
    if isinstance(value, (list, tuple, collections.deque)):
        return [comparable(v, deeper) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if type(value).__getstate__ is not object.__getstate__:
        return [type(value).__name__, comparable(value.__getstate__(), deeper)]
    fields = dict(getattr(value, "__dict__", {}))
    for cls in type(value).__mro__:
        fields.update((s, getattr(value, s)) for s in getattr(cls, "__slots__", ())
                      if hasattr(value, s))
    return [type(value).__name__, comparable(fields, deeper)]


def differing_states(recovery_a, recovery_b, step: str,
                     ignored: frozenset[str] = frozenset()) -> list[str]:
    """The keys of `step` whose state at the newest snapshot differs between two recovery
    directories (`worker_states`), or exists in one only; compared by content (`comparable`),
    without the state's attributes named in `ignored`."""
    def of(recovery_dir) -> dict[str, object]:
        out = {}
        for key, state in worker_states(recovery_dir, step).items():
            plain = comparable(state)
            if ignored:  # attributes of an object: [class name, {attribute: value}]
                name, fields = plain
                plain = [name, {f: v for f, v in fields.items() if f not in ignored}]
            out[key] = plain
        return out

    a, b = of(recovery_a), of(recovery_b)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


# A user's state fields that a rank sets, which a restart does not reproduce (as it does not the
# feeds): the residual model learns from the ranked choice set, impressions wait as labels only for
# its members, and the erasure index hears of whom the feed names
RANKED_USER_FIELDS = frozenset({"model", "served", "choice", "pending", "feed_stale", "reported"})


def assert_same_states(recovery_a, recovery_b, steps: list[tuple[str, frozenset[str]]],
                       context: str = "") -> None:
    """Fail unless, for each (step, fields ignored) of `steps`, the workers' states at the newest
    snapshots of the two recovery directories are equal (`differing_states`)."""
    for step, ignored in steps:
        differ = differing_states(recovery_a, recovery_b, step, ignored)
        assert not differ, (
            f"{context}{len(differ)} states of step {step} differ from the uninterrupted run's at "
            f"the end, e.g. {differ[:5]}: state was lost or applied twice")


def worker_children(pid: int) -> list[int]:
    """The child processes of `pid` (a `persona run` CLI's worker processes)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def signal_cli(proc: subprocess.Popen, sig: int, timeout_s: float = 30) -> tuple[int | None, str]:
    """Send `sig` to a `persona run` CLI and wait for it: (exit code, "") — or, when it has not
    exited within `timeout_s`, (None, its Python stacks by py-spy) after `kill_cli`, so a hang is
    diagnosable and leaves nothing running into the next tests."""
    workers = worker_children(proc.pid)
    proc.send_signal(sig)
    try:
        return proc.wait(timeout_s), ""
    except subprocess.TimeoutExpired:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        try:
            stacks = subprocess.run([spy, "dump", "--pid", str(proc.pid)], capture_output=True,
                                    text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            stacks = f"(no py-spy dump: {exc})"
        kill_cli(proc, workers)
        return None, stacks


def kill_cli(proc: subprocess.Popen, workers: list[int]) -> None:
    """SIGKILL a `persona run` CLI (if still running) and every worker process it started, known
    (`workers`) or still its children: each leads its own process group, so killing the CLI
    alone would leave them running into the next tests."""
    workers = workers + worker_children(proc.pid)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for w in workers:
        if services.pid_alive(w, "bytewax"):
            os.killpg(w, signal.SIGKILL)


def assert_fault_mid_stream_loses_nothing(live, redis_url: str, break_service, restore_service,
                                          seed: int, env_extra: dict | None = None) -> None:
    """A tailing worker on `redis_url` drains the first half of a generated log; then
    `break_service()` (Redis stopped, a primary killed…), the second half is produced while it is
    broken, so the worker has writes to make then however fast it drained the first half, and
    `restore_service()` (returns once Redis serves again). The worker must still be running and
    end with the same contents as an uninterrupted drained run of the same log on the same Redis:
    every key, the exact kinds byte for byte, every user's features."""
    import uuid

    unique = uuid.uuid4().hex[:10]
    envs = {run: dict(run_env(live, unique, run), REDIS_URL=redis_url,
                      # every timer shorter than the quiet window below (graph records are
                      # published by the suggestions timer, up to its interval after input)
                      PERSONA_STREAM__SEEN_RERANK_S="1", PERSONA_STREAM__SUGGEST_INTERVAL_S="1",
                      PERSONA_STREAM__BACKLOG_INTERVAL_S="0",  # no catch-up stretch
                      **(env_extra or {}))
            for run in ("ref", "faulted")}
    settings = {run: create_run_topics(env) for run, env in envs.items()}
    from scripts.generate import GeneratorConfig, generate

    events, _ = generate(GeneratorConfig(users=120, days=1, seed=seed))
    # without the generator's deletions: the tailing worker reads its erasure commands back and
    # applies them, the drained reference (no recovery directory) does not
    events = [e for e in events if e["type"] != "user_deleted"]
    # the last event: a new user, whose feed shows that the end of the topic was processed
    events.append({"event_id": "last", "type": "user_created", "ts": events[-1]["ts"] + 1,
                   "user_id": "zz-last", "interests": ["t01"]})
    half = len(events) // 2
    bootstrap, topic = settings["ref"].kafka.bootstrap, settings["ref"].kafka.events_topic
    kafka_io.recreate_topic(bootstrap, topic, 1)
    kafka_io.produce(bootstrap, topic, [orjson.dumps(e) for e in events[:half]])
    client = connect_to(settings["ref"].redis)
    procs = runner.start(settings["faulted"], None, tail=True, env_extra=envs["faulted"],
                         log=lambda m: None, metrics_port=0)
    try:
        wait_first_write(settings["faulted"], procs[0])
        break_service()
        kafka_io.produce(bootstrap, topic, [orjson.dumps(e) for e in events[half:]])
        restore_service()
        assert procs[0].poll() is None, "the worker gave up while Redis was unavailable"
        # quiet for longer than the rank interval and stream.reorder_wait_s
        got = wait_quiet(client, settings["faulted"].redis.prefix, procs[0], 8.0,
                         sentinel="v*:feed:{zz-last}")
        runner.stop(procs)
        assert runner.run(settings["ref"], None, tail=False, env_extra=envs["ref"],
                          log=lambda m: None, metrics_port=0) == 0
        diff = compare_runs(key_digests(client, settings["ref"].redis.prefix), got)
        assert diff == {"missing": [], "extra": [], "different": []}, (
            {k: (len(v), v[:5]) for k, v in diff.items()})
        assert_same_user_features(client, settings["ref"].redis.prefix,
                                  settings["faulted"].redis.prefix)
    finally:
        runner.stop(procs)


def assert_access_settings_carry_a_drained_run(settings, env, recovery_dir, what: str) -> dict:
    """Through a broker (and Redis) that only take the [kafka] / [redis] access settings: `persona
    up`'s topic creation, a generated day with a deletion (so the run reads its commands back),
    the producer, a drained run over `recovery_dir`; asserts the feeds, the malformed first line
    dead-lettered once and erasure commands produced. Returns the feeds, by user."""
    from scripts.generate import GeneratorConfig, generate

    bootstrap = settings.kafka.bootstrap
    access = kafka_config(settings.kafka)
    services.up(settings, log=lambda m: None)  # topics, through the access settings
    events, _ = generate(GeneratorConfig(users=60, days=1, seed=31))
    assert any(e["type"] == "user_deleted" for e in events)  # so the run reads commands back
    kafka_io.produce(bootstrap, settings.kafka.events_topic,
                     [FIRST_LINE, *(orjson.dumps(e) for e in events)], extra=access)
    assert run_to_end(settings, env, recovery_dir) == 0
    served = feeds(settings, connect_to(settings.redis))
    assert len(served) > 30, f"{len(served)} feeds written"
    dead = kafka_io.read_topic(bootstrap, settings.kafka.dead_letter_topic, extra=access)
    assert len(dead) == 1 and orjson.loads(dead[0])["reason"], dead
    assert kafka_io.read_topic(bootstrap, settings.kafka.erasures, extra=access), (
        f"no erasure command went through the {what} producer")
    return served


def write_in_background(writer, writes: list) -> tuple[object, list[BaseException]]:
    """A started thread running `writer.write_batch(writes)` (a write that is to wait for a
    replica), and the list its failure, if any, lands in."""
    import threading

    errors: list[BaseException] = []

    def write():
        try:
            writer.write_batch(writes)
        except BaseException as exc:  # noqa: BLE001 - the caller asserts on `errors`
            errors.append(exc)
    thread = threading.Thread(target=write)
    thread.start()
    return thread, errors
