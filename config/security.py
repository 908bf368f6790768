"""Client options for the access settings: Redis AUTH/ACL user and TLS, Kafka SASL/TLS.

Pure functions from settings to the options each client library takes, so every Redis and Kafka
client of the project (workers, sinks, reader, CLI) is configured the same way.

>>> from config import load
>>> s = load(env={"PERSONA_REDIS__TLS": "true", "PERSONA_REDIS__USERNAME": "app",
...               "PERSONA_REDIS__PASSWORD": "pw"})
>>> url, opts = redis_connection(s.redis)
>>> url, sorted(opts)
('rediss://127.0.0.1:6379/0', ['password', 'ssl_cert_reqs', 'username'])
>>> kafka_config(load(env={}).kafka)
{}
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from config.settings import KafkaSettings, RedisSettings, mask_url

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    """Where a `redis+sentinel://` URL points: the Sentinels to ask, the monitored service's name
    (its `sentinel monitor` name), the database, the data nodes' credentials, and TLS."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def sentinel_target(url: str) -> SentinelTarget | None:
    """The Sentinel target of `url`, or None for any other URL. The form:
    ``redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db]`` (port 26379 by
    default; ``rediss+sentinel://`` for TLS; the credentials are the data nodes', as in redis://).

    >>> t = sentinel_target("redis+sentinel://:s%40cret@10.0.0.1,10.0.0.2:26380/persona/2")
    >>> t.sentinels, t.service, t.db, t.password
    ((('10.0.0.1', 26379), ('10.0.0.2', 26380)), 'persona', 2, 's@cret')
    >>> sentinel_target("redis://127.0.0.1:6379/0") is None
    True
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        return None
    example = "redis+sentinel://[:password@]host:26379[,host:26379]/service[/db]"
    if "?" in rest or "#" in rest:
        raise ValueError(f"{mask_url(url)}: a Sentinel URL takes no query or fragment; {example}")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    sentinels = []
    for host in hosts.split(","):
        try:
            parts = urlsplit(f"//{host}")
            port = parts.port or SENTINEL_PORT
        except ValueError:
            parts = None
        if not host or parts is None or not parts.hostname:
            raise ValueError(f"{mask_url(url)}: bad Sentinel address {host!r}; {example}")
        sentinels.append((parts.hostname, port))
    service, _, db = path.strip("/").partition("/")
    if not service or (db and not db.isdigit()):
        raise ValueError(f"{mask_url(url)}: name the monitored service (and a database number) "
                         f"after the Sentinels; {example}")
    username, _, password = userinfo.partition(":")
    return SentinelTarget(tuple(sentinels), unquote(service), int(db or 0),
                          unquote(username) or None, unquote(password) or None,
                          scheme.lower() == "rediss+sentinel")


def redis_connection(rs: RedisSettings) -> tuple[str, dict]:
    """(url, keyword options) for `operators.redis_store.connect`. `tls` upgrades redis:// to rediss://;
    credentials written in the URL itself take precedence over username/password (redis-py rule)."""
    url = rs.url
    options: dict = {}
    if rs.tls and url.startswith(("redis://", "redis+sentinel://")):
        url = "rediss" + url[len("redis"):]
    if rs.username:
        options["username"] = rs.username
    if rs.password:
        options["password"] = rs.password
    if rs.sentinel_password:
        options["sentinel_password"] = rs.sentinel_password  # read by redis_store.connect
    if rs.sentinel_username:
        options["sentinel_username"] = rs.sentinel_username
    if url.startswith(("rediss://", "rediss+sentinel://")):
        options["ssl_cert_reqs"] = "required"
        if rs.ca_file:
            options["ssl_ca_certs"] = rs.ca_file
    if rs.cluster:
        options["cluster"] = True  # read by operators.redis_store.connect / connect_async
    return url, options


def kafka_config(ks: KafkaSettings) -> dict[str, str]:
    """librdkafka properties for every producer, consumer and admin client ({} for PLAINTEXT)."""
    out: dict[str, str] = {}
    if ks.security_protocol != "PLAINTEXT":
        out["security.protocol"] = ks.security_protocol
    if ks.security_protocol.startswith("SASL_"):
        out.update({"sasl.mechanism": ks.sasl_mechanism, "sasl.username": ks.username,
                    "sasl.password": ks.password})
    if ks.ca_file and ks.security_protocol in ("SSL", "SASL_SSL"):
        out["ssl.ca.location"] = ks.ca_file
    return out
