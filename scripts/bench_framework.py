"""`persona bench-framework`: what Bytewax alone costs per event, for this topology's shape.

`persona bench` compares the pipeline with an I/O floor that has no dataflow at all. This bench
puts the dataflow back, with no logic, to find the ceiling that no per-event logic could beat:

1. workload — the first `events` events of `persona bench`'s generator, on a private topic, and
   `persona bench`'s I/O floor over it (plain consumers: Kafka → orjson → Redis, no dataflow);
2. chains — one Bytewax worker (`run_main`, in a spawned process each) reads the topic (the
   workers' Kafka source and batch size), decodes with orjson and writes one SET per event in one
   pipeline per batch (the I/O floor's writes), with `k` keyed stages in between (`key_on` the
   user → a `stateful_batch` that counts and passes its batch on → `key_rm`) or `m` identity
   `map`s. CPU per event over k and m gives, by least squares, the marginal CPU of one item
   through a keyed step and of one call of a stateless step;
3. the topology's shape — the real flow (`flows.feeds.build_flow`, in-process, real Redis) over
   a smaller world of the same generator with as many events per user (`probe_events` events:
   the workload's first ones would be its sign-ups alone), with every step's function wrapped to
   count calls: items into keyed (stateful) steps and calls of stateless steps, per event;
4. the ceiling — the base chain's CPU per event plus the shape's counts at the chains' marginal
   costs: the events/s this topology would reach on Bytewax if every step's own code took no
   time. Timers, snapshots of larger states and the exchange between processes are not in it,
   so it is an upper bound. Its ratio to the I/O floor bounds what the pipeline's could be.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import OFFSET_BEGINNING

import config
from config import Settings
from config.security import kafka_config
from operators.redis_store import connect_to
from scripts.bench import Bench, Log, io_floor, produce_workload, ratio, workload

ROUTING_OPS = ("map", "filter", "filter_map", "flat_map", "inspect", "branch", "key_on")


@dataclass(frozen=True)
class FrameworkConfig:
    events: int = 200_000
    users: int = 20_000
    seed: int = 7
    partitions: int = 4
    keyed: tuple[int, ...] = (0, 2, 4, 8, 16)  # keyed stages of the chains
    maps: tuple[int, ...] = (8, 32)  # identity maps of the chains (and the base: 0)
    probe_events: int = 20_000  # events the real flow's steps are counted over
    keep: bool = False


# ------------------------------------------------------------------------------ pure helpers
def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x.

    >>> slope([(0, 1.0), (2, 5.0), (4, 9.0)])
    2.0
    >>> slope([(3, 1.0)])
    0.0
    """
    n = len(points)
    mx = sum(x for x, _ in points) / max(1, n)
    my = sum(y for _, y in points) / max(1, n)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def ceiling(base_us: float, keyed_us: float, map_us: float, keyed_items: float,
            calls: float) -> dict:
    """CPU per event of the topology's shape with no logic, and the events/s it allows. A
    marginal cost fitted below 0 (noise: a small run) counts as 0.

    >>> ceiling(10.0, 4.0, 1.0, 5.0, 20.0)
    {'us_per_event': 50.0, 'events_per_s': 20000.0}
    >>> ceiling(10.0, -2.0, -0.1, 5.0, 20.0)
    {'us_per_event': 10.0, 'events_per_s': 100000.0}
    """
    us = base_us + keyed_items * max(0.0, keyed_us) + calls * max(0.0, map_us)
    return {"us_per_event": us, "events_per_s": 1e6 / us if us > 0 else None}


def shape(counts: dict[str, Counter], events: int) -> dict:
    """Per event: items into keyed steps and calls of stateless steps, with the busiest steps.

    >>> shape({"keyed": Counter(users=30, dedup=10), "routing": Counter(decode=10)}, 10)
    {'keyed_items_per_event': 4.0, 'calls_per_event': 1.0, 'keyed_by_step': {'users': 3.0, 'dedup': 1.0}, 'routing_by_step': {'decode': 1.0}}
    """
    per = max(1, events)
    return {"keyed_items_per_event": sum(counts["keyed"].values()) / per,
            "calls_per_event": sum(counts["routing"].values()) / per,
            "keyed_by_step": {k: v / per for k, v in counts["keyed"].most_common()},
            "routing_by_step": {k: v / per for k, v in counts["routing"].most_common(12)}}


