"""The v1 decoder: every valid event round-trips; every invalid payload is rejected with a reason;
nothing ever raises (property tests with hypothesis)."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import EVENT_TYPES, Limits, decode_event, encode_event
from schemas.events import ANY_OF, FIELD_KINDS
from schemas.rejections import reason_kind

TS = 1_767_225_600_000
ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1,
              max_size=20)


def valid_event(draw_type: str, data) -> dict:
    required, optional = EVENT_TYPES[draw_type]
    obj = {"v": 1, "event_id": data.draw(ids), "type": draw_type, "ts": TS, "user_id": data.draw(ids)}
    for name in required + tuple(n for n in optional if data.draw(st.booleans())):
        kind = FIELD_KINDS[name]
        if kind in ("id", "str"):
            obj[name] = data.draw(ids)
        elif kind == "int":
            obj[name] = data.draw(st.integers(0, 10**6))
        else:
            obj[name] = data.draw(st.lists(ids, max_size=5, unique=True))  # (repeats: dropped)
    one_of = ANY_OF.get(draw_type, ())
    if one_of and not any(n in obj for n in one_of):
        obj[data.draw(st.sampled_from(one_of))] = data.draw(ids)
    return obj


@given(st.sampled_from(sorted(EVENT_TYPES)), st.data())
def test_valid_events_round_trip(event_type, data):
    obj = valid_event(event_type, data)
    event, reason = decode_event(orjson.dumps(obj))
    assert reason is None and event is not None
    assert event.type == event_type
    assert orjson.loads(encode_event(event)) == obj


@settings(max_examples=300)
@given(st.sampled_from(sorted(EVENT_TYPES)), st.data())
def test_dropping_a_required_field_is_rejected_with_its_name(event_type, data):
    obj = valid_event(event_type, data)
    required = ["event_id", "type", "ts", "user_id", *EVENT_TYPES[event_type][0]]
    field = data.draw(st.sampled_from(required))
    del obj[field]
    event, reason = decode_event(orjson.dumps(obj))
    assert event is None and f"'{field}'" in reason


@settings(max_examples=300)
@given(st.sampled_from(sorted(EVENT_TYPES)), st.data())
def test_a_wrong_type_is_rejected_with_the_field_name(event_type, data):
    obj = valid_event(event_type, data)
    field = data.draw(st.sampled_from(sorted(k for k in obj if k not in ("v", "type"))))
    obj[field] = data.draw(st.sampled_from([{"x": 1}, 3.5, True]))
    event, reason = decode_event(orjson.dumps(obj))
    assert event is None and field in reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=1000)
@given(st.one_of(st.binary(max_size=300), json_values.map(orjson.dumps)))
def test_arbitrary_payloads_never_raise_and_rejections_have_reasons(raw):
    event, reason = decode_event(raw)
    assert (event is None) != (reason is None)
    if event is None:
        assert isinstance(reason, str) and reason


@settings(max_examples=300)
@given(st.sampled_from(sorted(EVENT_TYPES)), st.data(), st.binary(min_size=1, max_size=4))
def test_mutated_valid_payloads_never_raise(event_type, data, noise):
    raw = bytearray(orjson.dumps(valid_event(event_type, data)))
    at = data.draw(st.integers(0, len(raw)))
    raw[at:at + len(noise)] = noise
    event, reason = decode_event(bytes(raw))
    assert (event is None) != (reason is None)


def test_limits_oversized_absurd_timestamps_and_long_lists():
    limits = Limits(max_event_bytes=200, max_list_items=3)
    base = {"event_id": "e", "type": "post_created", "ts": TS, "user_id": "u", "post_id": "p"}
    assert "too large" in decode_event(orjson.dumps({**base, "pad": "x" * 300}), limits)[1]
    assert "outside the accepted range" in decode_event(orjson.dumps({**base, "ts": 5}))[1]
    assert "limit 3" in decode_event(orjson.dumps({**base, "topics": list("abcd")}), limits)[1]
    assert "unknown event type" in decode_event(orjson.dumps({**base, "type": "nope"}))[1]
    assert "schema version" in decode_event(orjson.dumps({**base, "v": 2}))[1]
    assert "must be a JSON object" in decode_event(b"[1,2]")[1]


@settings(max_examples=200)
@given(st.sampled_from(sorted(ANY_OF)), st.data())
def test_an_event_without_any_of_its_alternative_fields_is_rejected(event_type, data):
    obj = valid_event(event_type, data)
    for name in ANY_OF[event_type]:
        obj.pop(name, None)
    event, reason = decode_event(orjson.dumps(obj))
    assert event is None and reason_kind(reason) == "missing_field"
    assert all(f"'{name}'" in reason for name in ANY_OF[event_type])


def test_user_controls_decode():
    base = {"event_id": "e", "ts": TS, "user_id": "u"}
    less, _ = decode_event(orjson.dumps({**base, "type": "see_less", "target_id": "a1"}))
    assert less.target_id == "a1" and less.topic is None
    topic, _ = decode_event(orjson.dumps({**base, "type": "see_less", "topic": "t03"}))
    assert topic.topic == "t03" and topic.target_id is None
    more, _ = decode_event(orjson.dumps({**base, "type": "see_more", "topic": "t03"}))
    assert more.topic == "t03"
    assert "'post_id'" in decode_event(orjson.dumps({**base, "type": "not_interested"}))[1]


def test_exported_json_schemas_are_current_and_match_the_wire(tmp_path):
    from pathlib import Path

    from schemas import Feed, FeedItem, Reason
    from schemas.jsonschema import export

    committed = Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"
    for path in export(tmp_path):
        assert (committed / path.name).read_bytes() == path.read_bytes(), (
            f"{path.name} is stale: run `persona schemas export`")
    see_less = orjson.loads((tmp_path / "see_less.json").read_bytes())
    assert see_less["anyOf"] == [{"required": ["target_id"]}, {"required": ["topic"]}]
    feed = orjson.loads((tmp_path / "feed.json").read_bytes())
    value = Feed("u1", TS, (FeedItem("p1", "a1", 0.5, (Reason("see_less", "a1", 0.6),)),),
                 arms={"exp": "b"}).to_dict()
    assert set(feed["required"]) == set(value) == set(feed["properties"])
    assert set(feed["properties"]["items"]["items"]["required"]) == set(value["items"][0])
    assert "see_less" in feed["properties"]["items"]["items"]["properties"]["reasons"]["items"][
        "properties"]["code"]["enum"]


def test_decoded_ids_are_shared_strings():
    """Two events naming one user hold one string (states keep ids by the thousand)."""
    def decoded(**fields):
        raw = orjson.dumps({"v": 1, "ts": 1_767_225_600_000, **fields})
        return decode_event(raw)[0]
    a = decoded(event_id="e1", type="follow", user_id="u" + "42", target_id="u" + "7")
    b = decoded(event_id="e2", type="message_sent", user_id="u" + "7", conversation_id="c1",
                recipients=["u" + "42"])
    assert a.user_id is b.recipients[0] and a.target_id is b.user_id


def test_repeated_list_items_are_dropped_keeping_the_first_place():
    event = decode_event(orjson.dumps({"event_id": "e1", "type": "post_created",
                                       "ts": 1_780_000_000_000, "user_id": "u1", "post_id": "p1",
                                       "topics": ["t1", "t2", "t1"]}))[0]
    assert event.topics == ("t1", "t2")
