"""The online feature store: what one partition publishes and every ranker reads.

Item features, item-kNN neighbours, trending and fresh indices, and the global model's weights are
written by item/model partitions and read by user partitions. `MemoryFeatureStore` serves in-process
replays and evaluation; `operators.redis_store.RedisFeatureStore` serves the streaming workers. Both
implement the same protocol, so ranking code is identical in evaluation and production.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Protocol

from operators.erasure import parse_spill
from operators.item_stats import ItemView

GLOBAL = ""  # the trending index over all topics


class FeatureReader(Protocol):
    def items(self, ids: list[str]) -> dict[str, ItemView]: ...
    def neighbours(self, ids: list[str]) -> dict[str, Mapping[str, float]]: ...
    def trending(self, topic: str, n: int) -> list[str]: ...
    def fresh(self, n: int) -> list[str]: ...
    def global_model(self) -> dict | None: ...
    def parked(self, kind: str, user_id: str) -> bytes | None: ...
    def parking(self, kind: str, user_id: str, state: bytes) -> None: ...
    def spilled_owners(self, user_id: str) -> dict[str, int]: ...
    def spilling_owners(self, user_id: str, members: list[str]) -> None: ...


class RecentParks:
    """States this process parked in the last `window_s`, until their park write lands.

    An evicted state travels to Redis through the sink, later in the same activation, so the key's
    next input within that batch would find nothing parked and start the user cold; `parked` looks
    here first. The newest park of a key is always this process's own (a key lives on one
    worker), so an entry is preferred to the stored copy, which may be an older park. Taken once."""

    __slots__ = ("window_s", "capacity", "states")

    def __init__(self, window_s: float = 10.0, capacity: int = 256):
        self.window_s, self.capacity = window_s, capacity
        self.states: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()

    def add(self, kind: str, user_id: str, state: bytes) -> None:
        states = self.states
        states.pop((kind, user_id), None)
        states[(kind, user_id)] = (time.monotonic(), state)
        while len(states) > self.capacity:  # parked states are ~15 KB: keep this small
            states.popitem(last=False)

    def take(self, kind: str, user_id: str) -> bytes | None:
        entry = self.states.pop((kind, user_id), None)
        if entry is None or time.monotonic() - entry[0] > self.window_s:
            return None
        return entry[1]

    def take_or(self, kind: str, user_id: str, stored) -> bytes | None:
        """The recent park of the key, else `stored()` (the store's own copy): what every
        feature store's `parked` returns."""
        recent = self.take(kind, user_id)
        return recent if recent is not None else stored()


class RecentSpills:
    """Erasure owners this process spilled in the last `window_s` (operators.erasure), until
    their write lands: a deletion in the same activation reads them here, as `RecentParks`. Each
    spill expires on its own: a hot key spills again and again, and its older spills have landed.

    >>> spills = RecentSpills()
    >>> spills.add("u1", ["1:a"]); spills.add("u1", ["2:b"]); spills.of("u1"), spills.of("u2")
    (['1:a', '2:b'], [])
    >>> stale = RecentSpills(window_s=-1.0); stale.add("u1", ["1:a"]); stale.of("u1"), len(stale.spills)
    ([], 0)
    """

    __slots__ = ("window_s", "spills")

    def __init__(self, window_s: float = 30.0):
        self.window_s = window_s
        self.spills: deque[tuple[float, str, list[str]]] = deque()  # (time, user, members), oldest first

    def add(self, user_id: str, members: list[str]) -> None:
        self.spills.append((time.monotonic(), user_id, members))
        self._expire()

    def of(self, user_id: str) -> list[str]:
        self._expire()
        return [m for _, user, members in self.spills if user == user_id for m in members]

    def _expire(self) -> None:
        horizon = time.monotonic() - self.window_s
        while self.spills and self.spills[0][0] < horizon:
            self.spills.popleft()


class _TopIndex:
    """Members ordered by score, only the best `size` kept: a trimmed Redis sorted set in memory.

    Ties order like Redis ZRANGE ... REV: by member, descending."""

    __slots__ = ("size", "score", "order")

    def __init__(self, size: int):
        self.size = size
        self.score: dict[str, float] = {}
        self.order: list[tuple[float, str]] = []  # ascending (score, member)

    def put(self, member: str, score: float) -> None:
        old = self.score.get(member)
        if old == score:
            return
        if old is not None:
            del self.order[bisect.bisect_left(self.order, (old, member))]
        bisect.insort(self.order, (score, member))
        self.score[member] = score
        if len(self.order) > self.size:
            del self.score[self.order.pop(0)[1]]

    def remove(self, member: str) -> None:
        old = self.score.pop(member, None)
        if old is not None:
            del self.order[bisect.bisect_left(self.order, (old, member))]

    def top(self, n: int) -> list[str]:
        return [m for _, m in reversed(self.order[-n:])] if n > 0 else []


class MemoryFeatureStore:
    """Dict-backed feature store (single process). Mirrors the Redis layout and its bounds.

    Trending and fresh indices are kept sorted as items are written (reads are a slice). A neighbour
    mapping is stored as given: the in-process engine hands over each item's live neighbour dict,
    which is the same as publishing it after every update."""

    def __init__(self, index_size: int = 2000):
        self.index_size = index_size
        self._items: dict[str, ItemView] = {}
        self._neighbours: dict[str, Mapping[str, float]] = {}
        self._trending: dict[str, _TopIndex] = {}
        self._fresh = _TopIndex(index_size)
        self._model: dict | None = None
        self._parked: dict[tuple[str, str], bytes] = {}
        self.recent_parks = RecentParks()
        self._owners: dict[str, set[str]] = {}  # spilled erasure owners (schemas.keyspace)
        # the deleted users' set (Redis: the suggestions step writes it), which restores a
        # dropped tombstone (flows.adapters.deleted_user); filled by whoever plays that step
        self.deleted_users: set[str] = set()
        self.recent_spills = RecentSpills()

    # writes -------------------------------------------------------------------------------------
    def put_item(self, view: ItemView) -> None:
        self._items[view.post_id] = view
        if view.deleted:
            for index in self._trending.values():
                index.remove(view.post_id)
            self._fresh.remove(view.post_id)
            return
        if view.pop_log is not None and view.author_id is not None:
            for topic in (GLOBAL, *view.topics):
                index = self._trending.get(topic)
                if index is None:
                    index = self._trending[topic] = _TopIndex(self.index_size)
                index.put(view.post_id, view.pop_log)
        if view.author_id is not None:
            self._fresh.put(view.post_id, view.created_ts)

    def put_neighbours(self, post_id: str, neighbours: Mapping[str, float]) -> None:
        self._neighbours[post_id] = neighbours

    def put_global_model(self, exported: dict) -> None:
        self._model = exported

    def put_parked(self, kind: str, user_id: str, state: bytes | None) -> None:
        """Park an evicted user's state (None forgets it, as an erasure does)."""
        if state is None:
            self._parked.pop((kind, user_id), None)
        else:
            self._parked[(kind, user_id)] = state

    def put_owners(self, user_id: str, added: list[str], removed: list[str]) -> None:
        """Spilled erasure owners' members added and removed (`forget_owners` deletes all)."""
        members = self._owners.setdefault(user_id, set())
        members.update(added)
        members.difference_update(removed)

    def forget_owners(self, user_id: str) -> None:
        self._owners.pop(user_id, None)

    def delete_item(self, post_id: str) -> None:
        self._items.pop(post_id, None)
        self._neighbours.pop(post_id, None)
        self._fresh.remove(post_id)
        for index in self._trending.values():
            index.remove(post_id)

    # reads --------------------------------------------------------------------------------------
    def items(self, ids: list[str]) -> dict[str, ItemView]:
        found = self._items
        return {i: found[i] for i in ids if i in found}

    def neighbours(self, ids: list[str]) -> dict[str, Mapping[str, float]]:
        found = self._neighbours
        return {i: found[i] for i in ids if i in found}

    def trending(self, topic: str, n: int) -> list[str]:
        index = self._trending.get(topic)
        return index.top(n) if index is not None else []

    def fresh(self, n: int) -> list[str]:
        return self._fresh.top(n)

    def global_model(self) -> dict | None:
        return self._model

    def parked(self, kind: str, user_id: str) -> bytes | None:
        return self.recent_parks.take_or(kind, user_id, lambda: self._parked.get((kind, user_id)))

    def parking(self, kind: str, user_id: str, state: bytes) -> None:
        self.recent_parks.add(kind, user_id, state)

    def spilled_owners(self, user_id: str) -> dict[str, int]:
        return parse_spill(self._owners.get(user_id, set()) | set(self.recent_spills.of(user_id)))

    def spilling_owners(self, user_id: str, members: list[str]) -> None:
        self.recent_spills.add(user_id, members)
