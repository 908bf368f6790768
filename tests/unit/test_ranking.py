"""The feed pipeline and what it learns from (no services): filters, item-kNN, mixing, determinism."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import config
from operators.choice import ChoiceSet
from operators.context import FEATURES, Context
from operators.engine import Engine
from operators.feature_store import GLOBAL, MemoryFeatureStore
from operators.feed import filters, hydrate, mixing
from operators.item_similarity import ItemSimilarity
from operators.item_stats import ItemView
from operators.models import OnlineLogit
from operators.touches import SeenFilter, TouchHistory
from operators.user_state import UserOutputs, UserState
from schemas import Event

T = 1_767_225_600_000
MIN = 60_000


def settings(**over):
    env = {f"PERSONA_{k.upper()}": str(v) for k, v in over.items()}
    return config.load(env=env)


class Log:
    """Builds an event list with unique ids and increasing times."""

    def __init__(self):
        self.events: list[Event] = []

    def add(self, type_: str, user: str, post: str | None = None, dt: int = MIN, **kw) -> Log:
        ts = (self.events[-1].ts if self.events else T) + dt
        self.events.append(Event(f"e{len(self.events)}", type_, ts, user, post_id=post, **kw))
        return self

    def post(self, author: str, post: str, topics=("t1",)) -> Log:
        return self.add("post_created", author, post, topics=topics)


def replay(events, **over) -> Engine:
    engine = Engine(settings(**over))
    for e in events:
        engine.learn_one(e)
    return engine


def feed_ids(engine: Engine, user: str, now: int) -> list[str]:
    return [i.post_id for i in engine.feed(user, now).items]


# ------------------------------------------------------------------------------------ filters
def test_filters_never_serve_touched_blocked_muted_or_own_posts():
    log = Log()
    for k in range(12):
        log.post(f"a{k}", f"p{k}")
    log.post("u1", "own").post("bad", "blocked_post").post("dull", "muted_post")
    for k in range(12):  # make everything popular
        for u in ("v1", "v2"):
            log.add("like", u, f"p{k}")
    for post in ("own", "blocked_post", "muted_post"):
        log.add("like", "v1", post)
    log.add("impression", "u1", "p0").add("like", "u1", "p1").add("hide", "u1", "p2")
    log.add("click", "u1", "p3").add("dwell", "u1", "p3")
    log.add("block", "u1", target_id="bad").add("mute", "u1", target_id="dull")
    engine = replay(log.events)
    served = feed_ids(engine, "u1", log.events[-1].ts + MIN)
    assert served, "the user still gets a feed"
    for never in ("p0", "p1", "p2", "p3", "own", "blocked_post", "muted_post"):
        assert never not in served


def test_seen_filter_has_no_false_negatives_and_pickles():
    seen = SeenFilter(100)
    posts = [f"p{k}" for k in range(150)]
    for p in posts:
        seen.add(p)
    assert all(p in seen for p in posts)  # the newest `capacity` are exact, older ones too here
    assert seen.contains_many(posts).all()
    again = pickle.loads(pickle.dumps(seen))
    assert again.contains_many(posts).all()
    unseen = [f"q{k}" for k in range(5000)]
    assert seen.contains_many(unseen).mean() < 0.01


@hypothesis_settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 700), max_size=900), st.sampled_from([10, 300, 2000]))
def test_seen_filter_is_exact_while_small_then_keeps_every_recent_post(touched, capacity):
    """Exact hashes for the first posts (no false positive), then Bloom generations with no false
    negative for the `capacity` posts touched last (a touch again counts as new: it copies the post
    into the current generation); the same answers after a pickle round trip."""
    from operators.touches import EXACT_POSTS

    seen = SeenFilter(capacity)
    posts = [f"p{k}" for k in touched]
    for p in posts:
        seen.add(p)
    distinct = list(dict.fromkeys(posts))
    recent = list(dict.fromkeys(reversed(posts)))[:capacity]  # by last touch, newest first
    again = pickle.loads(pickle.dumps(seen))
    for f in (seen, again):
        assert f.contains_many(recent).all() and all(p in f for p in recent)
        if len(distinct) <= min(EXACT_POSTS, capacity):  # still exact: nothing else is seen
            others = [f"q{k}" for k in range(200)]
            assert not f.contains_many(others).any() and not any(p in f for p in others)
    assert len(pickle.dumps(SeenFilter(2000))) < 200, "an empty filter allocates no Bloom"


def test_a_seen_filter_pickled_before_the_exact_hashes_still_loads():
    old = SeenFilter(100)
    for k in range(300):  # past the exact hashes: Bloom generations
        old.add(f"p{k}")
    state = old.__getstate__()[:3]  # the three-field state of earlier versions
    back = SeenFilter.__new__(SeenFilter)
    back.__setstate__(state)
    assert back.contains_many([f"p{k}" for k in range(200, 300)]).all()


def test_keep_mask_agrees_with_keep():
    class U:
        user_id = "u1"
        blocked, muted, following = {"bad"}, set(), set()
        seen = SeenFilter(10)

    U.seen.add("p2")
    views = {"p1": ItemView("p1", "ok"), "p2": ItemView("p2", "ok"), "p3": ItemView("p3", "bad"),
             "p4": ItemView("p4", "u1"), "p5": ItemView("p5", "ok", deleted=True)}
    proposals = {p: [("trending", None)] for p in views}
    assert filters.apply(U, proposals, views) == ["p1"]
    assert [p for p, v in views.items() if filters.keep(U, v, proposals[p])] == ["p1"]


# ------------------------------------------------------------------------------------ item-kNN
def test_touch_pairs_are_weighted_by_both_touches_and_distance():
    ctx = Context.from_settings(settings(features__cooccurrence_decay=0.5,
                                         features__impression_weight=0.25))
    user = UserState("u", ctx)
    out = UserOutputs()
    user._touch("a", 1.0, ctx, out)
    user._touch("b", 0.25, ctx, out)  # an impression after a like
    user._touch("c", 1.0, ctx, out)
    pairs = {(a, b): w for a, b, w in out.co_pairs}
    assert pairs[("b", "a")] == pairs[("a", "b")] == 0.25  # min of the two touch weights
    assert pairs[("c", "b")] == 0.25 and pairs[("c", "a")] == 0.5  # a is one touch further away
    out = UserOutputs()
    user._touch("b", 1.0, ctx, out)  # the impression becomes a like: only the increase is paired
    pairs = {(a, b): w for a, b, w in out.co_pairs}
    assert pairs[("b", "c")] == 0.75 and pairs[("b", "a")] == 0.375
    assert [p for p, _ in user.history.newest(3)] == ["b", "c", "a"]


def test_item_similarity_prunes_to_the_strongest():
    s = ItemSimilarity(capacity=2)
    for other, w in [("a", 3.0), ("b", 1.0), ("c", 2.0), ("d", 0.5), ("e", 0.1)]:
        s.learn_one(other, w)
    assert s.top() == {"a": 3.0, "c": 2.0}
    assert pickle.loads(pickle.dumps(s)).top() == s.top()


def test_item_knn_signal_puts_the_co_engaged_item_first():
    log = Log()
    for k in range(30):
        log.post(f"a{k}", f"p{k}", topics=(f"t{k % 5}",))
    for u in range(8):  # many users like p1 then p2; p3 is popular on its own
        log.add("like", f"v{u}", "p1").add("like", f"v{u}", "p2")
        log.add("like", f"w{u}", "p3")
    log.add("like", "u1", "p1")
    engine = replay(log.events)
    feed = engine.feed("u1", log.events[-1].ts + MIN)
    assert feed.items[0].post_id == "p2"
    assert any(r.code == "similar" and r.detail == "p1" for r in feed.items[0].reasons)


def test_touch_history_keeps_the_newest_and_the_larger_weight():
    h = TouchHistory(3)
    for post, w in [("a", 0.3), ("b", 1.0), ("a", 1.0), ("c", 0.3), ("b", 0.3), ("d", 0.3)]:
        h.add(post, w)
    assert h.newest(5) == [("d", 0.3), ("b", 1.0), ("c", 0.3)]
    assert pickle.loads(pickle.dumps(h)).newest(5) == h.newest(5)


# ------------------------------------------------------------------------------------ hydrate
def test_learning_and_serving_hydrate_the_same_features():
    log = Log()
    for k in range(10):
        log.post(f"a{k}", f"p{k}", topics=(f"t{k % 3}",))
    for u in range(4):
        for k in range(5):
            log.add("like", f"v{u}", f"p{k}")
    log.add("follow", "u1", target_id="a7").add("like", "u1", "p0").add("impression", "u1", "p1")
    engine = replay(log.events)
    user, store, ctx = engine.user("u1"), engine.store, engine.ctx
    now = log.events[-1].ts + MIN
    views = list(store.items([f"p{k}" for k in range(2, 10)]).values())
    X, _ = hydrate.hydrate(user, views, store, ctx, now)
    for k, v in enumerate(views):
        assert np.allclose(user.row(v, ctx, store, now), X[k])
    col = FEATURES.index
    assert X[[v.post_id for v in views].index("p7"), col("in_network")] == 1.0
    assert X[:, col("similar")].max() > 0


# ------------------------------------------------------------------------------------ mixing
def _views(spec):
    return [ItemView(f"p{k}", author, tuple(topics)) for k, (author, topics) in enumerate(spec)]


def test_author_cap_and_pure_score_order():
    ctx = Context.from_settings(settings(feed__mmr_lambda=1.0, feed__author_cap=2, feed__size=4))
    views = _views([("a", "x"), ("a", "x"), ("a", "x"), ("b", "x"), ("c", "x")])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert mixing.diversify(list(range(5)), scores, views, ctx) == [0, 1, 3, 4]


def test_mmr_promotes_a_new_topic_over_a_slightly_better_repeat():
    ctx = Context.from_settings(settings(feed__mmr_lambda=0.5, feed__author_cap=10, feed__size=3))
    views = _views([("a", ["x"]), ("b", ["x"]), ("c", ["y"]), ("d", ["x"])])
    scores = np.array([0.9, 0.85, 0.8, 0.1])
    assert mixing.diversify(list(range(4)), scores, views, ctx) == [0, 2, 1]
    pure = Context.from_settings(settings(feed__mmr_lambda=1.0, feed__size=3))
    assert mixing.diversify(list(range(4)), scores, views, pure) == [0, 1, 2]


def test_lazy_mmr_matches_the_plain_greedy():
    rng = np.random.default_rng(3)
    for _ in range(50):
        lam, size, cap = float(rng.choice([0.3, 0.8, 0.95])), int(rng.integers(1, 15)), 2
        ctx = Context.from_settings(settings(feed__mmr_lambda=lam, feed__size=size,
                                             feed__author_cap=cap))
        n = int(rng.integers(1, 60))
        views = [ItemView(f"p{k}", f"a{rng.integers(0, 6)}",
                          tuple(f"t{t}" for t in rng.choice(5, rng.integers(0, 3), replace=False)))
                 for k in range(n)]
        scores = np.round(rng.random(n), 1)  # with ties
        order = sorted(range(n), key=lambda k: (-scores[k], k))
        pool = order[: size * mixing.MMR_POOL]
        rel = dict(zip(pool, mixing.relevance(scores[pool]), strict=True))
        chosen, per_author, shown = [], {}, {}
        while pool and len(chosen) < size:
            best, best_val = -1, -np.inf
            for pos, k in enumerate(pool):
                if per_author.get(views[k].author_id, 0) >= cap:
                    continue
                o = max((shown.get(t, 0) for t in views[k].topics), default=0)
                val = lam * rel[k] - (1 - lam) * o / (o + 2.0)
                if val > best_val:
                    best, best_val = pos, val
            if best < 0:
                break
            k = pool.pop(best)
            chosen.append(k)
            per_author[views[k].author_id] = per_author.get(views[k].author_id, 0) + 1
            for t in views[k].topics:
                shown[t] = shown.get(t, 0) + 1
        assert mixing.diversify(order, scores, views, ctx) == chosen


# ------------------------------------------------------------------------------------ rank
def test_rank_is_deterministic_and_keeps_exploration_slots():
    log = Log()
    for k in range(80):
        log.post(f"a{k}", f"p{k}", topics=(f"t{k % 4}",))
    for u in range(10):
        for k in range(u, u + 8):
            log.add("like", f"v{u}", f"p{k}")
    log.add("like", "u1", "p3").add("impression", "u1", "p4")
    now = log.events[-1].ts + MIN
    a, b = replay(log.events), replay(log.events)
    fa, fb = a.feed("u1", now), b.feed("u1", now)
    assert fa == fb
    assert len(fa.items) == a.ctx.settings.feed.size
    assert any(r.code == "fresh" for r in fa.items[a.ctx.settings.feed.exploration_start - 1].reasons)
    assert all(item.reasons for item in fa.items)


def test_memory_store_indexes_mirror_a_trimmed_sorted_set():
    store = MemoryFeatureStore(index_size=3)
    for k, score in enumerate([1.0, 5.0, 3.0, 5.0, 2.0]):
        store.put_item(ItemView(f"p{k}", "a", ("t",), created_ts=k, pop_log=score))
    assert store.trending(GLOBAL, 10) == ["p3", "p1", "p2"]  # ties: member descending, as Redis
    store.put_item(ItemView("p2", "a", ("t",), created_ts=2, pop_log=9.0))
    assert store.trending("t", 2) == ["p2", "p3"]
    assert store.fresh(2) == ["p4", "p3"]
    store.put_item(ItemView("p4", "a", ("t",), created_ts=4, pop_log=2.0, deleted=True))
    assert "p4" not in store.fresh(10)


# ------------------------------------------------------------------------------------ learning
def test_choice_step_moves_weights_toward_the_chosen_item():
    m = OnlineLogit(("a", "b"), prior={"a": 1.0, "b": 1.0}, learning_rate=0.1)
    m.learn_choice({"a": 1.0, "b": -1.0})
    w, b = m.vector()
    assert w[0] > 1.0 > w[1] and b == 0.0


def test_choice_set_membership_mean_and_pickle():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    cs = ChoiceSet.of(["a", "b", "c"], X, np.array([np.log(2.0), 0.0]), 0.0)
    assert np.allclose(cs.mean, [0.5, 0.25])  # softmax weights 2:1:1
    assert "b" in cs and "d" not in cs
    assert np.allclose(cs.step("a"), [0.5, -0.25])  # the row as ranked, minus the mean
    again = pickle.loads(pickle.dumps(cs))
    assert "c" in again and np.allclose(again.mean, cs.mean)
    assert np.allclose(again.step("b"), cs.step("b"))
    with pytest.raises(KeyError):
        cs.step("d")


def test_only_engagements_with_candidates_teach_the_ranker():
    log = Log()
    for k in range(20):
        log.post(f"a{k}", f"p{k}")
    for u in range(5):
        log.add("like", f"v{u}", "p1").add("like", f"v{u}", "p2")
    engine = replay(log.events, feed__sources="trending", feed__candidates_per_source=2)
    now = log.events[-1].ts + MIN
    served = feed_ids(engine, "v9", now)
    assert "p1" in served and "p19" not in served
    n = engine.global_model.n
    engine.learn_one(Event("x1", "like", now + 1, "v9", post_id="p19"))  # not a candidate
    assert engine.global_model.n == n
    engine.learn_one(Event("x2", "like", now + 2, "v9", post_id="p1"))  # a candidate
    assert engine.global_model.n == n + 1
    state = pickle.loads(pickle.dumps(engine.users["v9"]))
    assert "p1" in state.seen and state.history.newest(1)[0][0] == "p1"


@pytest.mark.parametrize("key,value", [("features__impression_weight", 1.5),
                                       ("features__knn_recency", -0.1),
                                       ("features__cooccurrence_decay", 2.0),
                                       ("feed__impression_negative_weight", -1.0)])
def test_new_settings_are_bounded(key, value):
    with pytest.raises(config.ConfigError):
        settings(**{key: value})


# ------------------------------------------------------------------ planted preferences, in-process
def test_engine_feeds_rank_planted_topics_far_above_chance():
    """The streaming planted-preference test (tests/integration/test_pipeline.py) on the in-process
    engine, with a margin: chance is 0.50; the default ranking measured 0.296 here, and an MMR that
    min-max scaled its relevance (one far-ahead candidate flattening every other gap below the topic
    penalty) measured 0.445 and failed the streaming test."""
    from schemas.codec import validate
    from scripts.generate import GeneratorConfig, generate
    from tests.integration.test_pipeline import planted_rank

    events, truth = generate(GeneratorConfig(users=200, days=3, seed=11))
    engine = replay(validate(e) for e in events)
    ranks = []
    for user, state in engine.users.items():
        items = [{"post_id": i.post_id} for i in engine.feed(user, state.last_ts).items]
        rank = planted_rank({"items": items}, set(truth.user_topics.get(user, ())),
                            truth.post_topics)
        if rank is not None:
            ranks.append(rank)
    assert len(ranks) >= 150
    assert sum(ranks) / len(ranks) < 0.38


class _NoViews:
    """A feature reader that knows no item: `Neighbourhood.best` then ranks by raw knn."""

    def items(self, ids):
        return {}


class _Views:
    """A feature reader that knows each post's likes and impressions (its item-kNN mass)."""

    def __init__(self, touches: dict[str, tuple[float, int]]):
        from operators.item_stats import ItemView
        self.views = {p: ItemView(p, "a", likes=lk, impressions=im) for p, (lk, im) in touches.items()}

    def items(self, ids):
        return {i: self.views[i] for i in ids if i in self.views}