# ------------------------------------------------------------------------------ the chains
class PassThrough(StatefulBatchLogic):
    """Counts what it saw (a state to snapshot, as every real step has) and passes it on."""

    def __init__(self, seen):
        self.seen = seen or 0

    def on_batch(self, values):
        self.seen += len(values)
        return values, False

    def snapshot(self):
        return self.seen


class _SetPartition(StatelessSinkPartition):
    def __init__(self, redis_target, prefix: str):
        self.client, self.prefix = connect_to(redis_target), prefix

    def write_batch(self, items):
        pipe = self.client.pipeline(transaction=False)
        for event in items:
            pipe.execute_command("SET", f"{self.prefix}:fw:{{{event['user_id']}}}",
                                 orjson.dumps(event))
        pipe.execute()


class SetSink(DynamicSink):
    """One SET per event, one pipeline per batch: the I/O floor's writes."""

    def __init__(self, redis_target, prefix: str):
        self.redis_target, self.prefix = redis_target, prefix

    def build(self, step_id, worker_index, worker_count):
        return _SetPartition(self.redis_target, self.prefix)


def chain_flow(settings: Settings, topic: str, prefix: str, keyed: int, maps: int,
               clock: dict) -> Dataflow:
    """Kafka (the workers' source and batch size) → orjson → `keyed` stages (key_on the user →
    PassThrough → key_rm) → `maps` identity maps → SetSink. `clock["first"]` gets (monotonic,
    process CPU) at the first message."""
    flow = Dataflow("framework")
    messages = op.input("in", flow, KafkaSource(
        [settings.kafka.bootstrap], [topic], tail=False, starting_offset=OFFSET_BEGINNING,
        add_config=kafka_config(settings.kafka), batch_size=settings.stream.kafka_batch_size))

    def decode(message):
        if clock["first"] is None:
            clock["first"] = (time.monotonic(), time.process_time())
        return orjson.loads(message.value)
    events = op.map("decode", messages, decode)
    for i in range(keyed):
        stage = op.stateful_batch(f"pass{i}", op.key_on(f"key{i}", events, _user), PassThrough)
        events = op.key_rm(f"unkey{i}", stage)
    for i in range(maps):
        events = op.map(f"map{i}", events, _same)
    op.output("redis", events, SetSink(settings.redis, prefix))
    return flow


def _user(event: dict) -> str:
    return event["user_id"]


def _same(event: dict) -> dict:
    return event


def _run_chain(settings_env: dict, topic: str, prefix: str, keyed: int, maps: int, out) -> None:
    """In a spawned process: one worker drains the topic through the chain; (seconds, CPU
    seconds) from the first message read to the end."""
    clock: dict = {"first": None}
    run_main(chain_flow(config.load(env=settings_env), topic, prefix, keyed, maps, clock))
    end, cpu_end = time.monotonic(), time.process_time()
    first, cpu_first = clock["first"] or (end, cpu_end)
    out.put((end - first, cpu_end - cpu_first))


def _spawned(target, *args):
    """What `target(*args, out)` puts on `out`, run in a spawned process (a fresh interpreter
    and heap for each measurement)."""
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    proc = mp.Process(target=target, args=(*args, out))
    proc.start()
    result = out.get(timeout=3600)
    proc.join()
    return result


def run_chain(bench: Bench, topic: str, total: int, keyed: int, maps: int) -> dict:
    seconds, cpu = _spawned(_run_chain, bench.env(topic, bench.prefix), topic,
                            f"{bench.prefix}-k{keyed}m{maps}", keyed, maps)
    return {"keyed": keyed, "maps": maps, "events_per_s": total / max(1e-9, seconds),
            "cpu_us_per_event": cpu / max(1, total) * 1e6}


