"""Certificates for the local services `persona up` starts with TLS (`kafka.security_protocol` SSL
or SASL_SSL, `redis.tls` or a rediss:// URL): a private CA and one server certificate for
127.0.0.1 and localhost, written once with openssl under `<services.cache_dir>/tls` and reused by
every later start. They are for trying a TLS setup on one machine, not for a deployment: clients
trust them only through `kafka.ca_file` / `redis.ca_file` pointing at the CA written here."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = 3650
SUBJECT_ALT_NAMES = "subjectAltName=IP:127.0.0.1,DNS:localhost"  # what the clients verify


@dataclass(frozen=True)
class LocalTls:
    """The files of a local CA and its server certificate (PEM)."""

    directory: Path

    @property
    def ca(self) -> Path:  # what clients trust: kafka.ca_file / redis.ca_file
        return self.directory / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def key(self) -> Path:  # unencrypted PKCS#8, readable by the owner only
        return self.directory / "server-key.pem"

    @property
    def keystore(self) -> Path:  # key + certificate chain in one file: Kafka's PEM keystore
        return self.directory / "server-keystore.pem"

    def trusted_by(self, ca_file: str) -> bool:
        """Whether the CA bundle `ca_file` holds this CA's certificate."""
        try:
            return self.ca.read_text().strip() in Path(ca_file).read_text()
        except OSError:
            return False


def ensure_local_tls(directory: Path) -> LocalTls:
    """The local CA and server certificate in `directory`, created with openssl when missing.
    Raises RuntimeError, saying what to install, when openssl is not on the PATH."""
    tls = LocalTls(directory)
    if all(p.is_file() for p in (tls.ca, tls.cert, tls.key, tls.keystore)):
        return tls
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to make the local services' TLS certificates: "
                           "install it (Debian: apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, csr, ext = directory / "ca-key.pem", directory / "server.csr", directory / "san.cnf"
    ext.write_text(SUBJECT_ALT_NAMES + "\n")

    def run(*args: str) -> None:
        proc = subprocess.run([openssl, *args], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed (exit {proc.returncode}): "
                               f"{proc.stderr.strip()[-500:]}")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
        str(tls.ca), "-days", str(DAYS), "-subj", "/CN=persona local CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tls.key), "-out", str(csr),
        "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(tls.ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(tls.cert), "-days", str(DAYS), "-extfile", str(ext))
    tls.keystore.write_text(tls.key.read_text() + tls.cert.read_text() + tls.ca.read_text())
    for private in (ca_key, tls.key, tls.keystore):
        private.chmod(0o600)
    csr.unlink(missing_ok=True)
    return tls
