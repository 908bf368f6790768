"""A follow and the followee's posts reach the followers step by different paths (a post through
the items step, a follow directly), so either can be processed first whatever their event times:
the followers delivered to are those of event-time order (operators.graph, docs/recovery.md "Late
follows"), in the streaming step and in the in-process Engine."""

from __future__ import annotations

import math
import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

import config
from flows.adapters import FollowersLogic
from operators.engine import Engine
from operators.graph import Followers
from schemas import Event

T = 1_767_225_600_000
KEEP = 50


def _logic(keep: int = KEEP):
    return FollowersLogic.builder(10, keep)(None)


def _follow(follower: str, ts: int, kind: str = "follow") -> tuple:
    return ("edge", kind, follower, ts, "a")


def _post(post: str, ts: int) -> tuple:
    return ("post", post, ts, "a")


def _pools(batches: list[list[tuple]], logic=None) -> tuple[set, list]:
    """The (follower, post) pairs in the followers' pools after the step applied `batches` (a
    delivery adds, a taken-back one removes), and every delivery record in order."""
    logic = logic or _logic()
    pools, records = set(), []
    for batch in filter(None, batches):
        for record in _pool_updates(logic.on_batch(batch)[0]):
            records.append(record)
            (pools.add if record[0] == "deliver" else pools.discard)((record[1], record[2]))
    return pools, records


def _pool_updates(out: list[tuple]) -> list[tuple]:
    return [r for r in out if r[0] in ("deliver", "undeliver")]


def test_a_follow_processed_after_the_post_delivers_it():
    pools, records = _pools([[_post("p1", T + 5)], [_follow("u2", T)]])
    assert records == [("deliver", "u2", "p1", T + 5)]
    # a follow after the post (in event time) does not get it
    assert _pools([[_post("p1", T + 5)], [_follow("u2", T + 9)]])[1] == []


def test_a_follow_processed_before_the_post_delivers_it_once():
    pools, records = _pools([[_follow("u2", T)], [_post("p1", T + 5)], [_follow("u2", T + 2)]])
    assert records == [("deliver", "u2", "p1", T + 5)], "a repeated follow delivers nothing again"
    # a follow processed before a post that precedes it in event time does not get it
    assert _pools([[_follow("u2", T + 9)], [_post("p1", T + 5)]])[1] == []


def test_an_unfollow_in_between_takes_the_late_delivery_back():
    # follow T, unfollow T+3, post T+5: not the follower's, whichever is processed first
    for batches in ([[_post("p1", T + 5)], [_follow("u2", T)], [_follow("u2", T + 3, "unfollow")]],
                    [[_post("p1", T + 5)], [_follow("u2", T), _follow("u2", T + 3, "unfollow")]],
                    [[_follow("u2", T)], [_post("p1", T + 5)], [_follow("u2", T + 3, "unfollow")]],
                    [[_follow("u2", T)], [_follow("u2", T + 3, "unfollow")], [_post("p1", T + 5)]]):
        assert _pools(batches)[0] == set(), batches
    # a follow and its unfollow in one batch: nothing delivered (no notification candidate)
    batches = [[_post("p1", T + 5)], [_follow("u2", T), _follow("u2", T + 3, "unfollow")]]
    assert _pools(batches)[1] == []
    # and a post before the unfollow, processed after it, is the follower's
    assert _pools([[_follow("u2", T)], [_follow("u2", T + 3, "unfollow")],
                   [_post("p1", T + 1)]])[0] == {("u2", "p1")}


def test_an_erased_authors_posts_are_not_delivered_late_nor_kept_parked():
    logic = _logic()
    _pools([[_post("p1", T + 5)], [("erase", T + 6, "a")]], logic)
    assert _pools([[_follow("u2", T)]], logic)[1] == [], "a deleted author's post"
    assert _pools([[("created", T + 8, "a")], [_follow("u3", T)]], logic)[1] == [], (
        "a new account under the id does not inherit the old one's posts")
    assert pickle.loads(pickle.dumps(logic.state)).posts == {}
    # an ended follow names the follower: reported to the erasure step, whose `forget_follower`
    # (operators.erasure) clears it at their deletion; nothing names them after
    logic = _logic()
    out = logic.on_batch([_follow("u2", T), _follow("u2", T + 1, "unfollow"), _post("p1", T + 5)])
    assert out[0] == [("ended_follows", "a", ("u2",))] and logic.state.ended == [("u2", T, T + 1)]
    logic.on_batch([("edge", "user_deleted", "u2", math.inf, "a")])
    assert "u2" not in repr(pickle.dumps(logic.state))
    engine = Engine(config.load(env={}))  # in-process: at the deletion itself
    for i, event in enumerate([_event(0, "follow", T, "u2", target_id="a"),
                               _event(1, "unfollow", T + 1, "u2", target_id="a"),
                               _event(2, "post_created", T + 5, "a", post_id="p1", topics=("t",)),
                               _event(3, "user_deleted", T + 6, "u2")]):
        engine.learn_one(event)
        assert bool(engine.followers["a"].ended) == (i in (1, 2))


