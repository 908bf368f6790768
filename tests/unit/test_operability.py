"""Access settings, `persona config show`, metric helpers and the reader's token check (no services)."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import config
from config import ConfigError
from config.security import kafka_config, redis_connection
from flows.metrics import RollingLogLoss
from reader.auth import authorized
from schemas import DeadLetter, Limits, decode_event
from schemas.rejections import REASON_KINDS, reason_kind
from scripts.cli import app
from scripts.generate import malformed_lines
from scripts.runner import metrics_env

cli = CliRunner()


# ---------------------------------------------------------------------------- persona config show
def show(env: dict[str, str], *args: str):
    return cli.invoke(app, ["config", "show", *args], env=env)


def test_config_show_prints_every_section_as_json():
    result = show({"PERSONA_FEED__SIZE": "30"})
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert set(data) == {"kafka", "redis", "log", "reader", "services", "stream", "features", "feed",
                         "notifications", "controls", "experiments"}
    assert data["feed"]["size"] == 30
    assert data["kafka"]["security_protocol"] == "PLAINTEXT" and data["redis"]["tls"] is False


def test_config_show_masks_every_secret():
    env = {"PERSONA_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "PERSONA_KAFKA__USERNAME": "svc",
           "PERSONA_KAFKA__PASSWORD": "kafka-pw-123", "PERSONA_REDIS__USERNAME": "app",
           "PERSONA_REDIS__PASSWORD": "redis-pw-456", "PERSONA_READER__TOKEN": "token-789",
           "REDIS_URL": "redis://app:url-pw-000@cache.internal:6379/0"}
    result = show(env)
    assert result.exit_code == 0, result.output
    for secret in ("kafka-pw-123", "redis-pw-456", "token-789", "url-pw-000"):
        assert secret not in result.output
    data = orjson.loads(result.output)
    assert data["kafka"]["password"] == data["redis"]["password"] == data["reader"]["token"] == "***"
    assert data["redis"]["url"] == "redis://***@cache.internal:6379/0"
    assert data["kafka"]["username"] == "svc"  # user names are not secrets


def test_config_show_from_a_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[reader]\ntoken = "from-file"\n[feed]\nauthor_cap = 5\n')
    result = show({}, "--config", str(path))
    data = orjson.loads(result.output)
    assert data["feed"]["author_cap"] == 5 and data["reader"]["token"] == "***"


@pytest.mark.parametrize("env,key", [
    ({"PERSONA_FEED__SIZE": "0"}, "feed.size"),
    ({"PERSONA_REDIS__TLS": "maybe"}, "redis.tls"),
    ({"PERSONA_KAFKA__SECURITY_PROTOCOL": "TLS"}, "kafka.security_protocol"),
])
def test_config_show_fails_fast_naming_the_key(env, key):
    result = show(env)
    assert result.exit_code == 2
    assert key in result.output and "configuration error" in result.output


# ------------------------------------------------------------------------ access settings
@pytest.mark.parametrize("env,message", [
    ({"PERSONA_REDIS__TLS": "sometimes"}, "redis.tls must be bool"),
    ({"PERSONA_KAFKA__SECURITY_PROTOCOL": "SASL"}, "kafka.security_protocol='SASL' is not one of"),
    ({"PERSONA_KAFKA__SASL_MECHANISM": "GSSAPI"}, "kafka.sasl_mechanism"),
    ({"PERSONA_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"}, "kafka.username and kafka.password"),
    ({"PERSONA_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "PERSONA_KAFKA__USERNAME": "u"},
     "kafka.password"),
    ({"PERSONA_REDIS__USERNAME": "app"}, "redis.password"),
    ({"PERSONA_REDIS__CA_FILE": "/no/such/ca.pem"}, "redis.ca_file"),
    ({"PERSONA_KAFKA__CA_FILE": "/no/such/ca.pem"}, "kafka.ca_file"),
    ({"PERSONA_READER__NOPE": "x"}, "unknown key reader.nope"),
])
def test_bad_access_values_fail_fast_naming_the_key(env, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        config.load(env=env)


def test_bools_accept_the_usual_words():
    for word, value in (("true", True), ("1", True), ("ON", True), ("false", False), ("0", False),
                        ("no", False)):
        assert config.load(env={"PERSONA_REDIS__TLS": word}).redis.tls is value


def test_secrets_stay_out_of_reprs():
    s = config.load(env={"PERSONA_REDIS__USERNAME": "app", "PERSONA_REDIS__PASSWORD": "pw-xyz",
                         "PERSONA_READER__TOKEN": "tok-xyz"})
    assert "pw-xyz" not in repr(s) and "tok-xyz" not in repr(s)


def test_redis_connection_options(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = config.load(env={"PERSONA_REDIS__TLS": "true", "PERSONA_REDIS__CA_FILE": str(ca),
                         "PERSONA_REDIS__USERNAME": "app", "PERSONA_REDIS__PASSWORD": "pw"})
    url, options = redis_connection(s.redis)
    assert url == "rediss://127.0.0.1:6379/0"
    assert options == {"username": "app", "password": "pw", "ssl_cert_reqs": "required",
                       "ssl_ca_certs": str(ca)}
    assert redis_connection(config.load(env={}).redis) == ("redis://127.0.0.1:6379/0", {})
    url, options = redis_connection(config.load(env={"REDIS_URL": "rediss://h:1/0"}).redis)
    assert url == "rediss://h:1/0" and options == {"ssl_cert_reqs": "required"}


def test_kafka_client_config(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert kafka_config(config.load(env={}).kafka) == {}
    s = config.load(env={"PERSONA_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
                         "PERSONA_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
                         "PERSONA_KAFKA__USERNAME": "svc", "PERSONA_KAFKA__PASSWORD": "pw",
                         "PERSONA_KAFKA__CA_FILE": str(ca)})
    assert kafka_config(s.kafka) == {"security.protocol": "SASL_SSL",
                                     "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc",
                                     "sasl.password": "pw", "ssl.ca.location": str(ca)}
    tls = config.load(env={"PERSONA_KAFKA__SECURITY_PROTOCOL": "SSL"})
    assert kafka_config(tls.kafka) == {"security.protocol": "SSL"}


# ------------------------------------------------------------------------------- reader token
def test_bearer_token_check():
    assert authorized(None, "") and authorized("anything", "")
    assert authorized("Bearer t0k", "t0k") and authorized("bearer t0k", "t0k")
    for header in (None, "", "t0k", "Bearer", "Bearer ", "Bearer t0", "Bearer t0kk", "Basic t0k",
                   "Bearer T0K"):
        assert not authorized(header, "t0k"), header


@given(tokens=st.lists(st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1,
                               max_size=12), min_size=1, max_size=3),
       given_token=st.text(st.characters(codec="ascii", categories=("L", "N", "P")), max_size=12))
def test_any_of_several_tokens_is_accepted_and_nothing_else(tokens, given_token):
    """A rotation configures "new,old": each is accepted, their concatenation or part is not."""
    configured = ",".join(tokens)
    assert authorized(f"Bearer {given_token}", configured) == (given_token in tokens)
    for token in tokens:
        assert authorized(f"Bearer {token}", configured)


# ------------------------------------------------------------------------------------- metrics
def test_every_generator_malformed_kind_maps_to_its_reason_kind():
    expected = {"bad_json": "invalid_json", "missing_field": "missing_field",
                "wrong_type": "wrong_type", "unknown_type": "unknown_type",
                "oversized": "too_large", "absurd_ts": "bad_ts"}
    for raw, kind in malformed_lines(48, seed=3):
        event, reason = decode_event(raw, Limits())
        assert event is None and reason_kind(reason) == expected[kind], (kind, reason)
    assert reason_kind(DeadLetter("duplicate event_id 'e1'", b"").reason) == "duplicate"
    assert reason_kind("something new") == "other" and reason_kind(None) == "other"
    assert len(REASON_KINDS) <= 12  # a bounded label set


def test_rolling_log_loss_is_a_windowed_weighted_mean():
    tracker = RollingLogLoss(window=3)
    assert tracker.observe(0.5, True) == pytest.approx(math.log(2))
    tracker.observe(0.9, True)
    assert tracker.observe(0.9, False, w=2.0) == pytest.approx(
        (math.log(2) - math.log(0.9) - 2 * math.log(0.1)) / 4)
    assert tracker.observe(0.0, False) == pytest.approx(  # the oldest one leaves the window
        (-math.log(0.9) - 2 * math.log(0.1) - math.log(1 - 1e-15)) / 4)
    assert tracker.observe(1.0, False) < 40  # clipped, never infinite


def test_metrics_port_per_process():
    base = {"PATH": "/bin", "BYTEWAX_DATAFLOW_API_ENABLED": "1"}
    assert metrics_env(base, None, 0) == base
    assert metrics_env(base, 0, 1) == {"PATH": "/bin"}  # Bytewax enables the API if set at all
    assert metrics_env({"PATH": "/bin"}, 3030, 2) == {
        "PATH": "/bin", "BYTEWAX_DATAFLOW_API_ENABLED": "1", "BYTEWAX_DATAFLOW_API_PORT": "3032"}
    cached = metrics_env({}, 3030, 1, Path("/x/.cache/bytewax"))
    assert cached["BYTEWAX_DATAFLOW_API_CACHE_PATH"] == "/x/.cache/bytewax/api-1"


def test_a_worker_that_ended_its_dataflow_but_hangs_on_exit_is_killed_and_counts_as_done(tmp_path):
    # Bytewax 0.21 can deadlock at exit with a /metrics request in flight (scripts.runner.supervise)
    import os
    import subprocess
    import sys
    import time

    from scripts.runner import supervise

    def worker(code: str, ended: int, workers: int = 1) -> subprocess.Popen:
        """A process of `workers` workers, the first `ended` of which noted their end 5 s ago."""
        p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        p.ended_markers = [tmp_path / "ended" / f"{p.pid}.{w}" for w in range(workers)]
        for marker in p.ended_markers[:ended]:
            marker.parent.mkdir(exist_ok=True)
            marker.touch()
            os.utime(marker, (time.time() - 5, time.time() - 5))
        return p

    hung = worker("import time; time.sleep(60)", ended=2, workers=2)  # (fails in 60 s unfixed)
    done = worker("pass", ended=0)
    logged: list[str] = []
    t0 = time.monotonic()
    assert supervise([hung, done], logged.append, exit_grace_s=1.0) == 0
    assert time.monotonic() - t0 < 30 and hung.poll() is not None
    assert any("did not exit" in m for m in logged)
    assert not (tmp_path / "ended").exists(), "the notes are removed"

    still_working = worker("import time; time.sleep(1.5)", ended=0)  # no note: waited for
    assert supervise([still_working], logged.append, exit_grace_s=0.1) == 0
    assert still_working.returncode == 0
    # -w 2: one worker's sink closed while the other still writes its last batch: waited for
    half_ended = worker("import time; time.sleep(1.5)", ended=1, workers=2)
    assert supervise([half_ended], logged.append, exit_grace_s=0.1) == 0
    assert half_ended.returncode == 0


def test_a_cluster_that_fails_to_start_leaves_no_process_behind(monkeypatch, tmp_path):
    # the second process cannot start: the first, already running in a session of its own, is
    # stopped, and the error reaches the caller
    import sys

    from scripts import runner

    started = []
    real_popen = runner.subprocess.Popen

    def popen(cmd, **kwargs):
        p = real_popen(cmd, **kwargs)
        started.append(p)
        return p

    monkeypatch.setattr(runner, "check_services", lambda settings: None)
    monkeypatch.setattr(runner, "check_events_topic", lambda settings: None)
    monkeypatch.setattr(runner, "ensure_erasure_topic", lambda settings: None)
    monkeypatch.setattr(runner, "worker_commands", lambda *a: [
        [sys.executable, "-c", "import time; time.sleep(60)"], [str(tmp_path / "missing")]])
    monkeypatch.setattr(runner.subprocess, "Popen", popen)
    ended = tmp_path / "ended"
    monkeypatch.setattr(runner.tempfile, "mkdtemp", lambda prefix: ended.mkdir() or str(ended))
    with pytest.raises(FileNotFoundError):
        runner.start(config.load(env={}), None, processes=2, metrics_port=0, log=lambda m: None)
    assert len(started) == 1 and started[0].poll() is not None, "the first process was stopped"
    assert not ended.exists()


def test_a_worker_killed_by_a_signal_after_another_ended_fails_the_run():
    import subprocess
    import sys

    from scripts.runner import supervise

    done = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    done.wait()
    killed = subprocess.Popen([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"],
                              start_new_session=True)
    killed.wait()
    assert supervise([done, killed], lambda m: None) == -9


def test_pinned_env_gives_each_process_its_own_cpu_only_when_asked():
    import os

    from scripts.runner import pinned_env

    base = {"PATH": "/bin"}
    assert pinned_env(base, 1) == base
    pin = dict(base, PERSONA_PIN_CPUS="1")
    cpus = os.cpu_count() or 1
    assert [pinned_env(pin, i)["PERSONA_CPU"] for i in range(3)] == [
        str(i % cpus) for i in range(3)]


def test_partitions_added_under_running_workers_are_reported_once_per_count(caplog):
    """Bytewax reads the partitions it listed at start: the backlog watcher says when the topic
    has more (flows.resources.PartitionCount), once per new count."""
    import logging

    from flows.resources import PartitionCount

    counts = PartitionCount("persona.events")
    with caplog.at_level(logging.WARNING, logger="persona.backlog"):
        for count in (4, 4, 8, 8, 8, 12, 8):
            counts.seen(count)
    said = [r.getMessage() for r in caplog.records]
    assert [line.split(" has ")[1].split(",")[0] for line in said] == [
        "8 partitions now", "12 partitions now"]
    assert all("4 when the workers started: restart them" in line for line in said)