# ------------------------------------------------------------------------------ the real shape
class _Counting:
    """Stands in for `bytewax.operators` while `build_flow` runs: each step's function is wrapped
    to count its calls (a keyed step's: the items of its batches), under the step's id; `key_rm`
    becomes the identity map it is."""

    def __init__(self, ops, counts: dict[str, Counter]):
        self._ops, self.counts = ops, counts

    def __getattr__(self, name):
        real = getattr(self._ops, name)
        routing, keyed = self.counts["routing"], self.counts["keyed"]
        if name in ROUTING_OPS:
            def wrapped(step_id, up, fn, *args, **kwargs):
                def counted(*a):
                    routing[step_id] += 1
                    return fn(*a)
                return real(step_id, up, counted, *args, **kwargs)
            return wrapped
        if name == "flat_map_batch":
            def batch(step_id, up, fn):
                def counted(items):
                    routing[step_id] += len(items)
                    return fn(items)
                return real(step_id, up, counted)
            return batch
        if name == "key_rm":
            return lambda step_id, up: self.map(step_id, up, lambda kv: kv[1])
        if name == "stateful_batch":
            def stateful(step_id, up, builder):
                return real(step_id, up, lambda resume: _CountedLogic(
                    builder(resume), keyed, step_id))
            return stateful
        return real


class _CountedLogic(StatefulBatchLogic):
    def __init__(self, logic, keyed: Counter, step_id: str):
        self.logic, self.keyed, self.step_id = logic, keyed, step_id

    def on_batch(self, values):
        self.keyed[self.step_id] += len(values)
        return self.logic.on_batch(values)

    def on_notify(self):
        return self.logic.on_notify()

    def on_eof(self):
        return self.logic.on_eof()

    def notify_at(self):
        return self.logic.notify_at()

    def snapshot(self):
        return self.logic.snapshot()


def _probe(settings_env: dict, lines: list[bytes], out) -> None:
    """In a spawned process: the real flow over `lines`, its steps counted."""
    import flows.feeds as feeds
    settings = config.load(env=settings_env)
    counts: dict[str, Counter] = {"keyed": Counter(), "routing": Counter()}
    feeds.op = _Counting(op, counts)
    try:
        flow = feeds.build_flow(settings, source=TestingSource(lines), dead_letters=TestingSink([]),
                                notifications=TestingSink([]), tail=False)
    finally:
        feeds.op = op
    t0, cpu0 = time.monotonic(), time.process_time()
    run_main(flow)
    out.put((counts, time.monotonic() - t0, time.process_time() - cpu0))


def probe(bench: Bench, topic: str, lines: list[bytes]) -> dict:
    counts, seconds, cpu = _spawned(_probe, bench.env(topic, f"{bench.prefix}-probe"), lines)
    return {**shape(counts, len(lines)), "events": len(lines),
            "events_per_s": len(lines) / max(1e-9, seconds),
            "cpu_us_per_event": cpu / max(1, len(lines)) * 1e6}


