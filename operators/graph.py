"""The follower side of the social graph, keyed by the followed user, for fan-out on write.

`follow` events are owned by the follower's partition (UserState.following); this state holds the
reverse edges so a new post can be delivered to every follower's candidate pool. Authors with more
followers than `max_fanout` are not pushed (celebrity split): their posts reach followers through the
trending and topic sources instead.

>>> g = Followers()
>>> g.learn_one("follow", "u2"); g.learn_one("follow", "u3"); g.learn_one("unfollow", "u2")
>>> g.fan_out(10)
['u3']
"""

from __future__ import annotations


class Followers:
    """The followers of `user_id` (the state's key: it is parked under it when idle). `deleted`:
    the user was deleted, a tombstone that a late follow (processed after the deletion) does not
    fill again until the id is created anew."""

    __slots__ = ("deleted", "ids", "user_id")

    def __init__(self, user_id: str | None = None, deleted: bool = False):
        self.user_id, self.deleted = user_id, deleted
        self.ids: dict[str, None] = {}

    def learn_one(self, kind: str, follower: str) -> None:
        if kind == "follow" and not self.deleted:
            self.ids[follower] = None
        elif kind in ("unfollow", "block_by_target", "user_deleted"):
            self.ids.pop(follower, None)

    def fan_out(self, max_fanout: int) -> list[str]:
        if len(self.ids) > max_fanout:
            return []
        return list(self.ids)

    def __getstate__(self):
        return (self.user_id, list(self.ids), self.deleted)

    def __setstate__(self, state):
        if isinstance(state, list):  # pickled before the state held its key
            state = (None, state)
        self.user_id, ids, *deleted = state  # (… or its deletion)
        self.ids, self.deleted = dict.fromkeys(ids), bool(deleted and deleted[0])
