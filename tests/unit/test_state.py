"""Small stateful operators: dedup, decay, followers, item stats — plain Python, no services."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from operators.bounded import RecentSet
from operators.decay import Decay
from operators.dedup import Dedup, shard_of
from operators.graph import Followers
from operators.item_stats import ItemStats
from schemas import Event

T = 1_767_225_600_000


@given(st.lists(st.text(min_size=1, max_size=3), max_size=200), st.integers(1, 50))
def test_dedup_admits_each_id_once_within_its_window(ids, capacity):
    d = Dedup(capacity)
    recent: list[str] = []
    for i in ids:
        new = d.is_new(i)
        assert new == (i not in recent)
        if new:
            recent.append(i)
            recent = recent[-capacity:]


@given(st.lists(st.integers(0, 40), max_size=600), st.integers(1, 12))
def test_a_recent_set_is_the_newest_capacity_keys_by_last_add_across_its_compactions(keys, capacity):
    s, model = RecentSet(capacity), {}  # model: a plain dict, re-inserted on every add
    for k in keys:
        assert s.add(str(k)) == (str(k) not in model)
        model.pop(str(k), None)
        model[str(k)] = None
        while len(model) > capacity:
            del model[next(iter(model))]
        assert list(s) == list(model)
    assert list(pickle.loads(pickle.dumps(s))) == list(model)


@given(st.lists(st.integers(0, 30), max_size=200), st.integers(1, 20), st.integers(0, 200))
def test_a_dedup_window_restored_from_its_snapshot_goes_on_as_if_never_stopped(ids, capacity, at):
    kept, restored = Dedup(capacity), Dedup(capacity)
    for i, x in enumerate(ids):
        if i == at:
            restored = pickle.loads(pickle.dumps(restored))
        assert restored.is_new(str(x)) == kept.is_new(str(x))


def test_a_dedup_window_snapshotted_as_its_ids_still_loads():
    old = RecentSet(3)  # what a Dedup pickled before it kept hashes
    for x in "abcd":
        old.add(x)
    d = Dedup.__new__(Dedup)
    d.__setstate__(old)
    assert [d.is_new(x) for x in "bcda"] == [False, False, False, True]


def test_dedup_pickles_and_shards_are_stable():
    d = Dedup(3)
    d.is_new("a")
    assert not pickle.loads(pickle.dumps(d)).is_new("a")
    assert shard_of("event-1", 64) == shard_of("event-1", 64) == "52"


def test_decay_halves_per_half_life_and_orders_by_log_sum():
    d = Decay(half_life_h=2.0)
    a = d.add(d.add(None, T), T)  # two events now
    b = d.add(None, T + 2 * 3_600_000)  # one event two hours later
    assert abs(d.value(a, T + 2 * 3_600_000) - 1.0) < 1e-9
    assert abs(a - b) < 1e-9  # equal decayed mass => equal sort key


def test_followers_fan_out_and_celebrity_split():
    f = Followers()
    for u in ["u1", "u2", "u3"]:
        f.learn_edge("follow", u, T, 10, 5)
    f.learn_edge("unfollow", "u2", T, 10, 5)
    assert [d[1] for d in f.learn_post("p1", T + 1, 10, 5)] == ["u1", "u3"]
    back = pickle.loads(pickle.dumps(f))
    assert [d[1] for d in back.learn_post("p2", T + 2, 10, 5)] == ["u1", "u3"]
    assert back.posts == {"p1": T + 1, "p2": T + 2}

    # past max_fanout the user is pulled (via trending and topics) for good: the list keeps no
    # one, so a celebrity's list does not grow with their audience
    for u in ["u4", "u5"]:
        assert back.learn_edge("follow", u, T + 3, 3, 5) == []
    assert back.pulled and back.ids == {} and back.posts == {} and back.ended == []
    back.learn_edge("unfollow", "u1", T + 4, 3, 5)  # below the bound again: still pulled
    assert back.learn_post("p3", T + 5, 10, 5) == [] and back.ids == {}
    assert pickle.loads(pickle.dumps(back)).pulled
    lowered = pickle.loads(pickle.dumps(f))  # the bound lowered under an existing list
    assert lowered.learn_post("p4", T + 6, 1, 5) == [] and lowered.pulled


def test_item_stats_return_the_view_before_the_event():
    s = ItemStats("p1")
    d = Decay(24)
    s.learn_one(Event("e1", "post_created", T, "a", post_id="p1", topics=("t",)), d)
    before = s.learn_one(Event("e2", "like", T + 1, "u", post_id="p1"), d)
    assert before.likes == 0 and s.view.likes == 1 and s.view.author_id == "a"
    s.learn_one(Event("e3", "post_deleted", T + 2, "someone-else", post_id="p1"), d)
    assert not s.view.deleted  # only the author deletes
    s.learn_one(Event("e4", "post_deleted", T + 3, "a", post_id="p1"), d)
    assert s.view.deleted
    assert pickle.loads(pickle.dumps(s)).view == s.view
