"""`persona replay`'s social records (`Engine(social=True)`, `final_writes`) against the streaming
flow's for the same log, without services: the kinds the flow writes exactly (graph records, group
members, likers, follower counts, the deleted users) leave the same contents; every resident user
gets suggestions. (The flow's suggestions here read no graph: with an in-memory feature store its
steps each get an empty `MemoryGraphStore`; suggestions are compared with a drained run's in
tests/integration/test_replay.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import orjson
from bytewax.testing import TestingSink, TestingSource, run_main

import config
from flows.feeds import build_flow
from operators.backfill import final_writes
from operators.engine import Engine
from operators.suggestions.store import MemoryGraphStore
from operators.suggestions.writes import SOCIAL_WRITES
from schemas import Event, encode_event
from schemas.codec import decode_event
from schemas.erasure import encode_command
from scripts.generate import GeneratorConfig, generate
from tests.unit.test_experiments import EXPERIMENT
from tests.unit.test_flow import MemoryWrites, _Apply


def _log() -> list[Event]:
    raw, _ = generate(GeneratorConfig(users=40, days=1.0, seed=5))
    events = [decode_event(orjson.dumps(e))[0] for e in raw]
    gone = sorted({e.user_id for e in events if e.type == "user_deleted"})
    assert gone, "the log must delete a user"
    end = events[-1].ts
    # mentions after the deletion: the flow's erasure index answers each with another `forget`
    return events + [
        Event("late1", "follow", end + 1, "u0001", target_id=gone[0]),
        Event("late2", "follow", end + 2, gone[0], target_id="u0002"),
        Event("late3", "message_sent", end + 3, "u0003", conversation_id="c-late",
              recipients=(gone[0], "u0004"))]


def _flow(settings, payloads: list[bytes], commands: list) -> tuple[list[tuple], list]:
    """One run of the flow (the erasure commands of earlier runs read back after the events, as
    a drained run's erasure passes): its write records and the commands it sent."""
    writes, records, sent = MemoryWrites(), [], []

    class Apply(_Apply):
        def write_batch(self, items):
            super().write_batch(items)
            records.extend(items)

    writes.build = lambda *a: Apply(writes.store, writes.feeds)
    topic = settings.kafka.erasures
    looped = [SimpleNamespace(topic=topic, value=raw, partition=0, offset=i)
              for i, raw in enumerate(commands)]
    run_main(build_flow(settings, source=TestingSource(payloads + looped),
                        dead_letters=TestingSink([]), writes=writes,
                        store_of=lambda: writes.store, notifications=TestingSink([]),
                        erasures=TestingSink(sent)))
    return records, sent


def _applied(records) -> MemoryGraphStore:
    store = MemoryGraphStore()  # holds what RedisWriter would
    for record in records:
        if record[0] in SOCIAL_WRITES and record[0] != "suggestions":
            store.apply(record)
    return store


def _drained(settings, events: list[Event]) -> list[tuple]:
    """The flow's write records for `events`, its erasure commands read back in passes until they
    settle (as a drained run)."""
    payloads = [encode_event(e) for e in events]
    commands: list[bytes] = []
    for _ in range(4):  # until the erasure passes send nothing new
        records, sent = _flow(settings, payloads, commands)
        new = [c for c in dict.fromkeys(encode_command(c) for c in sent) if c not in commands]
        if not new:
            return records
        commands += new
    raise AssertionError("the erasure commands did not settle")


def _last(records, kind: str, key=lambda r: r[1]) -> dict:
    """The newest record of `kind` per key (the value Redis is left with)."""
    return {key(r): r for r in records if r[0] == kind}


def test_replayed_social_records_equal_the_flows():
    settings = config.load(env={})
    events = _log()
    records = _drained(settings, events)

    engine = Engine(settings, social=True)
    for e in events:
        engine.learn_one(e)
    replayed = list(final_writes(engine))
    flow, replay = _applied(records), _applied(replayed)

    assert replay._graphs == flow._graphs and len(flow._graphs) > 30
    assert list(replay.set_records()) == list(flow.set_records())
    assert {r[0] for r in flow.set_records()} == {"group_member", "liker"}
    assert replay._popular == flow._popular and replay._deleted == flow._deleted
    assert flow._deleted
    residents = {u for u, s in engine.social.users.items() if not s.deleted}
    assert {r[1] for r in replayed if r[0] == "suggestions"} == residents
    assert residents == {r[1] for r in records if r[0] == "suggestions"} - flow._deleted


def test_replayed_user_features_blend_clicks_and_arm_totals_equal_the_flows(tmp_path):
    """What the users, search and experiment steps leave behind: every resident user's features
    (all but the residual model, learned from feeds ranked on timers: README "What is reproduced
    exactly"), none for a deleted user; the same clicks learned by the search blend (the flow's
    in-memory store publishes no user features, so its weight stays the prior: only the count is
    comparable); and every arm's exact totals."""
    path = tmp_path / "experiment.toml"
    path.write_text(EXPERIMENT.format(enabled="true"))
    settings = config.load(path, env={})
    events = _log()
    records = _drained(settings, events)
    engine = Engine(settings, social=True, notifications=True, search=True, experiments=True)
    for e in events:
        engine.learn_one(e)
    replayed = list(final_writes(engine))

    flow_users, replay_users = _last(records, "user_features"), _last(replayed, "user_features")
    deleted = {e.user_id for e in events if e.type == "user_deleted"}
    assert set(replay_users) == set(flow_users) - set(_last(records, "forget_user"))
    assert len(replay_users) > 30 and not deleted & set(replay_users)
    for user, record in replay_users.items():
        flow_fields = orjson.loads(flow_users[user][2])
        replay_fields = orjson.loads(record[2])
        assert {k: v for k, v in replay_fields.items() if k != "model"} == \
            {k: v for k, v in flow_fields.items() if k != "model"}, user

    (flow_blend,), (replay_blend,) = _last(records, "search_blend", lambda r: r[0]).values(), [
        r for r in replayed if r[0] == "search_blend"]
    assert orjson.loads(replay_blend[1])["clicks"] == orjson.loads(flow_blend[1])["clicks"] > 0

    arm_key = lambda r: (r[1], r[2])  # noqa: E731
    flow_arms = {k: r[3] for k, r in _last(records, "arm_counts", arm_key).items()}
    replay_arms = [r for r in replayed if r[0] == "arm_counts"]
    assert {arm_key(r): r[3] for r in replay_arms} == flow_arms
    assert [arm_key(r) for r in replay_arms] == [("size", "control"), ("size", "small")]
    assert all(c["impressions"] > 0 and c["engagements"] > 0 for c in flow_arms.values())


def test_a_user_created_again_after_the_deletion_starts_afresh():
    """The old account's edges are forgotten at the deletion; the new one's count, and it is
    suggestible again (not in the deleted users' set)."""
    t = 1_767_225_600_000
    engine = Engine(config.load(env={}), social=True)
    for e in [Event("e1", "follow", t, "u1", target_id="u2"),
              Event("e2", "group_joined", t + 1, "u2", group_id="g1"),
              Event("e3", "user_deleted", t + 2, "u2"),
              Event("e4", "user_created", t + 3, "u2", interests=("t1",)),
              Event("e5", "follow", t + 4, "u3", target_id="u2"),
              Event("e6", "follow", t + 5, "u3", target_id="u1")]:
        engine.learn_one(e)
    records = list(final_writes(engine))
    store = _applied(records)
    assert not [r for r in records if r[0] == "forget_social"] and not store._deleted
    assert store._graphs["u1"]["f"] == [] and store._graphs["u3"]["f"] == ["u2", "u1"]
    assert store._popular == {"u1": 1, "u2": 1} and not list(store.set_records())
    people = {r[1]: orjson.loads(r[2])["people"] for r in records if r[0] == "suggestions"}
    assert set(people) == {"u1", "u2", "u3"}
    assert "u2" in [p["id"] for p in people["u1"]]  # u1 follows the old account no more
