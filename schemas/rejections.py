"""A small, fixed set of rejection kinds for the free-text dead-letter reasons (metric labels).

Reasons name the field and the rule (`schemas.codec`) and are unbounded text; a Prometheus label must
have a bounded set of values, so `reason_kind` maps every reason to one of `REASON_KINDS`. The fuzz test
(tests/unit/test_codec_fuzz.py) checks that no rejection of the decoder falls through to "other".

>>> reason_kind("invalid JSON: unexpected character: line 1 column 1 (char 0)")
'invalid_json'
>>> reason_kind("missing field 'post_id' required by type 'like'")
'missing_field'
>>> reason_kind("duplicate event_id 'e1'")
'duplicate'
"""

from __future__ import annotations

import re

REASON_KINDS = (
    "too_large",      # payload over stream.max_event_bytes
    "invalid_json",   # not parseable JSON (or not UTF-8)
    "wrong_type",     # not an object, or a field of the wrong JSON type
    "missing_field",  # an envelope or required field is absent
    "unknown_type",   # an event type this worker does not know
    "bad_version",    # a schema version this worker does not read
    "bad_ts",         # timestamp outside [stream.min_ts_ms, now + max_future_skew_ms]
    "bad_length",     # empty / over-long ids or strings, lists over stream.max_list_items
    "bad_value",      # out-of-range integers, control characters in ids
    "duplicate",      # an event id seen before
    "other",          # anything else (should not happen; see the fuzz test)
)

_RULES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), k) for p, k in (
    (r"^payload too large", "too_large"),
    (r"^invalid JSON", "invalid_json"),
    (r"^duplicate event_id", "duplicate"),
    (r"^missing ", "missing_field"),
    (r"^unknown event type", "unknown_type"),
    (r"^unsupported schema version", "bad_version"),
    (r"^field 'ts'=", "bad_ts"),
    (r"^field 'ts' must be in", "bad_ts"),
    (r"^event must be a JSON object", "wrong_type"),
    (r"must be an? (string|integer|list)", "wrong_type"),
    (r"must be a non-empty string of", "wrong_type"),
    (r"must be 1\.\.\d+ characters|is longer than|items, limit", "bad_length"),
    (r"must be in \[|control characters", "bad_value"),
))


def reason_kind(reason: str | None) -> str:
    """The kind (one of REASON_KINDS) of a dead-letter reason."""
    if reason:
        for pattern, kind in _RULES:
            if pattern.search(reason):
                return kind
    return "other"
