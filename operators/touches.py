"""What a user has touched: a short weighted history (item-kNN) and a long-term seen filter.

`TouchHistory` keeps the user's newest touched posts with a weight (an engagement counts more than an
impression); it drives the item-kNN score and the co-occurrence pairs. `SeenFilter` remembers every
touched post in bounded memory (exact hashes of the first few hundred, then two generations of Bloom
filters), so a feed never serves a post the user already saw: no false negatives within the newest
`capacity` touches (and most of the `capacity` before them); false positives (an unseen post
treated as seen) none while exact, below ~0.1% after.

>>> h = TouchHistory(2)
>>> [h.add(p, w) for p, w in [("a", 0.3), ("b", 1.0), ("a", 1.0), ("c", 0.3)]]
[0.0, 0.0, 0.3, 0.0]
>>> h.newest(5)
[('c', 0.3), ('a', 1.0)]
>>> s = SeenFilter(100)
>>> s.add("p1"); "p1" in s, "p2" in s
(True, False)
"""

from __future__ import annotations

import math
import zlib
from array import array
from collections.abc import Iterator

import numpy as np

_SEED = 0x9E3779B9


class TouchHistory:
    """Insertion-ordered post -> weight, newest last, at most `capacity` posts (oldest forgotten).

    A post touched again moves to the newest position and keeps the larger weight."""

    __slots__ = ("capacity", "_w")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._w: dict[str, float] = {}

    def add(self, post: str, weight: float) -> float:
        """Record a touch; return the post's previous weight (0.0 if it was not in the history)."""
        old = self._w.pop(post, 0.0)
        self._w[post] = max(old, weight)
        if len(self._w) > self.capacity:
            del self._w[next(iter(self._w))]
        return old

    def newest(self, n: int) -> list[tuple[str, float]]:
        """The n newest (post, weight), newest first."""
        items = list(self._w.items())
        return items[-n:][::-1]

    def get(self, post: str) -> float:
        return self._w.get(post, 0.0)

    def discard(self, post: str) -> None:
        self._w.pop(post, None)

    def __contains__(self, post: object) -> bool:
        return post in self._w

    def keys(self):
        """The posts, as a set-like view (fast membership)."""
        return self._w.keys()

    def __len__(self) -> int:
        return len(self._w)

    def __iter__(self) -> Iterator[str]:
        return iter(self._w)

    def __getstate__(self):
        return (self.capacity, list(self._w.items()))

    def __setstate__(self, state):
        self.capacity, items = state
        self._w = dict(items)


_CACHE: dict[str, int] = {}  # post id -> h1 << 32 | h2: a pure-function memo, per process
_CACHE_SIZE = 500_000
_LOW = (1 << 32) - 1


def hash64(key: str) -> int:
    """A stable, odd 64-bit hash of a string (two crc32; process-independent, unlike `hash`)."""
    raw = key.encode()
    return (zlib.crc32(raw) << 32) | zlib.crc32(raw, _SEED) | 1


def post_hash(key: str) -> int:
    """`hash64` of a post id, memoised (a post is hashed at every rank that sees it)."""
    h = _CACHE.get(key)
    if h is None:
        h = hash64(key)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = h
    return h


def post_hashes(keys: list[str]) -> np.ndarray:
    """`post_hash` of each key, as int64 (vectorised once the keys are memoised)."""
    missing = [k for k in keys if k not in _CACHE]
    if missing:
        for k in missing:
            post_hash(k)
        if len(_CACHE) < len(keys):  # the memo was just cleared: compute directly
            return np.array([post_hash(k) for k in keys], dtype=np.uint64).view(np.int64)
    return np.fromiter(map(_CACHE.__getitem__, keys), dtype=np.uint64,
                       count=len(keys)).view(np.int64)


def _hash_one(key: str) -> tuple[int, int]:
    h = post_hash(key)
    return h >> 32, h & _LOW


