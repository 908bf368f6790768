"""`persona`: one CLI for local services, workers, data, the reader and evaluation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import config as config_mod
from config import ConfigError
from scripts.bench_config import BenchConfig as Bench
from scripts.bench_config import ReaderLoad as Reader

app = typer.Typer(help="persona — streaming personalization for social apps.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.")
schemas_app = typer.Typer(help="Wire formats.")
experiments_app = typer.Typer(help="Online experiments (A/B arms declared in config).")
app.add_typer(config_app, name="config")
app.add_typer(experiments_app, name="experiments")
app.add_typer(schemas_app, name="schemas")
console = Console()
err = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML file layered over config/default.toml")


def _settings(path: Optional[Path]):
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


def _print_bench(title: str, rows: list[tuple[str, str]], report: dict,
                 json_out: Optional[Path]) -> None:
    """A bench's (measure, value) rows as a table, and its report as JSON when asked."""
    from rich.table import Table

    out = Table(title=title)
    out.add_column("measure")
    out.add_column("value", justify="right")
    for name, value in rows:
        out.add_row(name, value)
    console.print(out)
    if json_out:
        json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        console.print(f"wrote {json_out}")


def _fail(exc: Exception, code: int = 1):
    err.print(f"[red]error:[/] {exc}")
    raise typer.Exit(code)


@app.command()
def up(config: Optional[Path] = ConfigOpt):
    """Start (or reuse) Kafka and Redis on loopback and create the topics."""
    from scripts import services
    settings = _settings(config)
    try:
        bootstrap, url = services.up(settings, log=console.print)
    except services.ServiceError as exc:
        _fail(exc)
    console.print(f"[green]ready[/]: KAFKA_BOOTSTRAP={bootstrap} REDIS_URL={url}")


@app.command()
def down(config: Optional[Path] = ConfigOpt):
    """Stop the Kafka broker and Redis that `persona up` started."""
    from scripts import services
    services.down(_settings(config), log=console.print)


@app.command()
def status(config: Optional[Path] = ConfigOpt):
    """Reachability of Kafka and Redis, Redis settings that can lose writes, the workers' lag."""
    from scripts import services
    console.print_json(data=services.status(_settings(config)))


@app.command()
def run(config: Optional[Path] = ConfigOpt,
        processes: int = typer.Option(1, "--processes", "-p", min=1, help="worker processes"),
        workers: int = typer.Option(1, "--workers", "-w", min=1, help="worker threads per process"),
        until_drained: bool = typer.Option(
            False, help="stop at the end of the topic (with --recovery-dir: then read the run's "
            "erasure commands back and settle the suggestions, in further passes)"),
        recovery_dir: Optional[str] = typer.Option(None, help="enable Bytewax recovery here"),
        snapshot_s: int = typer.Option(10, min=1, help="epoch / snapshot interval, seconds"),
        metrics_port: int = typer.Option(
            3030, min=0, max=65535,
            help="Prometheus /metrics of process i on BASE+i (Bytewax dataflow API); 0 = off"),
        pin_cpus: bool = typer.Option(False, help="pin process i to CPU i mod the CPU count "
                                      "(a machine given to the workers alone)")):
    """Run the streaming workers (Kafka → Bytewax → Redis)."""
    from scripts import runner, services
    settings = _settings(config)
    try:
        code = runner.run(settings, str(config) if config else None, processes=processes,
                          workers=workers, tail=not until_drained, recovery_dir=recovery_dir,
                          snapshot_s=snapshot_s, log=console.print, metrics_port=metrics_port,
                          env_extra={"PERSONA_PIN_CPUS": "1"} if pin_cpus else None)
    except services.ServiceError as exc:
        _fail(exc)
    raise typer.Exit(code)


