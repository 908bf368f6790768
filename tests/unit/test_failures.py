"""What a failing step or sink says (`flows.failures`). In a Bytewax cluster the exception itself
never reaches the terminal (every process prints only "Send thread panic: Any { .. }"), so the
steps' logic and the sinks log it first, once."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource

from flows import failures
from flows.adapters import RETAIN, _Logic
from scripts import runner

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = "Redis unavailable for 296.3s, 65 attempt(s) (boom); check REDIS_URL"


class _Failing(_Logic):
    def on_batch(self, values):
        raise RuntimeError(MESSAGE)

    def on_notify(self):
        return [], RETAIN


class _FailingChild(_Failing):
    def on_batch(self, values):  # wrapped too: the inner frame reports, the outer does not
        return super().on_batch(values)


def test_a_steps_exception_is_logged_once_with_where_it_happened(caplog):
    with caplog.at_level(logging.ERROR, "persona.flow"):
        for logic in (_Failing(None), _FailingChild(None)):
            try:
                logic.on_batch([1])
            except RuntimeError:
                pass
            else:
                raise AssertionError("the exception must still stop the worker")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"{name}.on_batch failed; the worker stops: RuntimeError: {MESSAGE}"
                     for name in ("_Failing", "_FailingChild")]  # once each: by the logic's class
    assert caplog.records[0].exc_info is not None  # (with its traceback)
    assert _Failing(None).on_notify() == ([], RETAIN)


class _Partition(StatelessSinkPartition):
    @failures.reported
    def write_batch(self, items):
        if 500 in items:
            raise RuntimeError(MESSAGE)


class _Sink(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        return _Partition()


def failing_flow() -> Dataflow:
    """Items spread over the processes by key; the sink that gets item 500 fails."""
    flow = Dataflow("failing")
    items = op.key_on("key", op.input("in", flow, TestingSource(list(range(1000)))),
                      lambda x: str(x % 7))
    op.output("out", op.map("value", items, lambda kv: kv[1]), _Sink())
    return flow


def test_a_cluster_process_that_fails_says_why():
    addresses = ";".join(f"127.0.0.1:{p}" for p in runner.free_ports(2))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-m", "bytewax.run",
                               "tests.unit.test_failures:failing_flow()", "-i", str(i),
                               "-a", addresses], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode != 0 for p in procs)
    both = "\n".join(outputs)
    assert "Send thread panic" in both  # all that Bytewax itself says
    assert f"_Partition.write_batch failed; the worker stops: RuntimeError: {MESSAGE}" in both, both
