"""A rebuild cluster next to the live one (README "Operating and recovery"): workers started with
`redis.write_version` write only into that keyspace version while readers keep the active one;
switching the pointer makes readers see the rebuilt contents."""

from __future__ import annotations

import orjson
import redis

import config
from reader import PersonaClient
from scripts import kafka_io, runner
from scripts.generate import GeneratorConfig, generate
from scripts.versions import Versions
from tests.integration.helpers import cleanup, create_run_topics, run_env


def test_a_rebuild_writes_the_next_version_until_switched(live, unique):
    client = redis.Redis.from_url(live[1])
    env = run_env(live, unique, "rebuild")
    settings = create_run_topics(env)
    try:
        versions = Versions(client, settings.redis.prefix)
        client.set(f"{settings.redis.prefix}:active", "1")  # the live cluster's version
        client.set(f"{settings.redis.prefix}:v1:feed:{{u0001}}", b"live")
        target = versions.allocate()
        assert target != "1"
        kafka_io.recreate_topic(settings.kafka.bootstrap, settings.kafka.events_topic, 1)
        events, _ = generate(GeneratorConfig(users=40, days=1, seed=31))
        kafka_io.produce(settings.kafka.bootstrap, settings.kafka.events_topic,
                         [orjson.dumps(e) for e in events])
        rebuild_env = dict(env, PERSONA_REDIS__WRITE_VERSION=target)
        assert runner.run(config.load(env=rebuild_env), None, tail=False, env_extra=rebuild_env,
                          log=lambda m: None, metrics_port=0) == 0

        written = {k.decode().split(":")[1]
                   for k in client.scan_iter(f"{settings.redis.prefix}:v[0-9]*")}
        assert written == {"v1", f"v{target}"}, "the rebuild wrote outside its version"
        assert client.get(f"{settings.redis.prefix}:active") == b"1"
        assert client.get(f"{settings.redis.prefix}:v1:feed:{{u0001}}") == b"live"
        rebuilt = [orjson.loads(client.get(k)) for k in
                   client.scan_iter(f"{settings.redis.prefix}:v{target}:feed:*")]
        feed = max(rebuilt, key=lambda f: (len(f["items"]), f["user_id"]))
        assert feed["items"]
        assert versions.switch(target) == "1"
        page = PersonaClient(client, settings.redis.prefix).feed(feed["user_id"], limit=10)
        assert page.version == target
        assert [i["post_id"] for i in page.items] == [i["post_id"] for i in feed["items"][:10]]
    finally:
        cleanup(settings, client)


def test_concurrent_allocations_get_distinct_versions_above_the_active_one(live, unique):
    """Versions behind the active pointer (a fresh counter, a manual switch): an allocation that
    runs whole between another one's first step and the rest (the interleaving that gave two
    backfills the same version) still gets a number of its own, above the active version."""
    client = redis.Redis.from_url(live[1])
    prefix = f"test-{unique}"
    seq = f"{prefix}:version_seq"
    other: list[str] = []

    class Interleaved:
        """`client`, but another allocation runs whole right after this one's first use of the
        sequence key."""

        def __getattr__(self, name):
            real = getattr(client, name)

            def call(*args, **kwargs):
                result = real(*args, **kwargs)
                if args and args[0] == seq and not other:
                    other.append(Versions(client, prefix).allocate())
                return result
            return call
    try:
        client.set(f"{prefix}:active", "5")
        first = Versions(Interleaved(), prefix).allocate()
        assert other and first != other[0], (first, other)
        assert min(int(first), int(other[0])) > 5
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def test_a_rollback_during_a_collection_stops_it(live, unique):
    """A version retired past its grace is being collected when an operator switches back to it:
    the collection stops at its next batch and the version's keys stay (but for the batch under
    way), and the switch takes it off the retired list."""
    client = redis.Redis.from_url(live[1])
    prefix = f"test-{unique}"
    versions = Versions(client, prefix)
    try:
        client.set(f"{prefix}:active", "1")
        for i in range(30):
            client.set(f"{prefix}:v1:feed:{{u{i}}}", b"x")
        versions.switch("2")  # v1 retired
        batches = []

        class RolledBack:
            """`client`, but the first UNLINK of the collection comes with a switch back."""

            def __getattr__(self, name):
                real = getattr(client, name)
                if name != "unlink":
                    return real

                def unlink(*keys):
                    if not batches:
                        Versions(client, prefix).switch("1")
                    batches.append(len(keys))
                    return real(*keys)
                return unlink
        rolling = Versions(RolledBack(), prefix)
        from operators import redis_store
        original = redis_store.delete_matching
        import scripts.versions as versions_mod
        versions_mod.delete_matching = lambda c, pattern, batch=1000, still=None: original(
            c, pattern, 10, still)  # batches of 10
        try:
            assert rolling.collect(0.0) == []
        finally:
            versions_mod.delete_matching = original
        assert batches == [10] and client.get(f"{prefix}:active") == b"1"
        left = len(list(client.scan_iter(f"{prefix}:v1:feed:*")))
        assert left == 20, left
        assert "1" not in versions.retired()
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
