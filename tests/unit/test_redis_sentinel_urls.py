"""`redis+sentinel://` URLs: parsed into the Sentinels, the service and the data nodes' access,
checked at config load, and turned into a client of the service's primary (no server needed: a
Sentinel-managed client connects lazily)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

import config
from config import ConfigError
from config.security import SENTINEL_PORT, redis_connection, sentinel_target
from operators.redis_store import connect, connect_async

hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"))
secrets = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@given(sentinels=st.lists(st.tuples(hosts, st.one_of(st.none(), st.integers(1, 65535))),
                          min_size=1, max_size=4),
       service=st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True),
       db=st.one_of(st.none(), st.integers(0, 15)), username=secrets, password=secrets,
       tls=st.booleans())
def test_a_sentinel_url_parses_back_to_what_it_was_built_from(sentinels, service, db, username,
                                                              password, tls):
    netloc = ",".join(host if port is None else f"{host}:{port}" for host, port in sentinels)
    if username or password:
        netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{netloc}"
    path = service if db is None else f"{service}/{db}"
    url = f"{'rediss' if tls else 'redis'}+sentinel://{netloc}/{path}"
    target = sentinel_target(url)
    assert target.sentinels == tuple((host.strip("[]"), port or SENTINEL_PORT)
                                     for host, port in sentinels)
    assert (target.service, target.db, target.tls) == (service, db or 0, tls)
    assert (target.username, target.password) == (username or None, password or None)


@pytest.mark.parametrize("url", [
    "redis+sentinel://h1:26379",  # no service
    "redis+sentinel://h1:26379/",
    "redis+sentinel://h1:26379/svc/zero",  # the database is a number
    "redis+sentinel://h1:notaport/svc",
    "redis+sentinel://h1,,h2/svc",  # an empty address
    "redis+sentinel://h1/svc?socket_timeout=1",  # options go in the config, not the URL
])
def test_a_bad_sentinel_url_fails_at_config_load_with_the_form(url):
    with pytest.raises(ConfigError, match=r"redis\.url: .*redis\+sentinel://\[:password@\]host"):
        config.load(env={"REDIS_URL": url})


def test_a_bad_sentinel_url_does_not_print_its_password():
    with pytest.raises(ConfigError) as raised:
        config.load(env={"REDIS_URL": "redis+sentinel://:hunter2@h1:26379"})
    assert "hunter2" not in str(raised.value)


def test_other_urls_are_not_sentinel_urls():
    for url in ("redis://h:1/0", "rediss://h/0", "unix:///tmp/redis.sock", "h:6379"):
        assert sentinel_target(url) is None


@pytest.mark.parametrize("env,message", [
    ({"REDIS_URL": "redis+sentinel://h1/svc", "PERSONA_REDIS__CLUSTER": "true"},
     "exclude each other"),
    ({"PERSONA_REDIS__WAIT_REPLICAS": "-1"}, "redis.wait_replicas=-1 is out of range"),
])
def test_sentinel_and_wait_settings_that_cannot_work_fail_at_load(env, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config.load(env=env)


def test_tls_and_the_sentinels_password_reach_the_options():
    s = config.load(env={"REDIS_URL": "redis+sentinel://h1,h2/svc/1", "PERSONA_REDIS__TLS": "true",
                         "PERSONA_REDIS__SENTINEL_PASSWORD": "sp", "PERSONA_REDIS__PASSWORD": "dp",
                         "PERSONA_REDIS__SENTINEL_USERNAME": "watcher"})
    url, options = redis_connection(s.redis)
    assert url == "rediss+sentinel://h1,h2/svc/1"
    assert options == {"password": "dp", "sentinel_password": "sp", "sentinel_username": "watcher",
                       "ssl_cert_reqs": "required"}
    assert "sp" not in repr(s.redis)
    assert config.public_dict(s)["redis"]["sentinel_password"] == "***"


def test_the_client_asks_the_sentinels_for_the_service_primary():
    client = connect("redis+sentinel://:dp@10.1.1.1,10.1.1.2:26380/svc/3", timeout_s=2.0,
                     sentinel_password="sp", password="ignored: the URL's wins")
    pool = client.connection_pool
    assert pool.service_name == "svc" and pool.is_master
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "dp"
    sentinels = pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in sentinels] == [("10.1.1.1", 26379), ("10.1.1.2", 26380)]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "sp"
    assert sentinels[0].connection_pool.connection_kwargs.get("username") is None
    acl = connect("redis+sentinel://10.1.1.1/svc", sentinel_password="sp",
                  sentinel_username="watcher").connection_pool.sentinel_manager.sentinels[0]
    assert acl.connection_pool.connection_kwargs["username"] == "watcher"
    plain = connect("redis://10.1.1.1/0", sentinel_password="sp", sentinel_username="watcher")
    assert plain.connection_pool.connection_kwargs.get("username") is None  # not a Sentinel
    assert sentinels[0].connection_pool.connection_kwargs["socket_timeout"] == 2.0
    with pytest.raises(ValueError, match="not a Redis Cluster"):
        connect("redis+sentinel://h1/svc", cluster=True)


def test_the_async_client_too():
    client = connect_async("rediss+sentinel://h1/svc", ssl_cert_reqs="required")
    assert isinstance(client, redis.asyncio.Redis)
    assert client.connection_pool.service_name == "svc"
    assert client.connection_pool.connection_class.__name__ == "SentinelManagedSSLConnection"