def _neighbourhood(rows: list[tuple[str, dict[str, float]]], weights: list[float], store=None):
    from operators.feed.neighbourhood import Neighbourhood
    knn = Neighbourhood.__new__(Neighbourhood)
    knn.imp_w, knn.store, knn._all = 1.0, store or _NoViews(), None
    knn.rows, knn.weights = rows, weights
    return knn


@given(st.lists(st.dictionaries(st.sampled_from([f"p{i}" for i in range(12)]),
                                st.sampled_from([0.5, 1.0, 2.0]), min_size=1, max_size=8),
                min_size=1, max_size=4),
       st.integers(1, 12), st.randoms(use_true_random=False))
def test_knn_candidates_do_not_depend_on_the_order_of_a_neighbour_row(rows, n, rnd):
    """Ties at the cut and in the order go by id: the workers read rows from Redis sorted by
    id, the in-process engine in insertion order, and both must propose the same posts."""
    weights = [1.0, 0.5, 0.25, 0.125][:len(rows)]
    shuffled = []
    for row in rows:
        items = list(row.items())
        rnd.shuffle(items)
        shuffled.append(dict(items))
    got = _neighbourhood([(f"h{k}", r) for k, r in enumerate(rows)], weights).best(n, ())
    again = _neighbourhood([(f"h{k}", r) for k, r in enumerate(shuffled)], weights).best(n, ())
    raw: dict[str, float] = {}
    for c, row in zip(weights, rows, strict=True):  # the straightforward knn, row by row
        for post, co in sorted(row.items()):
            raw[post] = raw.get(post, 0.0) + c * co
    assert got == again == sorted(raw, key=lambda p: (-raw[p], p))[:n]


