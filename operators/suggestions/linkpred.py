"""Link-prediction evaluation of people suggestions (`persona evaluate-links LOG`).

Hide a seeded random fraction of the follow edges that exist at the end of the log, replay
everything else through the production social operators (`inprocess.SocialSteps`: `SocialState`,
then `compute.people`, with in-memory graph and feature stores in place of Redis), then measure
Recall@k of each user's people suggestions against their hidden followees — next to a random and a
most-followed baseline computed on the same training graph, in the same run.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from operators.decay import Decay
from operators.feature_store import MemoryFeatureStore
from operators.item_stats import ItemStats
from operators.routing import item_key
from operators.suggestions.compute import people
from operators.suggestions.inprocess import SocialSteps
from operators.suggestions.state import SocialState
from schemas import Event


def final_edges(events: list[Event]) -> set[tuple[str, str]]:
    edges: set[tuple[str, str]] = set()
    for e in events:
        if e.target_id is None or e.target_id == e.user_id:
            continue
        if e.type == "follow":
            edges.add((e.user_id, e.target_id))
        elif e.type in ("unfollow", "block"):
            edges.discard((e.user_id, e.target_id))
    return edges


def split(events: list[Event], fraction: float = 0.2, seed: int = 7,
          undirected: bool = False) -> tuple[list[Event], dict[str, set[str]]]:
    """(training events, hidden followees per user). With `undirected`, a hidden friendship hides
    both directions (otherwise the reverse edge would leak it)."""
    edges = sorted(final_edges(events))
    if undirected:
        pairs = sorted({tuple(sorted(e)) for e in edges})
        chosen = random.Random(seed).sample(pairs, round(fraction * len(pairs)))
        hidden_pairs = {p for c in chosen for p in (c, c[::-1])} & set(edges)
    else:
        hidden_pairs = set(random.Random(seed).sample(edges, round(fraction * len(edges))))
    train = [e for e in events if not (e.type in ("follow", "unfollow") and
                                       (e.user_id, e.target_id) in hidden_pairs)]
    hidden: dict[str, set[str]] = {}
    for u, v in hidden_pairs:
        hidden.setdefault(u, set()).add(v)
    return train, hidden


class SocialReplay:
    """The suggestions step in-process (`SocialSteps`), with its own items for the annotation."""

    def __init__(self, popularity_half_life_h: float = 24.0):
        self.popularity = Decay(popularity_half_life_h)
        self.features = MemoryFeatureStore()
        self.items: dict[str, ItemStats] = {}
        self.social = SocialSteps()
        self.graph, self.users = self.social.graph, self.social.users
        self.now = 0

    def learn_one(self, event: Event) -> None:
        self.now = max(self.now, event.ts)
        view = None
        post = item_key(event)
        if post is not None:
            stats = self.items.get(post)
            if stats is None:
                stats = self.items[post] = ItemStats(post)
            view = stats.learn_one(event, self.popularity)
            self.features.put_item(stats.view)
        self.social.learn_one(event, view)

    def publish(self) -> None:
        self.social.publish()

    def people(self, user: str, k: int) -> list[str]:
        state = self.users.get(user) or SocialState(user)
        return [p["id"] for p in people(state, self.graph, self.features, self.now, n=k)]


@dataclass
class LinkReport:
    k: int
    users: int
    hidden_edges: int
    train_edges: int
    recall: dict[str, float] = field(default_factory=dict)  # method -> mean Recall@k over users
    hits: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def evaluate_links(events: Iterable[Event], k: int = 10, fraction: float = 0.2, seed: int = 7,
                   undirected: bool = False) -> LinkReport:
    events = list(events)
    train, hidden = split(events, fraction, seed, undirected)
    replay = SocialReplay()
    for e in train:
        replay.learn_one(e)
    replay.publish()
    followed = Counter(v for (_, v) in final_edges(train))
    most_followed = [u for u, _ in sorted(followed.items(), key=lambda kv: (-kv[1], kv[0]))]
    universe = sorted(replay.users)
    rng = random.Random(seed + 1)
    methods = {"persona": lambda u, excl: replay.people(u, k),
               "most_followed": lambda u, excl: [c for c in most_followed[:k + len(excl)]
                                                 if c not in excl][:k],
               "random": lambda u, excl: _random(rng, universe, excl, k)}
    recall = dict.fromkeys(methods, 0.0)
    hits = dict.fromkeys(methods, 0)
    users = sorted(hidden)
    for u in users:
        state = replay.users.get(u) or SocialState(u)
        excl = state.excluded()
        for name, fn in methods.items():
            got = len(set(fn(u, excl)) & hidden[u])
            hits[name] += got
            recall[name] += got / len(hidden[u])
    n = max(len(users), 1)
    return LinkReport(k, len(users), sum(len(h) for h in hidden.values()),
                      len(final_edges(train)), {m: round(r / n, 4) for m, r in recall.items()},
                      hits)


def _random(rng: random.Random, universe: list[str], excl: set[str], k: int) -> list[str]:
    out: list[str] = []
    for _ in range(20 * k):
        c = universe[rng.randrange(len(universe))]
        if c not in excl and c not in out:
            out.append(c)
            if len(out) == k:
                break
    return out
