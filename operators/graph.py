"""The follower side of the social graph, keyed by the followed user, for fan-out on write.

`follow` events are owned by the follower's partition (UserState.following); this state holds the
reverse edges so a new post can be delivered to every follower's candidate pool. Authors with more
followers than `max_fanout` are not pushed (celebrity split): their posts reach followers through the
trending and topic sources instead.

A post reaches this state through the items step, a follow directly, so a post and one of the
author's follows (unfollows) can be processed in either order whatever their event times (another
batch, another worker, a backlog). The state keeps when each follow began and ended and the
author's newest posts (`features.followers_recent_posts`, N): a post goes to the followers who
followed at its time, a follow processed late delivers the kept posts created after it, an unfollow
processed late takes back those created after it. So, for the newest N posts, the deliveries are
those of event-time order in whatever order one follower's edges (in their order: one user's
events) and the author's posts interleave.

>>> g = Followers()
>>> g.learn_post("p1", 20, max_fanout=10, keep=5)  # no follower yet: kept
[]
>>> g.learn_edge("follow", "u2", 10, 10, 5)  # processed late, followed before p1
[('deliver', 'u2', 'p1', 20)]
>>> g.learn_edge("follow", "u3", 30, 10, 5)  # followed after p1
[]
>>> g.learn_post("p2", 40, 10, 5)
[('deliver', 'u2', 'p2', 40), ('deliver', 'u3', 'p2', 40)]
>>> g.learn_edge("unfollow", "u2", 35, 10, 5)  # processed after p2, which it precedes: taken back
[('undeliver', 'u2', 'p2', 40)]
>>> g.learn_post("p0", 32, 10, 5)  # processed after that unfollow, which it precedes
[('deliver', 'u3', 'p0', 32), ('deliver', 'u2', 'p0', 32)]
"""

from __future__ import annotations

import math

# (kind, follower, post_id, created ts): "deliver" adds the post to the follower's candidate pool,
# "undeliver" takes it out again (UserState.deliver / undeliver)
Delivery = tuple[str, str, str, int]

ENDS = ("unfollow", "block_by_target")  # a follow's end (a follower's deletion: "user_deleted")


