"""Erasure on the real Kafka and Redis, through the streaming workers (operators/erasure.py).

A tailing worker process consumes 60 users × 2 days of generated activity; the chosen user has
posts (liked, commented, shared, impressed by others), followers, followees, groups, likes,
conversations and notifications. Once everything has settled, every key under the run's prefix
must mention them (the check can see them). Then `user_deleted` for them: once the stream is quiet
again, no key name and no value under the prefix (JSON decoded, sorted-set and set members) may
name them or any of their posts, and no reader response for any other user may either. The
generator's own two deleted users are checked the same way.
"""

from __future__ import annotations

import collections
import contextlib
import re
import uuid

import orjson
import pytest
import redis
from fastapi.testclient import TestClient

import config
from reader.client import PersonaClient
from reader.http import create_app
from scripts import kafka_io, runner
from scripts.generate import GeneratorConfig, generate
from tests.integration.helpers import cleanup, isolated_env, wait_quiet

NEEDED = ("post_created", "followed", "follow", "group_joined", "like", "message_sent",
          "messaged", "engaged_with", "notified")


def _profile(events: list[dict]) -> dict[str, collections.Counter]:
    """What each user did and what others did to them, by kind (see NEEDED)."""
    author = {e["post_id"]: e["user_id"] for e in events if e["type"] == "post_created"}
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for e in events:
        out[e["user_id"]][e["type"]] += 1
        if e["type"] == "follow":
            out[e["target_id"]]["followed"] += 1
            out[e["user_id"]]["notified"] += 1  # the target gets a follow notification
        for r in e.get("recipients") or ():
            out[r]["messaged"] += 1
        if e["type"] in ("like", "comment", "share") and e.get("post_id") in author:
            out[author[e["post_id"]]]["engaged_with"] += 1
    return out


def _all_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_all_strings(k), *_all_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _all_strings(v)]
    return []


def _decoded(client: redis.Redis, key: bytes) -> list[str]:
    """Every string a key holds: its name, a JSON value's keys and strings (decoded), the raw
    text, sorted-set and set members."""
    kind = client.type(key).decode()
    if kind == "none":  # deleted since the scan listed it (the worker is live during the first scan)
        return []
    if kind == "string":
        raw = client.get(key) or b""
        texts = [raw.decode(errors="replace")]
        with contextlib.suppress(orjson.JSONDecodeError):
            texts += _all_strings(orjson.loads(raw))
    elif kind == "zset":
        texts = [m.decode() for m in client.zrange(key, 0, -1)]
    elif kind == "set":
        texts = [m.decode() for m in client.smembers(key)]
    else:
        raise AssertionError(f"unexpected Redis type {kind} at {key!r}")
    return [key.decode(), *texts]


def _pattern(ids: set[str]) -> re.Pattern:
    """Any of `ids` as a whole token (u0015 must not match u00150)."""
    alternatives = "|".join(sorted(map(re.escape, ids), key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9_\-])(?:{alternatives})(?![A-Za-z0-9_\-])")


def _mentions(client: redis.Redis, prefix: str, pattern: re.Pattern) -> dict[str, str]:
    """Key → the first text in it that matches `pattern`."""
    found = {}
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        for text in _decoded(client, key):
            m = pattern.search(text)
            if m:
                found[key.decode()] = text[max(0, m.start() - 60): m.end() + 60]
                break
    return found


def _kinds(keys) -> collections.Counter:
    return collections.Counter(k.split(":")[2] if k.count(":") >= 2 else k for k in keys)


@pytest.fixture(params=[("3600", "512"), ("1", "512"), ("3600", "2")],
                ids=["resident", "parked", "spilled"])
