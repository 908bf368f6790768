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

from config.settings import KafkaSettings, RedisSettings


def redis_connection(rs: RedisSettings) -> tuple[str, dict]:
    """(url, keyword options) for `operators.redis_store.connect`. `tls` upgrades redis:// to rediss://;
    credentials written in the URL itself take precedence over username/password (redis-py rule)."""
    url = rs.url
    options: dict = {}
    if rs.tls and url.startswith("redis://"):
        url = "rediss://" + url[len("redis://"):]
    if rs.username:
        options["username"] = rs.username
    if rs.password:
        options["password"] = rs.password
    if url.startswith("rediss://"):
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
