"""JSON Schema (draft 2020-12) for producers, generated from the event table in `schemas.events`, and
for consumers of the feed value (`schemas.outputs.Feed`, with its reason codes and experiment arms)."""

from __future__ import annotations

from pathlib import Path

import orjson

from schemas.codec import MAX_ID_LEN, MAX_INT, MAX_STR_LEN, Limits
from schemas.events import ANY_OF, ENVELOPE, EVENT_TYPES, FIELD_DOCS, FIELD_KINDS, SCHEMA_VERSION
from schemas.outputs import REASON_CODES


def _field(name: str, kind: str, limits: Limits) -> dict:
    doc = {"description": FIELD_DOCS.get(name, "")}
    if kind == "id":
        return {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN, **doc}
    if kind == "str":
        return {"type": "string", "maxLength": MAX_STR_LEN, **doc}
    if kind == "int":
        return {"type": "integer", "minimum": 0, "maximum": MAX_INT, **doc}
    return {"type": "array", "maxItems": limits.max_list_items,
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN}, **doc}


def event_schema(event_type: str, limits: Limits = Limits()) -> dict:
    required, optional = EVENT_TYPES[event_type]
    props = {name: _field(name, kind, limits) for name, kind in ENVELOPE.items()}
    props["type"] = {"const": event_type, "description": FIELD_DOCS["type"]}
    props["ts"] = {**props["ts"], "minimum": limits.min_ts_ms}
    props["v"] = {"const": SCHEMA_VERSION, "description": FIELD_DOCS["v"]}
    for name in (*required, *optional):
        props[name] = _field(name, FIELD_KINDS[name], limits)
    any_of = ({"anyOf": [{"required": [name]} for name in ANY_OF[event_type]]}
              if event_type in ANY_OF else {})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"persona/v{SCHEMA_VERSION}/{event_type}.json",
        "title": f"persona event {event_type} (v{SCHEMA_VERSION})",
        "type": "object",
        "required": [*ENVELOPE, *required],
        "properties": props,
        "additionalProperties": True,  # unknown fields are ignored: producers may evolve first
        **any_of,
    }


def envelope_schema(limits: Limits = Limits()) -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"persona/v{SCHEMA_VERSION}/event.json",
        "title": f"persona event (v{SCHEMA_VERSION}), any type",
        "oneOf": [{"$ref": f"{t}.json"} for t in EVENT_TYPES],
    }


def feed_schema() -> dict:
    """The feed value in Redis (`…:feed:{user}`), as `schemas.outputs.Feed.to_dict` writes it."""
    reason = {"type": "object", "required": ["code"], "properties": {
        "code": {"enum": sorted(REASON_CODES), "description": "why the item is here"},
        "detail": {"type": "string", "description": "the followed author, similar post, topic…"},
        "weight": {"type": "number", "description": "the feature's contribution, or the score "
                                                    "multiplier of a user control"}}}
    item = {"type": "object", "required": ["post_id", "author_id", "score", "reasons"], "properties": {
        "post_id": {"type": "string"}, "author_id": {"type": ["string", "null"]},
        "score": {"type": "number"}, "reasons": {"type": "array", "items": reason}}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"persona/v{SCHEMA_VERSION}/feed.json",
        "title": "persona feed value (Redis …:feed:{user_id})",
        "type": "object",
        "required": ["user_id", "generated_at", "model", "arms", "items"],
        "properties": {
            "user_id": {"type": "string"},
            "generated_at": {"type": "integer", "description": "event time (ms) of the newest "
                                                               "event reflected"},
            "model": {"type": "string"},
            "arms": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "experiment -> the user's arm, for every enabled experiment "
                                    "the user is in; the feed was ranked with those arms' settings"},
            "items": {"type": "array", "items": item},
        },
    }


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in [("event", envelope_schema()), ("feed", feed_schema())] + [
            (t, event_schema(t)) for t in EVENT_TYPES]:
        path = directory / f"{name}.json"
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        written.append(path)
    return written