class Followers:
    """The followers of one user (the step's key, which the step remembers: the state does not
    hold it), each with the event time of their follow; the follows that ended recently,
    (follower, since, until); the user's newest posts with their created ts. `deleted`: the user
    was deleted, a tombstone that a late follow (processed after the deletion) does not fill again
    until the id is created anew; it keeps no posts. `pulled`: the user passed `max_fanout`
    followers once (celebrity split): the list keeps no one from then on, however many follow or
    leave, so a celebrity's list does not grow with their audience (and never flaps between push
    and pull)."""

    __slots__ = ("deleted", "ended", "ids", "posts", "pulled")

    def __init__(self, deleted: bool = False):
        self.deleted = deleted
        self.pulled = False
        self.ids: dict[str, float] = {}  # follower -> event time of the follow
        self.ended: list[tuple[str, float, float]] = []  # (follower, since, until), by until
        self.posts: dict[str, int] = {}  # the newest posts -> created ts

    def learn_edge(self, kind: str, follower: str, ts: float, max_fanout: int,
                   keep: int) -> list[Delivery]:
        """A follow (kind "follow"), its end (`ENDS`) or the follower's deletion ("user_deleted":
        they leave every list, nothing is taken back) at event time `ts`: what it delivers or
        takes back. Nothing past `max_fanout` followers, then or later (`pulled`); `keep` as in
        `learn_post`."""
        if kind == "user_deleted":
            self.ids.pop(follower, None)
            self.ended = [e for e in self.ended if e[0] != follower]
            return []
        joins = kind == "follow" and follower not in self.ids  # (a repeated follow adds no one)
        if self._pulled_past(len(self.ids) + joins, max_fanout):
            return []
        if kind == "follow":
            if self.deleted or follower in self.ids:  # (already following: delivered since then)
                return []
            self.ids[follower] = ts
            change = "deliver"
        elif kind in ENDS and follower in self.ids:
            self.ended.append((follower, self.ids.pop(follower), ts))
            self._prune(keep)
            change = "undeliver"
        else:
            return []
        return [(change, follower, post, created) for post, created in self.posts.items()
                if created > ts]

    def learn_post(self, post_id: str, ts: int, max_fanout: int, keep: int) -> list[Delivery]:
        """The user's new post created at `ts`: delivered to the followers who followed at `ts`
        (none above `max_fanout`), kept (the newest `keep`) for the edges processed later."""
        if self.deleted or self._pulled_past(len(self.ids), max_fanout):  # (also: max_fanout
            return []  # lowered since the list grew)
        if keep > 0:
            self.posts[post_id] = ts
            if len(self.posts) > keep:  # the oldest goes (posts mostly come in their order)
                del self.posts[min(self.posts, key=lambda p: (self.posts[p], p))]
            self._prune(keep)
        out = dict.fromkeys(f for f, since in self.ids.items() if since < ts)
        out.update(dict.fromkeys(f for f, since, until in self.ended if since < ts < until))
        return [("deliver", f, post_id, ts) for f in out]

    def _pulled_past(self, followers: int, max_fanout: int) -> bool:
        """Pulled, or pulled now that `followers` pass `max_fanout`: for good, followers get the
        user's posts from the trending and topic sources, so the list, its ended follows and its
        kept posts go."""
        if not self.pulled and followers > max_fanout:
            self.pulled, self.ids, self.ended, self.posts = True, {}, [], {}
        return self.pulled

    def _prune(self, keep: int) -> None:
        """Ended follows matter to a post processed late that they contain: none that ended
        before the oldest kept post once `keep` are kept (an older post is past the bound), and
        at most `keep` of them (the latest ended)."""
        if self.posts and len(self.posts) >= keep:
            oldest = min(self.posts.values())
            self.ended = [e for e in self.ended if e[2] > oldest]
        if len(self.ended) > keep:
            self.ended = sorted(self.ended, key=lambda e: e[2])[len(self.ended) - keep:]

    def __getstate__(self):
        return (list(self.ids.items()), self.deleted, list(self.posts.items()), self.ended,
                self.pulled)

    def __setstate__(self, state):
        if isinstance(state, list):  # ids only: pickled before it held its key or deletion
            state = (state,)
        elif state[0] is None or isinstance(state[0], str):  # (user_id, ids, …): pickled when it
            state = state[1:]  # held its key for parking (`flows.adapters._Evictable` remembers it)
        ids, *rest = state  # (… or its deletion, its follows' times and posts, its ended follows)
        self.deleted = bool(rest and rest[0])
        # follows pickled without their time: before anything kept, so before every post
        self.ids = {f: -math.inf for f in ids} if ids and isinstance(ids[0], str) else dict(ids)
        self.posts = dict(rest[1]) if len(rest) > 1 else {}
        self.ended = list(rest[2]) if len(rest) > 2 else []
        self.pulled = bool(rest[3]) if len(rest) > 3 else False


def net(records: list) -> list:
    """`records` without each delivery that a later one of them takes back, nor that taking back
    (one batch's: a follow and its unfollow processed after a post they both precede), so the post
    is not a notification candidate either; other records pass.

    >>> net([("deliver", "u2", "p1", 5), ("ended_follows", "a", ("u2",)),
    ...      ("undeliver", "u2", "p1", 5)])
    [('ended_follows', 'a', ('u2',))]
    """
    delivered: dict[tuple[str, str], int] = {}
    dropped: set[int] = set()
    for i, r in enumerate(records):
        if r[0] == "deliver":
            delivered[(r[1], r[2])] = i
        elif r[0] == "undeliver" and (r[1], r[2]) in delivered:
            dropped |= {delivered.pop((r[1], r[2])), i}
    return [r for i, r in enumerate(records) if i not in dropped] if dropped else records


def apply_delivery(user, delivery: Delivery, pool_size: int) -> None:
    """A delivery (or its taking back) to the follower's state (a UserState)."""
    kind, _follower, post_id, created_ts = delivery
    if kind == "deliver":
        user.deliver(post_id, created_ts, pool_size)
    else:
        user.undeliver(post_id)