def test_the_kept_posts_are_bounded_and_old_pickles_load():
    logic = _logic(keep=3)
    _pools([[_post(f"p{i}", T + i) for i in range(5)]], logic)
    assert logic.state.posts == {"p2": T + 2, "p3": T + 3, "p4": T + 4}
    # (follower, since, until): at most `keep`, none that ended before the oldest kept post
    ends = [_follow(f"u{i}", T + 1 + 2 * i, "unfollow") for i in range(5)]
    _pools([[_follow(f"u{i}", T - 10 + i) for i in range(5)], ends[:3]], logic)
    assert [e[0] for e in logic.state.ended] == ["u1", "u2"]  # (u0's ended before p2)
    _pools([ends[3:]], logic)
    assert [e[0] for e in logic.state.ended] == ["u2", "u3", "u4"]
    for old in (["u2"], (None, ["u2"]), ("a", ["u2"], False)):  # the earlier formats
        state = Followers.__new__(Followers)
        state.__setstate__(old)
        assert state.ids == {"u2": -math.inf} and state.posts == {} and state.ended == []
        assert state.learn_post("p1", T, 10, KEEP) == [("deliver", "u2", "p1", T)]
    # pickled with its key (before the step remembered it) or without: the same state
    state = Followers()
    state.ids, state.posts, state.ended = {"u2": T - 3}, {"p0": T - 1}, [("u3", T - 9, T - 2)]
    for key in ("a", None):
        old = (key, list(state.ids.items()), False, list(state.posts.items()), state.ended)
        back = Followers.__new__(Followers)
        back.__setstate__(old)
        assert (back.ids, back.posts, back.ended, back.deleted) == (
            state.ids, state.posts, state.ended, False)
    back = pickle.loads(pickle.dumps(state))
    assert (back.ids, back.posts, back.ended) == (state.ids, state.posts, state.ended)
    assert not hasattr(back, "user_id"), "the key is not pickled"
    tombstone = pickle.loads(pickle.dumps(Followers(deleted=True)))
    assert tombstone.deleted and tombstone.ids == {} and tombstone.posts == {}


@st.composite
def interleavings(draw):
    """One author's posts and some followers' follows and unfollows at distinct event times; as
    the step may receive them: each follower's edges in their order (one user's events), the
    posts in theirs, interleaved at random, cut into batches at random."""
    n_followers = draw(st.integers(1, 3))
    n_edges = [draw(st.integers(0, 4)) for _ in range(n_followers)]
    n_posts = draw(st.integers(0, 5))
    times = draw(st.permutations(range(sum(n_edges) + n_posts)))
    streams, i = [], 0
    for f, n in enumerate(n_edges):
        kinds = draw(st.lists(st.sampled_from(["follow", "unfollow"]), min_size=n, max_size=n))
        stamps = sorted(times[i:i + n])
        i += n
        streams.append([_follow(f"u{f}", T + t, k) for t, k in zip(stamps, kinds, strict=True)])
    streams.append([_post(f"p{t}", T + t) for t in sorted(times[i:])])
    merged, heads = [], [0] * len(streams)
    while any(h < len(s) for h, s in zip(heads, streams, strict=True)):
        s = draw(st.sampled_from([j for j, s in enumerate(streams) if heads[j] < len(s)]))
        merged.append(streams[s][heads[s]])
        heads[s] += 1
    cuts = sorted(draw(st.lists(st.integers(0, len(merged)), max_size=6)))
    batches = [merged[a:b] for a, b in zip([0, *cuts], [*cuts, len(merged)], strict=True)]
    return [b for b in batches if b], merged  # (a step gets no empty batch)


def _event_time_order(values: list[tuple]) -> set:
    """The spec: a post is a follower's when their latest edge before it is a follow."""
    out = set()
    for post in (v for v in values if v[0] == "post"):
        latest: dict[str, str] = {}
        for v in sorted((v for v in values if v[0] == "edge" and v[3] < post[2]),
                        key=lambda v: v[3]):
            latest[v[2]] = v[1]
        out |= {(f, post[1]) for f, kind in latest.items() if kind == "follow"}
    return out


@given(interleavings(), st.booleans())
@settings(max_examples=400, deadline=None)
def test_deliveries_do_not_depend_on_the_interleaving(case, restart):
    batches, values = case
    logic, pools, delivered = _logic(), set(), []
    for i, batch in enumerate(batches):
        if restart and i == len(batches) // 2:  # parked (or snapshotted) and restored between
            logic = FollowersLogic.builder(10, KEEP)(pickle.dumps(logic.state))
        for kind, follower, post, _ in _pool_updates(logic.on_batch(batch)[0]):
            assert (kind == "deliver") == ((follower, post) not in pools), "delivered twice"
            (pools.add if kind == "deliver" else pools.discard)((follower, post))
            delivered.append((follower, post))
    assert pools == _event_time_order(values)
    in_order = _pools([sorted(values, key=lambda v: v[-2])])[1]
    assert not any(r[0] == "undeliver" for r in in_order), "event-time order takes nothing back"