@app.command()
def generate(out: Path = typer.Option(..., "--out", "-o", help="JSONL log to write (.gz ok)"),
             users: int = typer.Option(500, min=1), days: float = typer.Option(7.0, min=0.01),
             topics: int = typer.Option(20, min=1), seed: int = 7,
             produce: bool = typer.Option(False, help="also produce the log to Kafka"),
             plant_arm: Optional[str] = typer.Option(
                 None, help="EXPERIMENT/ARM of --config whose users engage more (a planted winner)"),
             plant_lift: float = typer.Option(0.5, help="engagement logit lift of --plant-arm"),
             config: Optional[Path] = ConfigOpt):
    """Generate seeded synthetic social activity with planted preferences."""
    from scripts.generate import GeneratorConfig, generate_log
    planted = None
    if plant_arm:
        exp_name, _, arm = plant_arm.partition("/")
        experiment = next((e for e in _settings(config).experiments if e.name == exp_name), None)
        if experiment is None or not arm:
            _fail(ValueError(f"--plant-arm {plant_arm!r}: expected EXPERIMENT/ARM of an experiment "
                             f"declared in --config"), 2)
        planted = (experiment, arm, plant_lift)
    try:
        cfg = GeneratorConfig(users=users, days=days, topics=topics, seed=seed, planted_arm=planted)
        cfg.validate()
    except ValueError as exc:
        _fail(exc, 2)
    counts = generate_log(cfg, out)
    console.print(f"wrote {sum(counts.values()):,} events to {out} (truth: {out}.truth.json)")
    if produce:
        _produce_file(out, config)


