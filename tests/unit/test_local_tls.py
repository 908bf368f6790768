"""The local CA of `persona up`'s TLS services (scripts/tls.py) and the broker properties that use
it: certificates for 127.0.0.1 / localhost signed by the CA, written once, private files private,
a CA bundle recognised; SSL and SASL_SSL listeners with the PEM key store."""

from __future__ import annotations

import shutil
import ssl

import pytest

import config
from scripts import services
from scripts.tls import ensure_local_tls

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")


def test_local_certificates_are_made_once_for_loopback(tmp_path):
    tls = ensure_local_tls(tmp_path / "tls")
    cert = ssl._ssl._test_decode_cert(str(tls.cert))
    assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
    assert ("DNS", "localhost") in cert["subjectAltName"]
    context = ssl.create_default_context(cafile=str(tls.ca))  # the CA loads as a trust anchor
    assert context.cert_store_stats()["x509_ca"] == 1
    for private in (tls.key, tls.keystore, tls.directory / "ca-key.pem"):
        assert private.stat().st_mode & 0o077 == 0, private
    assert tls.keystore.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    before = {p.name: p.read_bytes() for p in tls.directory.iterdir()}
    assert ensure_local_tls(tls.directory) == tls
    assert {p.name: p.read_bytes() for p in tls.directory.iterdir()} == before


def test_a_ca_bundle_is_recognised_by_content(tmp_path):
    tls = ensure_local_tls(tmp_path / "a")
    other = ensure_local_tls(tmp_path / "b")
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(other.ca.read_text() + tls.ca.read_text())
    assert tls.trusted_by(str(bundle)) and tls.trusted_by(str(tls.ca))
    assert not tls.trusted_by(str(other.ca))
    assert not tls.trusted_by(str(tmp_path / "missing.pem")) and not tls.trusted_by("")


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_broker_properties_for_a_tls_listener(tmp_path, protocol):
    tls = ensure_local_tls(tmp_path / "tls")
    settings = config.load(env={"PERSONA_KAFKA__SECURITY_PROTOCOL": protocol,
                                "PERSONA_KAFKA__USERNAME": "app", "PERSONA_KAFKA__PASSWORD": "pw",
                                "PERSONA_KAFKA__CA_FILE": str(tls.ca)})
    services._check_local_access(settings)  # accepted
    props = dict(line.split("=", 1) for line in services._server_properties(
        settings, {"data": tmp_path / "data"}, tls).splitlines() if not line.startswith("#"))
    assert props["listeners"].startswith(f"{protocol}://127.0.0.1:")
    assert props["inter.broker.listener.name"] == protocol
    assert props["ssl.keystore.location"] == str(tls.keystore)
    assert props["ssl.truststore.location"] == str(tls.ca)
    jaas = f"listener.name.{protocol.lower()}.plain.sasl.jaas.config"
    assert (jaas in props) == protocol.startswith("SASL_")
