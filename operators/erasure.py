"""Erasure: after `user_deleted`, nothing anyone publishes may mention the user or their posts.

Every state that publishes values naming other users (feeds, profiles and ranking features of the
user step; graph records and suggestions of the social step; notification inboxes) reports each
user it starts to mention, once (`Reported`), to the `erasure` step keyed by the mentioned user.
That step (`MentionIndex`) keeps, bounded, who mentions the user and which posts they created. At
`user_deleted` it turns into commands (schemas.erasure): `erase_post` to each of the user's posts
(item features, indices, item-kNN) and `forget` to each owner, who drops the user and their posts
from its state and rewrites what it published. The index stays behind as a tombstone: a mention
reported later (a rank that read a feature cache a second before the erasure reached Redis, a
suggestion computed from a friend's graph record not yet rewritten) is answered with another
`forget` at once, so the stored values converge to none that mention the user.

The deleted user's own states know whom *they* mention: at the deletion each one hands its
`Reported` set over (`Reported.take`, an "unmentions" record), and those users' indexes drop the
deleted owner (`drop_owner`, a parked index restored for it), so no index names them; the users
step also sends `forget_follower` to each user the deleted one followed (schemas.erasure), whose
followers list drops them. Both cost one message per user mentioned (followed), once per deletion.

>>> idx = MentionIndex("u1")
>>> idx.learn_post("p1") + idx.learn_mention("u2") + idx.learn_mention("u3")
[]
>>> [(c.kind, c.key) for c in idx.delete()]
[('erase_post', 'p1'), ('forget', 'u2'), ('forget', 'u3')]
>>> [(c.kind, c.key, c.posts) for c in idx.learn_mention("u4")]
[('forget', 'u4', ('p1',))]
>>> other = MentionIndex("u2")
>>> other.learn_mention("u1") + other.learn_mention("u3")
[]
>>> other.drop_owner("u1"); list(other.owners)  # u1 (who mentioned u2) was deleted
['u3']
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.erasure import Command

MAX_OWNERS = 20_000  # owners remembered per mentioned user (newest kept)
MAX_POSTS = 5_000  # posts remembered per author (newest kept)
MAX_REPORTED = 5_000  # mentions one owner remembers having reported


def _cap_newest(d: dict, n: int) -> None:
    while len(d) > n:
        del d[next(iter(d))]


class MentionIndex:
    """One user's reverse index (keyed by that user): who mentions them, which posts are theirs."""

    __slots__ = ("deleted", "owners", "posts", "user_id")

    def __init__(self, user_id: str):
        self.user_id = user_id
        self.owners: dict[str, None] = {}
        self.posts: dict[str, None] = {}
        self.deleted = False

    def learn_post(self, post_id: str) -> list[Command]:
        if self.deleted:  # a post created after the deletion (a producer lagging): erase it too
            return [Command("erase_post", post_id, self.user_id)]
        self.posts.pop(post_id, None)
        self.posts[post_id] = None
        _cap_newest(self.posts, MAX_POSTS)
        return []

    def learn_mention(self, owner: str) -> list[Command]:
        if owner == self.user_id:
            return []
        if self.deleted:
            return [Command("forget", owner, self.user_id, tuple(self.posts))]
        self.owners.pop(owner, None)
        self.owners[owner] = None
        _cap_newest(self.owners, MAX_OWNERS)
        return []

    def drop_owner(self, owner: str) -> None:
        """`owner` (who mentioned this user) was deleted: nothing to tell them any more."""
        self.owners.pop(owner, None)

    def delete(self) -> list[Command]:
        """The commands of one erasure; the index keeps only the post ids (for late mentions)."""
        if self.deleted:
            return []
        self.deleted = True
        posts = tuple(self.posts)
        out = [Command("erase_post", p, self.user_id) for p in posts]
        out += [Command("forget", o, self.user_id, posts) for o in self.owners]
        self.owners = {}
        return out

    def undelete(self) -> None:
        """`user_created` again: a new account under the same id starts with nothing."""
        if self.deleted:
            self.deleted, self.posts = False, {}

    def __getstate__(self):
        return (self.user_id, list(self.owners), list(self.posts), self.deleted)

    def __setstate__(self, s):
        self.user_id, owners, posts, self.deleted = s
        self.owners, self.posts = dict.fromkeys(owners), dict.fromkeys(posts)


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

    def new(self, ids: Iterable[str | None]) -> list[str]:
        out = []
        for i in ids:
            if i and i not in self.ids:
                self.ids[i] = None
                out.append(i)
        if len(self.ids) > MAX_REPORTED:
            _cap_newest(self.ids, MAX_REPORTED)
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
