"""Launching and supervising Bytewax worker processes for the main flow.

Several processes form one Bytewax cluster (`-i/-a`): every process gets the same address list and its
own index. If one dies the others panic within seconds, so the supervisor stops the whole cluster and
reports the failure; with recovery enabled a restart resumes from the last snapshot.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

from config import Settings
from config.security import kafka_config
from operators.redis_store import connect_to
from schemas.snapshots import STATE_FORMAT
from scripts import kafka_io, recovery_store, services

FLOW = "flows.feeds:get_flow()"


def check_services(settings: Settings) -> None:
    """Fail fast with what to do (Bytewax's Kafka source waits forever on an unreachable broker)."""
    if not services.kafka_brokers(settings.kafka.bootstrap, timeout=settings.kafka.connect_timeout_s,
                                  extra=kafka_config(settings.kafka)):
        raise services.ServiceError(
            f"Kafka not reachable at {settings.kafka.bootstrap}: start it with `persona up` "
            "or set KAFKA_BOOTSTRAP")
    try:
        connect_to(settings.redis, timeout_s=3.0).ping()
    except redis.RedisError as exc:
        raise services.ServiceError(
            f"Redis not reachable at {settings.redis.url} ({exc}): start it with `persona up` "
            "or set REDIS_URL") from None


def audit_redis(settings: Settings, log: Callable[[str], object]) -> None:
    """Log what in the Redis's own settings can lose the workers' writes, once per run
    (`services.redis_warnings`)."""
    for warning in services.redis_warnings(settings):
        log(f"warning: {warning} (README \"Redis durability\")")


class DrainProgress:
    """How far a drained run is through the events topic, logged every `every_s` (a backfill
    over a large topic runs for minutes or hours): the offsets the workers commit to
    kafka.progress_group (flows.resources.ProgressCommits, every kafka.progress_commit_s) against
    the topic's end when the run started, counted from where it started (`start`: the recovery
    directory's resume offsets, else each partition's beginning). A partition whose committed
    offset has not moved since the start counts as not begun: the group may hold an earlier run's
    positions."""

    def __init__(self, committed: Callable[[], dict[int, int]], start: dict[int, int],
                 end: dict[int, int], log: Callable[[str], object], every_s: float = 10.0,
                 clock=time.monotonic):
        self._committed = committed  # the group's offsets by partition
        self.start, self.end, self.log, self.every_s, self.clock = start, end, log, every_s, clock
        self.total = sum(max(0, end[p] - start.get(p, 0)) for p in end)
        self.began = clock()
        self._next = self.began + every_s
        self._before = self._read_committed()
        self.read, self._said = 0, False

    def _read_committed(self) -> dict[int, int]:
        try:
            return self._committed()
        except Exception:  # KafkaException mostly: progress is a nicety, never a failure
            return {}

    def measure(self, committed: dict[int, int]) -> int:
        """Events read of the run's range, by `committed` offsets."""
        read = 0
        for p, end in self.end.items():
            start = self.start.get(p, 0)
            position = committed.get(p)
            if position is None or position == self._before.get(p):
                position = start
            read += min(max(position - start, 0), max(end - start, 0))
        return read

    def tick(self) -> None:
        """Called as the runner waits; logs at most every `every_s`."""
        now = self.clock()
        if now < self._next or not self.total:
            return
        self._next = now + self.every_s
        read = max(self.read, self.measure(self._read_committed()))
        if read == self.read and self._said:  # nothing new to say (the erasure passes, say)
            return
        self.read, self._said = read, True
        rate = read / (now - self.began)
        left = f", ~{_duration((self.total - self.read) / rate)} left" if rate > 0 else ""
        self.log(f"drain: {self.read * 100 // self.total}% of the events topic ({self.read:,} of "
                 f"{self.total:,}), {rate:,.0f} events/s{left}")

    def summary(self) -> str:
        elapsed = self.clock() - self.began
        return (f"drained {self.total:,} events in {_duration(elapsed)} "
                f"({self.total / max(elapsed, 1e-9):,.0f} events/s)")


def _duration(seconds: float) -> str:
    """
    >>> _duration(42.4), _duration(323), _duration(7300)
    ('42s', '5m23s', '2h01m')
    """
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def drain_progress(settings: Settings, recovery_dir: str | None,
                   log: Callable[[str], object]) -> DrainProgress | None:
    """The progress of a drained run over the events topic from its start (None when the
    workers commit no progress: kafka.progress_group = "")."""
    if not settings.progress_group:
        return None
    rng = kafka_io.topic_range(settings.kafka.bootstrap, settings.kafka.events_topic,
                               extra=kafka_config(settings.kafka))
    start = dict(rng.start)
    if recovery_dir:  # a resumed run starts where its snapshots say (negative: the beginning)
        for (topic, partition), offset in recovery_store.resume_offsets(recovery_dir).items():
            if topic == settings.kafka.events_topic and offset >= 0 and partition in start:
                start[partition] = max(start[partition], offset)
    k = settings.kafka
    committed = functools.partial(kafka_io.group_offsets, k.bootstrap, settings.progress_group,
                                  k.events_topic, sorted(rng.end), extra=kafka_config(k))
    return DrainProgress(committed, start, dict(rng.end), log)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def worker_commands(processes: int, workers: int, recovery_dir: str | None,
                    snapshot_s: int, python: str = sys.executable) -> list[list[str]]:
    """One command per process; several form one loopback cluster (`-i/-a`). `python`: another
    checkout's interpreter (scripts.ab_drain)."""
    base = [python, "-m", "bytewax.run", FLOW, "-w", str(workers)]
    if recovery_dir:
        base += ["-r", recovery_dir, "-s", str(snapshot_s), "-b", str(max(snapshot_s * 3, 30))]
    else:
        base += ["-s", str(snapshot_s)]  # epoch length without recovery
    if processes == 1:
        return [base]
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(processes))
    return [base + ["-i", str(i), "-a", addresses] for i in range(processes)]