def env(live, request):
    unique = uuid.uuid4().hex[:10]
    env = isolated_env(live, unique)
    env.update({
        "PERSONA_KAFKA__NOTIFICATIONS_TOPIC": f"persona.test.{unique}.notifs",
        "PERSONA_KAFKA__PARTITIONS": "2",
        "PERSONA_STREAM__SUGGEST_INTERVAL_S": "1",  # suggestions settle within the quiet period
        "PERSONA_STREAM__BACKLOG_INTERVAL_S": "0",  # (a catch-up stretch would outlast it)
        # "parked": idle users' states (followers lists, erasure indexes, …) go to Redis within
        # the quiet periods, so the scans see the parked copies (pickles) too
        "PERSONA_STREAM__USER_IDLE_EVICT_S": request.param[0],
        # "spilled": every much-mentioned user's erasure owners past 2 go to a Redis set, which the
        # deletion must read back (operators/erasure.py)
        "PERSONA_STREAM__ERASURE_RESIDENT_OWNERS": request.param[1],
    })
    settings = config.load(env=env)
    for topic in (settings.kafka.events_topic, settings.kafka.dead_letter_topic,
                  settings.kafka.notifications_topic, settings.kafka.erasures):
        kafka_io.recreate_topic(settings.kafka.bootstrap, topic, settings.kafka.partitions)
    client = redis.Redis.from_url(live[1])
    yield env, settings, client
    cleanup(settings, client)


def test_after_user_deleted_no_key_or_value_mentions_the_user(env):
    env, settings, client = env
    prefix = settings.redis.prefix
    events, _ = generate(GeneratorConfig(users=60, days=2, seed=5))
    already_deleted = {e["user_id"] for e in events if e["type"] == "user_deleted"}
    profile = _profile(events)
    victim = max((u for u in profile if u not in already_deleted
                  and all(profile[u][k] for k in NEEDED)), key=lambda u: sum(profile[u].values()))
    posts_of = collections.defaultdict(set)
    for e in events:
        if e["type"] == "post_created":
            posts_of[e["user_id"]].add(e["post_id"])
    last_ts = events[-1]["ts"]
    other = next(u for u in sorted(profile) if u != victim and u not in already_deleted)

    def sentinel(n: int) -> dict:  # a post by someone else, after everything: its item key
        return {"v": 1, "event_id": f"sentinel-{n}", "type": "post_created", "ts": last_ts + 10 * n,
                "user_id": other, "post_id": f"sentinel{n}", "topics": ["t00"]}

    bootstrap, topic = settings.kafka.bootstrap, settings.kafka.events_topic
    kafka_io.produce(bootstrap, topic, [orjson.dumps(e) for e in [*events, sentinel(1)]])
    procs = runner.start(settings, None, tail=True, env_extra=env, log=lambda m: None,
                         metrics_port=0)
    try:
        wait_quiet(client, prefix, procs[0], quiet_s=5, sentinel="v*:item:{sentinel1}")
        victim_ids = {victim} | posts_of[victim]
        before = _mentions(client, prefix, _pattern(victim_ids))
        kinds_before = _kinds(before)
        if env["PERSONA_STREAM__ERASURE_RESIDENT_OWNERS"] == "2":
            assert kinds_before["owners"], f"the victim's owners were not spilled: {kinds_before}"
        # the check sees the victim where they are: feeds, graph records, suggestions, inboxes…
        for kind in ("item", "feed", "graph", "suggestions", "notifs", "gmembers", "likers",
                     "trending", "profile"):
            assert kinds_before[kind], (kind, kinds_before)

        kafka_io.produce(bootstrap, topic, [orjson.dumps(e) for e in [
            {"v": 1, "event_id": "erase-victim", "type": "user_deleted", "ts": last_ts + 15,
             "user_id": victim}, sentinel(2)]])
        wait_quiet(client, prefix, procs[0], quiet_s=6, sentinel="v*:item:{sentinel2}")
    finally:
        for p in procs:
            p.kill()
            p.wait()

    erased = {victim} | already_deleted
    erased_ids = erased | {p for u in erased for p in posts_of[u]}
    left = _mentions(client, prefix, _pattern(erased_ids))
    assert not left, (f"{len(left)} keys still mention {sorted(erased)} or their posts "
                      f"(before the deletion {len(before)} keys, {dict(kinds_before)}):\n"
                      + "\n".join(f"{k}: …{v}…" for k, v in sorted(left.items())[:15]))

    # what other users are served never names them either
    reader = PersonaClient(client, prefix)
    http = TestClient(create_app(settings))
    pattern = _pattern(erased_ids)
    served = 0
    for user in sorted(set(profile) - erased):
        page = reader.feed(user, limit=100)
        served += len(page.items)
        responses = [orjson.dumps(page.to_dict()),
                     orjson.dumps(reader.notifications(user, limit=100))]
        responses += [http.get(f"/suggestions/{user}", params={"kind": kind, "limit": 100}).content
                      for kind in ("people", "groups", "conversations", "contacts")]
        responses.append(http.get(f"/feed/{user}", params={"limit": 100}).content)
        for body in responses:
            m = pattern.search(body.decode())
            assert m is None, (user, body.decode()[max(0, m.start() - 80): m.end() + 80])
    assert served > 100  # the others still have feeds
    print(f"victim {victim}: {len(posts_of[victim])} posts, mentioned by {len(before)} keys "
          f"before ({dict(kinds_before)}), by none after")


