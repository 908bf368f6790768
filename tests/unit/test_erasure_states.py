"""Erasure without services: the states forget a deleted user, and the flow's command loop
(list-in/list-out: the commands of a first run are fed back as messages of the command topic)."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given
from hypothesis import strategies as st

import config
from flows.adapters import ErasureLogic
from flows.feeds import build_flow
from operators.context import Context
from operators.erasure import mention_messages, ungrouped
from operators.notifications.candidates import Candidate
from operators.notifications.policy import Policy
from operators.notifications.state import RecipientState
from operators.suggestions.state import SocialState
from operators.user_state import UserState
from schemas import Event, encode_event
from schemas.erasure import Command, encode_command
from tests.unit.test_flow import MemoryWrites, _Apply, events

T = 1_767_225_600_000


def test_user_state_forgets_the_user_and_their_posts():
    settings = config.load(env={})
    ctx = Context.from_settings(settings)
    s = UserState("u1", ctx)
    s.following |= {"u3", "u4"}
    s.author_aff = {"u3": 1.0, "u4": 2.0}
    s.deliver("p2", T, 10)
    s.deliver("p9", T, 10)
    s.recent_likes.add("p2")
    s.history.add("p2", 1.0)
    s.served = ["p2", "p9"]
    s.forget("u3", ("p2",))
    assert s.following == {"u4"} and s.author_aff == {"u4": 2.0}
    assert list(s.pool) == ["p9"] and "p2" not in s.recent_likes and "p2" not in s.history
    assert s.served == ["p9"]


def test_social_state_forgets_edges_and_peers():
    s = SocialState("u1")
    s.following, s.followers, s.authors = {"u3": 1, "u4": 2}, {"u3": 1}, {"u3": 2.0}
    s.contacts = {"u3": 1.0}
    s.blocked = {"u3"}
    s.learn(("received", "c1", "u3", T, "u1"))
    s.forget("u3")
    assert "u3" not in orjson.dumps(s.graph_record()).decode()
    assert (s.following, s.followers, s.authors, s.contacts, s.blocked) == ({"u4": 2}, {}, {}, {},
                                                                            set())
    assert s.conversations["c1"].peers == () and s.graph_changed
    s.publish()
    s.forget("u9")  # told because its suggestions named u9 (or a replay tells everyone)
    assert s.publish() == [], "nothing it publishes named or counted them: nothing to rewrite"


def test_recipient_drops_records_of_the_user_and_keeps_other_actors():
    settings = config.load(env={})
    r = RecipientState("u1", Policy.from_settings(settings))
    like = lambda actor, ts: Candidate(f"like.u1.p1.{actor}", "u1", "like", actor, ts, "like.p1",  # noqa: E731
                                       post_id="p1")
    r.offer(like("u7", T), None)
    r.offer(like("u3", T + 1000), None)  # aggregated into u7's notification
    r.offer(Candidate("follow.u1.u3", "u1", "follow", "u3", T + 2000, "follow"), None)
    assert "u3" in orjson.dumps(r.inbox()).decode()
    assert r.forget("u3", ("p5",))
    inbox = r.inbox()
    assert "u3" not in orjson.dumps(inbox).decode()
    head = next(i for i in inbox if i["notification_id"] == "like.u1.p1.u7")
    assert head["actors"] == ["u7"] and head["count"] == 1 and head["text"] == "u7 liked your post"


def _run(payloads, erasures: list, env: dict | None = None) -> MemoryWrites:
    writes = MemoryWrites()
    profiles: dict[str, bytes] = {}

    class Apply(_Apply):  # the flow's erasure records too
        def write_batch(self, items):
            super().write_batch(items)
            for w in items:
                if w[0] == "forget_item":
                    self.store.delete_item(w[1])
                elif w[0] == "profile":
                    profiles[w[1]] = w[2]

    writes.build = lambda *a: Apply(writes.store, writes.feeds)
    writes.profiles = profiles
    run_main(build_flow(config.load(env=env or {}), source=TestingSource(payloads),
                        dead_letters=TestingSink([]), writes=writes, store_of=lambda: writes.store,
                        notifications=TestingSink([]), erasures=TestingSink(erasures)))
    return writes


def test_user_deleted_sends_commands_that_the_flow_applies():
    settings = config.load(env={})
    payloads = [encode_event(e) for e in events()] + [
        encode_event(Event("e9", "like", T + 8, "u1", post_id="p2")),
        encode_event(Event("e10", "user_deleted", T + 9, "u3"))]
    commands: list[Command] = []
    first = _run(payloads, commands)
    assert "u3" in first.profiles["u1"].decode()  # u1 liked u3's post
    assert {(c.kind, c.key) for c in commands} >= {("erase_post", "p2"), ("forget", "u1")}
    assert all(c.posts == ("p2",) for c in commands if c.kind == "forget")

    # the same input, then the commands as the flow reads them back from its command topic
    topic = settings.kafka.erasures
    looped = [SimpleNamespace(topic=topic, value=encode_command(c), partition=0, offset=i)
              for i, c in enumerate(commands)]
    again: list[Command] = []
    second = _run(payloads + looped + [SimpleNamespace(
        topic=topic, value=b"{nope", partition=0, offset=len(looped))], again)
    assert "p2" not in second.store.items(["p2"])
    assert "u3" not in second.profiles["u1"].decode()
    feed = orjson.dumps(second.feeds["u1"]).decode()
    assert "u3" not in feed and "p2" not in feed


def test_recipient_drops_records_aggregated_into_an_evicted_head_of_the_user():
    settings = config.load(env={})
    r = RecipientState("u1", Policy.from_settings(settings))
    r.offer(Candidate("follow.u1.u3", "u1", "follow", "u3", T, "follow"), None)
    r.offer(Candidate("follow.u1.u9", "u1", "follow", "u9", T + 1000, "follow"), None)
    assert any(i.get("into") == "follow.u1.u3" for i in r.inbox())
    del r.records["follow.u1.u3"]  # the head left the newest `history` records
    r.forget("u3", ())
    assert "u3" not in orjson.dumps(r.inbox()).decode()
    assert "follow" not in r.groups  # a later follow starts a new notification


def test_a_replay_erases_a_deleted_user_from_everything_it_writes(tmp_path):
    """`persona replay` (the in-process Engine) applies the erasure the flow fans out: no record a
    backfill writes names a deleted user or their posts, though others followed and engaged —
    nor do the social records (graph records, group members, likers, follower counts, others'
    suggestions), notification inboxes, user features (none of the deleted user's; others' name
    neither them nor their posts), the search blend or the experiment arm totals, also after
    mentions made after the deletion (a follow of them, their follow, a message to them: the
    flow's erasure index answers those with another `forget`)."""
    from operators.backfill import final_writes
    from operators.engine import Engine
    from operators.suggestions.writes import social_ops
    from schemas.codec import decode_event
    from schemas.keyspace import Keyspace
    from scripts.generate import GeneratorConfig, generate
    from tests.unit.test_experiments import EXPERIMENT

    log, _ = generate(GeneratorConfig(users=60, days=2, seed=7))  # the deleted have 12 posts
    decoded = [decode_event(orjson.dumps(e))[0] for e in log]
    experiment = tmp_path / "experiment.toml"
    experiment.write_text(EXPERIMENT.format(enabled="true"))
    engine = Engine(config.load(experiment, env={}), social=True, notifications=True,
                    search=True, experiments=True)
    deleted = {e.user_id for e in decoded if e.type == "user_deleted"}
    posts = {e.post_id for e in decoded if e.type == "post_created" and e.user_id in deleted}
    gone = sorted(deleted)[0]
    end = decoded[-1].ts
    decoded += [Event("late1", "follow", end + 1, "u0001", target_id=gone),
                Event("late2", "follow", end + 2, gone, target_id="u0002"),
                Event("late3", "message_sent", end + 3, "u0003", conversation_id="c-late",
                      recipients=(gone, "u0004"))]
    mentioned_before, liked_before = set(), set()
    for e in decoded:
        if e.type == "user_deleted":  # who followed, served or liked them just before
            mentioned_before |= {u for u, s in engine.users.items()
                                 if e.user_id in s.following or e.user_id in s.author_aff}
            liked_before |= {u for u, s in engine.social.users.items() if e.user_id in s.authors}
        engine.learn_one(e)
    assert deleted and posts and mentioned_before and liked_before, "the log must exercise it"
    records = list(final_writes(engine))
    assert {"graph", "group_member", "liker", "popular_user", "suggestions", "notifs",
            "user_features", "search_blend", "arm_counts"} <= {r[0] for r in records}
    ks = Keyspace("p", "1")
    for record in records:
        if record[0] == "forget_social":  # names them to delete their keys; stores only the tag
            assert record[1] in deleted and not any(
                op[0] in ("set", "zadd") or (op[0] == "sadd" and record[1] in op[2])
                for op in social_ops(ks, record))
            continue
        if record[0] == "forget_notifs":  # deletes their inbox
            continue
        text = repr(record)
        assert not any(u in text for u in deleted | posts), record[:2]
    assert sorted(r[1] for r in records if r[0] == "forget_social") == sorted(deleted)
    assert sorted(r[1] for r in records if r[0] == "forget_notifs") == sorted(deleted)
    # nor does any followers list (the flow's `forget_follower`; `late2` too)
    assert not deleted & {u for f in engine.followers.values() for u in f.ids}
    inboxes = [orjson.loads(r[2]) for r in records if r[0] == "notifs"]
    assert sum(len(i["items"]) for i in inboxes) > 50


def test_the_index_sends_forget_follower_to_lists_that_name_the_user_and_forget_to_states():
    from operators.erasure import MentionIndex

    index = MentionIndex("u2")
    index.learn_post("p1")
    index.learn_mention("a")  # a's states mention u2
    index.learn_mention("b", "forget_follower")  # b's followers list: u2's ended follow
    index.learn_mention("c", "forget_follower")  # both ways, in either order
    index.learn_mention("c")
    assert [(c.kind, c.key, c.posts) for c in index.delete()] == [
        ("erase_post", "p1", ()), ("forget", "a", ("p1",)), ("forget_follower", "b", ()),
        ("forget", "c", ("p1",)), ("forget_follower", "c", ())]
    # the tombstone answers a late report with the command of its kind
    assert index.learn_mention("d", "forget_follower") == [Command("forget_follower", "d", "u2")]
    assert index.learn_mention("e") == [Command("forget", "e", "u2", ("p1",))]



def test_owners_past_the_resident_ones_are_spilled_and_still_told_at_the_deletion():
    import pickle

    from operators.erasure import MentionIndex, parse_spill

    index = MentionIndex("u2")
    learn = lambda owner, command="forget": index.learn_mention(owner, command, resident=2)  # noqa: E731
    learn("a")
    learn("b", "forget_follower")
    learn("a", "forget_follower")  # reported again: the newest
    learn("c")  # 3 resident > 2: the oldest (b) is spilled
    assert list(index.owners) == ["a", "c"] and not index.spilled
    stored = index.take_spill()
    assert stored == ["2:b"] and index.spilled and index.take_spill() == []
    learn("d")
    learn("b")  # b again, the other way: resident now, spilled as well
    pending = pickle.loads(pickle.dumps(index))  # a spill not handed over yet survives a snapshot
    assert pending.spill == {"a": 3, "c": 1} and pending.spilled
    assert [(c.kind, c.key) for c in pending.delete(parse_spill(stored))] == [
        ("forget", "a"), ("forget_follower", "a"), ("forget", "c"), ("forget", "d"),
        ("forget", "b"), ("forget_follower", "b")]  # (b, reported last, is told last, both ways)
    # a deleted owner: every member that may name them is removed from the spilled set
    assert index.drop_owner("b") == ["1:b", "2:b", "3:b"] and "b" not in index.owners


def test_an_index_pickled_before_its_owners_said_how_they_mention_still_loads(monkeypatch):
    import pickle

    from operators.erasure import MentionIndex

    index = MentionIndex("u2")
    index.learn_post("p1")
    index.learn_mention("a")
    index.learn_mention("b", "forget_follower")
    assert [(c.kind, c.key) for c in pickle.loads(pickle.dumps(index)).delete()][1:] == [
        ("forget", "a"), ("forget_follower", "b")]
    monkeypatch.setattr(MentionIndex, "__getstate__", lambda i: (
        i.user_id, list(i.owners), list(i.posts), i.deleted))
    old = pickle.dumps(index)
    monkeypatch.undo()
    # an ended follow was reported as a plain mention then: each owner may need either command
    assert [(c.kind, c.key) for c in pickle.loads(old).delete()] == [
        ("erase_post", "p1"), ("forget", "a"), ("forget_follower", "a"), ("forget", "b"),
        ("forget_follower", "b")]


def test_a_deleted_user_who_had_stopped_following_leaves_the_followed_users_list():
    # through the flow with idle keys parked (0.2 s) and its commands looped back: u2 followed
    # u1 and stopped, and follows u3; at u2's deletion u1's followers list (the ended follow)
    # gets `forget_follower` and drops them; u3, whose states only mention u2, gets `forget`,
    # which does not restore u3's parked followers list (a GET per such owner per deletion)
    import pickle
    from datetime import timedelta

    from operators.feature_store import MemoryFeatureStore
    from operators.graph import Followers

    class ReadLog(MemoryFeatureStore):
        def __init__(self):
            super().__init__()
            self.reads: list[tuple[str, str]] = []

        def parked(self, kind, key):
            self.reads.append((kind, key))
            return super().parked(kind, key)

    settings = config.load(env={"PERSONA_STREAM__USER_IDLE_EVICT_S": "0.2"})
    pause = TestingSource.PAUSE(timedelta(seconds=0.8))  # past the idle time: keys are parked
    log = [Event(f"c{i}", "user_created", T, u) for i, u in enumerate(("u1", "u2", "u3", "u4",
                                                                       "u5"))] + [
        Event("f1", "follow", T + 1, "u2", target_id="u1"),
        Event("f2", "follow", T + 2, "u5", target_id="u1"),
        Event("f3", "unfollow", T + 3, "u2", target_id="u1"),
        Event("f4", "follow", T + 4, "u4", target_id="u3"),
        Event("f5", "follow", T + 5, "u3", target_id="u2")]
    deletion = [encode_event(e) for e in log] + [pause, encode_event(
        Event("d1", "user_deleted", T + 6, "u2"))]

    def run(source, commands):
        writes = MemoryWrites()
        writes.store = ReadLog()
        run_main(build_flow(settings, source=TestingSource(source), dead_letters=TestingSink([]),
                            writes=writes, store_of=lambda: writes.store,
                            notifications=TestingSink([]), erasures=TestingSink(commands)))
        return writes.store

    commands: list[Command] = []
    run(deletion, commands)
    assert {(c.kind, c.key) for c in commands if c.key in ("u1", "u3")} == {
        ("forget_follower", "u1"), ("forget", "u1"), ("forget", "u3")}
    looped = [SimpleNamespace(topic=settings.kafka.erasures, value=encode_command(c),
                              partition=0, offset=i) for i, c in enumerate(commands)]
    store = run(deletion + looped + [pause, encode_event(Event("z", "user_created", T + 7, "u9"))],
                [])
    assert ("followers", "u1") in store.reads and ("followers", "u3") not in store.reads
    followers = pickle.loads(store.parked("followers", "u1"))  # parked again, idle
    assert isinstance(followers, Followers)
    assert list(followers.ids) == ["u5"] and followers.ended == []


def test_the_flow_writes_the_owners_the_erasure_step_spills():
    """The erasure step's spill writes reach the Redis sink (its commands go to the topic)."""
    from operators import erasure

    followers = [f"f{i}" for i in range(6)]
    payloads = [encode_event(Event("c0", "user_created", T, "u3", interests=("t1",)))]
    payloads += [encode_event(Event(f"c{i + 1}", "follow", T + i + 1, f, target_id="u3"))
                 for i, f in enumerate(followers)]
    writes = _run(payloads, [], {"PERSONA_STREAM__ERASURE_RESIDENT_OWNERS": "2"})
    spilled = erasure.parse_spill(writes.store._owners.get("u3", ()))
    assert spilled and set(spilled) < set(followers)


_records = st.lists(st.tuples(
    st.sampled_from(["mentions", "unmentions", "ended_follows", "feed", "park"]),
    st.sampled_from(["o1", "o2", "o3"]),
    st.lists(st.sampled_from(["u1", "u2", "u3", "u4"]), max_size=4).map(tuple)), max_size=30)


@given(_records)
def test_grouped_mentions_reach_each_user_as_sent_one_by_one(batch):
    """`mention_messages` sends one item per mentioned user and batch; ungrouped by the erasure
    step, each user's (kind, owner) values are those of the records, in their order."""
    expected: dict[str, list] = {}
    for kind, owner, users in batch:
        if kind in ("mentions", "unmentions", "ended_follows"):
            for user in users:
                expected.setdefault(user, []).append((kind[:-1], owner, user))
    grouped = mention_messages(batch)
    assert len(grouped) == len(expected)
    assert {user: list(ungrouped([value])) for user, value in grouped} == expected


def test_the_erasure_step_reads_a_group_as_its_values():
    logic = ErasureLogic.builder()(None)
    logic.on_batch([("post", "p1", "u1"),
                    ("mentioned", (("mention", "u2"), ("ended_follow", "u3"),
                                   ("mention", "u4"), ("unmention", "u4")), "u1")])
    out, _ = logic.on_batch([("deleted", "u1")])
    assert [(c.kind, c.key) for c in out] == [("erase_post", "p1"), ("forget", "u2"),
                                              ("forget_follower", "u3")]


def test_the_flow_erases_the_newest_posts_per_author_its_config_keeps():
    payloads = [encode_event(Event("e0", "user_created", T, "a"))] + [
        encode_event(Event(f"e{i}", "post_created", T + i, "a", post_id=f"p{i}"))
        for i in (1, 2, 3)] + [encode_event(Event("e9", "user_deleted", T + 9, "a"))]

    def erased(env):
        commands: list[Command] = []
        _run(payloads, commands, env)
        return sorted(c.key for c in commands if c.kind == "erase_post")

    assert erased({}) == ["p1", "p2", "p3"]
    assert erased({"PERSONA_STREAM__ERASURE_POSTS_PER_AUTHOR": "2"}) == ["p2", "p3"]


def test_an_erasure_rewrites_the_parked_copy_it_restored_at_once():
    import math
    import pickle

    from flows.adapters import FollowersLogic
    from operators.graph import Followers

    parked = Followers()
    for follower in ("u1", "u9"):
        parked.learn_edge("follow", follower, T, 10_000, 0)

    class Store:  # a Redis holding the list parked, as the flow's feature store serves it
        def __init__(self):
            self.parks = []

        def parked(self, kind, key):
            return pickle.dumps(parked) if (kind, key) == ("followers", "a") else None

        def parking(self, kind, key, raw):
            self.parks.append((kind, key))

    store = Store()
    logic = FollowersLogic(None, 10_000, 0, idle_s=3600.0, store_of=lambda: store)
    out, _ = logic.on_batch([("edge", "user_deleted", "u9", math.inf, "a")])  # u9's erasure
    writes = [w for w in out if w[0] == "park"]
    assert [w[:3] for w in writes] == [("park", "followers", "a")], out
    assert set(pickle.loads(writes[0][3]).ids) == {"u1"}  # the copy no longer names u9
    assert store.parks == [("followers", "a")] and logic.state is not None  # still resident
