"""The whole topology in one process: every partition's state in dicts, events applied in order.

This is the production operator code (item stats, followers, user state, item-kNN, global model,
ranking pipeline; with `social`, the suggestions and likers steps: operators/suggestions/inprocess.py;
with `notifications`, the notification steps: operators/notifications/driver.py; with `search`, the
search-session and search-blend steps: `SearchSteps`; with `experiments`, the experiment counters:
`ExperimentCounts`) wired without Bytewax, for replays and `persona evaluate`. The streaming flow
wires the same operators as Bytewax steps (flows/feeds.py) with Redis as the feature store.
"""

from __future__ import annotations

import math

from config import Settings
from operators.context import FEATURES, PRIOR, Context
from operators.dedup import Dedup
from operators.experiments import ArmResolver
from operators.experiments.counts import ExperimentCounts
from operators.feature_store import MemoryFeatureStore
from operators.feed import rank
from operators.graph import Followers, apply_delivery
from operators.item_similarity import ItemSimilarity
from operators.item_stats import ItemStats
from operators.models import OnlineLogit
from operators.notifications.candidates import delivery_message
from operators.notifications.driver import NotificationDriver
from operators.notifications.policy import Policy
from operators.routing import follower_updates, is_fan_out, item_key
from operators.suggestions.inprocess import SearchSteps, SocialSteps
from operators.user_state import UserState
from schemas import Event, Feed


