"""A recipient's notification state on the cases a review found wrong (session 30): a producer's
timezone string that is no zone, a busy post's likes, a conversation's repeated replies, a
daylight-saving change inside the delay window, a delay taken back after many other decisions,
delays that must not go out after a block or the recipient's deletion, and erasure of a user
whose id is a piece of other ids."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from operators.notifications.candidates import (
    Candidate,
    delivery_message,
    notification_messages,
)
from operators.notifications.driver import handle
from operators.notifications.policy import Policy, in_quiet, zone
from operators.notifications.state import RecipientState
from schemas import Event

H = 3_600_000
NOON = 1_767_225_600_000 + 12 * H  # 2026-01-01 12:00 UTC


def _recipient(user: str = "r", tz: str = "UTC", at: int = NOON) -> RecipientState:
    s = RecipientState(user, Policy(min_p_open=0.0))
    s.apply(Event("e0", "user_created", at - 1, user, timezone=tz), None, None)
    return s


def _offer(s: RecipientState, event: Event, author: str | None = None) -> list[dict]:
    out = []
    for key, msg in notification_messages(event, author):
        if key == s.user_id and msg[0] == "cand":
            out += handle(s, msg, None)[0]
    return out


@given(st.text(max_size=300))
def test_any_timezone_string_is_a_zone(name):
    assert zone(name) is not None  # never raises: unknown strings are UTC


def test_a_directory_or_too_long_timezone_is_utc():
    for name in ("America", "Europe", "x" * 300):
        s = _recipient(tz=name)
        assert _offer(s, Event("f", "follow", NOON, "u2", target_id="r"))[0]["decision"] == "send"


def test_a_busy_posts_likes_stay_one_notification():
    s = _recipient()
    heads = [rec for i in range(160)
             for rec in _offer(s, Event(f"l{i}", "like", NOON + i * 6_000, f"u{i}", post_id="p1"),
                               "r")
             if rec["decision"] != "aggregate" and rec["notification_id"].endswith(f".u{i}")]
    assert [(h["notification_id"], h["decision"]) for h in heads] == [("like.r.p1.u0", "send")]
    assert [(r["notification_id"], r["count"]) for r in s.inbox()
            if r["decision"] != "aggregate"] == [("like.r.p1.u0", 160)]


def test_repeated_replies_count_each_person_once():
    s = _recipient()
    last = []
    for i, actor in enumerate(["u7", "u7", "u7", "u8"]):
        last = _offer(s, Event(f"m{i}", "message_sent", NOON + i * 10_000, actor,
                               conversation_id="c1", recipients=("r",)))
    head = next(r for r in last if r["decision"] != "aggregate")
    assert (head["count"], head["actors"]) == (2, ["u7", "u8"])
    assert head["text"] == "u7 and 1 other replied in your conversation"


def test_a_delay_across_a_daylight_saving_change_lands_outside_quiet_hours():
    ny = "America/New_York"
    for at in ("2025-11-02T03:30:00+00:00", "2026-03-08T04:30:00+00:00"):  # 23:30 local
        t = int(datetime.fromisoformat(at).timestamp() * 1000)
        s = _recipient(tz=ny, at=t - 10**9)
        rec = s.offer(Candidate("follow.r.a", "r", "follow", "a", t, "follow"), None)[0][0]
        local = datetime.fromtimestamp(rec["send_at"] / 1000, tz=UTC).astimezone(ZoneInfo(ny))
        assert rec["decision"] == "delay" and local.hour == 8, local
        assert not in_quiet(local.hour + local.minute / 60, 22, 8)


def test_a_delay_is_taken_back_after_many_other_decisions():
    s = _recipient(at=NOON - 12 * H)
    for i in range(3):  # r likes A's posts: A's new posts are worth notifying
        s.apply(Event(f"l{i}", "like", NOON - 12 * H + i, "r", post_id=f"q{i}"), "A", None)
    t = NOON + 11 * H  # 23:00: quiet hours
    rec = handle(s, delivery_message("A", ("deliver", "r", "p1", t))[1], None)[0][0]
    assert rec["decision"] == "delay"
    for i in range(60):  # more than `history` decisions since
        s.offer(Candidate(f"like.r.x{i}.b{i}", "r", "like", f"b{i}", t + 1000 + i, f"like.x{i}",
                          post_id=f"x{i}"), None)
    out = handle(s, delivery_message("A", ("undeliver", "r", "p1", t))[1], None)[0]
    assert [(r["notification_id"], r["decision"], r["reason"]) for r in out] == [
        (rec["notification_id"], "suppress", "withdrawn")]


def test_a_block_or_the_recipients_deletion_cancels_delays_still_to_go_out():
    t = NOON + 11 * H  # quiet hours: both are delayed to the morning
    s = _recipient()
    x = _offer(s, Event("f1", "follow", t, "x", target_id="r"))[0]
    y = _offer(s, Event("f2", "like", t + 1, "y", post_id="p9"), "r")[0]
    assert (x["decision"], y["decision"]) == ("delay", "delay")
    blocked, _ = handle(s, ("self", Event("b1", "block", t + 60_000, "r", target_id="x"), None),
                        None)
    assert [(r["notification_id"], r["decision"], r["reason"]) for r in blocked] == [
        (x["notification_id"], "suppress", "blocked")]
    deleted, _ = handle(s, ("self", Event("d1", "user_deleted", t + 120_000, "r"), None), None)
    assert [(r["notification_id"], r["decision"], r["reason"]) for r in deleted] == [
        (y["notification_id"], "suppress", "recipient_deleted")]
    assert s.sent_per_day == {k: 0 for k in s.sent_per_day}  # their budget given back


def test_erasing_a_user_keeps_the_notifications_of_users_whose_ids_contain_theirs():
    s = _recipient("ann.lee")
    for i, actor in enumerate(["ann", "bob", "like"]):
        _offer(s, Event(f"l{i}", "like", NOON + i, actor, post_id=f"p{i}"), "ann.lee")
    s.forget("ann", ())
    assert [r["actor_id"] for r in s.inbox()] == ["like", "bob"]
    s.forget("like", ())
    assert [r["actor_id"] for r in s.inbox()] == ["bob"]
