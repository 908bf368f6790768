""""Something trending in your interests or groups": a topic/group-keyed audience and its fan-out.

The trigger comes from the item step's view: an engagement that lifts a post's decayed engagement
(`ItemView.pop_log`, the trending index) across `min_engagement` makes the post trending at that
event time. `audience_messages` routes, per event, to keys `topic:{t}` and `group:{g}`:

    ("interest", user, ts)            a new user's declared interest in t
    ("engaged", user, weight, ts, post) the user engaged with a post about t (decayed affinity)
    ("member", user, joined, ts)      the user joined / left group g
    ("trending", post, author, ts)    a post about t / in g became trending

`Audience` (one per key, bounded) answers a trending post with candidates for its top
`max_recipients` users (declared interest, decayed engagement ≥ `min_affinity`, group members),
never the author nor a user who already engaged with the post. A recipient reached through several topics or a group gets one candidate id
(`trending.{recipient}.{post}`); `RecipientState` drops repeats silently.

>>> from operators.decay import Decay
>>> d = Decay(24.0)
>>> a = Audience(TrendingRule(min_engagement=3.0, min_affinity=1.0, max_recipients=10), d)
>>> a.learn(("interest", "u1", 0)) + a.learn(("engaged", "u2", 2.0, 0, "p0"))
[]
>>> [c.notification_id for _, (_, c) in a.learn(("trending", "p1", "u9", 10))]
['trending.u2.p1', 'trending.u1.p1']
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from operators.bounded import cap_top
from operators.decay import Decay
from operators.notifications.candidates import Candidate, candidate_id
from schemas import ENGAGEMENT_WEIGHT, Event

MAX_POSTS, MAX_ENGAGERS = 200, 500  # newest posts whose engagers are remembered (not re-notified)


@dataclass(frozen=True, slots=True)
class TrendingRule:
    min_engagement: float = 5.0  # decayed engagements that make a post trending
    min_affinity: float = 1.0  # decayed engagements with a topic that make it a user's interest
    max_recipients: int = 50
    audience_size: int = 5000  # users remembered per topic / group key (up to a quarter more)

    @classmethod
    def from_settings(cls, settings) -> TrendingRule:
        n = settings.notifications
        return cls(n.trending_min_engagement, n.trending_min_affinity, n.trending_max_recipients,
                   n.trending_audience_size)


def became_trending(event: Event, before, popularity: Decay, rule: TrendingRule) -> bool:
    """Whether this engagement lifts the post (its item view `before` the event) across
    `rule.min_engagement`, read at the event's time: the same update as `ItemStats.learn_one`."""
    weight = ENGAGEMENT_WEIGHT.get(event.type)
    if weight is None or before is None or before.deleted or before.author_id is None:
        return False
    after = popularity.add(before.pop_log, event.ts, weight)
    return (popularity.value(before.pop_log, event.ts) < rule.min_engagement
            <= popularity.value(after, event.ts))


def audience_messages(event: Event, before, popularity: Decay, rule: TrendingRule
                      ) -> list[tuple[str, tuple]]:
    """[(audience key, message)] for one event (`before`: the item view for post events)."""
    kind, user = event.type, event.user_id
    if kind == "user_created":
        return [(f"topic:{t}", ("interest", user, event.ts))
                for t in dict.fromkeys(event.interests or ())]
    if kind in ("group_joined", "group_left") and event.group_id:
        return [(f"group:{event.group_id}", ("member", user, kind == "group_joined", event.ts))]
    if kind not in ENGAGEMENT_WEIGHT or before is None:
        return []
    topics = tuple(dict.fromkeys(before.topics))
    out: list[tuple[str, tuple]] = []
    if before.author_id != user:
        out += [(f"topic:{t}", ("engaged", user, ENGAGEMENT_WEIGHT[kind], event.ts,
                                 before.post_id)) for t in topics]
        if before.group_id:  # group members are the audience; this only remembers the engager
            out.append((f"group:{before.group_id}", ("engaged", user, 0.0, event.ts,
                                                      before.post_id)))
    if became_trending(event, before, popularity, rule):
        trend = ("trending", before.post_id, before.author_id, event.ts)
        out += [(f"topic:{t}", trend) for t in topics]
        if before.group_id:
            out.append((f"group:{before.group_id}", trend))
    return out


class Audience:
    """Who cares about one topic or group; picklable, bounded, no clients."""

    def __init__(self, rule: TrendingRule, affinity: Decay):
        self.rule, self.affinity = rule, affinity
        self.declared: dict[str, int] = {}  # user -> ts (declared interest / group membership)
        self.engaged: dict[str, float] = {}  # user -> log-domain decayed engagement
        self.engagers: dict[str, set[str]] = {}  # newest posts -> users who engaged with them

    def learn(self, msg: tuple) -> list[tuple[str, tuple]]:
        """Apply one routed message; a trending post returns [(recipient, ("cand", Candidate))]."""
        kind = msg[0]
        if kind == "interest" or (kind == "member" and msg[2]):
            self.declared[msg[1]] = msg[-1]
            self._cap(self.declared)  # the newest declarations kept
        elif kind == "member":
            self.declared.pop(msg[1], None)
        elif kind == "engaged":
            _, user, weight, ts, post_id = msg
            if weight > 0:
                self.engaged[user] = self.affinity.add(self.engaged.get(user), ts, weight)
                self._cap(self.engaged)  # log sums order users alike at any time: the most engaged
            engagers = self.engagers.pop(post_id, set())  # re-inserted: newest last
            if len(engagers) < MAX_ENGAGERS:
                engagers.add(user)
            self.engagers[post_id] = engagers
            if len(self.engagers) > MAX_POSTS:
                del self.engagers[next(iter(self.engagers))]
        elif kind == "trending":
            return self.fan_out(*msg[1:])
        return []

    def _cap(self, users: dict) -> None:
        """`rule.audience_size` users kept, trimmed a quarter past it: a full audience (a
        popular topic's) gains users at most events, and trimming one user a time scanned it
        whole each time (28% of a 1M-event replay)."""
        size = self.rule.audience_size
        cap_top(users, size, slack=size // 4)

    def fan_out(self, post_id: str, author: str, ts: int) -> list[tuple[str, tuple]]:
        value = {u: self.affinity.value(s, ts) for u, s in self.engaged.items()}
        users = {u for u, v in value.items() if v >= self.rule.min_affinity} | set(self.declared)
        users.discard(author)
        users -= self.engagers.get(post_id, set())
        # Most engaged first; declared-only users after them (newest declaration first).
        ranked = heapq.nsmallest(self.rule.max_recipients, users, key=lambda u: (
            -value.get(u, 0.0), -self.declared.get(u, 0), u))
        return [(u, ("cand", trending_candidate(u, post_id, author, ts))) for u in ranked]


def trending_candidate(recipient: str, post_id: str, author: str, ts: int) -> Candidate:
    return Candidate(candidate_id("trending", recipient, post_id), recipient, "trending", author, ts,
                     f"trending.{post_id}", post_id=post_id)