def _produce_file(path: Path, config: Optional[Path], topic: Optional[str] = None) -> None:
    from config.security import kafka_config
    from scripts import kafka_io, services
    from scripts.generate import read_log
    settings = _settings(config)
    topic = topic or settings.kafka.events_topic
    if not services.kafka_brokers(settings.kafka.bootstrap, extra=kafka_config(settings.kafka)):
        _fail(RuntimeError(f"Kafka not reachable at {settings.kafka.bootstrap}: start it with "
                           "`persona up` or set KAFKA_BOOTSTRAP"))
    lines = list(read_log(path))
    with Progress(TextColumn(f"producing to {topic}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("produce", total=len(lines))
        n = kafka_io.produce(settings.kafka.bootstrap, topic, lines,
                             progress=lambda k: bar.update(task, completed=k),
                             extra=kafka_config(settings.kafka))
    console.print(f"produced {n:,} events to {topic}")


@app.command()
def produce(file: Path, topic: Optional[str] = None, config: Optional[Path] = ConfigOpt):
    """Produce a JSONL event log (or .gz) to the events topic, keyed by user."""
    if not file.exists():
        _fail(FileNotFoundError(f"{file} does not exist; create one with `persona generate`"))
    _produce_file(file, config, topic)


@app.command()
def versions(config: Optional[Path] = ConfigOpt,
             allocate: bool = typer.Option(False, help="reserve a new version number, print it"),
             switch: Optional[str] = typer.Option(None, help="make this version active (atomic)"),
             collect_after_s: Optional[float] = typer.Option(
                 None, help="delete versions retired longer ago than this")):
    """Keyspace versions: the active one, the retired ones; allocate, switch, collect."""
    from operators.redis_store import connect_to
    from scripts.versions import Versions
    settings = _settings(config)
    versions_ = Versions(connect_to(settings.redis), settings.redis.prefix)
    out: dict = {}
    if allocate:
        out["allocated"] = versions_.allocate()
    if switch is not None:
        out["previous"] = versions_.switch(switch)
    if collect_after_s is not None:
        out["collected"] = versions_.collect(collect_after_s)
    out["active"] = versions_.active()
    out["retired"] = versions_.retired()
    console.print_json(data=out)


@app.command()
def replay(logs: list[Path] = typer.Argument(None, help="JSONL logs (.gz ok) or directories of them"),
           config: Optional[Path] = ConfigOpt,
           topic: Optional[str] = typer.Option(
               None, help="read this Kafka topic instead of logs (e.g. the events topic), up to "
                          "its end at the start of the replay"),
           from_timestamp: Optional[str] = typer.Option(
               None, help="with --topic: from this Kafka message time (epoch ms or ISO 8601)"),
           from_offsets: Optional[str] = typer.Option(
               None, help="with --topic: from these offsets, e.g. 0:120,1:98 (other partitions: "
                          "from their beginning)"),
           no_switch: bool = typer.Option(False, help="build the version without activating it"),
           grace_s: float = typer.Option(60.0, help="keep retired versions this long")):
    """Rebuild Redis from event logs or a Kafka topic into a new keyspace version, then switch
    readers to it."""
    from config.security import kafka_config
    from scripts import kafka_io
    from scripts import replay as replay_mod
    settings = _settings(config)
    if bool(logs) == bool(topic):
        _fail("give either log files or --topic (e.g. --topic " + settings.kafka.events_topic + ")")
    if (from_timestamp or from_offsets) and not topic:
        _fail("--from-timestamp / --from-offsets need --topic")
    if from_timestamp and from_offsets:
        _fail("give --from-timestamp or --from-offsets, not both")
    try:
        rng = None
        if topic:
            rng = kafka_io.topic_range(
                settings.kafka.bootstrap, topic,
                from_ts_ms=replay_mod.parse_timestamp_ms(from_timestamp) if from_timestamp else None,
                from_offsets=replay_mod.parse_offsets(from_offsets) if from_offsets else None,
                timeout_s=settings.kafka.connect_timeout_s, extra=kafka_config(settings.kafka))
        summary = replay_mod.replay(settings, list(logs or []), topic=rng, switch=not no_switch,
                                    grace_s=grace_s, console=console)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        _fail(exc)
    console.print_json(data=summary)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8080, config: Optional[Path] = ConfigOpt,
          workers: int = typer.Option(1, min=1, max=64, help="uvicorn worker processes (each with "
                                                              "its own metrics: see README)")):
    """Serve the reader HTTP API (GET /feed/{user_id}, /metrics, /inspect; OpenAPI at /docs)."""
    import os

    import uvicorn

    from config import logs
    from reader.http import CONFIG_ENV, create_app
    settings = _settings(config)  # fail fast on a bad config, before any worker starts
    # no uvicorn access log: it would print user ids from paths; the app logs route templates
    logs.configure(settings.log)
    # uvloop and httptools when installed (they are dependencies), else asyncio and h11
    options = dict(host=host, port=port, log_level="info", access_log=False, loop="auto",
                   http="auto")
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
    else:  # worker processes import the app themselves: pass the config file by environment
        if config is not None:
            os.environ[CONFIG_ENV] = str(config.resolve())
        uvicorn.run("reader.http:app_from_env", factory=True, workers=workers, **options)


@app.command()
def feed(user_id: str, limit: int = 10, prefix: Optional[str] = None,
         config: Optional[Path] = ConfigOpt):
    """Print a user's feed from Redis, with reasons."""
    from reader import PersonaClient
    settings = _settings(config)
    client = PersonaClient.from_settings(settings, prefix)
    console.print_json(data=client.feed(user_id, limit).to_dict())


@app.command()
def bench(config: Optional[Path] = ConfigOpt,
          events: int = typer.Option(Bench.events, min=100, help="events in the workload"),
          users: int = typer.Option(Bench.users, min=10, help="users in the generated world"),
          seed: int = Bench.seed,
          processes: int = typer.Option(Bench.processes, "--processes", "-p", min=1, max=8,
                                        help="worker processes (and I/O floor consumers)"),
          partitions: int = typer.Option(Bench.partitions, min=1, max=64,
                                         help="partitions of the bench topics"),
          scale: bool = typer.Option(Bench.scale, help="also run the other of 1 / 2 processes "
                                                       "on the same topic and print the ratio"),
          freshness_s: float = typer.Option(Bench.freshness_s, min=0,
                                            help="paced freshness phase (0 = skip)"),
          rate: Optional[float] = typer.Option(Bench.freshness_rate,
                                               help="freshness phase events/s (default: half "
                                                    "the highest sustained rate)"),
          rate_search_steps: int = typer.Option(
              Bench.rate_search_steps, min=0,
              help="steps of the search for the rate tailing workers sustain (0: freshness at "
                   "half the drain's steady rate)"),
          rate_step_s: float = typer.Option(Bench.rate_step_s, min=1,
                                            help="each search step's length"),
          rank_interval_s: Optional[float] = typer.Option(
              Bench.rank_interval_s, help="override stream.rank_interval_s for this run"),
          backlog_interval_s: Optional[float] = typer.Option(
              Bench.backlog_interval_s,
              help="override stream.backlog_interval_s (catch-up mode) for this run"),
          pin_cpus: bool = typer.Option(Bench.pin_cpus, help="pin worker process i to CPU i (as "
                                                             "`persona run --pin-cpus`)"),
          reader: bool = typer.Option(Bench.reader, help="reader phase: HTTP vs raw Redis"),
          reader_s: float = typer.Option(Bench.reader_s, min=0.5),
          concurrency: int = typer.Option(Bench.reader_concurrency, min=1,
                                          help="reader phase: keep-alive connections"),
          reader_rate: float = typer.Option(Bench.reader_rate or 0.0, min=0,
                                            help="reader phase: open-loop req/s (0: closed loop)"),
          keep: bool = typer.Option(Bench.keep, help="keep the bench topics and keys"),
          churn_s: float = typer.Option(Bench.churn_s, min=0,
                                        help="bounded-state phase: ever-new users for this long, "
                                             "RSS over time (0 = skip)"),
          churn_rate: float = typer.Option(Bench.churn_rate, min=1,
                                           help="bounded-state phase events/s"),
          churn_idle_s: float = typer.Option(Bench.churn_idle_s, min=0,
                                             help="bounded-state phase stream.user_idle_evict_s "
                                                  "(0 = never evict)"),
          churn_small_caps: bool = typer.Option(Bench.churn_small_caps,
                                                help="bounded-state phase: the caps that grow "
                                                     "with a creator's audience shrunk to fill "
                                                     "in the first half (--no-…: the defaults)"),
          json_out: Optional[Path] = typer.Option(None, "--json", help="write the report here")):
    """Throughput, freshness, memory and reader latency of the full topology on a seeded
    synthetic workload, next to the same run's I/O floor (private topics and keys, removed after)."""

    from scripts import bench as bench_mod
    from scripts import runner, services
    settings = _settings(config)
    try:
        runner.check_services(settings)
        report = bench_mod.run(settings, Bench(
            events=events, users=users, seed=seed, processes=processes, partitions=partitions,
            scale=scale, freshness_s=freshness_s, freshness_rate=rate,
            rate_search_steps=rate_search_steps, rate_step_s=rate_step_s,
            rank_interval_s=rank_interval_s, backlog_interval_s=backlog_interval_s,
            pin_cpus=pin_cpus, reader=reader, reader_s=reader_s, reader_concurrency=concurrency,
            reader_rate=reader_rate or None, keep=keep, churn_s=churn_s, churn_rate=churn_rate,
            churn_idle_s=churn_idle_s, churn_small_caps=churn_small_caps), log=console.print)
    except services.ServiceError as exc:
        _fail(exc)
    _print_bench(f"persona bench {report['run_id']} (indicative when the CPU is shared)",
                 bench_mod.table(report), report, json_out)


@app.command("bench-reader")
def bench_reader(config: Optional[Path] = ConfigOpt,
                 rate: float = typer.Option(Reader.rate or 0.0, min=0,
                                            help="open-loop req/s (0: closed loop only)"),
                 connections: int = typer.Option(Reader.connections, min=1, max=256,
                                                 help="keep-alive connections"),
                 seconds: float = typer.Option(Reader.seconds, min=0.5, max=600),
                 closed: bool = typer.Option(Reader.closed,
                                             help="also a closed loop at --connections"),
                 workers: int = typer.Option(Reader.server_workers, min=1, max=64,
                                             help="`persona serve --workers`"),
                 load_processes: int = typer.Option(Reader.load_processes, min=1, max=16,
                                                    help="load generator processes"),
                 users: int = typer.Option(2000, min=1, help="feeds to read (seeded, or sampled "
                                                             "from --prefix)"),
                 prefix: Optional[str] = typer.Option(None, help="read this keyspace's feeds "
                                                                 "instead of seeding some"),
                 seed: int = 7,
                 json_out: Optional[Path] = typer.Option(None, "--json", help="write the report here")):
    """Reader latency alone: GET /feed/{user} vs raw Redis GET of the same keys, same load
    (open loop at --rate from separate processes; see README "Performance")."""

    from scripts import bench_reader as bench_mod
    settings = _settings(config)
    load = Reader(rate=rate or None, connections=connections, seconds=seconds,
                                closed=closed, server_workers=workers,
                                load_processes=load_processes)
    try:
        report = bench_mod.run(settings, load, users, prefix, seed, log=console.print)
    except RuntimeError as exc:
        _fail(exc)
    _print_bench(f"persona bench-reader: {report['users']:,} feeds ({report['feeds']}); "
                 "indicative when the CPU is shared", bench_mod.table(report), report, json_out)


@app.command("dead-letters")
def dead_letters(config: Optional[Path] = ConfigOpt,
                 redrive: bool = typer.Option(False, "--redrive",
                                              help="produce the letters that decode now back to "
                                                   "the events topic (without it: a report only)"),
                 kind: Optional[list[str]] = typer.Option(
                     None, "--kind", help="only letters of this reason kind (repeatable; "
                                          "default: every kind but duplicate)"),
                 from_timestamp: Optional[str] = typer.Option(
                     None, help="only letters written from this time (epoch ms or ISO 8601)")):
    """The dead-letter topic by reason kind, how many of its letters today's decoder accepts,
    and (--redrive) producing those back to the events topic in event-time order."""
    from scripts import dead_letters as letters_mod
    from scripts import replay as replay_mod
    from scripts import runner, services
    settings = _settings(config)
    try:
        runner.check_services(settings)
        report = letters_mod.redrive(
            settings, kind, replay_mod.parse_timestamp_ms(from_timestamp) if from_timestamp
            else None, dry_run=not redrive, log=console.print)
    except (services.ServiceError, ValueError, RuntimeError) as exc:
        _fail(exc)
    console.print_json(data=report)


@app.command("bench-framework")
def bench_framework(config: Optional[Path] = ConfigOpt,
                    events: int = typer.Option(200_000, min=1000, help="events in the workload"),
                    users: int = typer.Option(20_000, min=10, help="users in the generated world"),
                    probe_events: int = typer.Option(20_000, min=100,
                                                     help="events the real flow's steps are "
                                                          "counted over (in-process)"),
                    seed: int = 7,
                    keep: bool = typer.Option(False, help="keep the topic and keys"),
                    json_out: Optional[Path] = typer.Option(None, "--json",
                                                            help="write the report here")):
    """What Bytewax alone costs per event for this topology's shape: chains of no-op keyed and
    stateless steps over the bench workload, the real flow's steps counted, and the events/s the
    topology would reach if its steps' code took no time."""
    from scripts import bench_framework as bench_mod
    from scripts import runner, services
    settings = _settings(config)
    try:
        runner.check_services(settings)
        report = bench_mod.run(settings, bench_mod.FrameworkConfig(
            events=events, users=users, seed=seed, probe_events=min(probe_events, events),
            keep=keep), log=console.print)
    except services.ServiceError as exc:
        _fail(exc)
    _print_bench(f"persona bench-framework {report['run_id']} (indicative when the CPU is "
                 "shared)", bench_mod.table(report), report, json_out)


@app.command()
def demo(users: int = 300, days: float = 3.0, seed: int = 7):
    """Start services, stream synthetic activity through the workers, print feeds with reasons."""
    from scripts import demo as demo_mod
    from scripts import services
    try:
        demo_mod.main(users=users, days=days, seed=seed, console=console)
    except services.ServiceError as exc:
        _fail(exc)


@app.command()
def evaluate(log: Path = typer.Argument(..., help="JSONL event log, MovieLens u.data or ratings.csv"),
             config: Optional[Path] = ConfigOpt,
             compare: Optional[tuple[Path, Path]] = typer.Option(
                 None, help="evaluate two config files side by side"),
             k: int = typer.Option(10, min=1), window: int = typer.Option(2000, min=10),
             limit: Optional[int] = typer.Option(
                 None, min=1, help="only the first N events (in time order): quick iterations"),
             json_out: Optional[Path] = typer.Option(None, "--json", help="write the report here"),
             plot_out: Optional[Path] = typer.Option(None, "--plot", help="PNG of metrics over time")):
    """Prequential replay through the production ranking, against popularity, item-kNN and online
    BPR matrix factorisation."""
    from scripts import evaluate as evaluate_mod
    if not log.exists():
        _fail(FileNotFoundError(f"{log} does not exist"))
    configs = list(compare) if compare else [config]
    try:
        evaluate_mod.run(log, configs, k=k, window=window, json_path=json_out,
                         plot_path=plot_out, limit=limit, console=console)
    except ConfigError as exc:
        _fail(exc, 2)


@app.command("evaluate-links")
def evaluate_links(log: Path = typer.Argument(..., help="JSONL log or edge list (user friend [ts])"),
                   k: int = typer.Option(10, min=1),
                   fraction: float = typer.Option(0.2, min=0.01, max=0.9),
                   seed: int = typer.Option(7), undirected: bool = typer.Option(
                       False, help="edges are friendships: hide both directions together"),
                   search: bool = typer.Option(
                       False, "--search", help="also score search re-ranking on the log's searches"),
                   json_out: Optional[Path] = typer.Option(None, "--json", help="write the report")):
    """Link prediction: hide a seeded share of follow edges, replay the rest, Recall@k of people
    suggestions (production operators) against random and most-followed baselines."""
    from scripts import evaluate_links as links_mod
    if not log.exists():
        _fail(FileNotFoundError(f"{log} does not exist"))
    links_mod.run(log, k=k, fraction=fraction, seed=seed, undirected=undirected,
                  search=search, json_path=json_out, console=console)


@app.command("evaluate-notifications")
def evaluate_notifications(
        log: Path = typer.Argument(..., help="generated JSONL log (with its .truth.json)"),
        config: Optional[Path] = ConfigOpt,
        budget: Optional[int] = typer.Option(None, min=1, help="daily budget (default: config)"),
        seed: int = typer.Option(0, help="seed of the simulated opens"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="write the results here")):
    """Learned notification policy vs send-everything and most-recent baselines (same budget)."""
    from scripts import evaluate_notifications as notif_mod
    if not log.exists():
        _fail(FileNotFoundError(f"{log} does not exist"))
    try:
        notif_mod.run(log, config, budget=budget, seed=seed, json_path=json_out, console=console)
    except ConfigError as exc:
        _fail(exc, 2)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)


