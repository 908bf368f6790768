"""`persona bench` end to end with tiny sizes on the real Kafka and Redis (seconds): every phase
produces numbers, and the run leaves no topics or keys behind."""

from __future__ import annotations

import redis
from confluent_kafka.admin import AdminClient

import config
from scripts import bench


def test_bench_smoke(live):
    bootstrap, url = live
    settings = config.load(env={"KAFKA_BOOTSTRAP": bootstrap, "REDIS_URL": url})
    report = bench.run(settings, bench.BenchConfig(
        events=3000, users=300, seed=5, partitions=2, freshness_s=4, rate_search_steps=2,
        rate_step_s=3, trace_every=5, reader_s=1, reader_concurrency=4), log=lambda m: None)

    assert report["workload"] == {**report["workload"], "events": 3000, "users": 300}
    assert report["io_floor"]["events"] == 3000 and report["io_floor"]["events_per_s"] > 0
    p = report["pipeline"]
    assert p["exit_code"] == 0
    assert p["events_per_s_first_event_to_exit"] > 0  # (a tiny run may end before a scrape)
    assert all(mib > 20 for mib in p["peak_rss_mib"])
    assert report["ratio_to_io_floor"] > 0
    assert report["redis_memory"]["bytes_per_user"] > 0
    r = report["reader"]
    assert r["http_requests"] > 0 and r["http_p99_ms"] >= r["http_p50_ms"] > 0
    assert r["redis_p99_ms"] > 0 and r["p99_ratio_http_to_redis"] > 0
    f = report["freshness"]
    search = f["rate_search"]  # bisects (0, the drain's rate]: the second step is at ¼ or ¾ of it
    assert [t["rate"] for t in search["tried"]][0] == search["upper"] / 2
    assert len(search["tried"]) == 2 and search["max_sustained"] < search["min_not_sustained"]
    assert f["rate"] == (search["max_sustained"] or search["tried"][-1]["rate"]) / 2
    assert f["traced_events"] > 0 and f["reflected"] > 0.5 * f["traced_events"]
    assert 0 < f["p50_ms"] <= f["p99_ms"]
    assert any(name.startswith("freshness") for name, _ in bench.table(report))

    run_id = report["run_id"]
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    assert not [t for t in topics if run_id in t]
    assert not list(redis.Redis.from_url(url).scan_iter(f"bench-{run_id}*", count=1000))


def test_bench_persistence_smoke(capsys):
    """`python -m scripts.bench_persistence` with tiny sizes: a line per persistence setting."""
    from scripts import bench_persistence

    bench_persistence.main(["--records", "2000", "--batch", "500", "--value-bytes", "100",
                            "--rounds", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["none", "appendfsync", "appendfsync"]
    assert all("records/s" in line and "ms per pipeline" in line for line in lines[1:])


def test_bench_framework_smoke(live):
    """`persona bench-framework` with tiny sizes: every chain drained the topic, the real flow's
    steps were counted (every valid event enters the dedup and users steps at least once), and the
    run leaves no topic or keys."""
    from scripts import bench_framework

    bootstrap, url = live
    settings = config.load(env={"KAFKA_BOOTSTRAP": bootstrap, "REDIS_URL": url})
    report = bench_framework.run(settings, bench_framework.FrameworkConfig(
        events=3000, users=300, seed=5, partitions=2, keyed=(0, 2), maps=(4,), probe_events=500),
        log=lambda m: None)

    assert report["io_floor"]["events"] == 3000
    assert [(c["keyed"], c["maps"]) for c in report["chains"]] == [(0, 0), (2, 0), (0, 4)]
    assert all(c["events_per_s"] > 0 and c["cpu_us_per_event"] > 0 for c in report["chains"])
    shape = report["shape"]
    assert shape["events"] == 500
    assert shape["keyed_by_step"]["dedup"] == 1.0 and shape["keyed_by_step"]["users"] >= 1.0
    assert shape["keyed_items_per_event"] > 2 and shape["calls_per_event"] > 5
    assert report["ceiling"]["events_per_s"] > 0
    assert any(name.startswith("ceiling") for name, _ in bench_framework.table(report))

    run_id = report["run_id"]
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    assert not [t for t in topics if run_id in t]
    assert not list(redis.Redis.from_url(url).scan_iter(f"bench-{run_id}*", count=1000))
