"""Turning raw input into events or dead letters (the decode step of the flow).

>>> ev = decode_message(b'{"event_id":"e1","type":"follow","ts":1767225600000,"user_id":"u1","target_id":"u2"}', Limits())
>>> ev.type, ev.target_id
('follow', 'u2')
>>> decode_message(b'{"event_id":"e1"}', Limits()).reason
"missing envelope field 'type'"
"""

from __future__ import annotations

import time
from dataclasses import replace

from config import Settings
from schemas import DeadLetter, Event, Limits, decode_event


def limits_from(settings: Settings) -> Limits:
    s = settings.stream
    return Limits(max_event_bytes=s.max_event_bytes, max_list_items=s.max_list_items,
                  min_ts_ms=s.min_ts_ms)


def decode_message(msg, limits: Limits, max_future_skew_ms: int | None = None) -> Event | DeadLetter:
    """Decode a Kafka message (anything with .value/.topic/.partition/.offset) or raw bytes."""
    raw = getattr(msg, "value", msg)
    if max_future_skew_ms is not None:  # live input: nothing from the future beyond a skew
        limits = replace(limits, max_ts_ms=int(time.time() * 1000) + max_future_skew_ms)
    if raw is None:
        raw = b""
    if isinstance(raw, str):
        raw = raw.encode()
    event, reason = decode_event(raw, limits)
    if event is not None:
        return event
    return DeadLetter(reason or "rejected", raw, getattr(msg, "topic", None),
                      getattr(msg, "partition", None), getattr(msg, "offset", None))
