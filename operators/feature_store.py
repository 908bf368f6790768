"""The online feature store: what one partition publishes and every ranker reads.

Item features, item-kNN neighbours, trending and fresh indices, and the global model's weights are
written by item/model partitions and read by user partitions. `MemoryFeatureStore` serves in-process
replays and evaluation; `operators.redis_store.RedisFeatureStore` serves the streaming workers. Both
implement the same protocol, so ranking code is identical in evaluation and production.
"""

from __future__ import annotations

import heapq
from typing import Protocol

from operators.item_stats import ItemView

GLOBAL = ""  # the trending index over all topics


class FeatureReader(Protocol):
    def items(self, ids: list[str]) -> dict[str, ItemView]: ...
    def neighbours(self, ids: list[str]) -> dict[str, dict[str, float]]: ...
    def trending(self, topic: str, n: int) -> list[str]: ...
    def fresh(self, n: int) -> list[str]: ...
    def global_model(self) -> dict | None: ...


class MemoryFeatureStore:
    """Dict-backed feature store (single process). Mirrors the Redis layout and its bounds."""

    def __init__(self, index_size: int = 2000):
        self.index_size = index_size
        self._items: dict[str, ItemView] = {}
        self._neighbours: dict[str, dict[str, float]] = {}
        self._trending: dict[str, dict[str, float]] = {}
        self._fresh: dict[str, int] = {}
        self._model: dict | None = None

    # writes -------------------------------------------------------------------------------------
    def put_item(self, view: ItemView) -> None:
        self._items[view.post_id] = view
        if view.deleted:
            for index in self._trending.values():
                index.pop(view.post_id, None)
            self._fresh.pop(view.post_id, None)
            return
        if view.pop_log is not None and view.author_id is not None:
            for topic in (GLOBAL, *view.topics):
                self._trending.setdefault(topic, {})[view.post_id] = view.pop_log
        if view.author_id is not None:
            self._fresh[view.post_id] = view.created_ts

    def put_neighbours(self, post_id: str, neighbours: dict[str, float]) -> None:
        self._neighbours[post_id] = neighbours

    def put_global_model(self, exported: dict) -> None:
        self._model = exported

    def delete_item(self, post_id: str) -> None:
        self._items.pop(post_id, None)
        self._neighbours.pop(post_id, None)
        self._fresh.pop(post_id, None)
        for index in self._trending.values():
            index.pop(post_id, None)

    # reads --------------------------------------------------------------------------------------
    def items(self, ids: list[str]) -> dict[str, ItemView]:
        found = self._items
        return {i: found[i] for i in ids if i in found}

    def neighbours(self, ids: list[str]) -> dict[str, dict[str, float]]:
        found = self._neighbours
        return {i: found[i] for i in ids if i in found}

    def trending(self, topic: str, n: int) -> list[str]:
        index = self._trending.get(topic)
        if not index:
            return []
        return [k for k, _ in heapq.nlargest(n, index.items(), key=lambda kv: (kv[1], kv[0]))]

    def fresh(self, n: int) -> list[str]:
        return [k for k, _ in heapq.nlargest(n, self._fresh.items(), key=lambda kv: (kv[1], kv[0]))]

    def global_model(self) -> dict | None:
        return self._model