def pinned_env(env: dict[str, str], index: int) -> dict[str, str]:
    """`env` with PERSONA_CPU = index mod the CPU count when PERSONA_PIN_CPUS=1: the worker process
    pins itself to that core (`flows.feeds.get_flow`), so the scheduler no longer moves it
    across cores next to Redis and Kafka (measured: README "Several workers")."""
    if env.get("PERSONA_PIN_CPUS") != "1":
        return env
    return dict(env, PERSONA_CPU=str(index % (os.cpu_count() or 1)))


def metrics_env(env: dict[str, str], base_port: int | None, index: int,
                cache_dir: Path | None = None) -> dict[str, str]:
    """`env` with Bytewax's dataflow API (GET /metrics: its step metrics, Kafka consumer lag and the
    persona_* metrics of flows.metrics) on base_port + index for process `index`. 0 turns it off
    (Bytewax enables it when the variable is set at all, even to 0); None leaves `env` as it is.
    Bytewax binds it on all interfaces: firewall it like any metrics port. It also writes the
    rendered dataflow to <dir>/dataflow.json (default: the current directory): `cache_dir`/api-i."""
    if base_port is None:
        return env
    env = {k: v for k, v in env.items() if k != "BYTEWAX_DATAFLOW_API_ENABLED"}
    if base_port:
        env.update(BYTEWAX_DATAFLOW_API_ENABLED="1", BYTEWAX_DATAFLOW_API_PORT=str(base_port + index))
        if cache_dir is not None:
            env["BYTEWAX_DATAFLOW_API_CACHE_PATH"] = str(cache_dir / f"api-{index}")
    return env


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def init_recovery(recovery_dir: str, partitions: int) -> None:
    """Create the recovery partitions once (SQLite files), as `python -m bytewax.recovery` does:
    when the directory has none (it may hold other files: a mounted disk's lost+found)."""
    path = Path(recovery_dir)
    if path.exists() and any(path.glob("part-*.sqlite3")):
        return
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(path), str(partitions)], check=True)


