"""Fuzzing the event decoder with well over 100k random and mutated payloads.

Hypothesis draws structured events and seeds; a seeded random mutator does the bulk (field drops, type
swaps, boundary values, control characters, byte flips, truncations, splices, oversized payloads).
For every payload: `decode_event` never raises, returns exactly one of (event, reason), every reason is
short text whose kind (`schemas.rejections.reason_kind`) is known, and every accepted event satisfies
the documented limits and re-encodes to an equal event.
"""

from __future__ import annotations

import collections
import random
import time

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import EVENT_TYPES, Limits, decode_event, encode_event
from schemas.codec import MAX_ID_LEN, MAX_STR_LEN
from schemas.events import ANY_OF, FIELD_KINDS
from schemas.rejections import REASON_KINDS, reason_kind

TS = 1_767_225_600_000
LIMITS = (Limits(), Limits(max_event_bytes=1024, max_list_items=8))
TYPES = sorted(EVENT_TYPES)
WEIRD_STRINGS = ["", " ", "x" * (MAX_ID_LEN - 1), "x" * MAX_ID_LEN, "x" * (MAX_ID_LEN + 1),
                 "y" * (MAX_STR_LEN + 1), "a\nb", "\x00", "tab\there", "\x7f", "é", "😀" * 40,
                 "{u1}", "*", "persona:v1:feed:{u2}", "\u2028", "null", "1e309"]
WEIRD_VALUES = [None, True, False, 0, -1, 1.5, -0.0, 2**53, 2**53 + 1, 2**63 - 1, -(2**63),
                1e308, [], [None], ["a"] * 300, {}, {"a": {"b": [1]}}, [[[[[]]]]], "", "u1"]
TS_VALUES = [0, 946684799999, 946684800000, 4102444800000, 4102444800001, -5, 2**53 + 1,
             float(TS), str(TS), True, None]


def valid_event(rng: random.Random) -> dict:
    event_type = rng.choice(TYPES)
    required, optional = EVENT_TYPES[event_type]
    obj = {"event_id": f"e{rng.getrandbits(40):x}", "type": event_type,
           "ts": TS + rng.randrange(10**9), "user_id": f"u{rng.randrange(10**5)}"}
    if rng.random() < 0.5:
        obj["v"] = 1
    for name in required + tuple(n for n in optional if rng.random() < 0.5):
        kind = FIELD_KINDS[name]
        if kind in ("id", "str"):
            obj[name] = f"{name[0]}{rng.randrange(10**6)}"
        elif kind == "int":
            obj[name] = rng.randrange(10**6)
        else:
            obj[name] = [f"t{rng.randrange(50)}" for _ in range(rng.randrange(6))]
    one_of = ANY_OF.get(event_type, ())
    if one_of and not any(n in obj for n in one_of):
        obj[one_of[0]] = f"{one_of[0][0]}{rng.randrange(10**6)}"
    return obj


def mutate_object(obj: dict, rng: random.Random) -> dict:
    obj = dict(obj)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(8)
        keys = list(obj)
        if op == 0 and keys:
            obj.pop(rng.choice(keys))
        elif op == 1 and keys:
            obj[rng.choice(keys)] = rng.choice(WEIRD_VALUES)
        elif op == 2 and keys:
            obj[rng.choice(keys)] = rng.choice(WEIRD_STRINGS)
        elif op == 3:
            obj["ts"] = rng.choice(TS_VALUES)
        elif op == 4:
            obj["type"] = rng.choice(TYPES + ["", "Like", "like ", "x" * 500, "__proto__"])
        elif op == 5:
            obj["v"] = rng.choice([0, 1, 2, "1", 1.0, True, None, -1])
        elif op == 6:
            name = rng.choice(sorted(FIELD_KINDS))
            obj[name] = rng.choice(WEIRD_VALUES + WEIRD_STRINGS)
        else:
            obj[rng.choice(["extra", "x" * 40, "", "é"])] = rng.choice(WEIRD_VALUES)
    return obj


