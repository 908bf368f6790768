"""The benchmark's pure parts: percentiles, ratios, steady rate, freshness matching, workload, CPU
time from /proc and its share over the steady window."""

from __future__ import annotations

import itertools

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import config
from scripts.bench import (
    WorkerRun,
    cores_over,
    cpu_share,
    match_freshness,
    percentile,
    ratio,
    rss_flatness,
    steady_rate,
    steady_window,
    table,
    value_at,
    window_costs,
    workload,
)
from scripts.proc_cpu import (
    CpuReading,
    kafka_pids,
    local_broker_pids,
    local_redis_pids,
    parse_machine_stat,
    parse_pid_stat,
    redis_pids,
    tree_ticks,
)


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([], 50) is None
    assert percentile([7.5], 99) == 7.5


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1),
       st.floats(0, 100))
def test_percentile_is_a_member_and_monotone(values, q):
    p = percentile(values, q)
    assert p in values
    assert percentile(values, min(100, q + 1)) >= p


def test_ratio():
    assert ratio(3, 4) == 0.75
    assert ratio(None, 4) is None
    assert ratio(3, 0) is None
    assert ratio(3, None) is None


def test_steady_rate_excludes_startup_and_tail():
    # 10 s of start-up at 0, then 100 events/s for 10 s, then a slow tail
    samples = [(t, 0) for t in range(11)] + [(10 + t, 100 * t) for t in range(1, 11)]
    samples += [(30, 1050), (40, 1100)]
    # 10% of 1100 = 110 at t=11.1, 90% = 990 at t=20+ (1000 at 20 → 990 at 19.9)
    assert abs(steady_rate(samples, 1100) - 880 / (19.9 - 11.1)) < 1e-6
    assert steady_rate([(0, 0), (1, 5)], 100) is None  # never reached 90%
    assert steady_rate([(0, 0), (1, 100)], 100) is None  # one batch: no steady window


def test_match_freshness_uses_the_first_write_that_includes_the_event():
    events = [("a", 100), ("a", 150), ("b", 100), ("c", 100)]
    writes = [("a", 90, 120),   # generated before the event: does not reflect it
              ("a", 100, 180),  # first write that includes a@100 → 80 ms
              ("a", 160, 400),  # includes a@150 → 250 ms
              ("b", 100, 99)]   # written before the event (clock skew guard): ignored
    latencies, unmatched = match_freshness(events, writes)
    assert latencies == [80, 250]
    assert unmatched == 2


def test_rss_flatness():
    assert rss_flatness([(t, [100]) for t in range(10)]) == 0.0
    assert rss_flatness([(0, [1])]) is None


def test_workload_is_deterministic_and_sized():
    a = [orjson.dumps(e) for e in workload(2000, 100, seed=3)]
    b = [orjson.dumps(e) for e in workload(2000, 100, seed=3)]
    c = [orjson.dumps(e) for e in itertools.islice(workload(2000, 100, seed=4), 2000)]
    assert a == b
    assert a != c
    assert len(a) == 2000
    events = [orjson.loads(x) for x in a]
    types = {e["type"] for e in events}
    assert {"user_created", "follow", "post_created", "impression", "like"} <= types
    assert len({e["user_id"] for e in events}) == 100


def test_table_rows_from_a_report():
    report = {"workload": {"events": 10, "users": 2},
              "io_floor": {"events_per_s": 1000.0},
              "pipeline": {"processes": 2, "events_per_s_steady": 500.0,
                           "events_per_s_first_event_to_exit": 400.0, "startup_s": 2.0,
                           "users_ranked": 5, "events_per_rank": 2.0, "mean_rank_ms": 1.5,
                           "rank_share_of_worker_time": 0.5, "peak_rss_mib": [100.0, 110.0],
                           "worker_rss_growth_bytes_per_user": 1000,
                           "rss_flatness_second_half": 0.05},
              "ratio_to_io_floor": 0.5}
    rows = dict(table(report))
    assert rows["pipeline, 2 process(es), steady"] == "500 events/s"
    assert rows["  per worker process"] == "250 events/s"
    assert rows["ratio to the I/O floor"] == "0.500"


# a real /proc/<pid>/stat line, with a command name that holds a space and a ')'
PID_STAT = ("26475 (java) x) S 1 26474 26474 0 -1 4194560 130823 0 12 0 10101 702 7 3 20 0 68 0 "
            "3923178 3447173120 109431 18446744073709551615 1 1 0 0 0 0 0 2 16800975 0 0 0 17 1 0 0 "
            "0 0 0")
MACHINE_STAT = ("cpu  2782806 10289 354211 4541537 10236 0 62172 1181 500 0\n"
                "cpu0 1228297 6736 163442 2445019 3330 0 30211 583 0 0\nintr 1 2 3\n")


