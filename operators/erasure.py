"""Erasure: after `user_deleted`, nothing anyone publishes may mention the user or their posts.

Every state that publishes values naming other users (feeds, profiles and ranking features of the
user step; graph records and suggestions of the social step; notification inboxes) reports each
user it starts to mention, once (`Reported`), to the `erasure` step keyed by the mentioned user;
the followers step reports each follow that ended (the list keeps it for posts processed late:
operators.graph), as "this owner's followers list names the user". That step (`MentionIndex`)
keeps who mentions the user, in which of those ways, and which posts they created (the newest
`stream.erasure_posts_per_author`). It keeps the newest `stream.erasure_resident_owners` owners in memory and spills older
ones to a Redis set that the deletion reads back: no owner is forgotten, and a hot key's memory
stays flat. At
`user_deleted` it turns into commands (schemas.erasure): `erase_post` to each of the user's posts
(item features, indices, item-kNN), `forget` to each owner whose states mention the user (they
drop the user and their posts from their state and rewrite what they published) and
`forget_follower` to each owner whose followers list names them (the list drops them) — both to an
owner reported both ways. The followers step takes only `forget_follower`: an owner that merely
mentioned the user costs it no parked-state read. The index stays behind as a tombstone: a mention
reported later (a rank that read a feature cache a second before the erasure reached Redis, a
suggestion computed from a friend's graph record not yet rewritten, an unfollow processed late)
is answered with another command of its kind at once, so the stored values converge to none that
mention the user.

The deleted user's own states know whom *they* mention: at the deletion each one hands its
`Reported` set over (`Reported.take`, an "unmentions" record), and those users' indexes drop the
deleted owner (`drop_owner`, a parked index restored for it), so no index names them; the users
step also sends `forget_follower` to each user the deleted one followed (schemas.erasure), whose
followers list drops them. Both cost one message per user mentioned (followed), once per deletion.

>>> idx = MentionIndex("u1")
>>> idx.learn_post("p1") + idx.learn_mention("u2") + idx.learn_mention("u3")
[]
>>> idx.learn_mention("u3", "forget_follower") + idx.learn_mention("u5", "forget_follower")
[]
>>> [(c.kind, c.key) for c in idx.delete()]
[('erase_post', 'p1'), ('forget', 'u2'), ('forget', 'u3'), ('forget_follower', 'u3'), ('forget_follower', 'u5')]
>>> [(c.kind, c.key, c.posts) for c in idx.learn_mention("u4")]
[('forget', 'u4', ('p1',))]
>>> [(c.kind, c.key, c.posts) for c in idx.learn_mention("u4", "forget_follower")]
[('forget_follower', 'u4', ())]
>>> other = MentionIndex("u2")
>>> other.learn_mention("u1") + other.learn_mention("u3")
[]
>>> other.drop_owner("u1")  # u1 (who mentioned u2) was deleted: no spilled member to remove
[]
>>> list(other.owners)
['u3']
"""

from __future__ import annotations

from collections.abc import Iterable

from operators.bounded import cap_newest
from schemas.erasure import Command

# Owners of one mentioned user kept in the worker (the default of stream.erasure_resident_owners):
# past it the oldest half is spilled to Redis (`take_spill`), so a user everyone mentions (a
# creator) costs the worker the same after a thousand mentioners as after a million.
RESIDENT_OWNERS = 512
# The defaults of stream.erasure_posts_per_author and stream.erasure_reported_per_owner
MAX_POSTS = 5_000  # posts remembered per author (newest kept)
MAX_REPORTED = 5_000  # mentions one owner remembers having reported

# How an owner mentions the user, as the command it needs at the deletion: one bit per kind
OWNER_COMMANDS = ("forget", "forget_follower")  # (states; the followers list)
_BITS = {kind: 1 << i for i, kind in enumerate(OWNER_COMMANDS)}
_BOTH = sum(_BITS.values())


def _pop_oldest(d: dict) -> tuple:
    key = next(iter(d))
    return key, d.pop(key)


