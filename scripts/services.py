"""Local development services (Kafka broker, Redis), started on loopback only and only when needed.

Everything here is idempotent: an endpoint that already answers is used as it is (and never stopped by
`down`); otherwise, when the configured endpoint is this machine's own loopback port, a broker / server
is started in the background with its state, logs and pid file under `services.cache_dir`.

    ensure_kafka(settings, log) -> bootstrap     Kafka from Maven Central jars, KRaft, single node
    ensure_topics(bootstrap, {name: partitions}, log)
    ensure_redis(settings, log) -> url
    up(settings, log, extra_topics) -> (bootstrap, url)
    down(settings, log)                         stops only what `up` started (pid files)
    status(settings) -> dict

Failures raise ServiceError with what is wrong and what to do about it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import ipaddress
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from config.security import kafka_config, redis_connection
from config.settings import Settings
from scripts.tls import LocalTls, ensure_local_tls

Log = Callable[[str], object]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POM_TEMPLATE = Path(__file__).resolve().parent / "kafka" / "pom.xml.in"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
KAFKA_READY_TIMEOUT_S = 60.0
KAFKA_STOP_TIMEOUT_S = 30.0
REDIS_READY_TIMEOUT_S = 15.0
PROBE_TIMEOUT_S = 2.0

# librdkafka reports refused connections through its logger; probing must stay quiet.
_quiet = logging.getLogger("persona.services.rdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False
_quiet.setLevel(logging.CRITICAL)

# Brokers started by this process: kept referenced so Popen does not warn when collected.
_children: list[subprocess.Popen] = []


class ServiceError(RuntimeError):
    """A local service is unreachable and cannot be started here; the message says what to do."""


# --------------------------------------------------------------------------------------------- paths


def cache_root(settings: Settings) -> Path:
    """`services.cache_dir`; a relative path is taken from the project root (where .gitignore lists it)
    when running from a source checkout, else from the current directory."""
    path = Path(settings.services.cache_dir).expanduser()
    if path.is_absolute():
        return path
    base = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else Path.cwd()
    return base / path


def kafka_paths(settings: Settings) -> dict[str, Path]:
    home = cache_root(settings) / "kafka"
    version = home / settings.services.kafka_version
    return {
        "home": home,
        "version": version,
        "lib": version / "lib",
        "data": version / "data",
        "logs": home / "logs",
        "properties": home / "server.properties",
        "log4j": home / "log4j2.properties",
        "stdout": home / "kafka.out",
        "pid": home / "kafka.pid",
        "lock": home / ".lock",
    }


def _local_tls(settings: Settings, service: str, setting: str, ca_file: str) -> LocalTls:
    """The local CA and server certificate (scripts/tls.py) for a local `service` started with
    TLS, once the clients' CA setting `setting` (= `ca_file`) trusts that CA."""
    directory = cache_root(settings) / "tls"
    with _locked(directory / ".lock"):
        try:
            local = ensure_local_tls(directory)
        except RuntimeError as exc:
            raise ServiceError(str(exc)) from None
    if not ca_file or not local.trusted_by(ca_file):
        env = "PERSONA_" + setting.upper().replace(".", "__")
        raise ServiceError(
            f"the local {service} `persona up` starts with TLS has a certificate signed by the CA "
            f"in {local.ca} (written there now), which {setting} "
            f"{'does not hold' if ca_file else 'is not set to'}: set {setting} to it "
            f"({env}={local.ca}), or point the settings at your own TLS service")
    return local


def _redis_paths(settings: Settings) -> dict[str, Path]:
    home = cache_root(settings) / "redis"
    return {
        "home": home,
        "pid": home / "redis.pid",
        "log": home / "redis.log",
        "lock": home / ".lock",
    }


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialises concurrent `up`/`down` calls (parallel make targets, test workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------- helpers


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_hostport(entry: str, default_port: int) -> tuple[str, int]:
    entry = entry.strip()
    if "://" in entry:  # tolerate PLAINTEXT://host:port
        entry = entry.split("://", 1)[1]
    if entry.startswith("["):  # [::1]:9092
        host, _, rest = entry[1:].partition("]")
        port = rest.lstrip(":")
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, ""
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ServiceError(f"bad address {entry!r}: expected host:port") from None


def _tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int, must_contain: str) -> bool:
    """True if `pid` runs and (where /proc exists) its command line contains `must_contain`."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that has exited: reap it
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        return must_contain in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace"
        )
    except (OSError, IndexError):
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no {path})"
    return "\n".join(text[-lines:]) or f"({path} is empty)"


def _stop_pid(pid: int, must_contain: str, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True if it was running."""
    if not pid_alive(pid, must_contain):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, must_contain):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pid_alive(pid, must_contain):
        time.sleep(0.1)
    return True