def test_parse_pid_stat_counts_fields_after_the_command_name():
    ppid, ticks = parse_pid_stat(PID_STAT)
    assert ppid == 1
    assert ticks == 10101 + 702 + 7 + 3  # utime + stime + cutime + cstime


def test_parse_machine_stat_busy_and_idle():
    busy, idle = parse_machine_stat(MACHINE_STAT)
    assert busy == 2782806 + 10289 + 354211 + 62172 + 1181  # guest (500) is inside user already
    assert idle == 4541537 + 10236


def test_tree_ticks_adds_live_descendants_once_and_loses_a_gone_root():
    table = {10: (1, 100), 11: (10, 20), 12: (11, 3), 20: (1, 1000), 21: (20, 7)}
    assert tree_ticks(table, [10]) == 123
    assert tree_ticks(table, [10, 20]) == 1130
    assert tree_ticks(table, [10, 11]) == 123  # a root that is also a descendant counts once
    assert tree_ticks(table, [10, 99]) is None


def test_kafka_and_redis_pids():
    cmdlines = [(1, b"/usr/lib/jvm/bin/java\0-cp\0lib/*\0kafka.Kafka\0server.properties\0"),
                (2, b"/usr/bin/java\0-jar\0zookeeper.jar\0"),
                (3, b"bash\0-c\0java kafka.Kafka\0"),
                (5, b"grep\0kafka.Kafka\0"),  # only a JVM whose main class it is
                (4, b"")]
    assert kafka_pids(cmdlines) == [1]
    assert redis_pids({"redis_version": "7.0", "process_id": 26597}) == [26597]
    assert redis_pids({"127.0.0.1:7000": {"process_id": 1}, "127.0.0.1:7001": {"process_id": 2}}) == [1, 2]


class _NoInfo:
    def info(self, section):
        raise AssertionError("a remote Redis must not be asked for its pid")


def test_remote_services_have_no_local_pids():
    remote = config.load(env={"KAFKA_BOOTSTRAP": "10.1.2.3:9092,127.0.0.1:9092",
                              "REDIS_URL": "redis://10.1.2.3:6379/0"})
    assert local_broker_pids(remote) is None
    assert local_redis_pids(remote, _NoInfo()) is None


class _Info:
    def info(self, section):
        assert section == "server"
        return {"process_id": 4242}


def test_local_redis_pid_from_info():
    local = config.load(env={"REDIS_URL": "redis://localhost:6390/1"})
    assert local_redis_pids(local, _Info()) == [4242]


def test_steady_window_and_interpolation():
    counts = [(0, 0), (10, 0), (20, 50), (30, 100)]
    assert steady_window(counts, 100) == (12.0, 28.0)
    assert steady_window([(0, 0), (1, 100)], 100) is None  # shorter than 3 s
    assert value_at([(0, 0.0), (4, 2.0)], 1) == 0.5
    assert value_at([(0, 0.0), (4, 2.0)], 0) == 0.0  # a window starting on the first sample
    assert value_at([(0, 0.0), (4, 2.0)], 5) is None
    assert cores_over([(0, 0.0), (10, 15.0)], (2, 6)) == pytest.approx(1.5)
    assert cores_over([(5, 0.0), (10, 15.0)], (2, 6)) is None  # the samples start too late


def test_cpu_share_over_the_steady_window():
    # workers 1.5 cores, broker 0.25, no Redis on this host, machine 1.9 busy; 1,000 events/s
    readings = [CpuReading(t, 1.5 * t, 0.25 * t, None, 1.9 * t) for t in range(0, 21, 2)]
    share = cpu_share(readings, (3.0, 17.0), 1000.0)
    assert share["window_s"] == 14.0
    assert share["workers_cores"] == pytest.approx(1.5)
    assert share["broker_cores"] == pytest.approx(0.25)
    assert share["redis_cores"] is None
    assert share["machine_busy_cores"] == pytest.approx(1.9)
    assert share["worker_cpu_us_per_event"] == pytest.approx(1500.0)  # 1.5 CPU s / 1,000 events
    # busy outside the workers and the broker (Redis not on this host counts 0)
    assert share["other_cores"] == pytest.approx(0.15)
    # a worker gone mid-run: its readings are dropped, the window still covered by the others
    gone = readings[:5] + [CpuReading(10, None, 2.5, None, 19.0)] + readings[6:]
    assert cpu_share(gone, (3.0, 17.0), 1000.0)["workers_cores"] == pytest.approx(1.5)
    assert cpu_share(readings, None, 1000.0)["workers_cores"] is None
    assert cpu_share(readings, None, 1000.0)["other_cores"] is None