def test_a_drained_run_applies_the_erasure_commands_it_produced(env, tmp_path):
    """`persona run --until-drained --recovery-dir D` (runner.drain): the first pass ends at the
    end of the events topic with the generator's deleted users still mentioned (their commands
    are on the command topic, unread); the passes that read the commands back leave none."""
    env, settings, client = env
    events, _ = generate(GeneratorConfig(users=60, days=2, seed=5))
    deleted = {e["user_id"] for e in events if e["type"] == "user_deleted"}
    assert deleted, "the generated log has no user_deleted"
    erased_ids = deleted | {e["post_id"] for e in events
                            if e["type"] == "post_created" and e["user_id"] in deleted}
    kafka_io.produce(settings.kafka.bootstrap, settings.kafka.events_topic,
                     [orjson.dumps(e) for e in events])
    recovery = str(tmp_path / "recovery")

    first = runner.start(settings, None, tail=False, recovery_dir=recovery, snapshot_s=1,
                         env_extra={**env, "PERSONA_READ_ERASURES": "0"}, log=lambda m: None,
                         metrics_port=0)
    assert runner.supervise(first, log=lambda m: None) == 0
    commands = runner.erasure_commands(settings)
    before = _mentions(client, settings.redis.prefix, _pattern(erased_ids))
    assert commands and before, (commands, len(before))  # what the passes below must undo

    logged: list[str] = []
    assert runner.run(settings, None, tail=False, recovery_dir=recovery, snapshot_s=1,
                      env_extra=env, log=logged.append, metrics_port=0) == 0
    assert any("reading back erasure commands" in m for m in logged), logged
    left = _mentions(client, settings.redis.prefix, _pattern(erased_ids))
    assert not left, (f"{len(left)} keys still mention {sorted(deleted)} or their posts after "
                      f"the drained run's erasure passes ({len(before)} before):\n"
                      + "\n".join(f"{k}: …{v}…" for k, v in sorted(left.items())[:15]))


def test_a_reparked_erasure_index_keeps_its_spilled_owners_alive(live, redis_client):
    """The owners an erasure index spilled to Redis live as long as the parked index: a re-park
    refreshes their TTL too. (Only a new spill set it, so the set expired under an index that
    still counted on it, and the user's deletion missed those owners.)"""
    from operators.redis_store import RedisWriter
    from schemas.keyspace import Keyspace

    ks = Keyspace(f"test-{uuid.uuid4().hex[:10]}", "1")
    writer = RedisWriter(redis_client, ks, parked_ttl_s=1000)
    try:
        writer.write_batch([("spill_owners", "u1", ["1:o1"])])
        redis_client.expire(ks.erasure_owners("u1"), 5)  # most of its TTL gone, no new spill
        writer.write_batch([("park", "erasure", "u1", b"index")])
        assert redis_client.ttl(ks.erasure_owners("u1")) > 900
        assert redis_client.ttl(ks.parked("erasure", "u1")) > 900
        writer.write_batch([("park", "erasure", "u2", b"index")])  # nothing spilled: none made
        assert not redis_client.exists(ks.erasure_owners("u2"))
    finally:
        for key in redis_client.scan_iter(f"{ks.prefix}:*"):
            redis_client.delete(key)
