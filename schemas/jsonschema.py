"""JSON Schema (draft 2020-12) for producers, generated from the event table in `schemas.events`."""

from __future__ import annotations

from pathlib import Path

import orjson

from schemas.codec import MAX_ID_LEN, MAX_INT, MAX_STR_LEN, Limits
from schemas.events import ANY_OF, ENVELOPE, EVENT_TYPES, FIELD_DOCS, FIELD_KINDS, SCHEMA_VERSION


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


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in [("event", envelope_schema())] + [(t, event_schema(t)) for t in EVENT_TYPES]:
        path = directory / f"{name}.json"
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        written.append(path)
    return written
