"""Serialization of every wire format in one place: event decode/validate/encode, dead letters.

`decode_event` never raises: it returns `(Event, None)` or `(None, reason)`, where the reason names the
field and the rule that failed, so every rejected payload can go to the dead-letter topic with it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import orjson

from schemas.events import ANY_OF, ENVELOPE, EVENT_TYPES, FIELD_KINDS, SCHEMA_VERSION, Event

MAX_ID_LEN = 128
MAX_STR_LEN = 1024
MAX_INT = 2**53  # JSON-safe integer range
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never valid in an id (log / key / header injection)


@dataclass(frozen=True, slots=True)
class Limits:
    """Input hardening limits (from config.stream)."""

    max_event_bytes: int = 65536
    max_list_items: int = 256
    min_ts_ms: int = 946684800000
    max_ts_ms: int = 4102444800000  # 2100-01-01; live workers tighten this to now + skew


class Rejected(Exception):
    """Raised internally by field checks; carries the reason string."""


def _check_id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise Rejected(f"field '{name}' must be a string id, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_LEN:
        raise Rejected(f"field '{name}' must be 1..{MAX_ID_LEN} characters, got {len(value)}")
    if _CONTROL.search(value):
        raise Rejected(f"field '{name}' must not contain control characters")
    return value


def _check_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise Rejected(f"field '{name}' must be a string, got {type(value).__name__}")
    if len(value) > MAX_STR_LEN:
        raise Rejected(f"field '{name}' is longer than {MAX_STR_LEN} characters")
    return value


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected(f"field '{name}' must be an integer, got {type(value).__name__}")
    if value < 0 or value > MAX_INT:
        raise Rejected(f"field '{name}' must be in [0, 2^53], got {value}")
    return value


def _check_list(name: str, value: object, limits: Limits, item_len: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Rejected(f"field '{name}' must be a list, got {type(value).__name__}")
    if len(value) > limits.max_list_items:
        raise Rejected(f"field '{name}' has {len(value)} items, limit {limits.max_list_items}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item or len(item) > item_len:
            raise Rejected(f"field '{name}[{i}]' must be a non-empty string of ≤{item_len} chars")
        if _CONTROL.search(item):
            raise Rejected(f"field '{name}[{i}]' must not contain control characters")
    # repeats dropped, first place kept: a post tagged (t1, t1) is not twice as much about t1
    # (a see-more / see-less control applied twice, two identical reasons)
    return tuple(dict.fromkeys(value))


def _check(name: str, kind: str, value: object, limits: Limits) -> object:
    # Ids are interned: every event decodes its own copy of "u42", and the states that keep ids
    # (followers, edges, mentions, pools) would each hold another; interned, they share one
    # (the in-process Engine's states after the bench's 100k events / 10k users: 203.4 → 195.6
    # MB, tracemalloc; the bench's peak RSS varies ±5% from run to run, too much to show it).
    # Python frees an interned string with its last reference.
    if kind == "id":
        return sys.intern(_check_id(name, value))
    if kind == "str":
        return _check_str(name, value)
    if kind == "int":
        return _check_int(name, value)
    if kind == "ids":
        return tuple(map(sys.intern, _check_list(name, value, limits, MAX_ID_LEN)))
    return _check_list(name, value, limits, MAX_ID_LEN)  # "strs": topics/interests are short too


def validate(obj: object, limits: Limits = Limits()) -> Event:
    """Validate a parsed JSON value into an Event, raising Rejected with the reason."""
    if not isinstance(obj, dict):
        raise Rejected(f"event must be a JSON object, got {type(obj).__name__}")
    version = obj.get("v", SCHEMA_VERSION)
    if type(version) is not int or version != SCHEMA_VERSION:  # not True, not 1.0
        raise Rejected(f"unsupported schema version {repr(version)[:40]}; this worker reads v1")
    for name in ENVELOPE:
        if name not in obj:
            raise Rejected(f"missing envelope field '{name}'")
    event_type = obj["type"]
    if not isinstance(event_type, str):
        raise Rejected(f"field 'type' must be a string, got {type(event_type).__name__}")
    spec = EVENT_TYPES.get(event_type)
    if spec is None:
        raise Rejected(f"unknown event type '{event_type[:64]}'")
    event_id = _check_id("event_id", obj["event_id"])
    user_id = _check("user_id", ENVELOPE["user_id"], obj["user_id"], limits)
    ts = _check_int("ts", obj["ts"])
    if ts < limits.min_ts_ms or ts > limits.max_ts_ms:
        raise Rejected(
            f"field 'ts'={ts} is outside the accepted range "
            f"[{limits.min_ts_ms}, {limits.max_ts_ms}] (epoch milliseconds)"
        )
    required, optional = spec
    values: dict[str, object] = {}
    for name in required:
        if name not in obj or obj[name] is None:
            raise Rejected(f"missing field '{name}' required by type '{event_type}'")
        values[name] = _check(name, FIELD_KINDS[name], obj[name], limits)
    for name in optional:
        value = obj.get(name)
        if value is not None:
            values[name] = _check(name, FIELD_KINDS[name], value, limits)
    one_of = ANY_OF.get(event_type)
    if one_of and not any(name in values for name in one_of):
        raise Rejected(f"missing field: type '{event_type}' requires one of "
                       + ", ".join(f"'{n}'" for n in one_of))
    return Event(event_id=event_id, type=event_type, ts=ts, user_id=user_id, **values)


def decode_event(raw: bytes | str, limits: Limits = Limits()) -> tuple[Event | None, str | None]:
    """Parse and validate one payload. Never raises."""
    try:
        if isinstance(raw, str):  # the size limit is in bytes; lone surrogates fail as invalid JSON
            raw = raw.encode("utf-8", "surrogatepass")
        size = len(raw)
        if size > limits.max_event_bytes:
            return None, f"payload too large: {size} bytes > limit {limits.max_event_bytes}"
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return None, f"invalid JSON: {exc}"
        return validate(obj, limits), None
    except Rejected as exc:
        return None, str(exc)
    except Exception as exc:  # pragma: no cover - defence in depth: never crash a worker
        return None, f"undecodable payload: {type(exc).__name__}: {exc}"


def encode_event(event: Event) -> bytes:
    return orjson.dumps(event.to_dict())


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input that could not be processed, with where it came from and why."""

    reason: str
    raw: bytes
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "reason": self.reason,
                "raw": self.raw.decode("utf-8", errors="replace"),
                "raw_hex": self.raw.hex() if not _is_utf8(self.raw) else None,
                "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
            }
        )

    @staticmethod
    def decode(payload: bytes) -> dict:
        return orjson.loads(payload)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
