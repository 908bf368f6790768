"""The logic the dataflow steps call: plain Python, never imports Bytewax, testable without services.

State classes (`UserState`, `ItemStats`, `ItemSimilarity`, `Followers`, `Dedup`) are picklable and hold
no clients; the feed pipeline (`operators.feed`) ranks a user from its state and a feature store;
`Engine` wires them all in one process for replays and evaluation.
"""

from operators.context import FEATURES, Context
from operators.dedup import Dedup
from operators.engine import Engine
from operators.feature_store import MemoryFeatureStore
from operators.graph import Followers
from operators.item_similarity import ItemSimilarity
from operators.item_stats import ItemStats, ItemView
from operators.user_state import UserState

__all__ = [
    "Context",
    "Dedup",
    "Engine",
    "FEATURES",
    "Followers",
    "ItemSimilarity",
    "ItemStats",
    "ItemView",
    "MemoryFeatureStore",
    "UserState",
]
