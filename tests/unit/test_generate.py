"""scripts.generate: deterministic, valid, time-ordered synthetic activity with a learnable signal."""

from __future__ import annotations

import gzip
from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import decode_event, encode_event, validate
from schemas.events import EVENT_TYPES
from scripts.generate import (
    MALFORMED_KINDS,
    GeneratorConfig,
    Truth,
    encode_lines,
    generate,
    generate_log,
    generate_stream,
    like_rates,
    malformed_lines,
    read_log,
    read_truth,
    write_log,
)

SMALL = GeneratorConfig(users=120, topics=8, days=2.0, seed=11)


@pytest.fixture(scope="module")
def small():
    return generate(SMALL)


def _check_stream(events: list[dict], cfg: GeneratorConfig) -> None:
    end = cfg.start_ms + round(cfg.days * 86_400_000)
    last_ts = cfg.start_ms
    ids = set()
    for e in events:
        validate(e)
        assert cfg.start_ms <= e["ts"] <= end
        assert e["ts"] >= last_ts, "events must be sorted by ts"
        last_ts = e["ts"]
        ids.add(e["event_id"])
    assert len(ids) == len(events), "event ids must be unique"


def test_deterministic_bytes():
    a, ta = generate(SMALL)
    b, tb = generate(SMALL)
    assert b"\n".join(map(orjson.dumps, a)) == b"\n".join(map(orjson.dumps, b))
    assert ta.to_json() == tb.to_json()
    c, _ = generate(GeneratorConfig(users=120, topics=8, days=2.0, seed=12))
    assert [e["event_id"] for e in c[:5]] == [e["event_id"] for e in a[:5]]
    assert c != a  # another seed is another world


def test_stream_equals_list():
    events, truth = generate(SMALL)
    stream, truth2 = generate_stream(SMALL)
    assert list(stream) == events
    assert truth2.to_json() == truth.to_json()


def test_every_event_valid_sorted_unique(small):
    events, _ = small
    _check_stream(events, SMALL)
    # Event ids follow the output order (sorted by ts, then sequence).
    assert [e["event_id"] for e in events] == [f"e{i:09d}" for i in range(1, len(events) + 1)]
    # The dicts are already in canonical wire form.
    for e in events[:2000]:
        assert orjson.dumps(e) == encode_event(validate(e))


def test_event_mix(small):
    events, truth = small
    counts = Counter(e["type"] for e in events)
    assert set(counts) <= set(EVENT_TYPES)
    for kind in ("user_created", "post_created", "follow", "impression", "click", "like",
                 "comment", "share", "dwell", "message_sent", "group_joined", "search",
                 "notification_opened", "user_deleted"):  # fmt: skip
        assert counts[kind] > 0, kind
    assert counts["user_created"] == SMALL.users
    assert counts["user_deleted"] == 2
    assert counts["like"] > max(counts["click"], counts["comment"], counts["share"])
    assert 0.04 <= counts["like"] / counts["impression"] <= 0.16
    # user_created first, at t=0, with timezones and (sometimes empty) interests.
    created = events[: SMALL.users]
    assert all(e["type"] == "user_created" and e["ts"] == SMALL.start_ms for e in created)
    assert all(e["timezone"] and "/" in e["timezone"] for e in created)
    assert any(e["interests"] == [] for e in created)
    assert any(set(e["interests"]) & set(truth.user_topics[e["user_id"]]) for e in created)


def test_referential_consistency(small):
    events, truth = small
    posts: dict[str, int] = {}
    gone_posts: set[str] = set()
    gone_users: set[str] = set()
    users = set(truth.user_topics)
    followees: dict[str, set[str]] = {u: set() for u in users}
    for e in events:
        kind, user = e["type"], e["user_id"]
        assert user in users and user not in gone_users, e
        if kind == "post_created":
            posts[e["post_id"]] = e["ts"]
            assert e["topics"] == truth.post_topics[e["post_id"]]
            assert truth.post_author[e["post_id"]] == user
        elif "post_id" in e:
            assert e["post_id"] in posts and e["post_id"] not in gone_posts, e
            if kind == "post_deleted":
                assert truth.post_author[e["post_id"]] == user
                gone_posts.add(e["post_id"])
        if kind == "follow":
            assert e["target_id"] != user and e["target_id"] not in followees[user]
            followees[user].add(e["target_id"])
        elif kind == "unfollow":
            followees[user].remove(e["target_id"])
        elif kind == "message_sent":
            assert e["recipients"] and set(e["recipients"]) <= followees[user]
        elif kind == "search":
            assert all(p in posts for p in e["result_ids"])
        elif kind == "user_deleted":
            gone_users.add(user)
    assert len(posts) == len(truth.post_topics)