def spill_members(owners: dict[str, int], every_bits: bool = False) -> list[str]:
    """Owners as members of the Redis set of spilled owners: "<bits>:<owner>" (a set cannot OR
    bits: an owner spilled twice in two ways is two members, `parse_spill` ORs them back).
    `every_bits`: each owner with every bit combination (the members to remove them).

    >>> spill_members({"u7": 1, "u8": 3})
    ['1:u7', '3:u8']
    >>> parse_spill([b"1:u7", b"2:u7", b"3:u8"])
    {'u7': 3, 'u8': 3}
    """
    if every_bits:
        return [f"{bits}:{owner}" for owner in owners for bits in range(1, _BOTH + 1)]
    return [f"{bits}:{owner}" for owner, bits in owners.items()]


def parse_spill(members) -> dict[str, int]:
    """The owners of `spill_members` output (bytes or str), bits ORed, in sorted member order."""
    out: dict[str, int] = {}
    for m in sorted(m.decode() if isinstance(m, bytes) else m for m in members):
        bits, owner = m.split(":", 1)
        out[owner] = out.get(owner, 0) | int(bits)
    return out


class MentionIndex:
    """One user's reverse index (keyed by that user): who mentions them (each owner with the bits
    of the `OWNER_COMMANDS` it needs), which posts are theirs."""

    __slots__ = ("deleted", "owners", "posts", "spill", "spilled", "user_id")

    def __init__(self, user_id: str):
        self.user_id = user_id
        self.owners: dict[str, int] = {}  # the resident owners, oldest first
        self.posts: dict[str, None] = {}
        self.deleted = False
        self.spill: dict[str, int] = {}  # owners moved out, not yet handed to the writer
        self.spilled = False  # Redis may hold spilled owners (schemas.keyspace `erasure_owners`)

    def learn_post(self, post_id: str, keep: int = MAX_POSTS) -> list[Command]:
        """A post `post_id` of the user's: remembered (the newest `keep`), or erased at once
        after the deletion."""
        if self.deleted:  # a post created after the deletion (a producer lagging): erase it too
            return [Command("erase_post", post_id, self.user_id)]
        self.posts.pop(post_id, None)
        self.posts[post_id] = None
        cap_newest(self.posts, keep)
        return []

    def learn_mention(self, owner: str, command: str = "forget",
                      resident: int = RESIDENT_OWNERS) -> list[Command]:
        """`owner` mentions the user: in its states (`command` "forget") or in its followers list
        ("forget_follower", an ended follow). Past `resident` owners the oldest half is spilled."""
        if owner == self.user_id:
            return []
        if self.deleted:
            return [self._command(command, owner, tuple(self.posts))]
        self.owners[owner] = self.owners.pop(owner, 0) | _BITS[command]
        if len(self.owners) > resident:
            for _ in range(resident // 2):
                old, bits = _pop_oldest(self.owners)
                self.spill[old] = self.spill.get(old, 0) | bits
        return []

    def take_spill(self) -> list[str]:
        """The owners spilled since the last call, as members of the Redis set (`spill_members`),
        for the writer; the index remembers that Redis holds some (`delete` reads them back)."""
        if not self.spill:
            return []
        members, self.spill, self.spilled = spill_members(self.spill), {}, True
        return members

    def drop_owner(self, owner: str) -> list[str]:
        """`owner` (who mentioned this user) was deleted: nothing to tell them any more (their
        followers list went at their deletion too). Returns the spilled members to remove from
        Redis, which might name them."""
        self.owners.pop(owner, None)
        self.spill.pop(owner, None)
        return spill_members(dict.fromkeys([owner], _BOTH), every_bits=True) if self.spilled else []

    def delete(self, spilled: dict[str, int] | None = None) -> list[Command]:
        """The commands of one erasure, to the resident owners and to `spilled` (the owners read
        back from Redis, `parse_spill`); the index keeps only the post ids (for late mentions)."""
        if self.deleted:
            return []
        self.deleted = True
        posts = tuple(self.posts)  # (one tuple shared by every `forget`)
        owners = dict(spilled or {})
        for owners_of in (self.spill, self.owners):  # older spills first, then the resident
            for owner, bits in owners_of.items():
                owners[owner] = owners.pop(owner, 0) | bits
        out = [Command("erase_post", p, self.user_id) for p in posts]
        out += [self._command(kind, owner, posts) for owner, bits in owners.items()
                for kind in OWNER_COMMANDS if bits & _BITS[kind]]
        self.owners, self.spill, self.spilled = {}, {}, False
        return out

    def _command(self, kind: str, owner: str, posts: tuple[str, ...]) -> Command:
        """A followers list needs no post ids: it holds none of the user's."""
        return Command(kind, owner, self.user_id, posts if kind == "forget" else ())

    def undelete(self) -> None:
        """`user_created` again: a new account under the same id starts with nothing."""
        if self.deleted:
            self.deleted, self.posts = False, {}

    def __getstate__(self):
        return (self.user_id, self.owners, list(self.posts), self.deleted, self.spill,
                self.spilled)

    def __setstate__(self, s):
        self.user_id, owners, posts, self.deleted = s[:4]
        self.spill, self.spilled = s[4:] if len(s) > 4 else ({}, False)  # (pickled before spills)
        # owners pickled as a list, before they said how they mention: an ended follow was
        # reported as a mention then, so each may need either command
        self.owners = dict.fromkeys(owners, _BOTH) if isinstance(owners, list) else owners
        self.posts = dict.fromkeys(posts)


class Reported:
    """The users one owner has reported mentioning (bounded: a mention forgotten here is reported
    again, which costs a message, never a miss).

    >>> r = Reported()
    >>> r.new(["u1", "u2", "u1"]), r.new(["u2", "u3"])
    (['u1', 'u2'], ['u3'])
    >>> r.take(), r.take()
    (['u1', 'u2', 'u3'], [])
    """

    __slots__ = ("ids",)

    def __init__(self):
        self.ids: dict[str, None] = {}

    def new(self, ids: Iterable[str | None], cap: int = MAX_REPORTED) -> list[str]:
        """The users of `ids` not reported yet, now remembered (the newest `cap`)."""
        out = []
        for i in ids:
            if i and i not in self.ids:
                self.ids[i] = None
                out.append(i)
        if len(self.ids) > cap:
            cap_newest(self.ids, cap)
        return out

    def forget(self, user_id: str) -> None:
        self.ids.pop(user_id, None)

    def take(self) -> list[str]:
        """Every user reported, emptying the record (its owner was deleted: `drop_owner`)."""
        ids, self.ids = list(self.ids), {}
        return ids

    def __getstate__(self):
        return list(self.ids)

    def __setstate__(self, s):
        self.ids = dict.fromkeys(s)


def index_messages(event) -> list[tuple[str, tuple]]:
    """What the `erasure` step learns from an event directly, keyed by the user it is about (the
    key also last in the value): ("post", post_id, author), ("deleted", user), ("created", user)."""
    if event.type == "post_created" and event.post_id:
        return [(event.user_id, ("post", event.post_id, event.user_id))]
    if event.type in ("user_deleted", "user_created"):
        return [(event.user_id, (event.type[5:], event.user_id))]
    return []


def mention_messages(batch: list) -> list:
    """(mentioned user, ("mentioned", ((kind, owner), …), mentioned user)): one message per user
    mentioned in the batch, whatever the records that mention them, of kind "mention" for each
    user in a ("mentions", owner, users) record (flows.adapters._mentions), "unmention" in an
    ("unmentions", …) one (`flows.adapters._unmentions`), "ended_follow" in the followers step's
    ("ended_follows", …); nothing for other records. Grouped because mentions are most of the
    items this flow routes (~11 per event on the bench workload) while a batch names each user
    ~14 times (a creator is named by many owners at once: 1.38M mentions in 96k groups per 100k
    events, one process), and each routed item costs the exchange a pickle between processes
    (`ungrouped` reads them back in the step)."""
    by_user: dict[str, list[tuple[str, str]]] = {}
    for msg in batch:
        if msg[0] not in ("mentions", "unmentions", "ended_follows"):
            continue
        pair = (msg[0][:-1], msg[1])
        for user in msg[2]:
            pairs = by_user.get(user)
            if pairs is None:
                by_user[user] = [pair]
            else:
                pairs.append(pair)
    return [(user, ("mentioned", tuple(pairs), user)) for user, pairs in by_user.items()]


def ungrouped(values):
    """The erasure step's values with each ("mentioned", ((kind, owner), …), key) group of
    `mention_messages` as its (kind, owner, key) values, in order."""
    for value in values:
        if value[0] == "mentioned":
            key = value[-1]
            for kind, owner in value[1]:
                yield kind, owner, key
        else:
            yield value
