"""Notification operators without services: routing, the policy (hypothesis properties for budgets
and quiet hours), aggregation, feedback learning, timeouts, deletion, determinism, the flow wiring,
the generator's planted behaviour and the closed-loop evaluation."""

from __future__ import annotations

from collections import Counter

import orjson
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config
from flows.feeds import build_flow
from operators.notifications import model as M
from operators.notifications.candidates import Candidate, notification_messages
from operators.notifications.driver import NotificationDriver
from operators.notifications.evaluate import evaluate
from operators.notifications.policy import (
    Policy,
    choose,
    in_quiet,
    local_day,
    local_hour,
    slots,
    utc_offset_ms,
)
from operators.notifications.state import RecipientState
from operators.notifications.trending import TrendingRule, became_trending
from schemas import Event, decode_event, encode_event
from scripts.generate import GeneratorConfig, Truth, generate, plant_notification_behaviour
from tests.unit.test_flow import MemoryWrites

T = 1_767_225_600_000  # 2026-01-01T00:00:00Z
H = 3_600_000
ZONES = ["UTC", "Asia/Tokyo", "America/Los_Angeles", "Asia/Kolkata", "Australia/Sydney", None]


def cand(i: int, ts: int, kind: str = "reply", group: str | None = None, actor: str | None = None,
         recipient: str = "r") -> Candidate:
    return Candidate(f"{kind}.{recipient}.{i}", recipient, kind, actor or f"a{i}", ts,
                     group or f"{kind}.{i}", post_id="p1" if kind == "like" else None)


def fresh(tz: str | None = "UTC", **policy) -> RecipientState:
    s = RecipientState("r", Policy(**policy))
    s.apply(Event("e0", "user_created", T, "r", timezone=tz), None, None)
    return s


def test_routing():
    like = notification_messages(Event("e1", "like", T, "u2", post_id="p1"), "u1")
    assert [(k, v[0]) for k, v in like] == [("u2", "self"), ("u1", "cand")]
    assert notification_messages(Event("e2", "like", T, "u1", post_id="p1"), "u1")[1:] == []
    msg = notification_messages(Event("e3", "message_sent", T, "u1", conversation_id="c",
                                      recipients=("u2", "u1", "u3", "u2")), None)
    assert [k for k, _ in msg] == ["u2", "u3"]
    assert notification_messages(Event("e4", "follow", T, "u1", target_id="u1"), None) == [
        ("u1", ("self", Event("e4", "follow", T, "u1", target_id="u1"), None))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tz=st.sampled_from(ZONES), budget=st.integers(1, 8),
       gaps=st.lists(st.integers(0, 3 * H), min_size=1, max_size=60),
       kinds=st.lists(st.sampled_from(["reply", "follow", "like", "comment"]), min_size=1))
def test_budget_holds_and_quiet_hours_delay(tz, budget, gaps, kinds):
    state = fresh(tz, daily_budget=budget, min_p_open=0.0)
    ts, per_day, live = T, Counter(), 0
    for i, gap in enumerate(gaps):
        ts += gap
        records, _ = state.offer(cand(i, ts, kinds[i % len(kinds)]), None)
        for r in records:
            if r["decision"] in ("send", "delay"):
                off = utc_offset_ms(r["send_at"], tz)
                per_day[local_day(r["send_at"], off)] += 1
                live += 1
                hour = local_hour(r["send_at"], off)
                assert not in_quiet(hour, 22, 8), "never delivered in quiet hours"
                assert r["send_at"] >= r["ts"]
            elif r["decision"] == "suppress":
                assert r["reason"] == "budget", "only the budget may drop (min_p_open = 0)"
    assert all(n <= budget for n in per_day.values())
    assert live >= 1, "the first candidate is always sent or delayed, never dropped"


