"""Which dead letters `persona dead-letters --redrive` would produce again (scripts/dead_letters.py):
any rejected payload comes back byte for byte from its letter; letters of the kinds asked for that
today's decoder accepts, in event-time order; the rest counted by why they are still rejected."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

import config
from schemas.codec import DeadLetter
from schemas.rejections import REASON_KINDS
from scripts.dead_letters import NOT_REDRIVEN, payload, sort_letters


@given(st.binary(max_size=300), st.text(max_size=40))
def test_a_letter_gives_back_the_payload_it_rejected(raw, reason):
    assert payload(orjson.loads(DeadLetter(reason or "x", raw).encode())) == raw


def _letter(reason: str, event: dict | bytes) -> dict:
    raw = event if isinstance(event, bytes) else orjson.dumps(event)
    return orjson.loads(DeadLetter(reason, raw, "persona.events", 0, 1).encode())


T0 = 1_780_000_000_000  # (an event time the decoder accepts: after stream.min_ts_ms, not ahead)


def _event(i: int, ts: int, **extra) -> dict:
    return {"event_id": f"e{i}", "type": "follow", "ts": T0 + ts, "user_id": f"u{i}",
            "target_id": "t", **extra}


def test_letters_that_decode_now_are_redriven_in_event_time_order():
    settings = config.load(env={})  # today's limits: 64 KB events
    found = [
        _letter("payload too large: 70000 bytes, limit 1000", _event(1, 3000, note="x" * 2000)),
        _letter("payload too large: 70000 bytes, limit 1000", _event(2, 1000, note="x" * 2000)),
        _letter("duplicate event_id 'e3'", _event(3, 2000)),  # a repeat: not by default
        _letter("invalid JSON: unexpected character", b"{not json"),  # still rejected
        _letter("unknown event type 'poke'", {**_event(4, 500), "type": "poke"}),  # still
        None,  # a record that is not a dead letter
    ]
    accepted, report = sort_letters(found, settings, frozenset(REASON_KINDS) - NOT_REDRIVEN)
    assert [e.event_id for e, _ in accepted] == ["e2", "e1"]  # by event time
    assert [orjson.loads(raw)["note"] for _, raw in accepted] == ["x" * 2000] * 2
    assert report == {"letters": 5, "by_kind": {"too_large": 2, "duplicate": 1,
                                                "invalid_json": 1, "unknown_type": 1},
                      "redrivable": 2, "still_rejected": {"invalid_json": 1, "unknown_type": 1},
                      "skipped": {"duplicate": 1}, "unreadable": 1}
    only, report = sort_letters(found, settings, frozenset({"duplicate"}))
    assert [e.event_id for e, _ in only] == ["e3"] and report["skipped"]["too_large"] == 2
    tight = config.load(env={"PERSONA_STREAM__MAX_EVENT_BYTES": "1000"})
    none, report = sort_letters(found, tight, frozenset({"too_large"}))
    assert none == [] and report["still_rejected"] == {"too_large": 2}