MAX_DRAIN_PASSES = 8  # a drained run's passes: events, erasure read-backs, settling (`drain`)


def run(settings: Settings, config_path: str | None, *, processes: int = 1, workers: int = 1,
        tail: bool = True, recovery_dir: str | None = None, snapshot_s: int = 10,
        log: Callable[[str], object] = print, env_extra: dict | None = None,
        metrics_port: int | None = None,
        on_start: Callable[[list[subprocess.Popen]], object] | None = None) -> int:
    """Run the flow until it ends (tail=False: when the topic is drained) or is interrupted.
    `metrics_port`: serve Prometheus metrics of process i on metrics_port + i (0: off; None: as
    BYTEWAX_DATAFLOW_API_* in the environment say). `on_start` receives the worker processes of
    each pass (the benchmark samples their memory and stops a tailing run with `stop`).

    A drained run with a `recovery_dir` also applies the erasure commands it produced and settles
    (`drain`); without one it cannot (its state is gone when it ends) and says how many commands
    it left."""
    def once(read_erasures: bool | None = None, settle: bool = False) -> int:
        extra = dict(env_extra or {})
        if read_erasures is not None:
            extra["PERSONA_READ_ERASURES"] = "1" if read_erasures else "0"
        if settle:
            extra["PERSONA_SETTLE"] = "1"
        procs = start(settings, config_path, processes=processes, workers=workers, tail=tail,
                      recovery_dir=recovery_dir, snapshot_s=snapshot_s, log=log,
                      env_extra=extra, metrics_port=metrics_port)
        try:
            if on_start is not None:
                on_start(procs)
        except BaseException:
            stop(procs)
            raise
        return supervise(procs, log, tick=progress.tick if progress else None)

    with terminate_as_interrupt():
        try:
            progress = None
            if not tail:  # (`start` checks them for a tailing run)
                check_services(settings)  # before the topic reads below: say what to start
                progress = drain_progress(settings, recovery_dir, log)
            audit_redis(settings, log)
            if tail:
                return once()
            if recovery_dir:
                code = drain(once, lambda: erasure_commands(settings), log)
            else:
                before = erasure_commands(settings)
                code = once()
                left = erasure_commands(settings) - before
                if code == 0 and left:
                    log(f"{left} erasure command(s) produced were not applied (a run without "
                        "--recovery-dir ends with its state): re-run with --recovery-dir, or a "
                        "tailing `persona run` applies them")
            if code == 0 and progress is not None:
                log(progress.summary())
            return code
        except KeyboardInterrupt:  # between passes, or while starting (`start` stopped what
            log("interrupted; no worker left running")  # it had started): as in `supervise`
            return 130


