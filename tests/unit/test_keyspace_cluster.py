"""The Redis key design works on Redis Cluster: every key about one user (or one post, group,
author) hashes to one slot through its `{id}` hash tag, so per-user reads and whole-value writes never
cross slots; multi-key reads are pipelines, which a cluster client splits by node."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from schemas.keyspace import Keyspace

PER_USER = ("feed", "profile", "notifications", "graph", "suggestions", "user_features",
            "likers", "user_pattern")
PER_ITEM = ("item", "neighbours")

ids = st.text(st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)),
              min_size=1, max_size=40)


@given(ids, st.sampled_from(["persona", "bench-1"]), st.sampled_from(["1", "27"]))
def test_one_users_keys_share_one_slot(user_id, prefix, version):
    ks = Keyspace(prefix, version)
    slots = {key_slot(getattr(ks, kind)(user_id).encode()) for kind in PER_USER}
    assert slots == {key_slot(user_id.encode())}


@given(ids)
def test_one_posts_keys_share_one_slot(post_id):
    ks = Keyspace("persona", "1")
    assert {key_slot(getattr(ks, kind)(post_id).encode()) for kind in PER_ITEM} == {
        key_slot(post_id.encode())}


def test_users_spread_over_slots():
    ks = Keyspace("persona", "1")
    slots = {key_slot(ks.feed(f"u{i:05d}").encode()) for i in range(10_000)}
    assert len(slots) > 5000  # 16384 slots: no hot slot from the prefix
