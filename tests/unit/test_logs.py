"""The one log setup of the workers and the reader (config/logs.py): every line has its time,
level, logger and process; JSON lines stay one valid object whatever the message holds."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import config
from config import ConfigError, logs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restored_logging():
    root, persona = logging.getLogger(), logging.getLogger("persona")
    saved = (root.handlers[:], root.level, persona.level)
    yield
    root.handlers[:], _, _ = saved
    root.setLevel(saved[1])
    persona.setLevel(saved[2])


@given(message=st.text(), args=st.lists(st.one_of(st.text(), st.integers(), st.floats()),
                                        max_size=3),
       created=st.floats(0, 4e9), failed=st.booleans())
def test_a_json_line_is_one_object_holding_the_record(message, args, created, failed):
    template = message.replace("%", "%%") + " %s" * len(args)
    record = logging.LogRecord("persona.x", logging.ERROR, "", 0, template, tuple(args), None)
    record.created = created
    if failed:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            record.exc_info = sys.exc_info()
    line = logs.JsonFormatter(pid=3).format(record)
    assert "\n" not in line  # one line per record, whatever the message or traceback hold
    parsed = orjson.loads(line)
    assert parsed["message"] == record.getMessage()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed["time"])
    assert (parsed["level"], parsed["logger"], parsed["pid"]) == ("ERROR", "persona.x", 3)
    assert ("exception" in parsed) is failed
    if failed:
        assert parsed["exception"].endswith("ValueError: boom\nsecond line")


def test_text_lines_carry_time_level_logger_and_pid(restored_logging, capsys):
    logs.configure(config.load(env={}).log)
    logging.getLogger("persona.redis").warning("Redis degraded: %s", "write failed")
    logging.getLogger("persona.kafka").info("dead-lettered %d events", 2)
    logging.getLogger("bytewax").info("not ours: below WARNING")
    lines = capsys.readouterr().err.splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(rf"{stamp} WARNING persona\.redis \[{os.getpid()}\] Redis degraded: "
                        r"write failed", lines[0]), lines
    assert lines[1].endswith(f"INFO persona.kafka [{os.getpid()}] dead-lettered 2 events")
    assert len(lines) == 2


def test_the_level_applies_to_the_project_loggers(restored_logging, capsys):
    logs.configure(config.load(env={"PERSONA_LOG__LEVEL": "WARNING",
                                    "PERSONA_LOG__FORMAT": "json"}).log)
    logging.getLogger("persona.kafka").info("dropped")
    logging.getLogger("persona.flow").error("kept")
    lines = capsys.readouterr().err.splitlines()
    assert [orjson.loads(line)["message"] for line in lines] == ["kept"]


@pytest.mark.parametrize("env,message", [
    ({"PERSONA_LOG__FORMAT": "xml"}, "log.format='xml' is not one of"),
    ({"PERSONA_LOG__LEVEL": "LOUD"}, "log.level='LOUD' is not one of"),
])
def test_bad_log_settings_fail_at_load(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.load(env=env)


def test_a_worker_process_logs_json_when_asked():
    """The workers' entry point (`flows.feeds:get_flow`, what `bytewax.run` calls) sets it up: a
    warning then comes out as a JSON line, not as Python's bare last-resort text."""
    code = ("import logging; from flows.feeds import get_flow; get_flow(); "
            "logging.getLogger('persona.redis').warning('Redis degraded: %s', 'a test')")
    env = {**os.environ, "PERSONA_LOG__FORMAT": "json", "PERSONA_TAIL": "0"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    line = orjson.loads(done.stderr.strip().splitlines()[-1])
    assert line["message"] == "Redis degraded: a test" and line["pid"] > 0