@contextlib.contextmanager
def terminate_as_interrupt():
    """While it runs workers, SIGTERM (`kill`, a supervisor's stop) and SIGINT stop them as Ctrl-C
    does: they run in sessions of their own, so a runner that a signal ended at once (or that
    ignored it) would leave them running. (Only the main thread can set a handler; elsewhere
    nothing changes.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # SIGINT too: a process started in the background by a non-interactive shell (`persona run &`
    # in a script, a CI job) inherits SIGINT ignored, and Python then leaves it ignored — such a
    # runner sat through SIGINT in its supervise loop (seen with py-spy in a CI run)
    # SIGHUP too: a closed terminal or a dropped SSH session would kill the runner alone, and the
    # workers, in sessions of their own, would tail on with no parent
    previous = {sig: signal.signal(sig, interrupt)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def drain(run_pass: Callable[..., int], commands: Callable[[], int],
          log: Callable[[str], object] = print) -> int:
    """A drained run over one recovery state, in passes: to the end of the events topic; then,
    while commands keep coming, to the end of the erasure command topic too; then one settling
    pass over the quiet keyspace.

    The commands a flow emits at `user_deleted` come back through its Kafka input (Bytewax
    dataflows have no cycles: operators/erasure.py). A single drained pass cannot read them: its
    partitions end at what exists when they get there, so whether a command was read would depend
    on timing. Each later pass starts after the previous one ended, so it reads exactly the
    commands that exist, from the offsets the snapshots hold; applying them may emit more (an
    item-kNN list's `forget_nbr`, a late mention's `forget`), read by the next pass. The settling
    pass has no input left: every resident user's suggestions are computed again from the final
    records of everyone else (`SuggestionsLogic.on_eof`), so they no longer depend on whose
    timer fired first. `run_pass(read_erasures, settle=False)` runs one pass and returns its
    exit code; `commands()` counts the messages the command topic has received.

    >>> counts = iter([0, 4, 4, 6, 6, 6, 6, 6])  # before and after each pass
    >>> drain(lambda read, settle=False: print("pass", read, settle) or 0, lambda: next(counts))
    pass False False
    reading back erasure commands (pass 2; 4 new)
    pass True False
    reading back erasure commands (pass 3; 2 new)
    pass True False
    settling: every resident user's suggestions once more (pass 4)
    pass True True
    0
    """
    phase = "events"
    for n in range(1, MAX_DRAIN_PASSES + 1):
        before = commands()
        code = run_pass(phase != "events", settle=phase == "settle")
        if code:
            return code
        after = commands()
        if after != before or (phase == "events" and after > 0):
            phase = "erasures"
            log(f"reading back erasure commands (pass {n + 1}; {after - before} new)")
        elif phase == "settle":
            return 0
        else:
            phase = "settle"
            log(f"settling: every resident user's suggestions once more (pass {n + 1})")
    log(f"erasure commands still coming after {MAX_DRAIN_PASSES} passes: the next run applies "
        "the rest")
    return 0


def erasure_commands(settings: Settings) -> int:
    """How many messages the erasure command topic has received (the sum of its end offsets);
    creates the topic when missing, as `start` does."""
    ensure_erasure_topic(settings)
    return sum(kafka_io.topic_range(settings.kafka.bootstrap, settings.kafka.erasures,
                                    extra=kafka_config(settings.kafka)).end.values())


def check_events_topic(settings: Settings) -> None:
    """Fail fast with what to do: Bytewax's Kafka source panics on a topic that does not exist.
    Not created here, unlike the erasure topic: a misspelt name would tail an empty new topic."""
    topic, bootstrap = settings.kafka.events_topic, settings.kafka.bootstrap
    if not services.topic_exists(bootstrap, topic, timeout=settings.kafka.connect_timeout_s,
                                 extra=kafka_config(settings.kafka)):
        raise services.ServiceError(
            f"Kafka topic {topic} does not exist at {bootstrap}: `persona up` creates the "
            "configured topics (`persona produce` then writes an event log to it), or set "
            "PERSONA_KAFKA__EVENTS_TOPIC to an existing topic")


def check_state_format(recovery_dir: str) -> None:
    """Fail with what to do when `recovery_dir` holds snapshots of another state format than this
    code's (schemas/snapshots.py): resuming them would fail to load or mislead the workers."""
    try:
        made = recovery_store.state_format_of(recovery_dir)
    except ValueError as exc:
        raise services.ServiceError(str(exc)) from None
    if made is not None and made != STATE_FORMAT:
        raise services.ServiceError(
            f"the recovery directory {recovery_dir} holds worker state of format {made}, and this "
            f"persona writes format {STATE_FORMAT}: its snapshots cannot be resumed. Rebuild with "
            "this version next to the running one (a new --recovery-dir and "
            "PERSONA_REDIS__WRITE_VERSION; README \"Upgrading\"), or run the persona that made "
            "the directory")