@given(hour=st.floats(0, 23.99), start=st.integers(0, 23), end=st.integers(0, 23))
def test_choose_never_picks_a_quiet_hour_when_an_allowed_one_exists(hour, start, end):
    policy = Policy(quiet_start_h=start, quiet_end_h=end, min_p_open=0.0)
    now = T + int(hour * H)
    times = slots(now, policy.max_delay_h)
    decision, reason, at, _ = choose(policy, times, [0.3] * len(times), [0] * len(times))
    assert decision in ("send", "delay")
    allowed = [t for t in times if not in_quiet(local_hour(t, 0), start, end)]
    if allowed:
        assert not in_quiet(local_hour(at, 0), start, end)
        assert (decision == "delay") == in_quiet(local_hour(now, 0), start, end)
    assert reason in ("send_now", "quiet_hours")


def test_low_value_is_suppressed_and_best_hour_delays():
    policy = Policy(quiet_start_h=0, quiet_end_h=0, min_p_open=0.2, delay_margin=0.05)
    times = slots(T, 24)
    assert choose(policy, times, [0.1] * len(times), [0] * len(times))[:2] == ("suppress", "low_value")
    p = [0.3] * len(times)
    p[5] = 0.6
    assert choose(policy, times, p, [0] * len(times))[:3] == ("delay", "best_hour", times[5])
    p[5] = 0.32
    assert choose(policy, times, p, [0] * len(times))[:2] == ("send", "send_now")


def test_aggregation_within_the_window_then_a_new_notification():
    state = fresh()
    t0 = T + 12 * H
    out = [state.offer(cand(i, t0 + i * 60_000, "like", group="like.p1"), None)[0]
           for i in range(4)]
    assert out[0][0]["decision"] == "send"
    head = out[-1][0]
    assert head["count"] == 4 and head["text"] == "a0 and 3 others liked your post"
    assert [r["decision"] for r in out[-1]] == ["send", "aggregate"]
    assert out[-1][1]["into"] == head["notification_id"]
    later, _ = state.offer(cand(9, t0 + 2 * H, "like", group="like.p1"), None)
    assert later[0]["decision"] == "send" and later[0]["count"] == 1
    assert [r["notification_id"] for r in state.inbox()][:2] == ["like.r.9", "like.r.3"]


def test_hard_rules_blocked_muted_duplicate_deleted():
    state = fresh()
    state.apply(Event("b", "block", T + 1, "r", target_id="x"), None, None)
    state.apply(Event("m", "mute", T + 2, "r", target_id="y"), None, None)
    t = T + 12 * H
    assert state.offer(cand(1, t, actor="x"), None)[0][0]["reason"] == "blocked"
    assert state.offer(cand(2, t, actor="y"), None)[0][0]["reason"] == "muted"
    first = state.offer(cand(3, t), None)[0][0]
    again = state.offer(cand(3, t + 5), None)[0][0]
    assert first["decision"] == "send" and again["reason"] == "duplicate"
    assert again["notification_id"] != first["notification_id"]  # never overwrites the original
    state.apply(Event("d", "user_deleted", t + 10, "r"), None, None)
    assert state.offer(cand(4, t + 20), None)[0][0]["reason"] == "recipient_deleted"
    assert state.inbox() == []


def test_feedback_and_timeouts_teach_the_recipient_model():
    state = fresh(min_p_open=0.0, daily_budget=1000, aggregate_window_ms=0)
    t = T + 12 * H
    labels = []
    for i in range(40):
        kind = "reply" if i % 2 else "follow"
        rec = state.offer(cand(i, t, kind), None)[0][0]
        event = "notification_opened" if kind == "reply" else "notification_dismissed"
        labels += state.apply(Event(f"f{i}", event, t + 60_000, "r",
                                    notification_id=rec["notification_id"]), None, None)
        t += 10 * 60_000
    assert Counter(y for _, y in labels) == {True: 20, False: 20}
    x = {k: M.row(k, 13.0, 0, False, 1, 0)[None, :] for k in ("reply", "follow")}
    p_reply = M.predict(state.model, x["reply"], None)[0]
    p_follow = M.predict(state.model, x["follow"], None)[0]
    assert p_reply > 0.6 and p_follow < 0.2
    # sent, no reaction: a negative once feedback_timeout_ms of event time has passed
    [rec], _ = state.offer(cand(99, t, "reply"), None)
    due = rec["send_at"] + state.policy.feedback_timeout_ms
    assert rec["decision"] in ("send", "delay") and state.expire(due - 1, None) == []
    [(_, y)] = state.expire(due + 1, None)
    assert y is False


