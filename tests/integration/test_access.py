"""Access settings reach the real clients: a private redis-server that only speaks TLS and only knows
an ACL user (the default user is off), used by the workers' writer, the reader and the runner's
pre-flight check from [redis] settings alone; Kafka SASL settings reach the broker probe."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import redis
from fastapi.testclient import TestClient

import config
from flows import resources
from reader import PersonaClient
from reader.http import create_app
from schemas import Feed, FeedItem, Reason
from scripts import runner, services


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _certs(tmp) -> dict:
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl not found: cannot make test certificates")

    def run(*args):
        subprocess.run([openssl, *args], cwd=tmp, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=persona-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    (tmp / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return {"ca": tmp / "ca.pem", "cert": tmp / "server.pem", "key": tmp / "server.key"}


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory):
    """(port, CA file) of a TLS-only redis-server with ACL user app/pw and the default user off."""
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    tmp = tmp_path_factory.mktemp("tls")
    certs = _certs(tmp)
    port = _free_port()
    proc = subprocess.Popen([server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(certs["cert"]), "--tls-key-file", str(certs["key"]),
                             "--tls-ca-cert-file", str(certs["ca"]), "--tls-auth-clients", "no",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp),
                             "--user", "default", "off", "--user", "app", "on", ">pw", "~*", "+@all"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    probe = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs["ca"]), username="app",
                        password="pw")
    for _ in range(100):
        try:
            probe.ping()
            break
        except redis.RedisError:
            if proc.poll() is not None:
                pytest.skip(f"redis-server without TLS support: {proc.stdout.read()[-300:]!r}")
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("TLS redis-server did not start")
    yield port, certs["ca"]
    proc.terminate()
    proc.wait(10)


def _settings(live, port, ca, **extra):
    return config.load(env={"KAFKA_BOOTSTRAP": live[0], "REDIS_URL": f"redis://127.0.0.1:{port}/0",
                            "PERSONA_REDIS__TLS": "true", "PERSONA_REDIS__CA_FILE": str(ca),
                            "PERSONA_REDIS__USERNAME": "app", "PERSONA_REDIS__PASSWORD": "pw",
                            **extra})


def test_workers_reader_and_runner_use_redis_acl_and_tls_from_config(live, secure_redis):
    port, ca = secure_redis
    settings = _settings(live, port, ca)
    assert resources.client(settings.redis).ping()
    feed = Feed("u1", 5, (FeedItem("p1", "a1", 0.5, (Reason("in_network", "a1"),)),))
    resources.redis_writer(settings).write_batch([("feed", "u1", feed.encode()),
                                                  ("profile", "u1", b'{"authors":[],"topics":[]}')])
    client = PersonaClient.from_settings(settings)
    assert [i["post_id"] for i in client.feed("u1").items] == ["p1"]
    assert client.profile("u1") == {"authors": [], "topics": []}
    http = TestClient(create_app(settings))
    assert http.get("/healthz").status_code == 200
    assert http.get("/feed/u1").json()["items"][0]["post_id"] == "p1"
    runner.check_services(settings)  # the pre-flight check of `persona run` gets through too


def test_wrong_credentials_or_no_tls_are_refused(live, secure_redis):
    port, ca = secure_redis
    wrong = _settings(live, port, ca, PERSONA_REDIS__PASSWORD="nope")
    with pytest.raises(redis.AuthenticationError):
        PersonaClient.from_settings(wrong).redis.ping()
    plain = _settings(live, port, ca, PERSONA_REDIS__TLS="false")
    with pytest.raises(redis.ConnectionError):
        PersonaClient.from_settings(plain).redis.ping()
    with pytest.raises(services.ServiceError, match="Redis not reachable"):
        runner.check_services(wrong)
    unverified = config.load(env={"REDIS_URL": f"rediss://127.0.0.1:{port}/0",
                                  "PERSONA_REDIS__USERNAME": "app", "PERSONA_REDIS__PASSWORD": "pw"})
    with pytest.raises(redis.ConnectionError):  # a self-signed server is not trusted without ca_file
        PersonaClient.from_settings(unverified).redis.ping()


def test_kafka_sasl_settings_reach_the_client(live):
    """The local broker speaks PLAINTEXT only: with SASL configured the pre-flight probe must fail,
    which shows the settings reach the Kafka client (and that it fails fast, not forever)."""
    settings = config.load(env={"KAFKA_BOOTSTRAP": live[0], "REDIS_URL": live[1],
                                "PERSONA_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                "PERSONA_KAFKA__USERNAME": "app", "PERSONA_KAFKA__PASSWORD": "pw",
                                "PERSONA_KAFKA__CONNECT_TIMEOUT_S": "3"})
    started = time.time()
    with pytest.raises(services.ServiceError, match="Kafka not reachable"):
        runner.check_services(settings)
    assert time.time() - started < 30
    runner.check_services(config.load(env={"KAFKA_BOOTSTRAP": live[0], "REDIS_URL": live[1]}))