def check_recovery_dir(settings: Settings, recovery_dir: str,
                       log: Callable[[str], object] = print) -> None:
    """Fail fast with what to do when the offsets a restart on `recovery_dir` would resume from
    do not fit the topics: Bytewax panics ("… is not in this worker's routing map") on offsets of
    a topic the run does not read (the events topic was renamed), and librdkafka silently skips
    to the end of a partition whose resume offset is past it (the topic was deleted and created
    again), so the workers would never read its messages. Offsets that retention has deleted
    since are only logged: the workers go on from the oldest message kept (flows/feeds.py sets
    `auto.offset.reset` to earliest), and what was deleted unread is lost to their state."""
    offsets = recovery_store.resume_offsets(recovery_dir)
    if not offsets:
        return
    events, commands = settings.kafka.events_topic, settings.kafka.erasures
    foreign = sorted({topic for topic, _ in offsets} - {events, commands})
    if foreign:
        raise services.ServiceError(
            f"the recovery directory {recovery_dir} resumes Kafka topic(s) {', '.join(foreign)}, "
            f"which this run does not read (kafka.events_topic = {events}): run with the topic it "
            "was made for, or give a new --recovery-dir (the workers then start over from the "
            f"beginning of {events})")
    kept: dict[str, kafka_io.TopicRange] = {}
    for (topic, p), offset in sorted(offsets.items()):
        if topic not in kept:
            kept[topic] = kafka_io.topic_range(settings.kafka.bootstrap, topic,
                                               extra=kafka_config(settings.kafka))
        first, end = kept[topic].start.get(p, 0), kept[topic].end.get(p, 0)
        if offset > end:
            raise services.ServiceError(
                f"the recovery directory {recovery_dir} resumes partition {p} of {topic} at "
                f"offset {offset}, past its end ({end}): the topic was deleted and created again "
                "since, and the workers would skip its messages. Give a new --recovery-dir (or "
                "delete this one) to start over from the topic's beginning")
        if 0 <= offset < first:
            log(f"warning: partition {p} of {topic} resumes at offset {offset}, but retention has "
                f"deleted its messages before {first}: {first - offset:,} were never read and are "
                "lost to the workers' state (they go on from the oldest message kept); rebuild "
                "from an archive of the log if they matter, and keep retention longer than the "
                "workers can be down")


def ensure_erasure_topic(settings: Settings) -> None:
    """The flow reads its own erasure commands back (flows/feeds.py): the topic must exist."""
    services.ensure_topics(settings.kafka.bootstrap,
                           {settings.kafka.erasures: settings.kafka.partitions}, log=lambda m: None,
                           extra=kafka_config(settings.kafka))


def start(settings: Settings, config_path: str | None, *, processes: int = 1, workers: int = 1,
          tail: bool = True, recovery_dir: str | None = None, snapshot_s: int = 10,
          log: Callable[[str], object] = print, env_extra: dict | None = None,
          metrics_port: int | None = None) -> list[subprocess.Popen]:
    """Start the worker processes (each in its own session) and return them; see `run`."""
    check_services(settings)
    check_events_topic(settings)
    ensure_erasure_topic(settings)
    if recovery_dir:
        check_state_format(recovery_dir)
        check_recovery_dir(settings, recovery_dir, log)
        init_recovery(recovery_dir, max(processes * workers, 1))
        recovery_store.mark_state_format(recovery_dir)
    env = dict(os.environ, PERSONA_TAIL="1" if tail else "0", **(env_extra or {}))
    if config_path:
        env["PERSONA_CONFIG"] = str(Path(config_path).resolve())
    if recovery_dir:
        env["PERSONA_RECOVERY"] = "1"
    env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    if metrics_port:
        busy = [metrics_port + i for i in range(processes) if _port_busy(metrics_port + i)]
        if busy:  # Bytewax would only log a panic of its web server thread and run blind
            raise services.ServiceError(
                f"metrics port(s) {busy} already in use: pick another --metrics-port (or 0 = off)")
    api_cache = services.cache_root(settings) / "bytewax"
    for i in range(processes if metrics_port else 0):
        (api_cache / f"api-{i}").mkdir(parents=True, exist_ok=True)
    env["PERSONA_ENDED_DIR"] = ended = tempfile.mkdtemp(prefix="persona-ended-")
    procs: list[subprocess.Popen] = []
    try:
        for i, cmd in enumerate(worker_commands(processes, workers, recovery_dir, snapshot_s)):
            procs.append(subprocess.Popen(
                cmd, env=pinned_env(metrics_env(env, metrics_port, i, api_cache), i),
                start_new_session=True))
        # where each worker of a process notes that its dataflow ended (`supervise`), by its
        # index across the cluster (Bytewax numbers process i's workers i·W … i·W + W − 1)
        for i, p in enumerate(procs):
            p.ended_markers = [Path(ended, f"{p.pid}.{i * workers + w}")  # type: ignore[attr-defined]
                               for w in range(workers)]
        # (logged inside: a log line can block on a full pipe, and a signal then must still
        # stop what started)
        log(f"started {processes} worker process(es) × {workers} worker(s): "
            f"pids {[p.pid for p in procs]}")
        if metrics_port:
            log(f"Prometheus metrics: http://127.0.0.1:{metrics_port}/metrics"
                + (f" … :{metrics_port + processes - 1}/metrics" if processes > 1 else ""))
    except BaseException:  # (interrupted, or a process failed to start: none outlives this)
        stop(procs)
        shutil.rmtree(ended, ignore_errors=True)
        raise
    return procs


