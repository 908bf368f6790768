"""The feed on cases a review found wrong (session 30), through the in-process Engine: a block
past the edge cap, the author cap with exploration, a followed author's older unseen posts once
the newest are seen, a "similar" reason naming a post only seen and hidden since, message
recipients past the affinity cap, and an impression that arrives after its click."""

from __future__ import annotations

import itertools
from collections import Counter

import config
from operators.engine import Engine
from operators.user_state import MAX_AFFINITIES, MAX_EDGES
from reader.explain import explain
from schemas import Event

T = 1_780_000_000_000
H = 3_600_000
_ids = itertools.count()


def ev(kind: str, ts: int, user: str, **fields) -> Event:
    for key in ("topics", "recipients"):
        if key in fields:
            fields[key] = tuple(fields[key])
    return Event(f"e{next(_ids)}", kind, ts, user, **fields)


def _engine() -> Engine:
    return Engine(config.load(env={}))


def test_a_block_past_the_edge_cap_still_counts():
    e = _engine()
    t = T
    e.learn_one(ev("user_created", t, "me"))
    for i in range(MAX_EDGES + 10):
        e.learn_one(ev("block", t, "me", target_id=f"m{i}"))
        t += 1
    e.learn_one(ev("post_created", t, "troll", post_id="pt", topics=["x"]))
    e.learn_one(ev("like", t + 1, "z", post_id="pt"))
    e.learn_one(ev("block", t + 2, "me", target_id="troll"))
    assert "troll" in e.users["me"].blocked
    assert "pt" not in [i.post_id for i in e.feed("me", t + 3).items]
    for i in range(MAX_EDGES + 10):  # follows past their cap: the newest take effect
        e.learn_one(ev("follow", t + 10 + i, "me", target_id=f"f{i}"))
    following = e.users["me"].following
    assert len(following) == MAX_EDGES and f"f{MAX_EDGES + 9}" in following


def test_exploration_keeps_the_author_cap():
    e = _engine()
    t = T
    e.learn_one(ev("user_created", t, "me"))
    for i in range(12):
        e.learn_one(ev("post_created", t, f"x{i}", post_id=f"px{i}", topics=[f"t{i}"]))
        e.learn_one(ev("like", t + 1, f"y{i}", post_id=f"px{i}"))
        t += 2
    for i in range(30):
        e.learn_one(ev("post_created", t, "a", post_id=f"pa{i}", topics=["ta"]))
        t += 1
    counts = Counter(i.author_id for i in e.feed("me", t + 10).items)
    assert max(counts.values()) <= e.ctx.settings.feed.author_cap, counts


def test_older_unseen_posts_of_a_followed_author_are_still_candidates():
    from operators.feed.candidates import in_network
    e = _engine()
    t = T
    e.learn_one(ev("user_created", t, "me"))
    e.learn_one(ev("follow", t, "me", target_id="a"))
    for i in range(60):
        e.learn_one(ev("post_created", t + 1 + i, "a", post_id=f"pa{i:02d}", topics=["ta"]))
    t += 100
    for i in range(10, 60):  # the newest 50 seen
        e.learn_one(ev("impression", t + i, "me", post_id=f"pa{i:02d}"))
    proposed = in_network(e.users["me"], e.store, e.ctx, t + 100, 50, None)[0][1]
    assert proposed == [f"pa{i:02d}" for i in range(9, -1, -1)]


def test_a_similar_reason_names_only_a_post_the_user_liked():
    e = _engine()
    t = T
    for p in ("p0", "q1", "q2"):
        e.learn_one(ev("post_created", t, "auth", post_id=p, topics=["tz"]))
        t += 1
    for other in ("o1", "o2", "o3"):
        for p in ("p0", "q1"):
            e.learn_one(ev("like", t, other, post_id=p))
            t += 1
    e.learn_one(ev("user_created", t, "me"))
    e.learn_one(ev("impression", t + 1, "me", post_id="p0"))
    e.learn_one(ev("hide", t + 2, "me", post_id="p0"))
    for item in e.feed("me", t + 50 * H).items:
        texts = [explain({"code": r.code, "detail": r.detail}) for r in item.reasons]
        assert not any("p0" in text for text in texts), (item.post_id, texts)


def test_message_recipients_stay_within_the_affinity_cap():
    e = _engine()
    e.learn_one(ev("user_created", T, "me"))
    for i in range(100):
        e.learn_one(ev("message_sent", T + i, "me", conversation_id=f"c{i}",
                       recipients=[f"r{i}_{j}" for j in range(20)]))
    assert len(e.users["me"].author_aff) <= MAX_AFFINITIES


def test_an_impression_after_its_click_is_no_rejection():
    e = Engine(config.load(env={"PERSONA_FEED__IMPRESSION_NEGATIVE_WEIGHT": "0.5"}))
    t = T
    e.learn_one(ev("user_created", t, "me"))
    for i in range(5):
        e.learn_one(ev("post_created", t + 1 + i, "a", post_id=f"p{i}", topics=["t"]))
    t += 10
    e.feed("me", t)  # a choice set to learn from
    e.learn_one(ev("click", t + 1, "me", post_id="p0"))  # the client sends the click first
    e.learn_one(ev("impression", t + 2, "me", post_id="p0"))  # its impression batch after
    assert "p0" not in e.users["me"].pending


def test_a_see_more_boost_keeps_scores_probabilities_and_their_order():
    import numpy as np

    from operators.feed import controls
    from operators.item_stats import ItemView
    e = _engine()
    e.learn_one(ev("user_created", T, "me"))
    e.learn_one(ev("see_more", T + 1, "me", topic="t1"))
    views = [ItemView(f"p{i}", author_id=f"a{i}", topics=("t1",)) for i in range(3)]
    boosted, shown, reasons = controls.apply(e.users["me"], views, np.array([0.5, 0.7, 0.9]),
                                             T + 2, e.ctx)
    assert shown.all() and all(0 < p < 1 for p in boosted)  # × 1.5 took 0.7 and 0.9 past 1
    assert list(boosted) == sorted(boosted) and boosted[0] > 0.5
    assert reasons[0][0].code == "see_more"
