"""The social steps in-process: `suggestions` and `likers` without Bytewax (replays, `linkpred`),
and `search_sessions` with `search_blend` (replays: `SearchSteps`).

Every user's `SocialState` learns what `routing.social_messages` routes to it, as the flow's
`suggestions` step does (flows.adapters.SuggestionsLogic); the likers records pass each author's
`likers.LikersOf` as in step `likers`; every write record is applied to a `MemoryGraphStore`,
which holds what RedisWriter would and is what suggestions read. `final_writes` turns the end state
into the records the flow leaves behind, suggestions computed once from everyone's final records
(what a drained run's settling pass does), in a stable order: two replays write the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

from operators.suggestions.compute import encode, suggest
from operators.suggestions.likers import LikersOf, likers_messages
from operators.suggestions.routing import social_messages
from operators.suggestions.search import search_clicks
from operators.suggestions.search_blend import SearchBlend, SearchSession, search_message
from operators.suggestions.snapshot import decode_user, encode_user
from operators.suggestions.state import SocialState
from operators.suggestions.store import MemoryGraphStore
from operators.user_state import UserState
from schemas import Event


class SocialSteps:
    """Every user's social state and the graph store their records build, in one process."""

    def __init__(self):
        self.graph = MemoryGraphStore()
        self.users: dict[str, SocialState] = {}
        self.deleted_authors: dict[str, LikersOf] = {}  # step `likers` keeps only tombstones

    def learn_one(self, event: Event, view) -> None:
        """`event` with its post's view (the items step's annotation), or None."""
        for user, msg in social_messages(event, view):
            state = self.users.get(user)
            if state is None:
                state = self.users[user] = SocialState(user)
            if msg[0] == "event" and msg[1].type == "user_deleted":  # as SuggestionsLogic does
                self._apply([("forget_social", user, list(state.groups), sorted(state.authors))])
                self.users[user] = SocialState(user, deleted=True)
                continue
            self._apply(state.learn(msg))

    def _apply(self, records: list[tuple]) -> None:
        """Where the flow sends the step's records: likes only through step `likers` (keyed by
        the author, whose tombstone drops likes after their deletion), the rest to the writer."""
        for record in records:
            if record[0] != "liker":
                self.graph.apply(record)
            for author, msg in likers_messages(record):
                likers = self.deleted_authors.pop(author, None) or LikersOf()
                for write in likers.apply([msg]):
                    self.graph.apply(write)
                if likers.deleted:
                    self.deleted_authors[author] = likers

    def erase(self, user_id: str) -> None:
        """The erasure's `forget` to every other state (operators/erasure.py), at once; and the
        user leaves every likers set, also those of authors their capped state no longer held."""
        for state in self.users.values():
            if not state.deleted:
                state.forget(user_id)
        for author in self.graph.liked_by(user_id):
            self.graph.apply(("unliker", author, user_id))

    def publish(self) -> list[tuple]:
        """Every state's changed graph record and follower count (a micro-batch), applied."""
        out = [r for user in sorted(self.users) for r in self.users[user].publish()]
        for record in out:
            self.graph.apply(record)
        return out

    def final_writes(self, features) -> Iterator[tuple]:
        """The write records of the end state: graph records and follower counts, group members,
        likers, the deleted users, and every other user's suggestions at their last event time.
        Mentions of a deleted user learned after the deletion (a follow of them, their follow,
        a message to them) must have been erased again first (`Engine.settle`), as a drained
        run's erasure index answers each with another `forget`."""
        published = self.publish()  # before any suggestion: they read everyone's final records
        yield from published
        yield from self.graph.set_records()
        for user in sorted(self.users):
            state = self.users[user]
            if state.deleted:  # into the deleted users' set: never suggested, whatever names them
                yield ("forget_social", user, [], [])
                continue
            yield ("suggestions", user, encode(suggest(state, self.graph, features, state.last_ts)))


class SearchSteps:
    """Every searcher's `SearchSession` and the global `SearchBlend`, in event time: a search's
    results are scored with the searcher's features as the users step publishes them
    (`encode_user`, which the flow's step reads back from `…:ufeat`) from their state before the
    search, so the weight learned depends on the log alone, not on when ranks ran."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.sessions: dict[str, SearchSession] = {}
        self.blend = SearchBlend()

    def learn_one(self, event: Event, users: dict[str, UserState], features) -> None:
        """`event` with every user's state (before the event) and the feature store."""
        if search_message(event) is None:
            return
        user = users.get(event.user_id) if event.type == "search" else None
        if user is not None:
            user = decode_user(encode_user(user), self.ctx)
        session = self.sessions.get(event.user_id) or SearchSession()
        for shown, clicked in search_clicks(session, event, user, features, self.ctx):
            self.blend.learn_click(shown, clicked)
        if session.searches:  # as the flow's step: no state for who has nothing to click
            self.sessions[event.user_id] = session
        else:
            self.sessions.pop(event.user_id, None)

    def final_writes(self) -> list[tuple]:
        """The blend's weight, once a click was learned (the flow writes it per batch of clicks)."""
        return [self.blend.write()] if self.blend.clicks else []