EXIT_GRACE_S = 60.0  # a worker whose dataflow ended and that has not exited after this is hung


def supervise(procs: list[subprocess.Popen], log: Callable[[str], object] = print,
              exit_grace_s: float = EXIT_GRACE_S, tick: Callable[[], object] | None = None) -> int:
    """Wait for the cluster; stop it all when one process fails (the others would panic).

    A process whose dataflow ended (the Redis sink of each of its workers closed:
    `flows.adapters.note_dataflow_end`) but that is still running `exit_grace_s` later is killed and counts as done: Bytewax 0.21 can
    hang at exit when a request to its dataflow API (a /metrics scrape) is in flight — the main
    thread holds the GIL while it waits for the API's thread, which waits for the GIL (seen once:
    a 2-process bench's worker spun 9 minutes after its last write)."""
    hung: set[int] = set()
    try:
        while True:
            for p in procs:
                if p.pid not in hung and p.poll() is None and _ended_long_ago(p, exit_grace_s):
                    log(f"worker process {p.pid} ended its dataflow {exit_grace_s:.0f}s ago but "
                        "did not exit (Bytewax's exit can deadlock with a /metrics request in "
                        "flight): killing it")
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    hung.add(p.pid)
            codes = [0 if p.pid in hung else p.poll() for p in procs]
            if all(c is not None for c in codes):
                _forget_markers(procs)  # (a signal's code is negative: not max(codes))
                return next((c for c in codes if c != 0), 0)
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                log(f"a worker process exited with {failed[0]}; stopping the cluster")
                stop(procs)
                return failed[0]
            if tick is not None:  # (a drained run's progress line)
                tick()
            time.sleep(0.2)
    except KeyboardInterrupt:
        stop(procs)  # before logging: a log line can block on a full stdout pipe
        log("interrupted; workers stopped")
        return 130


def _ended_long_ago(proc: subprocess.Popen, grace_s: float) -> bool:
    """Every worker of the process noted the end of its dataflow, the last more than `grace_s`
    ago."""
    markers = getattr(proc, "ended_markers", None)
    try:
        return bool(markers) and time.time() - max(m.stat().st_mtime for m in markers) > grace_s
    except OSError:  # (a worker has not noted it yet)
        return False


def _forget_markers(procs: list[subprocess.Popen]) -> None:
    """Remove the processes' end-of-dataflow notes and their directory."""
    dirs = {m.parent for p in procs for m in getattr(p, "ended_markers", ())}
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def stop(procs: list[subprocess.Popen]) -> None:
    """Stop worker processes (SIGTERM to their process groups, SIGKILL after 10 s)."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.time() + 10
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    _forget_markers(procs)
