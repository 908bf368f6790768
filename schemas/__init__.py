"""Wire formats: the v1 event envelope and types, output records, and their (de)serialization.

This package is the single source of truth for every byte that crosses Kafka or Redis; JSON Schema
files for producers are generated from it (`persona schemas export`).
"""

from schemas.codec import DeadLetter, Limits, decode_event, encode_event, validate
from schemas.events import (
    ENGAGEMENT_WEIGHT,
    EVENT_TYPES,
    NEGATIVE_TYPES,
    POST_ACTIONS,
    SCHEMA_VERSION,
    Event,
)
from schemas.outputs import REASON_CODES, Feed, FeedItem, Reason, decode_feed

__all__ = [
    "DeadLetter",
    "ENGAGEMENT_WEIGHT",
    "EVENT_TYPES",
    "Event",
    "Feed",
    "FeedItem",
    "Limits",
    "NEGATIVE_TYPES",
    "POST_ACTIONS",
    "REASON_CODES",
    "Reason",
    "SCHEMA_VERSION",
    "decode_event",
    "decode_feed",
    "encode_event",
    "validate",
]