# --------------------------------------------------------------------------------------------- Kafka


def admin_client(bootstrap: str, timeout: float, extra: dict | None = None):
    """An AdminClient whose librdkafka log lines are dropped (errors reach the caller as
    exceptions; its info lines would land in the middle of a command's output)."""
    from confluent_kafka.admin import AdminClient

    ms = str(max(1000, int(timeout * 1000)))
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.connection.setup.timeout.ms": ms,
            "socket.timeout.ms": ms,
            "logger": _quiet,
            **(extra or {}),  # access settings (config.security.kafka_config)
        }
    )


def kafka_brokers(bootstrap: str, timeout: float = PROBE_TIMEOUT_S,
                  extra: dict | None = None) -> set[int] | None:
    """Broker ids listed by a metadata request, or None when nothing answers within `timeout`."""
    from confluent_kafka import KafkaException

    entries = [split_hostport(e, 9092) for e in bootstrap.split(",") if e.strip()]
    if entries and not any(_tcp_open(h, p, min(1.0, timeout)) for h, p in entries):
        return None  # nothing listens: skip the client (it would retry until the timeout)
    try:
        md = admin_client(bootstrap, timeout, extra).list_topics(timeout=timeout)
    except KafkaException:
        return None
    return set(md.brokers) or None


def topic_exists(bootstrap: str, topic: str, timeout: float = PROBE_TIMEOUT_S,
                 extra: dict | None = None) -> bool:
    """Whether the broker's metadata lists `topic` with at least one partition. Asks for every
    topic: a request naming one may create it on a broker with `auto.create.topics.enable`."""
    from confluent_kafka import KafkaException

    try:
        meta = admin_client(bootstrap, timeout, extra).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ServiceError(f"Kafka not reachable at {bootstrap} to look up topic {topic}: "
                           f"{exc}") from None
    found = meta.topics.get(topic)
    return found is not None and found.error is None and bool(found.partitions)


def _kafka_local_target(settings: Settings) -> tuple[str, int] | None:
    """(host, port) if the configured bootstrap is this machine's loopback at services.kafka_port."""
    entries = [e for e in settings.kafka.bootstrap.split(",") if e.strip()]
    if len(entries) != 1:
        return None
    host, port = split_hostport(entries[0], 9092)
    if served_here(host) and port == settings.services.kafka_port:
        return host, port
    return None


def served_here(host: str) -> bool:
    """Whether `host` names the address the services `up` starts listen on (127.0.0.1). Not any
    loopback: `[::1]` or 127.0.0.2 would be probed in vain after the start, and `up` would then
    ask to be run again after `persona down`, for ever.

    >>> served_here("127.0.0.1"), served_here("localhost"), served_here("[::1]")
    (True, True, False)
    """
    return host.strip("[]").lower() in ("127.0.0.1", "localhost")


def _log4j_version(kafka_version: str) -> str:
    # Kafka 4.0/4.1 are built against log4j 2.24.x, 4.2+ against 2.25.x; slf4j is 1.7 in all of 4.x,
    # so the binding is log4j-slf4j-impl (not log4j-slf4j2-impl).
    try:
        major, minor = (int(x) for x in kafka_version.split(".")[:2])
    except ValueError:
        return "2.24.3"
    return "2.24.3" if (major, minor) <= (4, 1) else "2.25.2"


def _kafka_jar(paths: dict[str, Path], version: str) -> Path:
    return paths["lib"] / f"kafka_2.13-{version}.jar"


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ServiceError(
            "Java not found: the local Kafka broker needs Java 17+ "
            "(Debian: apt-get install -y openjdk-17-jre-headless), or point KAFKA_BOOTSTRAP at a broker"
        )
    return found