def test_window_costs_count_what_happened_inside_the_window_only():
    run = WorkerRun(processes=1)
    for t in range(11):  # 100 events/s; a full collection at t = 2 (before) and t = 7 (inside)
        run.counts.append((float(t), 100 * t))
        run.ranked.append((float(t), 40 * t))
        run.gc.append((float(t), 0.01 * t + (0.5 if t >= 7 else 0.0), int(t >= 2) + int(t >= 7)))
        run.cpu.append(CpuReading(float(t), 0.5 * t, 0.1 * t, None, 0.9 * t))
    costs = window_costs(run, (5.0, 10.0))
    assert costs["events_per_s"] == pytest.approx(100)
    assert costs["ranks_per_event"] == pytest.approx(0.4)
    assert costs["worker_cores"] == pytest.approx(0.5)
    assert costs["worker_cpu_us_per_event"] == pytest.approx(5000)
    assert costs["gc_full_collections"] == 1
    assert costs["gc_share_of_window"] == pytest.approx((0.05 + 0.5) / 5)
    # the machine was busy 0.9 cores: 0.5 the worker, 0.1 the broker, 0.3 something else
    assert costs["other_cores"] == pytest.approx(0.3)


def test_table_rows_for_cpu():
    cpu = {"window_s": 10.0, "workers_cores": 0.95, "broker_cores": 0.4, "redis_cores": None,
           "machine_busy_cores": 1.9, "cpu_count": 2, "worker_cpu_us_per_event": 512.3}
    pipeline = {"processes": 1, "events_per_s_steady": 500.0, "events_per_s_first_event_to_exit": 400.0,
                "startup_s": 2.0, "users_ranked": 5, "events_per_rank": 2.0, "mean_rank_ms": 1.5,
                "rank_share_of_worker_time": 0.5, "peak_rss_mib": [100.0],
                "worker_rss_growth_bytes_per_user": 1000, "rss_flatness_second_half": 0.05,
                "cpu_steady": cpu}
    report = {"pipeline": pipeline,
              "pipeline_scale": {"processes": 2, "events_per_s_steady": 700.0,
                                 "cpu_steady": dict(cpu, worker_cpu_us_per_event=600.0)},
              "scale_worker_cpu_per_event_2_to_1": 600.0 / 512.3}
    rows = table(report)
    cores = [v for k, v in rows if k == "  cores, steady: workers / broker / Redis / machine busy"]
    per_event = [v for k, v in rows if k == "  worker CPU per event, steady"]
    assert cores == ["0.95 / 0.40 / — / 1.90 (of 2)"] * 2
    assert per_event == ["512 µs", "600 µs"]
    assert dict(rows)["worker CPU per event 2 : 1 processes"] == "1.17"


def test_ab_drain_stops_a_cluster_once_one_process_fails():
    """A cluster's survivors wait for a lost peer forever: ab_drain must not wait for them."""
    import subprocess
    import sys
    import time

    from scripts.ab_drain import _wait_all

    started = time.monotonic()
    running = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
               subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])]
    assert _wait_all(running) == [-9, 3]
    assert time.monotonic() - started < 30
    assert _wait_all([subprocess.Popen([sys.executable, "-c", "pass"])]) == [0]


def test_table_shows_what_decided_each_search_step():
    tried = [{"rate": 400.0, "sustained": False, "settle_s": 0.0, "catch_up_second_half": 0.1,
              "fewest_put_off_last_quarter": 0, "ranks_per_event": 0.5, "worker_cores": 0.9},
             {"rate": 200.0, "sustained": True, "settle_s": 12.5, "catch_up_second_half": 0.0,
              "fewest_put_off_last_quarter": 0, "ranks_per_event": 0.6, "worker_cores": 0.6},
             {"rate": 300.0, "sustained": False, "settle_s": 3.0, "catch_up_second_half": 0.0,
              "fewest_put_off_last_quarter": 17, "ranks_per_event": 0.6, "worker_cores": 0.8}]
    search = {"steps": 3, "step_s": 20.0, "upper": 800.0, "max_sustained": 200.0,
              "min_not_sustained": 300.0, "tried": tried}
    report = {"freshness": {"rate": 100.0, "settle_s": 1.0, "p50_ms": 40, "p99_ms": 300,
                            "reflected": 50, "never_reflected": 0, "catch_up_share": 0.0,
                            "catch_up_peak_s": 0.2, "other_cores": 0.04, "rate_search": search}}
    rows = table(report)
    [(_, decided)] = [r for r in rows if r[0].startswith("  each step: catch-up mode")]
    assert decided == "10%; 0, 0%; 0, 0%; 17"
    [(_, searched)] = [r for r in rows if r[0].startswith("highest rate")]
    assert searched == "200 events/s (not 300); tried 400 ✗, 200 ✓, 300 ✗"
    assert [v for k, v in rows if k.startswith("  cores busy outside")] == ["0.04"]