def mutate_bytes(raw: bytes, rng: random.Random, other: bytes) -> bytes:
    b = bytearray(raw)
    op = rng.randrange(9)
    if op == 0 and b:  # flip bytes
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif op == 1:  # insert noise
        at = rng.randrange(len(b) + 1)
        b[at:at] = rng.randbytes(rng.randrange(1, 8))
    elif op == 2 and b:  # delete a slice
        at = rng.randrange(len(b))
        del b[at:at + rng.randrange(1, 10)]
    elif op == 3:  # truncate
        b = b[: rng.randrange(len(b) + 1)]
    elif op == 4:  # splice two payloads
        b = b[: rng.randrange(len(b) + 1)] + other[rng.randrange(len(other) + 1):]
    elif op == 5:  # pure noise
        b = bytearray(rng.randbytes(rng.randrange(0, 200)))
    elif op == 6:  # oversized
        b = bytearray(raw[:-1] + b',"pad":"' + b"z" * rng.choice([900, 70000]) + b'"}')
    elif op == 7:  # deep nesting / invalid UTF-8 / BOM
        b = bytearray(rng.choice([b"[" * 5000, b"\xff\xfe" + raw, b"\xef\xbb\xbf" + raw,
                                  raw.replace(b'"', b"'"), b"\xc3\x28" + raw]))
    else:  # JSON but not an object
        b = bytearray(rng.choice([b"null", b"1", b'"s"', b"[]", b"[{}]", b"true", b"1e999"]))
    return bytes(b)


def check(raw: bytes | str, limits: Limits, kinds: collections.Counter) -> None:
    event, reason = decode_event(raw, limits)
    assert (event is None) != (reason is None), raw
    if event is None:
        assert isinstance(reason, str) and reason and len(reason) <= 512, (raw, reason)
        kind = reason_kind(reason)
        assert kind in REASON_KINDS and kind != "other", (raw, reason)
        kinds[kind] += 1
        return
    kinds["accepted"] += 1
    assert event.type in EVENT_TYPES
    for value in (event.event_id, event.user_id):
        assert isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN
        assert not any(ord(c) < 32 or ord(c) == 127 for c in value)
    assert limits.min_ts_ms <= event.ts <= limits.max_ts_ms
    for name in ("topics", "interests", "recipients", "result_ids"):
        value = getattr(event, name, None)
        assert value is None or len(value) <= limits.max_list_items
    again, why = decode_event(encode_event(event), Limits())
    assert why is None and again == event


def test_100k_random_and_mutated_payloads_never_raise_and_always_have_a_reason():
    rng = random.Random(20261128)
    kinds: collections.Counter = collections.Counter()
    started = time.monotonic()
    n = 0
    previous = orjson.dumps(valid_event(rng))
    while n < 120_000:
        limits = LIMITS[n % 2]
        obj = valid_event(rng)
        if rng.random() < 0.6:
            obj = mutate_object(obj, rng)
        raw = orjson.dumps(obj)
        if rng.random() < 0.45:
            raw = mutate_bytes(raw, rng, previous)
        check(raw if rng.random() < 0.95 else raw.decode("utf-8", "replace"), limits, kinds)
        previous = raw
        n += 1
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"fuzzing took {elapsed:.1f}s"
    # the mix reaches every rejection rule (except duplicates, decided later by the dedup step)
    missing = {k for k in REASON_KINDS if k not in ("duplicate", "other")} - set(kinds)
    assert not missing, f"no payload hit {missing}: {kinds}"
    assert kinds["accepted"] > 10_000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats()
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=6),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TYPES), st.dictionaries(st.sampled_from(
    ["event_id", "type", "ts", "user_id", "v", *sorted(FIELD_KINDS)]), json_values, max_size=6),
    st.integers(0, 2**32))
def test_hypothesis_objects_expanded_by_a_seeded_mutator(event_type, overrides, seed):
    """Hypothesis picks the structure (any JSON values over known field names); 50 seeded mutations
    of each (400 examples → 20k payloads) explore around it."""
    rng = random.Random(seed)
    kinds: collections.Counter = collections.Counter()
    base = {**valid_event(rng), "type": event_type}
    try:
        obj = {**base, **overrides}
        raw = orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):  # NaN / ints beyond 64 bits: not encodable
        raw = orjson.dumps(base)
        obj = base
    check(raw, Limits(), kinds)
    for _ in range(50):
        mutated = orjson.dumps(mutate_object(obj, rng), default=str) if rng.random() < 0.5 else raw
        check(mutate_bytes(mutated, rng, raw) if rng.random() < 0.5 else mutated, Limits(), kinds)