# ------------------------------------------------------------------------------ the run
def run(settings: Settings, cfg: FrameworkConfig, log: Log = print) -> dict:
    bench = Bench(settings)
    report: dict = {"run_id": bench.run_id, "config": {
        "events": cfg.events, "users": cfg.users, "seed": cfg.seed,
        "partitions": cfg.partitions, "probe_events": cfg.probe_events,
        "probe_users": max(10, cfg.probe_events * cfg.users // cfg.events)},
        "note": "indicative when other processes share the CPU"}
    log(f"bench-framework {bench.run_id}: {cfg.events:,} events, {cfg.users:,} users")
    try:
        topic = bench.topic("events")
        log("1/4 workload → Kafka")
        total = produce_workload(bench, topic, cfg.partitions, (orjson.dumps(e) for e in workload(
            cfg.events, cfg.users, cfg.seed)), cfg.events, log)
        report["io_floor"] = floor = io_floor(bench, topic, 1)
        log(f"  I/O floor, one consumer: {floor['events_per_s']:,.0f} events/s")
        configs = [(k, 0) for k in cfg.keyed] + [(0, m) for m in cfg.maps if m]
        log(f"2/4 chains: {len(configs)} runs of one worker over the topic")
        chains = []
        for keyed, maps in configs:
            chains.append(run_chain(bench, topic, total, keyed, maps))
            c = chains[-1]
            log(f"  {keyed} keyed stages, {maps} maps: {c['events_per_s']:,.0f} events/s, "
                f"{c['cpu_us_per_event']:.1f} µs CPU per event")
        report["chains"] = chains
        report["costs"] = costs = marginal_costs(chains)
        log(f"  one item through a keyed step {costs['keyed_item_us']:.2f} µs, one stateless "
            f"call {costs['call_us']:.2f} µs, Kafka + decode + Redis {costs['base_us']:.1f} µs")
        probe_users = max(10, cfg.probe_events * cfg.users // cfg.events)
        log(f"3/4 the real flow's steps, counted over {cfg.probe_events:,} events of "
            f"{probe_users:,} users (in-process)")
        report["shape"] = s = probe(bench, topic, [orjson.dumps(e) for e in workload(
            cfg.probe_events, probe_users, cfg.seed)])
        log(f"  per event: {s['keyed_items_per_event']:.1f} items into keyed steps, "
            f"{s['calls_per_event']:.1f} stateless calls")
        report["ceiling"] = top = ceiling(costs["base_us"], costs["keyed_item_us"],
                                          costs["call_us"], s["keyed_items_per_event"],
                                          s["calls_per_event"])
        top["ratio_to_io_floor"] = ratio(top["events_per_s"], floor["events_per_s"])
        log(f"4/4 ceiling with no logic: {top['us_per_event']:.1f} µs per event, "
            f"{top['events_per_s'] or 0:,.0f} events/s, {top['ratio_to_io_floor'] or 0:.2f} of "
            "the I/O floor")
    finally:
        if not cfg.keep:
            bench.cleanup(log)
    return report


def marginal_costs(chains: list[dict]) -> dict:
    """µs of CPU per event of the base chain, and the slopes: per keyed stage less its two
    stateless calls (key_on, key_rm), and per stateless call.

    >>> marginal_costs([{"keyed": 0, "maps": 0, "cpu_us_per_event": 10.0},
    ...                 {"keyed": 2, "maps": 0, "cpu_us_per_event": 20.0},
    ...                 {"keyed": 0, "maps": 10, "cpu_us_per_event": 20.0}])
    {'base_us': 10.0, 'keyed_item_us': 3.0, 'call_us': 1.0}
    """
    base = [c["cpu_us_per_event"] for c in chains if c["keyed"] == 0 and c["maps"] == 0]
    call = slope([(c["maps"], c["cpu_us_per_event"]) for c in chains if c["keyed"] == 0])
    stage = slope([(c["keyed"], c["cpu_us_per_event"]) for c in chains if c["maps"] == 0])
    return {"base_us": sum(base) / max(1, len(base)), "keyed_item_us": stage - 2 * call,
            "call_us": call}


def table(report: dict) -> list[tuple[str, str]]:
    rows = []
    if "io_floor" in report:
        rows.append(("I/O floor (Kafka → orjson → Redis, no dataflow)",
                     f"{report['io_floor']['events_per_s']:,.0f} events/s"))
    rows += [(f"chain: {c['keyed']} keyed stages, {c['maps']} maps",
             f"{c['events_per_s']:,.0f} events/s, {c['cpu_us_per_event']:.1f} µs/event")
            for c in report.get("chains", [])]
    if "costs" in report:
        c = report["costs"]
        rows += [("Kafka + orjson + Redis SET through Bytewax", f"{c['base_us']:.1f} µs/event"),
                 ("one item through a keyed step (marginal)", f"{c['keyed_item_us']:.2f} µs"),
                 ("one stateless step call (marginal)", f"{c['call_us']:.2f} µs")]
    if "shape" in report:
        s = report["shape"]
        rows += [("real flow: items into keyed steps per event", f"{s['keyed_items_per_event']:.1f}"),
                 ("real flow: stateless step calls per event", f"{s['calls_per_event']:.1f}"),
                 ("real flow in-process, with its logic", f"{s['events_per_s']:,.0f} events/s, "
                                                          f"{s['cpu_us_per_event']:.0f} µs/event")]
        top = ", ".join(f"{k} {v:.1f}" for k, v in list(s["keyed_by_step"].items())[:6])
        rows.append(("busiest keyed steps (items per event)", top))
    if "ceiling" in report:
        t = report["ceiling"]
        rows.append(("ceiling: the real shape, no logic", f"{t['events_per_s'] or 0:,.0f} events/s "
                                                          f"({t['us_per_event']:.1f} µs/event)"))
        if t.get("ratio_to_io_floor") is not None:
            rows.append(("ceiling / I/O floor", f"{t['ratio_to_io_floor']:.2f}"))
    return rows