def resolve_jars(settings: Settings, paths: dict[str, Path], log: Log) -> None:
    version = settings.services.kafka_version
    if _kafka_jar(paths, version).is_file():
        return
    mvn = shutil.which("mvn")
    if not mvn:
        raise ServiceError(
            f"Maven not found: it resolves the Kafka {version} jars from Maven Central "
            "(Debian: apt-get install -y maven), or point KAFKA_BOOTSTRAP at a broker"
        )
    paths["version"].mkdir(parents=True, exist_ok=True)
    pom = paths["version"] / "pom.xml"
    pom.write_text(
        POM_TEMPLATE.read_text()
        .replace("@KAFKA_VERSION@", version)
        .replace("@LOG4J_VERSION@", _log4j_version(version))
    )
    staging = paths["version"] / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    log(f"kafka: resolving org.apache.kafka:kafka_2.13:{version} with Maven (first run only)")
    started = time.monotonic()
    cmd = [
        mvn, "-B", "-q", "-f", str(pom), DEPENDENCY_PLUGIN,
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").is_file():
        out = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise ServiceError(
            f"Maven could not resolve Kafka {version} (exit {proc.returncode}); check network access "
            f"to Maven Central and services.kafka_version.\n{out}"
        )
    shutil.rmtree(paths["lib"], ignore_errors=True)
    staging.rename(paths["lib"])  # atomic: a half-finished download never looks complete
    log(f"kafka: {len(list(paths['lib'].glob('*.jar')))} jars in {time.monotonic() - started:.1f}s")


def _client_listener(settings: Settings) -> str:
    """The listener a local broker serves clients on: the [kafka] access settings' protocol
    (`_check_local_access`)."""
    return f"{settings.kafka.security_protocol}://127.0.0.1:{settings.services.kafka_port}"


def _check_local_access(settings: Settings) -> None:
    """`persona up` starts brokers that the access settings can reach: PLAINTEXT, SSL (a local CA's
    certificate: scripts/tls.py), or SASL_PLAINTEXT / SASL_SSL with the PLAIN mechanism and the
    configured user (to try a SASL or TLS setup locally)."""
    k = settings.kafka
    if k.security_protocol in ("PLAINTEXT", "SSL"):
        return
    if k.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL") and k.sasl_mechanism == "PLAIN":
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", k.username) or re.search(r'["\\\s]', k.password):
            raise ServiceError(  # (they go into the broker's JAAS line as they are)
                "a local SASL broker takes a username of letters, digits, '_', '.', '-' and a "
                "password without quotes, backslashes or spaces")
        return
    raise ServiceError(
        f"`persona up` starts a PLAINTEXT, SSL, or SASL (PLAIN) broker only, not "
        f"{k.security_protocol} / {k.sasl_mechanism}: point KAFKA_BOOTSTRAP at your cluster")


def _server_properties(settings: Settings, paths: dict[str, Path],
                       tls: LocalTls | None = None) -> str:
    cport = settings.services.kafka_controller_port
    protocol = settings.kafka.security_protocol
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cport}",
        "listeners": f"{_client_listener(settings)},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": _client_listener(settings),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": protocol,
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{protocol}:{protocol}",
        "log.dirs": str(paths["data"]),
        "num.partitions": str(settings.kafka.partitions),
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.cleaner.dedupe.buffer.size": "16777216",
    }
    if tls is not None:  # SSL / SASL_SSL: the broker's own connections verify it too
        props.update({
            "ssl.keystore.type": "PEM", "ssl.keystore.location": str(tls.keystore),
            "ssl.truststore.type": "PEM", "ssl.truststore.location": str(tls.ca),
            "ssl.client.auth": "none",
        })
    if protocol.startswith("SASL_"):  # one user: the configured one (also the broker's own)
        user, password = settings.kafka.username, settings.kafka.password
        props.update({
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            f"listener.name.{protocol.lower()}.plain.sasl.jaas.config":
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{user}" password="{password}" user_{user}="{password}";',
        })
    head = "# Written by scripts/services.py on every start; edit the settings, not this file.\n"
    return head + "".join(f"{k}={v}\n" for k, v in props.items())