@experiments_app.command("report")
def experiments_report(
        source: str = typer.Argument(..., help="an event log (JSONL[.gz]) or `redis` (the workers' "
                                               "counters)"),
        config: Optional[Path] = ConfigOpt,
        json_out: Optional[str] = typer.Option(None, "--json",
                                               help="also write the report as JSON here (- = stdout only)"),
        alpha: Optional[float] = typer.Option(
            None, "--alpha", min=1e-6, max=0.5,
            help="error rate of the always-valid intervals over every look and comparison "
                 "[default: 0.05]"),
        mixture_lift: Optional[float] = typer.Option(
            None, "--mixture-lift", min=1e-4,
            help="relative lift the always-valid test finds soonest; any value is valid "
                 "[default: 0.1]"),
        check: bool = typer.Option(False, "--check",
                                   help="exit with status 3 when an arm's verdict is harm or "
                                        "invalid (for monitors and cron)")):
    """Per-arm impressions, engagement, hide/report and notification open rates with 95% intervals,
    and each arm's difference from the control arm, with an interval that stays valid however often
    the report is read."""
    from scripts import experiments as experiments_mod
    try:
        report = experiments_mod.run(source, _settings(config), json_out, console, alpha,
                                     mixture_lift)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    except Exception as exc:  # noqa: BLE001 - Redis unreachable etc.: say what to do
        _fail(RuntimeError(f"{exc} (is Redis reachable at REDIS_URL?)"))
    alarms = experiments_mod.alarms(report)
    if check and alarms:
        console.print("\n".join(alarms), style="bold red")
        raise typer.Exit(3)


@config_app.command("show")
def config_show(config: Optional[Path] = ConfigOpt):
    """Print the effective configuration (defaults + file + environment)."""
    console.print_json(data=config_mod.public_dict(_settings(config)))  # secrets masked


@schemas_app.command("export")
def schemas_export(out: Path = typer.Option(Path("schemas/jsonschema"), "--out")):
    """Write JSON Schema files for producers (one per event type, plus the envelope)."""
    from schemas.jsonschema import export
    for path in export(out):
        console.print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(app())