def _log(users=60, days=2.0, seed=3):
    events, truth = generate(GeneratorConfig(users=users, days=days, seed=seed))
    return [decode_event(orjson.dumps(e))[0] for e in events], truth


def test_driver_is_deterministic():
    events, _ = _log()
    runs = []
    for _ in range(2):
        d = NotificationDriver(Policy())
        runs.append([r for e in events for r in d.learn_one(e)])
    assert runs[0] == runs[1] and len(runs[0]) > 100
    assert {r["decision"] for r in runs[0]} >= {"send", "delay", "aggregate", "suppress"}


def test_flow_emits_decisions_and_inboxes():
    events = [Event("e1", "user_created", T, "u1", timezone="Europe/Paris"),
              Event("e2", "post_created", T + 10 * H, "u1", post_id="p1"),
              Event("e3", "like", T + 10 * H + 1, "u2", post_id="p1"),
              Event("e4", "like", T + 10 * H + 2, "u3", post_id="p1"),
              Event("e5", "follow", T + 10 * H + 3, "u2", target_id="u1")]
    writes, decisions = MemoryWrites(), []
    run_main(build_flow(config.load(env={}), source=TestingSource([encode_event(e) for e in events]),
                        dead_letters=TestingSink([]), writes=writes, store_of=lambda: writes.store,
                        notifications=TestingSink(decisions)))
    assert [(d["notification_id"], d["decision"]) for d in decisions] == [
        ("like.u1.p1.u2", "send"), ("like.u1.p1.u2", "send"), ("like.u1.p1.u3", "aggregate"),
        ("follow.u1.u2", "send")]
    assert decisions[1]["count"] == 2


def test_generator_plants_notification_behaviour():
    cfg = GeneratorConfig(users=30, days=0.2, seed=5)
    a = plant_notification_behaviour(cfg, [f"u{i}" for i in range(30)])
    assert a == plant_notification_behaviour(cfg, [f"u{i}" for i in range(30)])
    opens, hours = a
    assert all(sum(p > 0.3 for p in kinds.values()) == 2 for kinds in opens.values())
    assert all(0 <= lo < hi <= 24 and hi - lo == 6 for lo, hi in hours.values())
    _, truth = generate(cfg)
    back = Truth.from_json(truth.to_json())
    assert back.notif_open == truth.notif_open and back.notif_hours == truth.notif_hours


def test_learned_policy_beats_the_baselines_at_the_same_budget():
    events, truth = _log(users=100, days=3, seed=11)
    results = {r.name: r for r in evaluate(events, truth, Policy())}
    learned, rand = results["learned"], results["random"]
    assert learned.delivered > 100
    assert learned.open_rate > results["send_all"].open_rate * 1.2
    assert learned.open_rate > results["most_recent"].open_rate * 1.2
    # the random subset is calibrated to the learned policy's size: a fair open-rate comparison
    assert abs(rand.delivered - learned.delivered) <= 0.1 * learned.delivered
    assert learned.open_rate > rand.open_rate * 1.2
    # sending less must not mean fewer opens in total
    assert learned.opened >= results["send_all"].opened
    assert learned.opened >= results["most_recent"].opened


