"""The pre-flight audit of a Redis's own settings (`operators.redis_store.durability_warnings`):
a warning exactly for each setting that can lose or stall the workers' writes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from operators.redis_store import durability_warnings

POLICIES = ["noeviction", "allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-ttl",
            "allkeys-random"]


@given(role=st.sampled_from(["master", "slave"]), maxmemory=st.sampled_from([0, 1 << 30]),
       policy=st.sampled_from(POLICIES), aof=st.sampled_from([0, 1]),
       replicas=st.integers(0, 3), wait=st.integers(0, 3), dev=st.booleans())
def test_a_warning_for_each_setting_that_can_lose_or_stall_writes(role, maxmemory, policy, aof,
                                                                  replicas, wait, dev):
    info = {"role": role, "maxmemory": maxmemory, "maxmemory_policy": policy, "aof_enabled": aof,
            "connected_slaves": replicas}
    warnings = durability_warnings(info, wait, dev)
    expected = {
        "is a replica here": role == "slave",
        "evicts keys": bool(maxmemory) and policy != "noeviction",
        "no append-only file": not aof and not dev,
        "redis.wait_replicas is": role == "master" and wait > replicas,
    }
    said = {kind: any(kind in w for w in warnings) for kind in expected}
    assert said == expected, warnings
    assert len(warnings) == sum(expected.values())


def test_an_info_without_those_fields_warns_of_nothing():
    assert durability_warnings({}) == []