def test_feed_impressions(small):
    events, _ = small
    seen: Counter = Counter()
    positions: list[int] = []
    for e in events:
        if e["type"] == "impression" and e["surface"] == "feed":
            seen[(e["user_id"], e["post_id"])] += 1
            positions.append(e["position"])
    assert max(seen.values()) == 1  # a feed never repeats a post to a user
    assert min(positions) == 0 and max(positions) == SMALL.feed_size - 1


def test_planted_signal(small):
    events, truth = small
    planted, other = like_rates(events, truth)
    assert planted >= 3 * other > 0
    # Favourite authors are liked more than others, too.
    fav = {u: set(a) for u, a in truth.user_authors.items()}
    imps, likes = Counter(), Counter()
    for e in events:
        if e["type"] in ("impression", "like") and e.get("surface", "feed") == "feed":
            is_fav = truth.post_author[e["post_id"]] in fav[e["user_id"]]
            (likes if e["type"] == "like" else imps)[is_fav] += 1
    assert likes[True] / imps[True] > 2 * likes[False] / imps[False]


def test_truth_shape_and_roundtrip(small):
    _, truth = small
    assert len(truth.user_topics) == SMALL.users
    assert all(2 <= len(t) <= 3 for t in truth.user_topics.values())
    assert all(1 <= len(t) <= 2 for t in truth.user_disliked.values())
    assert all(not set(truth.user_topics[u]) & set(d) for u, d in truth.user_disliked.items())
    assert all(1 <= len(t) <= 3 for t in truth.post_topics.values())
    assert sum(1 for a in truth.user_authors.values() if a) > 0.9 * SMALL.users
    assert all(u not in a for u, a in truth.user_authors.items())
    assert Truth.from_json(truth.to_json()) == truth
    assert truth.config["seed"] == SMALL.seed


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_write_read_log(tmp_path, small, suffix):
    events, truth = small
    path = tmp_path / f"events{suffix}"
    counts = write_log(path, events, truth)
    assert sum(counts.values()) == len(events)
    lines = list(read_log(path))
    assert lines == [orjson.dumps(e) for e in events]
    assert read_truth(path) == truth
    assert Truth.from_json((tmp_path / f"events{suffix}.truth.json").read_bytes()) == truth
    first = path.read_bytes()
    write_log(path, events, truth)
    assert path.read_bytes() == first  # reproducible bytes, gzip included
    if suffix.endswith(".gz"):
        assert gzip.decompress(first).count(b"\n") == len(events)


def test_generate_log_with_malformed(tmp_path):
    cfg = GeneratorConfig(users=40, topics=5, days=0.5, seed=3, malformed_fraction=0.02)
    path = tmp_path / "log.jsonl"
    counts = generate_log(cfg, path)
    events, _ = generate(cfg)
    good, bad = 0, 0
    for raw in read_log(path):
        event, reason = decode_event(raw)
        if event is None:
            assert reason
            bad += 1
        else:
            good += 1
    assert good == len(events) and bad == counts["malformed"] > 0
    assert 0.01 < bad / good < 0.03


def test_malformed_lines_rejected():
    lines = malformed_lines(60, seed=5)
    assert len(lines) == 60
    assert {kind for _, kind in lines} == set(MALFORMED_KINDS)
    assert lines == malformed_lines(60, seed=5)
    for raw, kind in lines:
        assert isinstance(raw, bytes)
        event, reason = decode_event(raw)
        assert event is None and reason, (kind, raw[:200])
        if kind == "oversized":
            assert len(raw) > 65536 and "too large" in reason
        if kind == "unknown_type":
            assert "unknown event type" in reason
        if kind == "absurd_ts":
            assert "ts" in reason


def test_encode_lines_no_malformed_by_default(small):
    events, _ = small
    assert list(encode_lines(events[:100])) == [orjson.dumps(e) for e in events[:100]]


def test_config_validation():
    with pytest.raises(ValueError):
        generate(GeneratorConfig(users=0))
    with pytest.raises(ValueError):
        generate(GeneratorConfig(days=0))
    with pytest.raises(ValueError):
        generate(GeneratorConfig(malformed_fraction=1.0))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    users=st.integers(1, 40),
    topics=st.integers(1, 6),
    days=st.floats(0.01, 1.5),
    feed_size=st.integers(0, 6),
    posts=st.sampled_from([0.0, 0.3, 2.0]),
    sessions=st.sampled_from([0.0, 1.0, 5.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_tiny_configs_are_valid(users, topics, days, feed_size, posts, sessions, seed):
    cfg = GeneratorConfig(
        users=users, topics=topics, days=days, feed_size=feed_size, seed=seed,
        posts_per_user_per_day=posts, sessions_per_user_per_day=sessions,
    )  # fmt: skip
    events, truth = generate(cfg)
    _check_stream(events, cfg)
    assert sum(e["type"] == "user_created" for e in events) == users
    assert set(truth.user_topics) == {e["user_id"] for e in events[:users]}