def test_state_survives_a_snapshot():
    """Recovery snapshots pickle the state: a restored state decides exactly like the original."""
    import pickle
    events, _ = _log(users=40, days=1.0, seed=4)
    d = NotificationDriver(Policy())
    half = len(events) // 2
    for e in events[:half]:
        d.learn_one(e)
    restored = NotificationDriver(Policy())
    restored.states = pickle.loads(pickle.dumps(d.states, protocol=5))
    restored.global_model = pickle.loads(pickle.dumps(d.global_model, protocol=5))
    restored.items, restored.followers, restored.audiences = pickle.loads(pickle.dumps(
        (d.items, d.followers, d.audiences), protocol=5))
    assert [r for e in events[half:] for r in d.learn_one(e)] == [
        r for e in events[half:] for r in restored.learn_one(e)]


def test_per_kind_budgets_hold_within_the_global_one():
    s = fresh(min_p_open=0.0, quiet_start_h=0, quiet_end_h=0, daily_budget=5,
              kind_budgets=(("follow", 2), ("like", 9)))
    sent = Counter()
    for i in range(12):
        kind = "follow" if i % 2 else "like"
        for r in s.offer(cand(i, T + 9 * H + i * 60_000, kind, group=f"g{i}"), None)[0]:
            if r["decision"] in ("send", "delay"):
                sent[r["kind"]] += 1
            elif r["kind"] == "follow" and sent["follow"] == 2 and sum(sent.values()) < 5:
                assert r["reason"] == "kind_budget"
    assert sent["follow"] == 2 and sum(sent.values()) == 5  # the global budget still holds


def test_per_kind_budgets_come_from_config():
    settings = config.load(env={"PERSONA_NOTIFICATIONS__BUDGET_TRENDING": "2"})
    policy = Policy.from_settings(settings)
    assert policy.kind_budget("trending") == 2
    assert policy.kind_budget("like") == min(settings.notifications.budget_like,
                                             policy.daily_budget)


def test_trending_post_notifies_interested_users_and_group_members_once():
    d = NotificationDriver(Policy(min_p_open=0.0, quiet_start_h=0, quiet_end_h=0),
                           TrendingRule(min_engagement=3.0, min_affinity=1.0, max_recipients=50))
    events = [Event("c1", "user_created", T, "fan", interests=("t1",)),
              Event("c2", "user_created", T, "member", interests=("t9",)),
              Event("c3", "user_created", T, "other", interests=("t2",)),
              Event("c4", "user_created", T, "au"),
              Event("g1", "group_joined", T + 1, "member", group_id="g"),
              Event("p1", "post_created", T + 2, "au", post_id="p", topics=("t1",), group_id="g")]
    events += [Event(f"l{i}", "like", T + 10 + i, f"x{i}", post_id="p") for i in range(6)]
    records = [r for e in events for r in d.learn_one(e)]
    trending = [r for r in records if r["kind"] == "trending"]
    # fan (declared interest in t1), member (group g); never the likers of the post itself
    assert {r["user_id"] for r in trending} == {"fan", "member"}
    assert "other" not in {r["user_id"] for r in trending}
    assert "au" not in {r["user_id"] for r in trending}  # never the author
    ids = [r["notification_id"] for r in trending]
    assert len(ids) == len(set(ids))  # via topic and group: one candidate per recipient
    assert all(r["reason"] and r["actor_id"] == "au" and r["post_id"] == "p" for r in trending)
    assert {r["notification_id"] for r in trending if r["user_id"] == "fan"} == {"trending.fan.p"}


def test_trending_threshold_crosses_once_per_rise():
    from operators.decay import Decay
    from operators.item_stats import ItemStats
    rule, pop = TrendingRule(min_engagement=2.0), Decay(24.0)
    stats = ItemStats("p")
    stats.learn_one(Event("p1", "post_created", T, "au", post_id="p", topics=("t",)), pop)
    crossed = []
    for i in range(6):
        e = Event(f"l{i}", "like", T + i, f"x{i}", post_id="p")
        crossed.append(became_trending(e, stats.learn_one(e, pop), pop, rule))
    assert crossed == [False, True, False, False, False, False]