class Engine:
    """In-process persona: `learn_one(event)` then `feed(user_id, now)`."""

    def __init__(self, settings: Settings, store: MemoryFeatureStore | None = None,
                 social: bool = False, notifications: bool = False, search: bool = False,
                 experiments: bool = False):
        self.ctx = Context.from_settings(settings)
        self.store = store or MemoryFeatureStore()
        self.dedup = Dedup(settings.stream.dedup_capacity)
        self.items: dict[str, ItemStats] = {}
        self.followers: dict[str, Followers] = {}
        self.users: dict[str, UserState] = {}
        self.similar: dict[str, ItemSimilarity] = {}
        self.global_model = OnlineLogit(FEATURES, prior=PRIOR,
                                        learning_rate=settings.feed.learning_rate)
        self._model_dirty = False
        self.deleted_users: set[str] = set()
        self.erased_posts: set[str] = set()  # posts of deleted users: later events about them drop
        self.social = SocialSteps() if social else None  # replays write suggestions; evaluate not
        self.search = SearchSteps(self.ctx) if search else None  # replays write the blend
        self.experiments = ExperimentCounts(settings) if experiments else None  # and arm totals
        self.notifications = None  # replays write inboxes too: each recipient's arm's policy
        if notifications:
            policies = ArmResolver(settings, Policy.from_settings)
            self.notifications = NotificationDriver.from_settings(
                settings, policies.default, lambda user: policies.for_user(user)[0])

    def user(self, user_id: str) -> UserState:
        state = self.users.get(user_id)
        if state is None:
            state = self.users[user_id] = UserState(user_id, self.ctx)
        return state

    def learn_one(self, event: Event) -> None:
        if not self.dedup.is_new(event.event_id):
            return
        if self.experiments is not None:  # every unique event counts, as the flow's (erasure's too)
            self.experiments.learn_one(event)
        ctx, store = self.ctx, self.store
        view = None
        post = item_key(event)
        if post in self.erased_posts:  # as the flow's item tombstone: nothing reaches anyone
            return
        if post is not None:
            stats = self.items.get(post)
            if stats is None:
                stats = self.items[post] = ItemStats(post)
            view = stats.learn_one(event, ctx.popularity)
            store.put_item(stats.view)
        if self.social is not None:  # every annotated event, by deleted users too (as the flow)
            self.social.learn_one(event, view)
        if self.search is not None:  # searches read the searcher's features before the event
            self.search.learn_one(event, self.users, store)
        notes = self.notifications.messages(event, view) if self.notifications is not None else None
        features = ctx.settings.features
        deliveries = []  # (author, delivery)
        if event.user_id not in self.deleted_users:  # (a late follow of theirs: `forget_follower`)
            for followed, kind, follower in follower_updates(event):
                if followed not in self.deleted_users:  # (the followers step's tombstone)
                    deliveries += [(followed, d) for d in self.followers.setdefault(
                        followed, Followers()).learn_edge(kind, follower, event.ts,
                                                          features.max_followers_fanout,
                                                          features.followers_recent_posts)]
            if is_fan_out(event):
                deliveries += [(event.user_id, d) for d in self.followers.setdefault(
                    event.user_id, Followers()).learn_post(event.post_id, event.ts,
                                                           features.max_followers_fanout,
                                                           features.followers_recent_posts)]
        for author, delivery in deliveries:
            follower = delivery[1]
            if notes is not None:  # the flow's deliveries are candidates too (or withdraw one)
                notes.append(delivery_message(author, delivery))
            if follower not in self.deleted_users:
                apply_delivery(self.user(follower), delivery, features.pool_size)
        if notes:
            self.notifications.route(notes)
        if event.type == "user_deleted":
            self.erase(event.user_id)
            return
        if event.type == "user_created":
            self.deleted_users.discard(event.user_id)  # a new account under the same id
        if event.user_id in self.deleted_users:  # as the flow's tombstones: ignored
            return
        if self._model_dirty and event.post_id is not None:
            self.publish()  # what a user learns from must reflect everything before it
        out = self.user(event.user_id).learn_one(event, view, ctx, store)
        for a, b, w in out.co_pairs:
            sim = self.similar.get(a)
            if sim is None:
                sim = self.similar[a] = ItemSimilarity(ctx.settings.features.neighbours)
                # In-process, the store reads the live neighbour dict: the same as publishing
                # `sim.top()` after every update (what the streaming flow does per micro-batch);
                # its order is not (insertion, not id), which no reader depends on.
                store.put_neighbours(a, sim.counts)
            sim.learn_one(b, w)
        for ex in out.examples:
            ex.apply(self.global_model)
            self._model_dirty = True

    def erase(self, user_id: str) -> None:
        """`user_deleted` in-process: what the flow's erasure step fans out through its command
        topic (operators/erasure.py), applied to every state at once — the user's state goes, their
        posts leave the items, indices and item-kNN, and every other user forgets them and their
        posts (so a backfill does not bring back what the live workers erased)."""
        state = self.users.pop(user_id, None)
        self.followers.pop(user_id, None)
        for followers in self.followers.values():  # `forget_follower` (follows and ended ones)
            followers.learn_edge("user_deleted", user_id, math.inf, 0, 0)
        self.deleted_users.add(user_id)
        posts = tuple(sorted(p for p, s in self.items.items() if s.view.author_id == user_id))
        for post in posts:
            del self.items[post]
            self.similar.pop(post, None)
            self.store.delete_item(post)
        self.erased_posts.update(posts)
        for similarity in self.similar.values():
            for post in posts:
                similarity.forget(post)
        for state in self.users.values():
            state.forget(user_id, posts)
        if self.social is not None:
            self.social.erase(user_id)
        if self.notifications is not None:
            self.notifications.erase(user_id, posts)

    def settle(self) -> None:
        """The end of the input, as a drained run's erasure passes: what was learned after a
        deletion that names a still deleted user or creates their posts (a follow of them, a
        message to them, a lagging producer's post) is erased too (the flow's erasure index
        answers it with another `forget` or `erase_post`)."""
        for user_id in sorted(self.deleted_users):
            self.erase(user_id)

    def publish(self) -> None:
        """Push a pending global-model update to the feature store (a micro-batch). Item-kNN
        neighbours need no publishing in-process (see `learn_one`)."""
        if self._model_dirty:
            self.store.put_global_model(self.global_model.export())
            self._model_dirty = False

    def feed(self, user_id: str, now: int) -> Feed:
        """The feed `user_id` would be served at event time `now`."""
        self.publish()
        user = self.user(user_id)
        for ex in user.flush_pending(now, self.store):
            ex.apply(self.global_model)
            self._model_dirty = True
        return rank(user, self.store, self.ctx, now)