_POSTS = [f"p{i}" for i in range(40)]


@given(st.lists(st.dictionaries(st.sampled_from(_POSTS), st.sampled_from([0.5, 1.0, 2.0, 3.0]),
                                min_size=1, max_size=20), min_size=1, max_size=5),
       st.dictionaries(st.sampled_from(_POSTS), st.tuples(st.sampled_from([0.0, 1.0, 3.0, 8.0]),
                                                           st.sampled_from([0, 2, 9, 30]))),
       st.sets(st.sampled_from(_POSTS)), st.integers(1, 15))
def test_knn_candidates_read_only_what_can_win_and_choose_as_the_full_ranking(rows, touches,
                                                                               exclude, n):
    """`best` reads the items of the posts whose raw knn could still make the cut (knn ≤ raw, a
    mass being at least 1) and chooses exactly what ranking every reached post would. (Session 25
    asserted a bound by the final n-th best knn, which `best` does not promise: it cuts once, at
    the n-th best of the first 2n; hypothesis found a history where that read 3 posts too many.)"""
    import math
    weights = [1.0, 0.85, 0.7, 0.6, 0.5][:len(rows)]
    store = _Views(touches)
    asked: list[str] = []
    items = store.items
    store.items = lambda ids: asked.extend(ids) or items(ids)
    got = _neighbourhood([(f"h{k}", r) for k, r in enumerate(rows)], weights, store).best(
        n, exclude)
    raw: dict[str, float] = {}
    for c, row in zip(weights, rows, strict=True):
        for post, co in row.items():
            raw[post] = raw.get(post, 0.0) + c * co
    knn = {p: v / math.sqrt(max(1.0, touches[p][0] + touches[p][1]) if p in touches else 1.0)
           for p, v in raw.items() if p not in exclude}
    assert got == sorted(knn, key=lambda p: (-knn[p], p))[:n]
    if len(knn) > 2 * n:
        # beyond the 2n highest raw values, only posts whose raw value reaches the n-th best knn
        # among those 2n are read. Ties at the 2n-th raw value may put any of the tied posts in
        # the 2n, so the bound is the n-th best knn among the posts strictly above it.
        r2n = sorted((raw[p] for p in knn), reverse=True)[2 * n - 1]
        above = sorted((knn[p] for p in knn if raw[p] > r2n), reverse=True)
        floor = above[n - 1] if len(above) >= n else -math.inf
        assert sum(raw[p] < floor for p in set(asked)) <= 2 * n, "read what could not make the cut"