LOG4J2_PROPERTIES = """\
# Written by scripts/services.py. Broker log: logs/server.log (rolled at 10 MB, 3 kept);
# errors also go to stdout (kafka.out), which is shown when the broker fails to start.
status = warn
name = persona-kafka
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
appender.console.filter.threshold.type = ThresholdFilter
appender.console.filter.threshold.level = error
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
rootLogger.appenderRef.console.ref = console
logger.state.name = state.change.logger
logger.state.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


def _random_cluster_id() -> str:
    # Same format as `kafka.tools.StorageTool random-uuid` (Uuid.randomUuid(): url-safe base64 of
    # 16 random bytes, no padding, never starting with '-'), without starting a JVM for it.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _format_storage(settings: Settings, paths: dict[str, Path], java: str, log: Log) -> None:
    if (paths["data"] / "meta.properties").is_file():
        return
    paths["data"].mkdir(parents=True, exist_ok=True)
    cmd = [
        java, "-Xmx256m", f"-Dlog4j2.configurationFile={paths['log4j']}",
        f"-Dkafka.logs.dir={paths['logs']}", "-cp", f"{paths['lib']}/*",
        "kafka.tools.StorageTool", "format", "-t", _random_cluster_id(),
        "-c", str(paths["properties"]),
    ]  # fmt: skip
    log(f"kafka: formatting the KRaft store in {paths['data']}")
    proc = subprocess.run(
        cmd, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        out = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise ServiceError(f"formatting the Kafka store failed (exit {proc.returncode}):\n{out}")


def _wait_for_broker(
    bootstrap: str, proc_alive: Callable[[], bool], paths: dict[str, Path], access: dict
) -> None:
    deadline = time.monotonic() + KAFKA_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not proc_alive():
            raise ServiceError(
                "the Kafka broker exited while starting. Last lines of "
                f"{paths['stdout']}:\n{_tail(paths['stdout'])}\n"
                f"Last lines of {paths['logs'] / 'server.log'}:\n"
                f"{_tail(paths['logs'] / 'server.log', 15)}\n"
                f"(to start from an empty store: `persona down`, then rm -rf {paths['data']})"
            )
        brokers = kafka_brokers(bootstrap, timeout=1.0, extra=access)
        if brokers and 1 in brokers:
            return
        time.sleep(0.25)
    raise ServiceError(
        f"the Kafka broker did not answer at {bootstrap} within {KAFKA_READY_TIMEOUT_S:.0f}s; "
        f"see {paths['logs'] / 'server.log'}; `persona down` stops it.\n"
        f"{_tail(paths['logs'] / 'server.log', 15)}"
    )


def _running_listener(paths: dict[str, Path]) -> str:
    """The client listener in the server.properties the running broker was started with."""
    try:
        for line in paths["properties"].read_text().splitlines():
            if line.startswith("listeners="):
                return line.split("=", 1)[1].split(",")[0]
    except OSError:
        pass
    return "an unknown port"


def ensure_kafka(settings: Settings, log: Log = print) -> str:
    """A reachable bootstrap: the configured one if it answers, else a broker started on loopback."""
    bootstrap = settings.kafka.bootstrap
    access = kafka_config(settings.kafka)  # a SASL or TLS broker answers no bare probe
    target = _kafka_local_target(settings)
    if target is None:
        if kafka_brokers(bootstrap, timeout=settings.kafka.connect_timeout_s, extra=access):
            return bootstrap
        raise ServiceError(
            f"Kafka not reachable at {bootstrap}: start it with `persona up` or set KAFKA_BOOTSTRAP"
            + (
                ""
                if not all(
                    is_loopback(split_hostport(e, 9092)[0]) for e in bootstrap.split(",") if e
                )
                else f" (`persona up` only starts a broker at 127.0.0.1:{settings.services.kafka_port}"
                ", services.kafka_port)"
            )
        )
    if kafka_brokers(bootstrap, extra=access):
        return bootstrap

    paths = kafka_paths(settings)
    with _locked(paths["lock"]):
        if kafka_brokers(bootstrap, extra=access):  # a concurrent `up` started it meanwhile
            return bootstrap
        pid = read_pid(paths["pid"])
        if pid is not None and pid_alive(pid, "kafka.Kafka"):
            running = _running_listener(paths)
            wanted = _client_listener(settings)
            if running != wanted:
                raise ServiceError(
                    f"the broker persona started (pid {pid}) listens on {running}, but the settings "
                    f"ask for {bootstrap}: run `persona down` first, then `persona up`"
                )
            # Started earlier by us (maybe by a concurrent `up`) and still starting up.
            log(f"kafka: waiting for the broker started earlier (pid {pid})")
            _wait_for_broker(bootstrap, lambda: pid_alive(pid, "kafka.Kafka"), paths, access)
            return bootstrap
        if _tcp_open(*target):
            raise ServiceError(
                f"port {target[1]} is in use but does not answer as a Kafka broker: stop what "
                f"listens there, or set services.kafka_port and KAFKA_BOOTSTRAP to a free port"
            )
        if _tcp_open("127.0.0.1", settings.services.kafka_controller_port):
            raise ServiceError(
                f"the Kafka controller port {settings.services.kafka_controller_port} is in use: "
                "stop what listens there or set services.kafka_controller_port"
            )
        _check_local_access(settings)
        tls = _local_tls(settings, "Kafka broker", "kafka.ca_file", settings.kafka.ca_file) \
            if settings.kafka.security_protocol.endswith("SSL") else None
        java = _java()
        resolve_jars(settings, paths, log)
        paths["logs"].mkdir(parents=True, exist_ok=True)
        paths["properties"].write_text(_server_properties(settings, paths, tls))
        paths["log4j"].write_text(LOG4J2_PROPERTIES)
        _format_storage(settings, paths, java, log)

        cmd = [
            java, "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={paths['log4j']}", f"-Dkafka.logs.dir={paths['logs']}",
            "-cp", f"{paths['lib']}/*", "kafka.Kafka", str(paths["properties"]),
        ]  # fmt: skip
        log(f"kafka: starting broker {settings.services.kafka_version} at {bootstrap}")
        started = time.monotonic()
        with paths["stdout"].open("w") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=paths["home"],
                start_new_session=True,
            )
        _children.append(proc)
        paths["pid"].write_text(f"{proc.pid}\n")
        _wait_for_broker(bootstrap, lambda: proc.poll() is None, paths, access)
        log(
            f"kafka: ready in {time.monotonic() - started:.1f}s (pid {proc.pid}, logs {paths['logs']})"
        )
    return bootstrap


def ensure_topics(bootstrap: str, topics: dict[str, int], log: Log = print,
                  extra: dict | None = None) -> None:
    """Create the missing topics with the given partition count (replication 1); leave existing ones.
    `extra`: the client's access settings (config.security.kafka_config)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = admin_client(bootstrap, 10.0, extra)
    try:
        existing = admin.list_topics(timeout=10).topics
    except KafkaException as exc:
        raise ServiceError(f"Kafka not reachable at {bootstrap} to create topics: {exc}") from None
    for name, want in topics.items():
        if name in existing and len(existing[name].partitions) != want:
            log(
                f"kafka: topic {name} exists with {len(existing[name].partitions)} partitions "
                f"(configured {want}); left as it is"
            )
    missing = {name: n for name, n in topics.items() if name not in existing}
    if not missing:
        return
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in missing.items()],
        operation_timeout=30,
        request_timeout=30,
    )
    for name, fut in futures.items():
        try:
            fut.result(timeout=60)
            log(f"kafka: created topic {name} ({missing[name]} partitions)")
        except KafkaException as exc:
            err = exc.args[0]
            if getattr(err, "code", lambda: None)() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ServiceError(f"could not create Kafka topic {name}: {err}") from None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # creation is asynchronous: wait until metadata shows it
        md = admin.list_topics(timeout=10).topics
        if all(
            name in md and md[name].error is None and len(md[name].partitions) == n
            for name, n in missing.items()
        ):
            return
        time.sleep(0.2)
    raise ServiceError(f"Kafka topics {sorted(missing)} were created but never became visible")


