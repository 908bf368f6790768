"""`persona run` interrupted (SIGTERM, SIGINT, SIGHUP) outside its workers' supervision — while it
checks the services or between a drained run's passes — exits with 130 like an interrupted
supervision, not with a traceback or Typer's "Aborted!" (1)."""

from __future__ import annotations

import config
from scripts import runner


def test_an_interrupt_between_passes_exits_130(monkeypatch):
    def interrupted(_settings):
        raise KeyboardInterrupt  # what `terminate_as_interrupt` turns a SIGTERM into
    monkeypatch.setattr(runner, "check_services", interrupted)
    said: list[str] = []
    code = runner.run(config.load(env={}), None, tail=False, log=said.append)
    assert code == 130 and said == ["interrupted; no worker left running"]
