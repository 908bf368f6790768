"""The notification topology in one process: the same routing, recipient states and global model as
the streaming steps `notif_msgs` → `notifications` → `notif_model` (flows/feeds.py), for evaluation
and replays. It keeps the two facts the flow gets from other partitions: a post's author (the item
step's view) and an author's followers (the followers step's fan-out of new posts).
"""

from __future__ import annotations

from operators.graph import Followers
from operators.models import OnlineLogit
from operators.notifications import model as M
from operators.notifications.candidates import new_post_candidate, notification_messages
from operators.notifications.policy import Policy
from operators.notifications.state import Example, RecipientState
from schemas import Event

MAX_FANOUT = 10_000


class GlobalModel:
    """The global P(open) model (one key in the flow): learns every recipient's labels."""

    def __init__(self, policy: Policy):
        self.model: OnlineLogit = M.new_global(policy.learning_rate)
        self._exported: dict | None = None

    def learn(self, examples: list[Example]) -> None:
        for x, y in examples:
            self.model.learn_one(M.as_dict_list(x), y)
        if examples:
            self._exported = None

    def export(self) -> dict | None:
        if self.model.n == 0:
            return None
        if self._exported is None:
            self._exported = self.model.export()
        return self._exported


def handle(state: RecipientState, value: tuple, exported: dict | None
           ) -> tuple[list[dict], list[Example]]:
    """One routed message for a recipient: ("self", event, author) | ("cand", Candidate)."""
    if value[0] == "self":
        return [], state.apply(value[1], value[2], exported)
    return state.offer(value[1], exported)


class NotificationDriver:
    """`learn_one(event)` → the decision records it causes (in order)."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.states: dict[str, RecipientState] = {}
        self.global_model = GlobalModel(policy)
        self.authors: dict[str, str] = {}
        self.followers: dict[str, Followers] = {}

    def state(self, user_id: str) -> RecipientState:
        s = self.states.get(user_id)
        if s is None:
            s = self.states[user_id] = RecipientState(user_id, self.policy)
        return s

    def learn_one(self, event: Event) -> list[dict]:
        author = None
        if event.post_id is not None:
            if event.type == "post_created":
                self.authors[event.post_id] = event.user_id
            author = self.authors.get(event.post_id)
        msgs = notification_messages(event, author)
        if event.type == "follow" and event.target_id:
            self.followers.setdefault(event.target_id, Followers()).learn_one("follow",
                                                                                event.user_id)
        elif event.type in ("unfollow", "block") and event.target_id:
            self.followers.setdefault(event.target_id, Followers()).learn_one("unfollow",
                                                                                event.user_id)
        elif event.type == "post_created" and event.user_id in self.followers:
            msgs += [new_post_candidate(event.user_id, f, event.post_id, event.ts)
                     for f in self.followers[event.user_id].fan_out(MAX_FANOUT)]
        return self.route(msgs)

    def route(self, msgs: list[tuple[str, tuple]]) -> list[dict]:
        out: list[dict] = []
        for key, value in msgs:
            records, examples = handle(self.state(key), value, self.global_model.export())
            self.global_model.learn(examples)
            out.extend(records)
        return out
