"""The Redis keyspace contract, shared by the writers (workers) and the reader.

Every key lives under a keyspace version; `{prefix}:active` names the active version. Per-user and
per-item keys put the id in a hash tag (`{...}`) so one user's reads hit one Redis Cluster slot.

>>> ks = Keyspace("persona", "1")
>>> ks.feed("u1"), ks.active
('persona:v1:feed:{u1}', 'persona:active')
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

ALL_TOPICS = "_all"


@dataclass(frozen=True, slots=True)
class Keyspace:
    prefix: str
    version: str

    @property
    def active(self) -> str:
        """Pointer to the active keyspace version (a string)."""
        return f"{self.prefix}:active"

    @property
    def feed_trace(self) -> str:
        """List of traced feed writes "user generated_at written_ms" (stream.freshness_sample)."""
        return f"{self.prefix}:trace:feeds"

    @property
    def base(self) -> str:
        return f"{self.prefix}:v{self.version}"

    def feed(self, user_id: str) -> str:
        """The user's ranked feed: one orjson value (schemas.outputs.Feed), replaced whole."""
        return f"{self.base}:feed:{{{user_id}}}"

    def profile(self, user_id: str) -> str:
        """The user's top affinities (authors, topics) as orjson, for the inspector."""
        return f"{self.base}:profile:{{{user_id}}}"

    def notifications(self, user_id: str) -> str:
        """The recipient's newest notification decisions (schemas.notifications), replaced whole."""
        return f"{self.base}:notifs:{{{user_id}}}"

    @property
    def notif_model(self) -> str:
        """The global P(open) notification model's weights (orjson)."""
        return f"{self.base}:model:notif"

    def experiment(self, experiment: str, arm: str) -> str:
        """Counters of one experiment arm (operators/experiments/counts.py), orjson, replaced whole."""
        return f"{self.base}:exp:{experiment}:{arm}"

    @property
    def experiments(self) -> str:
        """Set of "experiment/arm" cells that have counters."""
        return f"{self.base}:experiments"

    def item(self, post_id: str) -> str:
        """An item's features (ItemView wire list)."""
        return f"{self.base}:item:{{{post_id}}}"

    def neighbours(self, post_id: str) -> str:
        """An item's item-kNN neighbours: {post_id: co-engagement count}."""
        return f"{self.base}:nbrs:{{{post_id}}}"

    def trending(self, topic: str | None) -> str:
        """Sorted set of post ids by log-domain decayed popularity, per topic or over all."""
        return f"{self.base}:trending:{topic or ALL_TOPICS}"

    @property
    def fresh(self) -> str:
        """Sorted set of post ids by creation time."""
        return f"{self.base}:fresh"

    @property
    def global_model(self) -> str:
        """The global ranking model's weights (orjson)."""
        return f"{self.base}:model:global"

    # social discovery (operators/suggestions) -----------------------------------------------
    def graph(self, user_id: str) -> str:
        """A user's published graph record: {"f": followees, "g": groups, "a": engaged authors}."""
        return f"{self.base}:graph:{{{user_id}}}"

    def suggestions(self, user_id: str) -> str:
        """A user's suggestions {"people", "groups", "conversations", "contacts"} (orjson)."""
        return f"{self.base}:suggestions:{{{user_id}}}"

    def user_features(self, user_id: str) -> str:
        """The user's ranking features (operators.suggestions.snapshot), for search re-ranking."""
        return f"{self.base}:ufeat:{{{user_id}}}"

    def erasure_owners(self, user_id: str) -> str:
        """Set of the users whose states mention `user_id`, spilled by the erasure step past its
        resident owners (operators.erasure `RESIDENT_OWNERS`; members "<bits>:<owner>"), with the
        parked states' TTL; read back and deleted at the user's deletion."""
        return f"{self.base}:owners:{{{user_id}}}"

    def parked(self, kind: str, key: str) -> str:
        """An idle key's worker state, pickled, with a TTL: a user's ("user" | "social" | "notif"
        | "followers" (key: the followed user) | "erasure" (the mentioned user's index) | "expuser"
        (experiment counters) step; `stream.user_idle_evict_s`) or a post's ("item" | "nbrs";
        `stream.item_idle_evict_s`). The worker dropped it and restores it at the key's next
        input. Empty states are not parked, and a deleted user has none: their parked states
        are deleted at the deletion, and the erasure step's tombstone is never parked."""
        return f"{self.base}:parked:{kind}:{{{key}}}"

    @property
    def deleted_users(self) -> str:
        """Set of deleted users' `deleted_tag`s: never suggested, whatever a stale stored value
        still says (the ids themselves are not stored: see operators/erasure.py). In one Redis
        Cluster slot with `deleted_version` (hash tag `{deleted}`): one script changes both."""
        return f"{self.base}:deleted_users:{{deleted}}"

    @property
    def deleted_version(self) -> str:
        """A counter incremented at every change of `deleted_users` (and only then: a change
        applied again leaves it, operators/suggestions/writes.py): a worker's cached answers
        about who is deleted stay valid while it does not move."""
        return f"{self.base}:deleted_version:{{deleted}}"

    def deleted_tag(self, user_id: str) -> str:
        """A deleted user's entry in `deleted_users`: a keyed hash of the id (keyed by the
        keyspace, so no two keyspaces share tags) — a scan of Redis does not show the id."""
        return _deleted_tag(self.base, user_id)

    @property
    def search_blend(self) -> str:
        """The learned weight of personalisation in search re-ranking {"weight", "clicks"}."""
        return f"{self.base}:model:search_blend"

    def group_members(self, group_id: str) -> str:
        """Set of a group's members."""
        return f"{self.base}:gmembers:{{{group_id}}}"

    @property
    def popular_users(self) -> str:
        """Sorted set: user -> follower count (the 2000 most followed)."""
        return f"{self.base}:popular_users"

    def likers(self, author_id: str) -> str:
        """Sorted set: users who engaged with an author's posts -> last event time (newest 200)."""
        return f"{self.base}:likers:{{{author_id}}}"

    def user_pattern(self, user_id: str) -> str:
        return f"{self.base}:*:{{{user_id}}}"


@functools.lru_cache(maxsize=1 << 16)
def _deleted_tag(base: str, user_id: str) -> str:
    """`Keyspace.deleted_tag`, kept for the most recent ids: the suggestions step tags every user
    it suggests at each run (a blake2b each was ~7% of the step)."""
    return hashlib.blake2b(user_id.encode(), digest_size=16, key=base.encode()[:64]).hexdigest()
