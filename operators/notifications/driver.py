"""The notification topology in one process: the same routing, recipient states and global model as
the streaming steps `notif_msgs` → `notifications` → `notif_model` (flows/feeds.py), for evaluation
and replays. It keeps the facts the flow gets from other partitions: each post's item view (the item
step's `ItemStats`: author, topics, group, trending index), an author's followers (the followers
step's fan-out of new posts) and the topic/group audiences of trending posts (step
`notif_audience`). `Engine(notifications=True)` (replays) keeps the item views and followers itself
and drives the rest (`messages`, `route`, `erase`, `final_writes`).
"""

from __future__ import annotations

from operators.decay import Decay
from operators.graph import Followers
from operators.item_stats import ItemStats
from operators.models import OnlineLogit
from operators.notifications import model as M
from operators.notifications.candidates import new_post_candidate, notification_messages
from operators.notifications.policy import Policy
from operators.notifications.state import Example, RecipientState
from operators.notifications.trending import Audience, TrendingRule, audience_messages
from operators.routing import follower_updates, is_fan_out
from schemas import Event
from schemas.notifications import encode_inbox


class GlobalModel:
    """The global P(open) model (one key in the flow): learns every recipient's labels."""

    def __init__(self, policy: Policy):
        self.model: OnlineLogit = M.new_global(policy.learning_rate)
        self._exported: dict | None = None
        self.ts = 0  # newest event time among the labels learned (the weights' "ts")

    def learn(self, examples: list) -> None:
        """Examples (x, y), or (x, y, event time of the label) from the flow."""
        for ex in examples:
            self.model.learn_one(M.as_dict_list(ex[0]), ex[1])
            if len(ex) > 2:
                self.ts = max(getattr(self, "ts", 0), ex[2])
        if examples:
            self._exported = None

    def export(self) -> dict | None:
        if self.model.n == 0:
            return None
        if self._exported is None:
            self._exported = {**self.model.export(), "ts": getattr(self, "ts", 0)}
        return self._exported


def usable(exported: dict | None, ts: int) -> dict | None:
    """Global weights may be used to decide at event time `ts` only when learned from labels no
    newer than it: a replay (or a restart) then never decides with weights from its own future
    left in Redis by the earlier run, and decides as that run did (the prior until weights of its
    own past exist)."""
    if exported is None or exported.get("ts", 0) <= ts:
        return exported
    return None


def recipient_of(value: tuple) -> str:
    """The recipient a routed message is for: ("self", event, author) is the event's user's own,
    ("cand" | "withdraw", Candidate) names its recipient, ("forget", Command) its owner.

    >>> from operators.notifications.candidates import new_post_candidate
    >>> recipient_of(new_post_candidate("u1", "u2", "p1", 0)[1])
    'u2'
    """
    kind, body = value[0], value[1]
    if kind == "self":
        return body.user_id
    if kind == "forget":
        return body.key
    return body.recipient


def handle(state: RecipientState, value: tuple, exported: dict | None
           ) -> tuple[list[dict], list[Example]]:
    """One routed message for a recipient: ("self", event, author) | ("cand", Candidate) |
    ("withdraw", Candidate) (`candidates.delivery_message`)."""
    if value[0] == "self":  # (its cancellations first: a deletion clears the records)
        return state.cancellations(value[1]), state.apply(value[1], value[2], exported)
    if value[0] == "withdraw":
        return state.withdraw(value[1]), []
    return state.offer(value[1], exported)


class NotificationDriver:
    """`learn_one(event)` → the decision records it causes (in order)."""

    def __init__(self, policy: Policy, trending: TrendingRule | None = None,
                 popularity: Decay | None = None, affinity: Decay | None = None, policy_of=None,
                 max_fanout: int = 10_000):
        self.policy = policy
        self.max_fanout = max_fanout  # features.max_followers_fanout, as the flow's followers step
        self.policy_of = policy_of or (lambda _user: policy)  # the recipient's experiment arm's
        self.states: dict[str, RecipientState] = {}
        self.global_model = GlobalModel(policy)
        self.items: dict[str, ItemStats] = {}
        self.followers: dict[str, Followers] = {}
        self.trending = trending or TrendingRule()
        self.popularity = popularity or Decay(24.0)
        self.affinity = affinity or Decay(168.0)
        self.audiences: dict[str, Audience] = {}

    @classmethod
    def from_settings(cls, settings, policy: Policy, policy_of=None) -> NotificationDriver:
        return cls(policy, TrendingRule.from_settings(settings),
                   Decay(settings.features.popularity_half_life_h),
                   Decay(settings.features.affinity_half_life_h), policy_of,
                   settings.features.max_followers_fanout)

    def state(self, user_id: str) -> RecipientState:
        s = self.states.get(user_id)
        if s is None:
            s = self.states[user_id] = RecipientState(user_id, self.policy_of(user_id))
        return s

    def learn_one(self, event: Event) -> list[dict]:
        before = None
        if event.post_id is not None:
            stats = self.items.get(event.post_id)
            if stats is None:
                stats = self.items[event.post_id] = ItemStats(event.post_id)
            before = stats.learn_one(event, self.popularity)
        msgs = self.messages(event, before)
        # (a log applied in its order: no posts kept for follows processed late, keep=0)
        for followed, kind, follower in follower_updates(event):
            self.followers.setdefault(followed, Followers()).learn_edge(kind, follower, event.ts,
                                                                        self.max_fanout, 0)
        if is_fan_out(event) and event.user_id in self.followers:
            msgs += [new_post_candidate(event.user_id, f, post, ts) for _, f, post, ts in
                     self.followers[event.user_id].learn_post(event.post_id, event.ts,
                                                              self.max_fanout, 0)]
        return self.route(msgs)

    def messages(self, event: Event, view) -> list[tuple[str, tuple]]:
        """The event's messages for recipients (own event, candidates, trending audiences), given
        its post's view (the item step's annotation) or None; a new post's candidates for the
        author's followers are `new_post_candidate`s of the followers' fan-out."""
        msgs = notification_messages(event, view.author_id if view is not None else None)
        for key, msg in audience_messages(event, view, self.popularity, self.trending):
            audience = self.audiences.get(key)
            if audience is None:
                audience = self.audiences[key] = Audience(self.trending, self.affinity)
            msgs += audience.learn(msg)
        return msgs

    def route(self, msgs: list[tuple[str, tuple]]) -> list[dict]:
        out: list[dict] = []
        for key, value in msgs:
            records, examples = handle(self.state(key), value, self.global_model.export())
            self.global_model.learn(examples)
            out.extend(records)
        return out

    def erase(self, user_id: str, posts: tuple[str, ...]) -> None:
        """The erasure's `forget` to every other recipient (operators/erasure.py), at once."""
        for state in self.states.values():
            if not state.deleted:
                state.forget(user_id, posts)

    def final_writes(self) -> list[tuple]:
        """The write records of the end state, in a stable order: the global P(open) weights,
        and every recipient's inbox (once they were decided for) or its deletion."""
        exported = self.global_model.export()
        out: list[tuple] = [("notif_model", exported)] if exported else []
        for user in sorted(self.states):
            state = self.states[user]
            if state.deleted:
                out.append(("forget_notifs", user))
            elif state.decided:
                out.append(("notifs", user, encode_inbox(user, state.last_ts, state.inbox())))
        return out