def _event(i: int, kind: str, ts: int, user: str, **kw) -> Event:
    return Event(f"e{i}", kind, ts, user, **kw)


def test_the_engine_delivers_a_follow_logged_after_the_post_through_the_same_code():
    # `persona replay` applies events in log order: a log (a merged backlog) with the follow after
    # the post it precedes delivers it, and one with an unfollow after a post it precedes takes
    # the post back, as the streaming step
    engine = Engine(config.load(env={}))
    for event in [
            _event(0, "post_created", T + 5, "a", post_id="p1", topics=("t",)),
            _event(1, "follow", T, "u2", target_id="a"),
            _event(2, "follow", T + 1, "u3", target_id="a"),
            _event(3, "post_created", T + 9, "a", post_id="p2", topics=("t",)),
            _event(4, "unfollow", T + 6, "u3", target_id="a")]:
        engine.learn_one(event)
    assert set(engine.user("u2").pool) == {"p1", "p2"}
    assert set(engine.user("u3").pool) == {"p1"}


@given(interleavings())
@settings(max_examples=200, deadline=None)
def test_the_new_post_notifications_not_yet_sent_do_not_depend_on_the_interleaving(case):
    # every post in the followers' quiet hours (delayed to 08:00 or later, after every event
    # here): the new-post notifications still to be sent are those of event-time order, a
    # taken-back delivery's withdrawn and a delivery made again decided afresh
    from operators.notifications.candidates import delivery_message
    from operators.notifications.driver import handle
    from operators.notifications.policy import Policy
    from operators.notifications.state import RecipientState

    batches, values = case
    logic, recipients = _logic(), {}
    policy = Policy(min_p_open=0.0, min_author_engagements=0, daily_budget=1000)
    for batch in batches:
        for delivery in _pool_updates(logic.on_batch(batch)[0]):
            key, message = delivery_message("a", delivery)
            state = recipients.setdefault(key, RecipientState(key, policy))
            for record in handle(state, message, None)[0]:
                assert record["reason"] in ("quiet_hours", "withdrawn"), record
    scheduled = {(r["user_id"], r["post_id"]) for s in recipients.values()
                 for r in s.records.values() if r["decision"] == "delay"}
    assert scheduled == _event_time_order(values)


def test_an_unfollow_processed_after_the_post_withdraws_its_notification_in_flow_and_engine():
    # r engaged with a's posts (new-post notifications from a) and followed a from 03:00 to
    # 22:00; a posts at 23:00 (r's quiet hours: delayed to the morning); the unfollow is processed
    # after the post: the streaming flow and the in-process Engine both withdraw it
    from datetime import timedelta

    from bytewax.testing import TestingSink, TestingSource, run_main

    from flows.feeds import build_flow
    from schemas import encode_event
    from tests.unit.test_flow import MemoryWrites

    hour = 3_600_000
    settings = config.load(env={"PERSONA_NOTIFICATIONS__MIN_P_OPEN": "0"})
    log = [_event(0, "user_created", T, "a"), _event(1, "user_created", T, "r", timezone="UTC")]
    log += [_event(2 + i, "post_created", T + hour + i, "a", post_id=f"p{i}", topics=("t",))
            for i in range(3)]
    log += [_event(5 + i, "like", T + 2 * hour + i, "r", post_id=f"p{i}") for i in range(3)]
    log += [_event(8, "follow", T + 3 * hour, "r", target_id="a"),
            _event(9, "post_created", T + 23 * hour, "a", post_id="p9", topics=("t",)),
            _event(10, "unfollow", T + 22 * hour, "r", target_id="a")]
    writes, decisions = MemoryWrites(), []
    run_main(build_flow(settings, source=TestingSource(
        [encode_event(e) for e in log[:-1]] + [TestingSource.PAUSE(timedelta(seconds=0.5)),
                                               encode_event(log[-1])]),
        dead_letters=TestingSink([]), writes=writes, store_of=lambda: writes.store,
        notifications=TestingSink(decisions)))
    assert [(d["decision"], d["reason"]) for d in decisions
            if d["notification_id"] == "new_post.r.p9"] == [("delay", "quiet_hours"),
                                                            ("suppress", "withdrawn")]
    engine = Engine(settings, notifications=True)
    for event in log:
        engine.learn_one(event)
    record = engine.notifications.states["r"].records["new_post.r.p9"]
    assert (record["decision"], record["reason"]) == ("suppress", "withdrawn")