def test_flow_wires_trending_candidates():
    events = [Event("c1", "user_created", T + 10 * H, "fan", interests=("t1",), timezone="UTC"),
              Event("p1", "post_created", T + 10 * H, "au", post_id="p", topics=("t1",))]
    events += [Event(f"l{i}", "share", T + 10 * H + 1 + i, f"x{i}", post_id="p") for i in range(4)]
    writes, decisions = MemoryWrites(), []
    settings = config.load(env={"PERSONA_NOTIFICATIONS__MIN_P_OPEN": "0",
                                "PERSONA_NOTIFICATIONS__TRENDING_MIN_ENGAGEMENT": "3"})
    run_main(build_flow(settings, source=TestingSource([encode_event(e) for e in events]),
                        dead_letters=TestingSink([]), writes=writes, store_of=lambda: writes.store,
                        notifications=TestingSink(decisions)))
    trending = [d for d in decisions if d["kind"] == "trending"]
    assert [d["notification_id"] for d in trending] == ["trending.fan.p"]
    assert trending[0]["decision"] in ("send", "delay") and trending[0]["text"].startswith("au ")


def test_generated_notification_feedback_names_decided_notifications():
    """The generator's own notification_opened/dismissed events use the ids the decision code
    makes, so the flow learns from them (the label reaches a sent notification)."""
    events, _ = _log(users=60, days=1.5, seed=3)
    feedback = [e for e in events if e.type.startswith("notification_")]
    d = NotificationDriver(Policy())
    decided = {}
    labels = 0
    for e in events:
        for r in d.learn_one(e):
            decided.setdefault(r["notification_id"], r["decision"])
        if e.type.startswith("notification_"):
            state = d.states.get(e.user_id)
            head = state.decided.get(e.notification_id) if state else None
            labels += head is not None
    named = [e for e in feedback if e.notification_id in decided]
    assert len(feedback) > 30 and len(named) > 0.8 * len(feedback), (len(named), len(feedback))
    assert labels > 0.8 * len(feedback), labels


def test_a_taken_back_delivery_withdraws_its_new_post_notification_until_it_is_sent():
    from operators.notifications.candidates import delivery_message
    from operators.notifications.driver import handle

    s = fresh("UTC", min_p_open=0.0, min_author_engagements=0, delay_margin=1.0)

    def delivery(post: str, ts: int, kind: str = "deliver") -> list[dict]:
        return handle(s, delivery_message("a", (kind, "r", post, ts))[1], None)[0]

    [delayed] = delivery("p1", T + 23 * H)  # 23:00, quiet: delayed
    day = local_day(delayed["send_at"], 0)
    assert delayed["decision"] == "delay" and s.sent_per_day[day] == 1 and s.pending
    [withdrawn] = delivery("p1", T + 23 * H, "undeliver")  # (an unfollow processed late)
    assert (withdrawn["decision"], withdrawn["reason"], withdrawn["send_at"]) == (
        "suppress", "withdrawn", None)
    assert s.sent_per_day[day] == 0 and s.kind_sent[(day, "new_post")] == 0 and not s.pending
    assert s.inbox()[0] == withdrawn and delivery("p1", T + 23 * H, "undeliver") == []
    [again] = delivery("p1", T + 23 * H)  # delivered again (a follow processed later still)
    assert again["decision"] == "delay" and again["reason"] != "duplicate"

    [sent] = delivery("p2", T + 34 * H)  # 10:00: sent at once, and it stays sent
    assert sent["decision"] == "send" and delivery("p2", T + 34 * H, "undeliver") == []
    [due] = delivery("p3", T + 47 * H)  # delayed to a time the recipient's events then passed
    s.apply(Event("e9", "mute", due["send_at"] + 1, "r", target_id="u9"), None, None)
    assert delivery("p3", T + 47 * H, "undeliver") == [] and s.records[due["notification_id"]][
        "decision"] == "delay"