# --------------------------------------------------------------------------------------------- Redis


def _redis_ping(url: str, options: dict | None = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    import redis

    from operators.redis_store import connect

    try:
        client = connect(url, timeout_s=timeout, **(options or {}))  # config.security's options
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def redis_server_path() -> str | None:
    """The installed redis-server (on PATH, else Debian's), or None."""
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _redis_server(log: Log) -> str:
    if found := redis_server_path():
        return found
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or not apt:
        raise ServiceError(
            "redis-server not found: install it (Debian: sudo apt-get install -y redis-server, "
            "macOS: brew install redis) or set REDIS_URL to a running Redis"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", "--no-install-recommends", "redis-server"]
    log("redis: redis-server not found; installing it with apt-get")
    proc = subprocess.run(
        install, check=False, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        subprocess.run(
            [apt, "update", "-q"],
            check=False,
            capture_output=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        proc = subprocess.run(
            install, check=False, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
        )
    found = redis_server_path()
    if proc.returncode != 0 or found is None:
        out = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise ServiceError(
            "installing redis-server with apt-get failed; install it by hand or set REDIS_URL.\n"
            + out
        )
    return found


def private_redis(port: int, data_dir, args: Iterable[str] = (), *, password: str | None = None,
                  loaded: bool = True) -> subprocess.Popen:
    """A redis-server of its own on loopback `port`, in the foreground (tests and benchmarks,
    never the shared one): no RDB snapshots, its files in `data_dir`, then `args` (persistence,
    cluster mode, `--requirepass password`…; a later option wins). Returned once it answers PING;
    with `loaded` False, once it answers at all (LOADING too: a test of a loading Redis)."""
    import redis

    proc = subprocess.Popen([redis_server_path() or "redis-server", "--port", str(port),
                             "--bind", "127.0.0.1", "--save", "", "--dir", str(data_dir), *args],
                            stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=password, retry=None)
    deadline = time.monotonic() + REDIS_READY_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            client.ping()
            return proc
        except redis.BusyLoadingError:
            if not loaded:
                return proc
            time.sleep(0.05)
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise ServiceError(f"a private redis-server did not start on port {port}")


def private_sentinel(port: int, data_dir, service: str, primary_port: int,
                     down_after_ms: int = 1000,
                     acl_user: tuple[str, str] | None = None) -> subprocess.Popen:
    """A Redis Sentinel of its own on loopback `port` (tests), watching the primary at loopback
    `primary_port` as `service` with a quorum of 1 (alone, it decides failovers), its rewritable
    config file in `data_dir`. `acl_user` (name, password): the only user it lets in (its default
    user off). Returned once it knows at least one replica of the primary, so a failover has a
    replica to promote."""
    import redis

    conf = Path(data_dir) / f"sentinel-{port}.conf"
    users = (f"user default off\nuser {acl_user[0]} on >{acl_user[1]} ~* &* +@all\n"
             if acl_user else "")
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {data_dir}\n{users}"
                    f"sentinel monitor {service} 127.0.0.1 {primary_port} 1\n"
                    f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
                    f"sentinel failover-timeout {service} 10000\n")
    proc = subprocess.Popen([redis_server_path() or "redis-server", str(conf), "--sentinel"],
                            stdout=subprocess.DEVNULL)
    login = {"username": acl_user[0], "password": acl_user[1]} if acl_user else {}
    client = redis.Redis(port=port, retry=None, **login)
    deadline = time.monotonic() + REDIS_READY_TIMEOUT_S + 15  # replicas: the primary's next INFO
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if client.sentinel_slaves(service):
                return proc
        except redis.RedisError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise ServiceError(f"a private Redis Sentinel on port {port} did not find a replica of "
                       f"127.0.0.1:{primary_port}")


def _redis_local_target(settings: Settings) -> tuple[str, int] | None:
    parts = urlsplit(settings.redis.url)
    if parts.scheme not in {"redis", "rediss", ""} or not parts.hostname:
        return None
    port = parts.port or 6379
    if served_here(parts.hostname) and port == settings.services.redis_port:
        return parts.hostname, port
    return None


def ensure_redis(settings: Settings, log: Log = print) -> str:
    """A reachable Redis URL: the configured one if it answers PING, else a server started on loopback."""
    url = settings.redis.url
    ping = partial(_redis_ping, *redis_connection(settings.redis))  # its password, TLS, Sentinels
    target = _redis_local_target(settings)
    if target is None:
        if ping(timeout=settings.kafka.connect_timeout_s):
            return url
        parts = urlsplit(url)
        hint = (
            f" (`persona up` only starts Redis at 127.0.0.1:{settings.services.redis_port}, "
            "services.redis_port)"
            if parts.hostname and is_loopback(parts.hostname)
            else ""
        )
        raise ServiceError(
            f"Redis not reachable at {url}: start it with `persona up` or set REDIS_URL{hint}"
        )
    if ping():
        return url

    paths = _redis_paths(settings)
    with _locked(paths["lock"]):
        if ping():  # a concurrent `up` got there first
            return url
        pid = read_pid(paths["pid"])
        if pid is not None and pid_alive(pid, "redis-server"):
            raise ServiceError(
                f"the redis-server persona started (pid {pid}) does not answer at {url} (another "
                "port?): run `persona down` first, then `persona up`"
            )
        if _tcp_open(*target):
            raise ServiceError(
                f"port {target[1]} is in use but does not answer PING at {url} (wrong password or "
                "database, or not Redis): fix REDIS_URL, or set services.redis_port and REDIS_URL"
            )
        tls = _local_tls(settings, "Redis", "redis.ca_file", settings.redis.ca_file) \
            if redis_connection(settings.redis)[0].startswith("rediss://") else None
        server = _redis_server(log)
        if ping():  # the Debian package may start its own service on install
            log("redis: using the redis-server service the package started")
            return url
        paths["home"].mkdir(parents=True, exist_ok=True)
        port = str(settings.services.redis_port)
        listen = ["--port", port] if tls is None else [  # TLS only: no plaintext port
            "--port", "0", "--tls-port", port, "--tls-cert-file", str(tls.cert),
            "--tls-key-file", str(tls.key), "--tls-ca-cert-file", str(tls.ca),
            "--tls-auth-clients", "no"]
        # the clients' login, so the server `up` starts answers them (a local trial's password
        # is on this machine's process list: not for secrets that matter)
        login = ["--requirepass", settings.redis.password] if settings.redis.password else []
        if settings.redis.username:
            login += ["--user", settings.redis.username, "on", f">{settings.redis.password}",
                      "~*", "&*", "+@all"]
        cmd = [
            server, *listen, *login, "--bind", "127.0.0.1",
            "--daemonize", "yes", "--dir", str(paths["home"]), "--pidfile", str(paths["pid"]),
            "--logfile", str(paths["log"]), "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        log(f"redis: starting redis-server at 127.0.0.1:{port}{' (TLS only)' if tls else ''}")
        proc = subprocess.run(
            cmd, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            raise ServiceError(
                f"redis-server failed to start (exit {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr).strip()}\n{_tail(paths['log'], 15)}"
            )
        deadline = time.monotonic() + REDIS_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if ping(timeout=0.5):
                log(f"redis: ready (pid {read_pid(paths['pid'])}, log {paths['log']})")
                return url
            time.sleep(0.1)
        raise ServiceError(
            f"redis-server did not answer PING at {url} within {REDIS_READY_TIMEOUT_S:.0f}s; "
            f"last lines of {paths['log']}:\n{_tail(paths['log'], 15)}"
        )


# ----------------------------------------------------------------------------------------- commands


def up(settings: Settings, log: Log = print, extra_topics: Iterable[str] = ()) -> tuple[str, str]:
    """Kafka (with the events, dead-letter and `extra_topics` topics) and Redis, started if needed."""
    bootstrap = ensure_kafka(settings, log)
    names = [settings.kafka.events_topic, settings.kafka.dead_letter_topic,
             settings.kafka.notifications_topic, settings.kafka.erasures, *extra_topics]
    ensure_topics(bootstrap, dict.fromkeys(names, settings.kafka.partitions), log,
                  extra=kafka_config(settings.kafka))
    redis_url = ensure_redis(settings, log)
    return bootstrap, redis_url


def down(settings: Settings, log: Log = print) -> None:
    """Stop the broker and Redis that `up` started (by pid file); leave any other service alone."""
    kpaths = kafka_paths(settings)
    with _locked(kpaths["lock"]):
        pid = read_pid(kpaths["pid"])
        if pid is not None and _stop_pid(pid, "kafka.Kafka", KAFKA_STOP_TIMEOUT_S):
            log(f"kafka: stopped broker (pid {pid})")
        else:
            log("kafka: no broker started by persona is running")
        kpaths["pid"].unlink(missing_ok=True)

    rpaths = _redis_paths(settings)
    with _locked(rpaths["lock"]):
        pid = read_pid(rpaths["pid"])
        if pid is not None and _stop_pid(pid, "redis-server", 15.0):
            log(f"redis: stopped redis-server (pid {pid})")
        else:
            log("redis: no redis-server started by persona is running")
        rpaths["pid"].unlink(missing_ok=True)


def redis_warnings(settings: Settings) -> list[str]:
    """What in the Redis's own settings can lose the workers' writes or stall them
    (`operators.redis_store.durability_warnings`), for every primary of a Redis Cluster. INFO
    works where managed services disable CONFIG; a Redis that refuses it too gives none."""
    import redis

    from operators.redis_store import connect_to, durability_warnings

    client = connect_to(settings.redis, timeout_s=3.0)
    try:  # (a cluster client asks one node unless told which: every primary, by name)
        nodes = (list(client.info(target_nodes=client.PRIMARIES).values())
                 if settings.redis.cluster else [client.info()])
    except redis.RedisError:
        return []
    finally:
        client.close()
    dev = _redis_local_target(settings) is not None  # `persona up`'s: no persistence, on purpose
    return [w for node in nodes
            for w in durability_warnings(node, settings.redis.wait_replicas, dev)]


def workers_lag(settings: Settings) -> dict | None:
    """How far the workers are behind the events topic, by the positions they commit to their
    progress group (flows.resources.ProgressCommits, every kafka.progress_commit_s): {"group",
    "topic", "lag", "partitions": {p: {"committed", "end", "lag"}}}; None without a group or a
    topic. A partition with no committed position counts from its beginning."""
    from scripts import kafka_io

    k, group = settings.kafka, settings.progress_group
    if not group:
        return None
    try:
        rng = kafka_io.topic_range(k.bootstrap, k.events_topic, timeout_s=k.connect_timeout_s,
                                   extra=kafka_config(k))
        committed = kafka_io.group_offsets(k.bootstrap, group, k.events_topic, sorted(rng.end),
                                           timeout_s=k.connect_timeout_s, extra=kafka_config(k))
    except Exception:  # unreachable, no topic: `status` says so elsewhere
        return None
    partitions = {p: {"committed": committed.get(p), "end": end,
                      "lag": end - max(committed.get(p, rng.start[p]), rng.start[p])}
                  for p, end in sorted(rng.end.items())}
    return {"group": group, "topic": k.events_topic,
            "lag": sum(v["lag"] for v in partitions.values()), "partitions": partitions}


def status(settings: Settings) -> dict:
    """Reachability of both services and whether `up` manages them, what in Redis's settings
    can lose writes, and the workers' lag: {"kafka": {"endpoint", "reachable", "managed", "pid"},
    "redis": {…, "warnings"}, "workers": workers_lag(settings)}."""
    from config.settings import mask_url

    kpid = read_pid(kafka_paths(settings)["pid"])
    rpid = read_pid(_redis_paths(settings)["pid"])
    kmanaged = kpid is not None and pid_alive(kpid, "kafka.Kafka")
    rmanaged = rpid is not None and pid_alive(rpid, "redis-server")
    kafka_up = bool(kafka_brokers(settings.kafka.bootstrap, extra=kafka_config(settings.kafka)))
    redis_up = _redis_ping(*redis_connection(settings.redis))
    return {
        "kafka": {
            "endpoint": settings.kafka.bootstrap,
            "reachable": kafka_up,
            "managed": kmanaged,
            "pid": kpid if kmanaged else None,
        },
        "redis": {
            "endpoint": mask_url(settings.redis.url),
            "reachable": redis_up,
            "managed": rmanaged,
            "pid": rpid if rmanaged else None,
            "warnings": redis_warnings(settings) if redis_up else [],
        },
        "workers": workers_lag(settings) if kafka_up else None,
    }