def _hashes(keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    h = post_hashes(keys).view(np.uint64)
    return (h >> np.uint64(32)).astype(np.int64), (h & np.uint64(_LOW)).astype(np.int64)


class _Bloom:
    __slots__ = ("bits", "k", "m", "count")

    def __init__(self, capacity: int, fp_rate: float):
        self.m = max(64, math.ceil(-capacity * math.log(fp_rate) / math.log(2) ** 2))
        self.k = max(1, round(self.m / capacity * math.log(2)))
        self.bits = bytearray((self.m + 7) // 8)
        self.count = 0

    def _probes(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        return (h1[:, None] + np.arange(self.k)[None, :] * h2[:, None]) % self.m

    def add(self, h1: np.ndarray, h2: np.ndarray) -> None:
        for a, b in zip(h1.tolist(), h2.tolist(), strict=True):
            self.add_one(a, b)

    def add_one(self, h1: int, h2: int) -> None:
        bits, m = self.bits, self.m
        for i in range(self.k):
            p = (h1 + i * h2) % m
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def contains_one(self, h1: int, h2: int) -> bool:
        bits, m = self.bits, self.m
        for i in range(self.k):
            p = (h1 + i * h2) % m
            if not (bits[p >> 3] >> (p & 7)) & 1:
                return False
        return True

    def contains(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        return self.has_probes(self._probes(h1, h2))

    def has_probes(self, p: np.ndarray) -> np.ndarray:
        """Whether every bit of each row of probes `p` (from `_probes`) is set."""
        bits = np.frombuffer(self.bits, dtype=np.uint8)
        bit = (bits[p >> 3] >> (p & 7).astype(np.uint8)) & 1
        return bit.all(axis=1)


# Posts a seen filter keeps as exact hashes before its first Bloom generation: a Bloom sized for
# `capacity` (2,000 at 0.05%) is ~4 KB from the first post, while most users touch a few dozen
# posts (the bench's 100k events / 10k users: the filters were 40 of the 196 MB of state). 8 bytes
# a post up to here: 2 KB, half a generation; no false positive until then.
EXACT_POSTS = 256


class SeenFilter:
    """Bounded set membership with no false negatives for recent members: exact 64-bit hashes of
    the first `EXACT_POSTS`, then two Bloom generations.

    When the current generation holds `capacity` posts, it becomes the previous one and a new one
    starts; a post is "seen" if either generation has it."""

    __slots__ = ("capacity", "fp_rate", "_cur", "_prev", "_exact")

    def __init__(self, capacity: int, fp_rate: float = 0.0005):
        self.capacity = capacity
        self.fp_rate = fp_rate
        self._exact: array | None = array("Q")  # until the first generation (None after)
        self._cur: _Bloom | None = None
        self._prev: _Bloom | None = None

    def add(self, post: str) -> None:
        exact = self._exact
        if exact is not None:
            h = post_hash(post)
            if h in exact:
                return
            if len(exact) < min(EXACT_POSTS, self.capacity):
                exact.append(h)
                return
            self._cur, self._exact = _Bloom(self.capacity, self.fp_rate), None
            for known in exact:
                self._add_to_bloom(known >> 32, known & _LOW)
            self._add_to_bloom(h >> 32, h & _LOW)
            return
        h1, h2 = _hash_one(post)
        # A touch again copies the post into the current generation, so recency is by last touch
        # (a false positive here, p ≈ fp_rate, lets that post age out one generation early).
        if not self._cur.contains_one(h1, h2):
            self._add_to_bloom(h1, h2)

    def _add_to_bloom(self, h1: int, h2: int) -> None:
        if self._cur.count >= self.capacity:
            self._prev, self._cur = self._cur, _Bloom(self.capacity, self.fp_rate)
        self._cur.add_one(h1, h2)

    def contains_many(self, posts: list[str]) -> np.ndarray:
        """Boolean mask: which of `posts` were (probably) seen."""
        if not posts:
            return np.zeros(0, dtype=bool)
        if self._exact is not None:
            if not self._exact:
                return np.zeros(len(posts), dtype=bool)
            known = np.frombuffer(self._exact, dtype=np.uint64).view(np.int64)
            return np.isin(post_hashes(posts), known)
        h1, h2 = _hashes(posts)
        cur, prev = self._cur, self._prev
        p = cur._probes(h1, h2)
        out = cur.has_probes(p)
        if prev is not None:  # the same probes when both generations have the same shape
            out |= prev.has_probes(p) if (prev.m, prev.k) == (cur.m, cur.k) else prev.contains(h1, h2)
        return out

    def __contains__(self, post: object) -> bool:
        if not isinstance(post, str):
            return False
        if self._exact is not None:
            return post_hash(post) in self._exact
        h1, h2 = _hash_one(post)
        return self._cur.contains_one(h1, h2) or (
            self._prev is not None and self._prev.contains_one(h1, h2))

    def __getstate__(self):
        gens = [(g.m, g.k, g.count, bytes(g.bits)) for g in (self._cur, self._prev) if g]
        return (self.capacity, self.fp_rate, gens,
                None if self._exact is None else self._exact.tobytes())

    def __setstate__(self, state):
        self.capacity, self.fp_rate, gens = state[:3]
        exact = state[3] if len(state) > 3 else None  # (a state pickled before the exact hashes)
        self._exact = None
        if exact is not None:
            self._exact = array("Q")
            self._exact.frombytes(exact)
        built = []
        for m, k, count, raw in gens:
            g = _Bloom.__new__(_Bloom)
            g.m, g.k, g.count = m, k, count
            g.bits = bytearray(raw)
            built.append(g)
        self._cur = built[0] if built else None
        self._prev = built[1] if len(built) > 1 else None
