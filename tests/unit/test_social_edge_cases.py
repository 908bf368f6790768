"""Follow graph and suggestions on cases a review found wrong (session 30): a block ends the
blocked user's follow of the blocker too, a block past the suggestions' edge cap still counts,
and a repeated follow at the fan-out limit does not switch the author to pull."""

from __future__ import annotations

import config
from operators.engine import Engine
from operators.feature_store import MemoryFeatureStore
from operators.graph import Followers
from operators.suggestions.compute import people
from operators.suggestions.state import SocialState
from operators.suggestions.store import MemoryGraphStore
from schemas import Event

T = 1_780_000_000_000
_n = iter(range(10**9))


def ev(kind: str, ts: int, user: str, **fields) -> Event:
    return Event(f"e{next(_n)}", kind, ts, user, **fields)


def test_a_blocked_follower_no_longer_gets_the_blockers_posts():
    e = Engine(config.load(env={}), social=True)
    for user in ("a", "b"):
        e.learn_one(ev("user_created", T, user))
    e.learn_one(ev("follow", T + 1, "b", target_id="a"))
    e.learn_one(ev("post_created", T + 2, "a", post_id="before", topics=["t"]))
    assert "before" in e.users["b"].pool
    e.learn_one(ev("block", T + 3, "a", target_id="b"))
    e.learn_one(ev("post_created", T + 4, "a", post_id="after", topics=["t"]))
    assert "b" not in e.followers["a"].ids and "after" not in e.users["b"].pool


def test_a_block_past_the_social_edge_cap_still_counts():
    s = SocialState("me")
    for i in range(1000):
        s.learn(("event", ev("block", T + i, "me", target_id=f"b{i}"), None, (), None))
    s.learn(("followed_by", "follow", "troll", T + 2000, "me"))
    s.learn(("event", ev("block", T + 2001, "me", target_id="troll"), None, (), None))
    assert "troll" in s.blocked
    assert "troll" not in [p["id"] for p in people(s, MemoryGraphStore(), MemoryFeatureStore(),
                                                    T + 3000)]


def test_a_repeated_follow_at_the_fan_out_limit_keeps_pushing():
    f = Followers()
    for follower in ("f1", "f2"):
        f.learn_edge("follow", follower, T, max_fanout=2, keep=3)
    f.learn_edge("follow", "f1", T + 1, max_fanout=2, keep=3)  # again: still two followers
    assert not f.pulled and set(f.ids) == {"f1", "f2"}
    assert {d[1] for d in f.learn_post("p", T + 2, max_fanout=2, keep=3)} == {"f1", "f2"}
