"""What a state learns does not depend on the order its inputs arrive in (docs/recovery.md "Item
neighbours"): the users step's event order (operators.reorder.InOrder) and item-kNN sums
(operators.item_similarity). Property tests: any interleaving and batching of the same inputs."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.bounded import cap_top
from operators.item_similarity import ItemSimilarity
from operators.reorder import InOrder


def _events(n: int) -> list:
    return [SimpleNamespace(event_id=f"e{i}", ts=0) for i in range(n)]


@st.composite
def deliveries(draw):
    """A user's values as the users step may receive them: the sequence (("event", …) for events
    not about a post, ("await", …) for the others) in order, and each post event's annotated copy
    (or its cancel) anywhere, before or after its placeholder; cut into batches at random."""
    n = draw(st.integers(1, 25))
    events = _events(n)
    about_post = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    cancelled = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    sequence = [("await", e) if post else ("event", e, None)
                for e, post in zip(events, about_post, strict=True)]
    copies = [("cancel", e) if cancel else ("annotated", e, f"view-{e.event_id}")
              for e, post, cancel in zip(events, about_post, cancelled, strict=True) if post]
    # merge the copies into the sequence at random positions, keeping the sequence's order
    merged = list(sequence)
    for copy in copies:
        merged.insert(draw(st.integers(0, len(merged))), copy)
    cuts = sorted(draw(st.lists(st.integers(0, len(merged)), max_size=8)))
    batches = [merged[a:b] for a, b in zip([0, *cuts], [*cuts, len(merged)], strict=True)]
    expected = [e.event_id for e, post, cancel in zip(events, about_post, cancelled, strict=True)
                if not (post and cancel)]
    return batches, expected, about_post


@given(deliveries(), st.booleans())
@settings(max_examples=300, deadline=None)
def test_in_order_applies_the_users_sequence_however_copies_and_batches_arrive(case, restart):
    batches, expected, about_post = case
    buffer, applied = InOrder(), []
    for i, batch in enumerate(batches):
        if restart and i == len(batches) // 2:  # a snapshot and a restore in between
            buffer = pickle.loads(pickle.dumps(buffer))
        applied += buffer.admit(batch)
    assert [v[1].event_id for v in applied] == expected
    # a post's event is applied with its annotation, never as the bare placeholder
    views = {v[1].event_id: v[2] for v in applied}
    assert all(views[f"e{i}"] == f"view-e{i}" for i, post in enumerate(about_post)
               if post and f"e{i}" in views)
    assert not buffer


def test_in_order_gives_up_a_placeholder_past_its_capacity():
    a, *rest = _events(5)
    buffer = InOrder(capacity=3)
    applied = buffer.admit([("await", a)] + [("event", e, None) for e in rest])
    # in its place, unannotated; its copy, when it comes, is not applied twice
    assert [(v[1].event_id, v[2]) for v in applied] == [
        ("e0", None), ("e1", None), ("e2", None), ("e3", None), ("e4", None)]
    assert buffer.admit([("annotated", a, "view")]) == []
    assert not buffer


def test_in_order_gives_up_a_placeholder_its_user_has_moved_past_in_event_time():
    a, b, c = (SimpleNamespace(event_id=i, ts=ts) for i, ts in (("a", 0), ("b", 20), ("c", 31)))
    buffer = InOrder()
    assert buffer.admit([("await", a), ("event", b, None), ("event", c, None)], max_lag_ms=30) == []
    assert buffer.blocked, "a's copy may just be in transit through the items step: wait"
    buffer = InOrder()
    assert buffer.admit([("await", a), ("held", a), ("event", b, None)], max_lag_ms=30) == []
    assert buffer.blocked  # held for its post, but b is only 20 ms past a: still waits
    applied = buffer.admit([("event", c, None)], max_lag_ms=30)
    assert [(v[1].event_id, v[2]) for v in applied] == [("a", None), ("b", None), ("c", None)]
    assert buffer.admit([("annotated", a, "view")], max_lag_ms=30) == []
    assert not buffer.blocked and not buffer


def test_in_order_takes_a_held_notice_that_comes_before_its_placeholder():
    a, b = (SimpleNamespace(event_id=i, ts=ts) for i, ts in (("a", 0), ("b", 31)))
    buffer = InOrder()
    assert buffer.admit([("held", a)], max_lag_ms=30) == []
    assert "a" in buffer.held_unqueued
    applied = buffer.admit([("await", a), ("event", b, None)], max_lag_ms=30)
    assert [(v[1].event_id, v[2]) for v in applied] == [("a", None), ("b", None)]
    assert not buffer.held and not buffer.held_unqueued, "nothing left behind"


def test_in_order_ignores_a_held_notice_that_comes_after_its_copy():
    a, b = (SimpleNamespace(event_id=i, ts=ts) for i, ts in (("a", 0), ("b", 31)))
    buffer = InOrder()  # the copy overtook the notice: it fills the placeholder, annotated
    buffer.admit([("annotated", a, "view"), ("held", a)], max_lag_ms=30)
    applied = buffer.admit([("await", a), ("event", b, None)], max_lag_ms=30)
    assert [(v[1].event_id, v[2]) for v in applied] == [("a", "view"), ("b", None)]
    assert not buffer.held and not buffer.held_unqueued and not buffer


def test_in_order_remembers_held_notices_across_a_restore():
    a, b = (SimpleNamespace(event_id=i, ts=ts) for i, ts in (("a", 0), ("b", 31)))
    c = SimpleNamespace(event_id="c", ts=10)  # an earlier clock than b's: newest_ts is kept too
    buffer = InOrder()
    buffer.admit([("held", b), ("await", a), ("held", a), ("event", b, None)], max_lag_ms=0)
    restored = pickle.loads(pickle.dumps(buffer))
    assert restored.held == {"a"} and restored.newest_ts == 31
    applied = restored.admit([("event", c, None)], max_lag_ms=30)
    assert [(v[1].event_id, v[2]) for v in applied] == [("a", None), ("b", None), ("c", None)]


def test_in_order_restores_a_snapshot_from_before_held_notices():
    (a,) = _events(1)
    old = InOrder()
    old.admit([("await", a)])
    state = old.__getstate__()[:5]
    restored = InOrder.__new__(InOrder)
    restored.__setstate__(state)
    assert restored.blocked and restored.held == set() and "e0" in restored.waiting
    assert [v[1].event_id for v in restored.admit([("annotated", a, "v")])] == ["e0"]


def test_in_order_drops_a_cancel_for_a_placeholder_it_gave_up():
    a, b = (SimpleNamespace(event_id=i, ts=ts) for i, ts in (("a", 0), ("b", 31)))
    buffer = InOrder()
    applied = buffer.admit([("await", a), ("held", a), ("event", b, None)], max_lag_ms=30)
    assert [v[1].event_id for v in applied] == ["a", "b"]
    assert buffer.admit([("cancel", a), ("held", a)], max_lag_ms=30) == []
    assert not buffer and not buffer.held_unqueued


def test_in_order_applies_nothing_twice_when_many_placeholders_are_given_up_at_once():
    # a replay can give hundreds of a user's held events up before any copy comes: every copy
    # must still be recognised (a forgotten one would wait as "early" and be applied again)
    held = [SimpleNamespace(event_id=f"a{i}", ts=0) for i in range(300)]
    buffer = InOrder()
    assert buffer.admit([v for e in held for v in (("await", e), ("held", e))], max_lag_ms=30) == []
    later = SimpleNamespace(event_id="z", ts=10_000)
    applied = buffer.admit([("event", later, None)], max_lag_ms=30)
    assert [v[1].event_id for v in applied] == [e.event_id for e in held] + ["z"]
    assert buffer.admit([("annotated", e, "view") for e in held], max_lag_ms=30) == []
    assert not buffer, "each copy dropped, none left waiting to be applied again"


def test_in_order_remembers_a_bounded_number_of_unqueued_held_notices():
    buffer = InOrder()
    buffer.admit([("held", e) for e in _events(1_000)])
    assert len(buffer.held_unqueued) == 256


@st.composite
def with_held_notices(draw):
    """`deliveries()` with a ("held", event) notice for some post events, anywhere before their
    copy (before their placeholder too), and one after it at times (the two paths race)."""
    batches, expected, about_post = draw(deliveries())
    flat = [v for batch in batches for v in batch]
    for i, post in enumerate(about_post):
        if post and draw(st.booleans()):
            copy = next(j for j, v in enumerate(flat)
                        if v[0] in ("annotated", "cancel") and v[1].event_id == f"e{i}")
            at = draw(st.integers(0, copy + (1 if draw(st.integers(0, 4)) == 0 else 0)))
            flat.insert(at, ("held", flat[copy][1]))
    cuts = sorted(draw(st.lists(st.integers(0, len(flat)), max_size=8)))
    batches = [flat[a:b] for a, b in zip([0, *cuts], [*cuts, len(flat)], strict=True)]
    return batches, expected, about_post


@given(with_held_notices(), st.integers(0, 30), st.booleans())
@settings(max_examples=300, deadline=None)
def test_in_order_keeps_the_users_sequence_when_it_gives_placeholders_up(case, lag, restart):
    """Giving up on event time changes annotations, never the order or the count; and only a
    placeholder the items step said it holds is given up."""
    batches, expected, _ = case
    for batch in batches:  # event i at ts i
        for v in batch:
            v[1].ts = int(v[1].event_id[1:])
    held = {v[1].event_id for batch in batches for v in batch if v[0] == "held"}
    buffer, applied = InOrder(), []
    for i, batch in enumerate(batches):
        if restart and i == len(batches) // 2:  # a snapshot and a restore in between
            buffer = pickle.loads(pickle.dumps(buffer))
        applied += buffer.admit(batch, max_lag_ms=lag)
    got = [v[1].event_id for v in applied]
    # a cancelled post's event given up before its cancel came is applied (unannotated)
    assert [e for e in got if e in expected] == expected
    assert len(got) == len(set(got)), "no event applied twice"
    assert got == sorted(got, key=lambda e: int(e[1:])), "in the user's order"
    assert set(buffer.given_up) <= held, "a copy in transit is waited for"
    assert not buffer and not buffer.held


def test_in_order_applies_early_copies_past_its_capacity():
    events = _events(4)
    buffer = InOrder(capacity=2)
    applied = buffer.admit([("annotated", e, "view") for e in events])
    assert [v[1].event_id for v in applied] == ["e0", "e1"]
    assert len(buffer.early) == 2


def test_deliveries_and_commands_do_not_wait():
    (a,) = _events(1)
    buffer = InOrder()
    assert buffer.admit([("await", a), ("deliver", "u1", "p1", 5)]) == [("deliver", "u1", "p1", 5)]


pairs = st.lists(st.tuples(st.sampled_from("abcdefgh"),
                           st.floats(0.0001, 1.0, allow_nan=False)), max_size=60)


@given(pairs, st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_item_similarity_bytes_do_not_depend_on_pair_order(values, rng):
    shuffled = list(values)
    rng.shuffle(shuffled)
    a, b = ItemSimilarity(capacity=100), ItemSimilarity(capacity=100)
    for other, w in values:
        a.learn_one(other, w)
    for other, w in shuffled:
        b.learn_one(other, w)
    assert pickle.dumps(a.top()) == pickle.dumps(b.top())
    assert list(a.top()) == sorted(a.top())


def test_cap_top_breaks_ties_by_key_not_insertion():
    x, y = {"b": 1.0, "a": 1.0, "c": 2.0}, {"a": 1.0, "c": 2.0, "b": 1.0}
    cap_top(x, 2)
    cap_top(y, 2)
    assert set(x) == set(y) == {"b", "c"}
