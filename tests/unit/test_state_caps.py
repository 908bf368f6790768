"""The bounds on what one key's state keeps that grow with a user's audience (a creator's), set
in config: each setting reaches the operator, and each operator keeps the newest that many."""

from __future__ import annotations

import pickle

import pytest

import config
from flows.adapters import AudienceLogic
from operators.decay import Decay
from operators.erasure import MentionIndex, Reported
from operators.notifications.candidates import Candidate
from operators.notifications.driver import NotificationDriver
from operators.notifications.policy import Policy
from operators.notifications.state import RecipientState
from operators.notifications.trending import Audience, TrendingRule
from schemas import Event

T = 1_700_000_000_000


def test_each_cap_reaches_its_operator_from_config():
    s = config.load(env={"PERSONA_NOTIFICATIONS__DECIDED_IDS": "7",
                         "PERSONA_NOTIFICATIONS__TRENDING_AUDIENCE_SIZE": "8",
                         "PERSONA_FEATURES__MAX_FOLLOWERS_FANOUT": "9",
                         "PERSONA_STREAM__ERASURE_POSTS_PER_AUTHOR": "10",
                         "PERSONA_STREAM__ERASURE_REPORTED_PER_OWNER": "11"})
    policy = Policy.from_settings(s)
    assert policy.decided_ids == 7
    assert TrendingRule.from_settings(s).audience_size == 8
    # replays' notification driver keeps followers lists as the flow's followers step does
    assert NotificationDriver.from_settings(s, policy).max_fanout == 9
    assert (s.stream.erasure_posts_per_author, s.stream.erasure_reported_per_owner) == (10, 11)


def test_an_author_cannot_keep_more_posts_than_one_erasure_command_carries():
    with pytest.raises(config.ConfigError, match="erasure_posts_per_author"):
        config.load(env={"PERSONA_STREAM__ERASURE_POSTS_PER_AUTHOR": "10001"})


def test_reported_keeps_the_newest_and_reports_a_forgotten_user_again():
    r = Reported()
    assert r.new(["u1", "u2", "u3"], cap=2) == ["u1", "u2", "u3"]
    assert r.new(["u2", "u3"], cap=2) == []  # the newest two are remembered
    assert r.new(["u1"], cap=2) == ["u1"]  # forgotten: reported again (a message, not a miss)


def test_the_erasure_index_erases_the_newest_posts_it_keeps():
    index = MentionIndex("a")
    for i in range(5):
        index.learn_post(f"p{i}", keep=3)
    erased = [c.key for c in index.delete() if c.kind == "erase_post"]
    assert sorted(erased) == ["p2", "p3", "p4"]


def test_a_recipient_remembers_decided_ids_up_to_its_policy():
    state = RecipientState("r", Policy(decided_ids=5, min_p_open=0.0, daily_budget=1000))
    state.apply(Event("e0", "user_created", T, "r", timezone="UTC"), None, None)
    for i in range(20):
        state.offer(Candidate(f"reply.r.{i}", "r", "reply", f"a{i}", T + i, f"reply.{i}"), None)
    assert len(state.decided) == 5 and len(state.groups) <= 5
    assert "reply.r.19" in state.decided and "reply.r.0" not in state.decided


def test_an_audience_keeps_its_size_and_a_resumed_one_follows_the_current_rule():
    audience = Audience(TrendingRule(audience_size=3), Decay(168.0))
    for i in range(6):
        audience.learn(("interest", f"u{i}", T + i))
        audience.learn(("engaged", f"v{i}", 1.0 + i, T + i, f"p{i}"))
    assert sorted(audience.declared) == ["u3", "u4", "u5"]  # the newest declared
    assert sorted(audience.engaged) == ["v3", "v4", "v5"]  # the most engaged
    resumed = AudienceLogic(pickle.loads(pickle.dumps(audience)), TrendingRule(audience_size=9),
                            Decay(168.0))
    assert resumed.state.rule.audience_size == 9


def test_a_full_audience_is_trimmed_to_its_size_a_quarter_past_it():
    audience = Audience(TrendingRule(audience_size=8), Decay(168.0))
    sizes = []
    for i in range(30):
        audience.learn(("interest", f"u{i:02d}", T + i))
        sizes.append(len(audience.declared))
    assert max(sizes) == 10 and sizes[-1] in range(8, 11)
    assert sorted(audience.declared)[-8:] == [f"u{i}" for i in range(22, 30)]  # the newest kept
