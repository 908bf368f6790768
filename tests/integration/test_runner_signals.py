"""`persona run` stopped by a signal stops its worker processes: they run in sessions of their own
(so a terminal's Ctrl-C reaches the runner only), and a runner that died at once would leave a
tailing cluster behind (`scripts.runner.terminate_as_interrupt`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from scripts import kafka_io, services
from tests.integration.helpers import isolated_env, kill_cli, signal_cli, worker_children
from tests.integration.inproc import cleanup, settings_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=["SIGTERM", "SIGINT", "SIGHUP"])  # (SIGHUP: a closed terminal)
def test_a_signalled_runner_stops_its_worker_processes(live, redis_client, tmp_path, sig):
    env = isolated_env(live, uuid.uuid4().hex[:10])
    settings = settings_for(live, env["PERSONA_REDIS__PREFIX"], **env)
    for topic in (settings.kafka.events_topic, settings.kafka.dead_letter_topic):
        kafka_io.recreate_topic(settings.kafka.bootstrap, topic, settings.kafka.partitions)
    output = tmp_path / "run.log"
    proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", "run", "-p", "2",
                             "--metrics-port", "0"],
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                            stdout=output.open("wb"), stderr=subprocess.STDOUT)
    workers: list[int] = []
    try:
        deadline = time.time() + 60
        while len(workers := worker_children(proc.pid)) < 2:
            assert proc.poll() is None, output.read_text(errors="replace")[-3000:]
            assert time.time() < deadline, "the runner never started two worker processes"
            time.sleep(0.2)
        time.sleep(2)  # the workers are past their imports, tailing the empty topic
        code, stacks = signal_cli(proc, sig)
        assert code == 130, output.read_text(errors="replace")[-3000:] + stacks
        left = [w for w in workers if services.pid_alive(w, "bytewax")]
        assert not left, f"worker processes {left} outlived the runner"
        assert "interrupted; workers stopped" in output.read_text(errors="replace")
    finally:
        kill_cli(proc, workers)  # (a failed run's leftovers)
        cleanup(redis_client, settings.redis.prefix)
