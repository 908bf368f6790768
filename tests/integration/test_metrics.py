"""Metrics after real runs: the flow in-process on a generated log with real Redis (prometheus_client's
registry, the one Bytewax's dataflow API serves), and `persona run -p 2 --metrics-port` serving
/metrics on BASE and BASE+1 with Bytewax's own metrics and the Kafka consumer lag."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.keyspace import Keyspace
from scripts import kafka_io, services
from tests.integration.helpers import isolated_env, signal_cli
from tests.integration.inproc import (
    MALFORMED_TO_KIND,
    cleanup,
    generated_log,
    run_inprocess,
    settings_for,
)

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str | None = None) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of a Prometheus exposition (default: this process)."""
    text = text if text is not None else generate_latest(REGISTRY).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(snapshot: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in snapshot.items()
               if n == name and all(dict(ls).get(k) == val for k, val in labels.items()))


def test_flow_metrics_after_an_inprocess_run(live, redis_client):
    prefix = f"test-metrics-{uuid.uuid4().hex[:8]}"
    settings = settings_for(live, prefix)
    payloads, events, malformed, duplicates = generated_log()
    before = samples()
    try:
        dead = run_inprocess(settings, payloads)
        after = samples()
        delta = {k: after[k] - before.get(k, 0.0) for k in after}

        by_type = collections.Counter(e["type"] for e in events)
        for event_type, n in by_type.items():
            assert total(delta, "persona_events_total", type=event_type) == n, event_type
        expected_dead = collections.Counter(MALFORMED_TO_KIND[k] for _, k in malformed)
        expected_dead["duplicate"] = duplicates
        assert len(dead) == sum(expected_dead.values())
        for kind, n in expected_dead.items():
            assert total(delta, "persona_dead_letters_total", reason=kind) == n, kind
        assert total(delta, "persona_dead_letters_total", reason="other") == 0

        ks = Keyspace(prefix, redis_client.get(f"{prefix}:active").decode())
        feeds = list(redis_client.scan_iter(f"{ks.base}:feed:*", count=1000))
        written = total(delta, "persona_feeds_written_total")
        assert feeds and written >= len(feeds)
        assert total(delta, "persona_redis_writes_total", kind="feed") == written
        assert total(delta, "persona_redis_writes_total", kind="profile") == written
        assert total(delta, "persona_rank_seconds_count") == written  # one ranking per feed
        assert total(delta, "persona_rank_seconds_sum") > 0

        examples = total(delta, "persona_global_model_examples_total")
        assert examples > 50
        assert total(delta, "persona_global_model_examples_total", label="positive") > 0
        loss = after[("persona_global_model_logloss", ())]
        assert 0.0 < loss < 5.0, loss

        # the profile the inspector shows: top authors/topics of a user with history
        profiles = [orjson.loads(redis_client.get(k))
                    for k in redis_client.scan_iter(f"{ks.base}:profile:*", count=1000)]
        assert len(profiles) == len(feeds)
        assert any(p["authors"] or p["topics"] for p in profiles)
        assert all(set(p) >= {"user_id", "generated_at", "authors", "topics"} for p in profiles)
    finally:
        cleanup(redis_client, prefix)


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            base = a.getsockname()[1]
        try:
            with socket.socket() as b, socket.socket() as c:
                b.bind(("0.0.0.0", base))
                c.bind(("0.0.0.0", base + 1))
            return base
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def test_persona_run_serves_metrics_per_process(live, redis_client, tmp_path):
    unique = uuid.uuid4().hex[:10]
    env = isolated_env(live, unique)
    settings = settings_for(live, env["PERSONA_REDIS__PREFIX"], **env)
    payloads, events, malformed, _ = generated_log(users=30, days=1.0, seed=5, bad=6, duplicates=0)
    for topic in (settings.kafka.events_topic, settings.kafka.dead_letter_topic):
        kafka_io.recreate_topic(settings.kafka.bootstrap, topic, settings.kafka.partitions)
    kafka_io.produce(settings.kafka.bootstrap, settings.kafka.events_topic, payloads)
    base = _free_port_pair()
    # the output goes to a file, not a pipe nobody reads: the CLI and its workers would block on
    # a full pipe, the CLI would miss its SIGINT deadline and the workers outlive the test
    output = tmp_path / "run.log"
    proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", "run", "-p", "2",
                             "--metrics-port", str(base)],
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                            stdout=output.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        texts: list[str | None] = [None, None]
        while time.time() < deadline:
            texts = [_scrape(base), _scrape(base + 1)]
            if all(texts):
                got = sum(total(samples(t), "persona_events_total") for t in texts)
                dead = sum(total(samples(t), "persona_dead_letters_total") for t in texts)
                lag = [total(samples(t), "bytewax_kafka_consumer_lag") for t in texts]
                if got == len(events) and dead == len(malformed) and all(
                        "bytewax_kafka_consumer_lag" in t for t in texts) and sum(lag) == 0:
                    break
            assert proc.poll() is None, output.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        else:
            raise AssertionError(f"metrics never converged: {[t and len(t) for t in texts]}")
        for text in texts:  # Bytewax's own per-step metrics, next to ours, on each process
            assert "bytewax_" in text and "persona_events_total" in text
        cache = services.cache_root(settings) / "bytewax"  # not ./dataflow.json
        assert all((cache / f"api-{i}" / "dataflow.json").exists() for i in (0, 1))
    finally:
        code, stacks = signal_cli(proc, signal.SIGINT)  # the CLI stops its worker processes
        cleanup(redis_client, settings.redis.prefix)
    assert code is not None, f"the CLI did not exit within 30 s of SIGINT: {stacks}"
