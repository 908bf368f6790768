"""Author likers sets (`likers` keys) written by one state per author, so a deletion is final.

A like is learned by the *liker's* social state (`state.SocialState` emits ("liker", author,
liker, ts)), and an author's deletion by the author's. Written to Redis from those two states,
a like processed after the author's `user_deleted` recreated the deleted author's key, and
whether it was processed before or after depended on how the partitions interleaved (two drained
2-process runs differed). Here every write to an author's key goes through step `likers`, keyed
by the author: the author's deletion deletes the key and leaves a tombstone that drops later
likes (until the user is created again); a deleted liker leaves each author's set through the
same key's state, after the likes it sent. What the key holds at the end no longer depends on
the interleaving.

>>> s = LikersOf()
>>> s.apply([("liker", "a", "l1", 5), ("forget_likers", "a"), ("liker", "a", "l2", 6)])
[('liker', 'a', 'l1', 5), ('forget_likers', 'a')]
>>> s.deleted, s.apply([("undeleted", "a"), ("liker", "a", "l3", 7)])
(True, [('liker', 'a', 'l3', 7)])

A deleted liker leaves the sets of the authors their own (capped) state still names through
`forget_social`; every other author's set learns it from the erasure index: the flow reports each
liker written as mentioned by the author (flows.adapters.LikersLogic), so the liker's deletion
sends the author a `forget` command, which leaves the set too.

>>> from schemas.erasure import Command
>>> s.apply([("forget", Command("forget", "a", "l1", ()))])
[('unliker', 'a', 'l1')]
"""

from __future__ import annotations


def likers_messages(record: tuple) -> list[tuple[str, tuple]]:
    """(author, message) for each social write record that touches an author's likers set."""
    kind = record[0]
    if kind == "liker":  # ("liker", author, liker, ts)
        return [(record[1], record)]
    if kind == "forget_social":  # ("forget_social", user, groups, engaged authors)
        user = record[1]
        return [(user, ("forget_likers", user))] + [
            (a, ("unliker", a, user)) for a in (record[3] if len(record) > 3 else ())]
    if kind == "undeleted":
        return [(record[1], ("undeleted", record[1]))]
    return []


class LikersOf:
    """One author's side of the likers writes: only whether the author is deleted."""

    __slots__ = ("deleted",)

    def __init__(self):
        self.deleted = False

    def apply(self, messages) -> list[tuple]:
        """The write records to apply, in order; likes of a deleted author are dropped."""
        out: list[tuple] = []
        for m in messages:
            kind = m[0]
            if kind == "liker":
                if not self.deleted:
                    out.append(m)
            elif kind == "forget_likers":
                self.deleted = True
                out.append(m)
            elif kind == "undeleted":
                self.deleted = False
            elif kind == "forget":  # ("forget", Command): a deleted user the author's set may hold
                out.append(("unliker", m[1].key, m[1].user))
            else:  # ("unliker", author, deleted liker)
                out.append(m)
        return out

    def __getstate__(self):
        return self.deleted

    def __setstate__(self, state):
        self.deleted = state
