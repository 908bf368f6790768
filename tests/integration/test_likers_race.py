"""A deleted author's likers set stays deleted, whatever comes after (README "Erasure").

Likes are learned by the liker's social state and deletions by the author's; when both wrote the
`likers` key, a like processed after the author's `user_deleted` recreated it, so drained
2-process runs differed in it. Deterministic here: one partition, the like of the deleted
author's post comes well after the deletion (batches of 20 messages, 200 events between), in a
drained run (which does not read its erasure commands back, so the items step does not drop
the like: only the likers step's tombstone can).
"""

from __future__ import annotations

import uuid

import orjson
import redis

from tests.integration.helpers import cleanup, isolated_env, run_pipeline

T = 1_767_225_600_000


def _log() -> list[dict]:
    n = iter(range(1, 10_000))

    def ev(kind: str, user: str, **fields) -> dict:
        i = next(n)
        return {"v": 1, "event_id": f"e{i:05d}", "type": kind, "ts": T + i * 1000,
                "user_id": user, **fields}

    out = [ev("user_created", u) for u in ("ua", "ub", "ul", "um")]
    out += [ev("post_created", "ua", post_id="pa", topics=["t1"]),
            ev("post_created", "ub", post_id="pb", topics=["t2"]),
            ev("like", "ul", post_id="pa"), ev("like", "ul", post_id="pb"),
            ev("like", "um", post_id="pb"),
            ev("user_deleted", "ua")]
    out += [ev("impression", "ub", post_id="pb") for _ in range(200)]
    out += [ev("like", "um", post_id="pa"),  # after its author's deletion
            ev("comment", "ul", post_id="pa"),
            ev("user_deleted", "ul")]  # a deleted liker leaves the other authors' sets
    return out


def test_a_like_after_its_authors_deletion_does_not_recreate_their_likers(live):
    unique = uuid.uuid4().hex[:10]
    env = isolated_env(live, unique)
    env["PERSONA_KAFKA__PARTITIONS"] = "1"
    env["PERSONA_STREAM__KAFKA_BATCH_SIZE"] = "20"
    settings = run_pipeline(env, [orjson.dumps(e) for e in _log()])
    client = redis.Redis.from_url(live[1])
    try:
        version = client.get(f"{settings.redis.prefix}:active").decode()
        base = f"{settings.redis.prefix}:v{version}"
        assert client.exists(f"{base}:item:{{pa}}"), "the run wrote the deleted author's post"
        assert not client.exists(f"{base}:likers:{{ua}}"), (
            "a like processed after its author's deletion recreated their likers set: "
            f"{client.zrange(f'{base}:likers:{{ua}}', 0, -1)}")
        assert client.zrange(f"{base}:likers:{{ub}}", 0, -1) == [b"um"]
    finally:
        cleanup(settings, client)
