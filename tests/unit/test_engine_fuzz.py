"""No accepted event crashes the operators. The decoder is the only gate before the stateful steps,
and a step that raises stops every worker, whose supervisor restarts them from the snapshot onto
the same event: a crash loop that stalls every feed. So any sequence of events the decoder accepts
— out of order, about users and posts that never existed or were deleted, self-follows, duplicate
post ids, extreme timestamps and values — must go through the production operators in-process
(`operators.engine.Engine`, every step on), rank every user's feed, erase and settle, and give the
replay's write records, without raising; and a user's state must survive a snapshot (pickle).
Deeper runs: `PERSONA_FUZZ_EXAMPLES=5000 python -m pytest tests/unit/test_engine_fuzz.py`."""

from __future__ import annotations

import os
import pickle

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config
from operators.backfill import final_writes
from operators.engine import Engine
from schemas.codec import decode_event
from schemas.events import EVENT_TYPES, FIELD_KINDS
from schemas.rejections import REASON_KINDS, reason_kind

USERS = [f"u{i}" for i in range(5)]
POSTS = [f"p{i}" for i in range(5)]
TOPICS = ["t1", "t2", "music", "ünïcode", "x" * 60]
BIG = 2**53
EXAMPLES = int(os.environ.get("PERSONA_FUZZ_EXAMPLES", "300"))  # sequences per test (the flow: /4)


def _value(kind: str, name: str, draw):
    if name in ("target_id",):
        return draw(st.sampled_from(USERS))
    if name == "post_id":
        return draw(st.sampled_from(POSTS))
    if name in ("group_id", "conversation_id"):
        return draw(st.sampled_from(["g1", "g2", "c1"]))
    if name == "notification_id":
        return draw(st.sampled_from(["n1", "n2", "u1:p1:new_post"]))
    if name == "topic":
        return draw(st.sampled_from(TOPICS))
    if name in ("topics", "interests"):
        return draw(st.lists(st.sampled_from(TOPICS), max_size=4))
    if name in ("recipients", "result_ids"):
        return draw(st.lists(st.sampled_from(USERS + POSTS), max_size=4))
    if name == "timezone":
        return draw(st.sampled_from(["UTC", "Europe/Paris", "Pacific/Kiritimati", "Nowhere/City",
                                     ""]))
    if kind == "int":
        return draw(st.one_of(st.integers(0, 10), st.integers(0, BIG)))
    return draw(st.text(max_size=20))


@st.composite
def events(draw):
    kind = draw(st.sampled_from(sorted(EVENT_TYPES)))
    required, optional = EVENT_TYPES[kind]
    ts = draw(st.one_of(st.integers(1_600_000_000_000, 1_600_000_100_000),  # near one another
                        st.integers(946_684_800_000, 4_102_444_800_000)))  # anywhere accepted
    event = {"event_id": f"e{draw(st.integers(0, 40))}", "type": kind, "ts": ts,
             "user_id": draw(st.sampled_from(USERS))}
    for name in required + tuple(n for n in optional if draw(st.booleans())):
        event[name] = _value(FIELD_KINDS[name], name, draw)
    if kind == "see_less" and "target_id" not in event and "topic" not in event:
        event["topic"] = "t1"
    return event


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), min_size=1, max_size=40), st.integers(946_684_800_000, 4_102_444_800_000))
def test_no_accepted_event_sequence_crashes_the_operators(raw_events, now):
    engine = Engine(config.load(env={}), social=True, notifications=True, search=True,
                    experiments=True)
    accepted = 0
    for raw in raw_events:
        event, reason = decode_event(orjson.dumps(raw))
        if event is None:
            continue
        accepted += 1
        engine.learn_one(event)
    for user_id in sorted(engine.users):
        state = pickle.loads(pickle.dumps(engine.users[user_id]))  # a snapshot and its restore
        assert state.user_id == engine.users[user_id].user_id
        engine.feed(user_id, now)
    writes = list(final_writes(engine))
    assert accepted == 0 or writes or not engine.users  # (something to write once users exist)


@settings(max_examples=EXAMPLES // 4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), min_size=1, max_size=40), st.booleans())
def test_no_accepted_event_sequence_crashes_the_streaming_flow(raw_events, settle):
    """The same through the whole Bytewax dataflow (TestingSource, in-memory writes: the steps,
    adapters, reorder buffer, erasure index and sinks that `Engine` does not have)."""
    from bytewax.testing import TestingSink, TestingSource, run_main

    from flows.adapters import _Evictable
    from flows.feeds import build_flow
    from tests.unit.test_flow import MemoryWrites

    writes, dead, decisions, commands = MemoryWrites(), [], [], []
    before = _Evictable.tombstone_idle_s  # build_flow sets it class-wide
    try:
        flow = build_flow(config.load(env={}), source=TestingSource(
            [orjson.dumps(raw) for raw in raw_events]), dead_letters=TestingSink(dead),
            writes=writes, store_of=lambda: writes.store, notifications=TestingSink(decisions),
            erasures=TestingSink(commands), tail=False, settle=settle)
        run_main(flow)
    finally:
        _Evictable.tombstone_idle_s = before
    # every dead letter is a rejection or a duplicate with its reason, none an "other"
    assert all(reason_kind(d.reason) in set(REASON_KINDS) - {"other"} for d in dead), dead
