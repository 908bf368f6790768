"""The main dataflow: Kafka activity → features, models, fan-out → ranked feeds in Redis.

Run: `persona run` (or `python -m bytewax.run "flows.feeds:get_flow()"`). Step ids are part of the
recovery contract: never rename them in a deployment.
"""

from __future__ import annotations

import gc
import logging
import math
import os
from collections.abc import Callable

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink
from confluent_kafka import OFFSET_BEGINNING

import config
from config import Settings, logs
from config.security import kafka_config
from flows import metrics, resources
from flows.adapters import (
    POST_CREATED,
    ArmCountsLogic,
    AudienceLogic,
    DedupLogic,
    ErasureLogic,
    ExperimentUserLogic,
    FollowersLogic,
    GlobalModelLogic,
    ItemLogic,
    LikersLogic,
    LocalNotifWeights,
    NotificationLogic,
    NotifModelLogic,
    RedisNotifWeights,
    RedisSink,
    SearchBlendLogic,
    SearchSessionLogic,
    SimilarityLogic,
    SuggestionsLogic,
    UserLogic,
    _Evictable,
    _Logic,
)
from flows.kafka_sinks import DeadLetterSink, ErasureCommandSink, NotificationSink
from flows.kafka_source import KafkaInput, kafka_input
from operators import Context
from operators.dedup import shard_of
from operators.erasure import index_messages, mention_messages
from operators.experiments import ArmResolver, arm_messages, with_arms
from operators.feature_store import FeatureReader
from operators.ingest import decode_message, limits_from
from operators.notifications.candidates import delivery_message, notification_messages
from operators.notifications.policy import Policy
from operators.notifications.trending import TrendingRule, audience_messages
from operators.pacing import TimerBudget
from operators.routing import follower_updates, is_fan_out, item_key
from operators.suggestions.likers import likers_messages
from operators.suggestions.routing import social_messages
from operators.suggestions.search_blend import search_message
from schemas import DeadLetter, Event
from schemas.erasure import Command, decode_command

log = logging.getLogger("persona.flow")


def build_flow(settings: Settings, *, source: Source | None = None,
               dead_letters: Sink | None = None, writes: Sink | None = None,
               store_of: Callable[[], FeatureReader] | None = None,
               tail: bool = True, recovery: bool = False, read_erasures: bool | None = None,
               settle: bool = False,
               notifications: Sink | None = None, erasures: Sink | None = None) -> Dataflow:
    """The topology. Tests and replays swap I/O: `source` (raw payloads or Kafka messages),
    `dead_letters`, `writes`, `notifications` and `erasures` sinks, and `store_of` (the feature
    store rankers read; when given, the notification model's weights are shared in-process too).
    With a `source` and no `erasures` sink the erasure commands go nowhere: only the Kafka input
    reads them back (see operators/erasure.py). `read_erasures` (default: `tail`) reads the command
    topic too (otherwise, with `recovery`, it is listed but held: flows/kafka_source.py). A run
    that stops at the end of its input reads none by default: whether a partition had already
    ended when a command arrived would decide what it wrote; the runner
    (scripts/runner.py `drain`) reads them in later passes over the same recovery state instead.
    `settle`: at the end of the input every resident user's suggestions are computed again (the
    drained run's last pass, over a quiet keyspace: `SuggestionsLogic.on_eof`)."""
    ctx = Context.from_settings(settings)
    limits = limits_from(settings)
    skew = settings.stream.max_future_skew_ms
    dedup_per_shard = settings.stream.dedup_capacity // settings.stream.dedup_shards
    _Logic.recovery, _Logic.settle = recovery, settle
    _Evictable.tombstone_idle_s = settings.stream.tombstone_idle_evict_s
    read_erasures = tail if read_erasures is None else read_erasures
    # the feature store every reading or parking step gets: one getter, looked up once here
    features = store_of or resources.feature_store_of(settings)
    backlog = resources.watch_backlog(settings)  # the process's backlog (catch-up mode)
    # the timer work between two input batches (while catching up: per message read), shared by
    # the debounced steps (operators/pacing.py)
    timers = TimerBudget(settings.stream.timer_budget_s, backlog=backlog,
                         per_message_s=settings.stream.timer_budget_per_message_us / 1e6,
                         interval_s=settings.stream.rank_interval_s)
    metrics.watch_timers(timers)
    flow = Dataflow("persona")

    if source is None:
        # with recovery the command topic is listed even when not read: its offsets may be in
        # the snapshots (flows/kafka_source.py)
        commands = [settings.kafka.erasures] if read_erasures or recovery else []
        kafka = kafka_input("kafka_in", flow, KafkaInput(
            settings.kafka.bootstrap.split(","), [settings.kafka.events_topic] + commands,
            tail=tail, starting_offset=OFFSET_BEGINNING,
            add_config={**kafka_config(settings.kafka), "error_cb": _log_kafka_client_error},
            # a resume offset that retention has deleted restarts at the oldest message kept,
            # not at the end (librdkafka's default), which would skip every retained one unread
            consumer_config={"auto.offset.reset": "earliest"},
            batch_size=settings.stream.kafka_batch_size, raise_on_errors=False,
            held_topics=frozenset() if read_erasures else frozenset(commands)))
        op.inspect("kafka_errors", kafka.errs, _log_kafka_error)
        messages = kafka.oks  # KafkaSourceMessage
    else:
        messages = op.input("input", flow, source)
    erasure_topic = settings.kafka.erasures
    decoded = op.map("decode", messages,  # notes each message's position in the backlog
                     lambda m: _decode_command(m) if getattr(m, "topic", None) == erasure_topic
                     else backlog.note(m) or decode_message(m, limits, skew))
    # erasure commands (schemas.erasure) read back from the flow's own command topic
    is_command = op.branch("is_command", decoded, lambda x: isinstance(x, Command))
    commands = is_command.trues
    valid = op.branch("is_valid", is_command.falses, lambda x: isinstance(x, Event))

    # Event, once per event_id (bounded memory); repeats are dead letters too. Sharded by the
    # actor, not the id: a repeat has the same actor, and one actor's events then stay in order
    # on one worker (a follow never overtakes the unfollow before it on another process)
    by_id = op.key_on("key_event_id", valid.trues,
                      lambda e: shard_of(e.user_id, settings.stream.dedup_shards))
    deduped = op.key_rm("deduped", op.stateful_batch(
        "dedup", by_id, DedupLogic.builder(dedup_per_shard)))
    unique = op.branch("is_unique", deduped, lambda x: isinstance(x, Event))
    events = op.inspect("count_events", unique.trues, metrics.count_event)
    rejected = op.inspect("count_rejected", op.merge("rejected", valid.falses, unique.falses),
                          metrics.count_dead_letter)
    op.output("dead_letters", rejected, dead_letters or DeadLetterSink(
        settings.kafka.bootstrap, settings.kafka.dead_letter_topic, kafka_config(settings.kafka),
        settings.kafka.delivery_timeout_s))

    # item statistics, keyed by post: ("user", Event, view before) | ("item", view after)
    about_post = op.branch("about_post", events, lambda e: item_key(e) is not None)
    post_erasures = op.filter("post_erasures", commands, lambda c: c.kind == "erase_post")
    item_in = op.merge("item_in", op.key_on("key_post", about_post.trues, item_key),
                       op.key_on("key_erase_post", post_erasures, lambda c: c.key))
    item_msgs = op.key_rm("item_msgs", op.stateful_batch("items", item_in, ItemLogic.builder(
        ctx, features)))  # (idle posts are parked)
    item_writes = op.filter("item_writes", item_msgs,
                            lambda m: m[0] in ("item", "forget_item", "park"))
    annotated = op.filter("item_to_user", item_msgs, lambda m: m[0] == "user")
    user_events = op.merge(
        "user_events",
        annotated,
        op.map("as_user_msg", about_post.falses, lambda e: ("user", e, None)),
    )

    # followers, keyed by the followed user: reverse edges, fan-out of new posts to followers;
    # a deleted follower leaves the list at their `forget_follower` command (operators/erasure.py:
    # from the users step if they still followed, from the erasure index for an ended follow)
    follower_msgs = op.merge("follower_in", op.flat_map(
        "follower_msgs", user_events, _follower_messages), op.filter_map(
        "follower_forgets", commands, lambda c: (c.key, ("edge", "user_deleted", c.user, math.inf, c.key))
        if c.kind == "forget_follower" else None))
    follower_out = op.stateful_batch("followers", follower_msgs, FollowersLogic.builder(
        settings.features.max_followers_fanout, settings.features.followers_recent_posts,
        settings.stream.user_idle_evict_s, features))
    # ("deliver" | "undeliver", follower, post, ts): to the follower's pool, and to their
    # notifications (a new post's candidate, or its withdrawal when taken back)
    pool_updates = op.filter("follower_deliveries", follower_out,
                             lambda kv: kv[1][0] in ("deliver", "undeliver"))

    # users, keyed by user: features, online model, micro-batched ranking
    forgets = op.filter("forgets", commands, lambda c: c.kind == "forget")
    # (owner, ("forget", command)): into every step keyed by an owner that may mention the user
    owner_forgets = op.map("key_forget", forgets, lambda c: (c.key, ("forget", c)))
    user_in = op.merge(
        "user_in",
        # each user's events in their own (partition) order, a post's as a placeholder that its
        # annotated copy from the items step fills in (operators.reorder.InOrder)
        op.map("key_user_seq", events, lambda e: (e.user_id, ("event", e, None)
                                                  if item_key(e) is None else ("await", e))),
        op.map("key_user", annotated, lambda m: (m[1].user_id, ("annotated", m[1], m[2]))),
        op.filter_map("key_user_cancel", item_msgs,  # dropped by an erased item: fill nothing;
                      lambda m: (m[1].user_id, m)  # or held for its post (InOrder may give up)
                      if m[0] in ("cancel", "held") else None),
        op.map("key_delivery", op.key_rm("deliveries", pool_updates), lambda d: (d[1], d)),
        owner_forgets,
    )
    user_out = op.key_rm("user_msgs", op.stateful_batch(
        "users", user_in, UserLogic.builder(ctx, features, timers)))

    # item-kNN keyed by item; the global model under one key
    co_pairs = op.flat_map("co_pairs", user_out, _pair_messages)
    nbr_erasures = op.filter_map("nbr_erasures", commands, lambda c: (c.key, (c.key, c))
                                 if c.kind in ("erase_post", "forget_nbr") else None)
    nbr_created = op.filter_map("nbr_created", about_post.trues, lambda e: (
        e.post_id, (e.post_id, POST_CREATED)) if e.type == "post_created" else None)
    neighbours = op.key_rm("nbrs", op.stateful_batch(
        "similarity", op.merge("similarity_in", co_pairs, nbr_erasures, nbr_created),
        SimilarityLogic.builder(settings.features.neighbours, settings.stream.item_idle_evict_s,
                                features, settings.stream.neighbours_interval_s, settings.stream,
                                timers)))
    examples = op.filter_map("examples", user_out,
                             lambda m: ("global", m[1]) if m[0] == "ex" else None)
    model = op.stateful_batch("global_model", examples, GlobalModelLogic.builder(ctx))

    # social discovery, keyed by user: graph records, suggestions (operators/suggestions)
    social_in = op.merge(
        "social_in",
        op.flat_map("social_msgs", user_events, lambda m: social_messages(m[1], m[2])),
        owner_forgets,
    )
    social_out = op.key_rm("social_out", op.stateful_batch(
        "suggestions", social_in, SuggestionsLogic.builder(ctx, features, timers)))
    social = op.filter("social_writes", social_out,
                       lambda m: m[0] not in ("mentions", "unmentions", "liker"))
    # an author's likers set is written by one state keyed by the author, tombstoned at their
    # deletion: a like processed after it cannot recreate the set (operators/suggestions/likers.py);
    # its tombstones are dropped when idle, as the per-user steps' are (with eviction on)
    likers_out = op.key_rm("likers_out", op.stateful_batch("likers", op.merge(
        "likers_in", op.flat_map("likers_msgs", social_out, likers_messages),
        owner_forgets),
        LikersLogic.builder(settings.stream.user_idle_evict_s, features)))
    likers = op.filter("likers_writes", likers_out, lambda m: m[0] != "mentions")

    # search → click, keyed by searcher; the learned re-ranking blend weight under one key
    search_in = op.filter_map("search_msgs", user_events, lambda m: search_message(m[1]))
    search_clicks = op.key_rm("search_clicks", op.stateful_batch(
        "search_sessions", search_in, SearchSessionLogic.builder(ctx, features)))
    blend = op.stateful_batch("search_blend", op.map(
        "key_blend", search_clicks, lambda c: ("global", c)), SearchBlendLogic.builder())

    # notifications, keyed by recipient: candidates → decisions (operators/notifications) → Kafka
    # persona.notifications + Redis inboxes; the global P(open) model under one key
    # trending posts → users whose interests/groups match, keyed by "topic:{t}" / "group:{g}"
    trending = TrendingRule.from_settings(settings)
    audience_in = op.flat_map("audience_msgs", user_events, lambda m: audience_messages(
        m[1], m[2], ctx.popularity, trending))
    trending_cands = op.key_rm("trending_cands", op.stateful_batch(
        "notif_audience", audience_in, AudienceLogic.builder(trending, ctx.affinity)))
    notif_in = op.merge(
        "notif_in",
        op.flat_map("notif_msgs", user_events, lambda m: notification_messages(
            m[1], m[2].author_id if m[2] is not None else None)),
        op.map("notif_new_posts", pool_updates, lambda d: delivery_message(d[0], d[1])),
        trending_cands,  # (recipient, ("cand", Candidate))
        owner_forgets,
    )
    policies = ArmResolver(settings, Policy.from_settings)  # the recipient's experiment arm's
    policy = policies.default
    weights = LocalNotifWeights() if store_of is not None else RedisNotifWeights(settings)
    notif_out = op.key_rm("notif_out", op.stateful_batch(
        "notifications", notif_in, NotificationLogic.builder(
            policy, weights, lambda user: policies.for_user(user)[0],
            settings.stream.user_idle_evict_s,  # idle recipients are parked (see UserLogic)
            features, settings.stream.erasure_reported_per_owner)))
    notif_model = op.stateful_batch("notif_model", op.filter_map(
        "notif_examples", notif_out, lambda m: ("global", m[1]) if m[0] == "notif_ex" else None),
        NotifModelLogic.builder(policy, weights))
    decisions = op.filter_map("decisions", notif_out, lambda m: with_arms(
        m[1], policies.arms(m[1]["user_id"])) if m[0] == "decision" else None)
    op.output("notifications_out", decisions, notifications or NotificationSink(
        settings.kafka.bootstrap, settings.kafka.notifications_topic, kafka_config(settings.kafka),
        settings.kafka.delivery_timeout_s))
    inboxes = op.merge("inboxes", op.filter(
        "notif_writes", notif_out, lambda m: m[0] in ("notifs", "forget_notifs", "park")),
        op.key_rm("notif_weights", notif_model))

    # per-arm online metrics of the enabled experiments (operators/experiments/counts.py): per-user
    # counters (keyed by user) send one delta per batch to the arm's exact totals (keyed by arm)
    arm_events = op.flat_map("arm_events", events, lambda e: arm_messages(e, settings))
    arm_out = op.key_rm("arm_deltas", op.stateful_batch(
        "experiment_users", arm_events, ExperimentUserLogic.builder(
            settings.stream.user_idle_evict_s, features)))  # (idle users are parked)
    arm_counts = op.key_rm("arm_counts", op.stateful_batch(  # ("arm_counts", exp, arm, totals)
        "experiment_counts", op.filter_map("key_arm", arm_out, lambda d: (d[0], d)
                                           if d[0] != "park" else None),
        ArmCountsLogic.builder()))

    # erasure (operators/erasure.py), keyed by the mentioned user: who mentions them, their posts;
    # at user_deleted, commands to every owner and post, read back from the command topic
    erasure_in = op.merge(
        "erasure_in",
        op.flat_map("erasure_events", events, index_messages),
        op.flat_map_batch("mentions", op.merge("mentioned", user_out, social_out, notif_out,
                                               likers_out, op.key_rm("follower_mentions",
                                                                     follower_out)),
                          mention_messages),
    )
    erasure_out = op.key_rm("erasure_out", op.stateful_batch(
        "erasure", erasure_in, ErasureLogic.builder(settings.stream.user_idle_evict_s, features,
                                                settings.stream.erasure_resident_owners,
                                                settings.stream.erasure_posts_per_author)))
    erasure_cmds = op.merge(
        "erasure_cmds", op.filter("erasure_step_cmds", erasure_out,
                                  lambda m: isinstance(m, Command)),
        op.filter_map("nbr_cmds", neighbours, lambda m: m[1] if m[0] == "cmd" else None),
        op.filter_map("user_cmds", user_out, lambda m: m[1] if m[0] == "cmd" else None))
    if source is None or erasures is not None:
        op.output("erasure_commands", erasure_cmds, erasures or ErasureCommandSink(
            settings.kafka.bootstrap, erasure_topic, kafka_config(settings.kafka),
            settings.kafka.delivery_timeout_s))

    # whole-value, idempotent writes to Redis: feeds, profiles, item features, neighbours, model
    feeds = op.filter("feeds", user_out,
                      lambda m: m[0] in ("feed", "profile", "forget_user", "user_features", "park"))
    # the parks of the followers and experiment-users steps (their other outputs go on), and the
    # erasure step's writes: its parks and spilled owners (its commands go to the topic above)
    parks = op.merge("parks", op.filter("follower_parks", op.key_rm(
        "follower_writes", follower_out), _is_park), op.filter("arm_parks", arm_out, _is_park),
        op.filter("erasure_writes", erasure_out, lambda m: not isinstance(m, Command)))
    writes_stream = op.merge("writes", feeds, item_writes,
                             op.filter("nbr_writes", neighbours, lambda m: m[0] != "cmd"),
                             op.key_rm("model", model), social, likers, inboxes, arm_counts,
                             op.key_rm("blend_weight", blend), parks)
    op.output("redis", writes_stream, writes or RedisSink(settings))
    return flow


def _follower_messages(msg) -> list:
    """(followed user, ("edge", kind, follower, ts, followed user) | ("post", post_id, ts, author)
    | ("erase", ts, user) | ("created", ts, user)): the event time second to last (FollowersLogic
    applies a batch in event-time order), the key last (builders do not get it)."""
    event: Event = msg[1]
    ts = event.ts
    out = [(followed, ("edge", kind, follower, ts, followed))
           for followed, kind, follower in follower_updates(event)]
    if is_fan_out(event):
        out.append((event.user_id, ("post", event.post_id, ts, event.user_id)))
    elif event.type == "user_deleted":  # their followers list goes (operators/erasure.py)
        out.append((event.user_id, ("erase", ts, event.user_id)))
    elif event.type == "user_created":  # a new key: nothing parked to read
        out.append((event.user_id, ("created", ts, event.user_id)))
    return out


def _is_park(msg) -> bool:
    """A ("park", kind, key, state) write of an evicting step (`flows.adapters._Evictable`)."""
    return isinstance(msg, tuple) and msg[0] == "park"


def _pair_messages(msg) -> list:
    """(item, (item, [(co-touched item, weight), …])) per item of a user batch's ("co", pairs)
    record (flows.adapters._co), each item's pairs in the order they were made; nothing for
    other records."""
    if msg[0] != "co":
        return []
    by_item: dict[str, list] = {}
    for item, other, weight in msg[1]:
        by_item.setdefault(item, []).append((other, weight))
    return [(item, (item, pairs)) for item, pairs in by_item.items()]


def _decode_command(msg) -> Command | DeadLetter:
    command = decode_command(msg.value or b"")
    return command if command is not None else DeadLetter(
        "malformed erasure command", msg.value or b"", msg.topic, msg.partition, msg.offset)


def _log_kafka_error(_step, err) -> None:
    log.error("Kafka consumer error: %s", err.err)


def _log_kafka_client_error(err) -> None:
    """librdkafka's client-level errors (broker down, all brokers down): the consumer reconnects
    by itself and resumes from its position; say so once per error instead of failing."""
    log.warning("Kafka degraded: %s; the consumer keeps retrying and resumes where it was", err)


def freeze_after_full_collection(phase: str, info: dict) -> None:
    """A gc callback ([stream] gc_freeze): what survived a full collection is long-lived."""
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def get_flow(config_path: str | None = None) -> Dataflow:
    """Entry point for `python -m bytewax.run "flows.feeds:get_flow()"`."""
    settings = config.load(config_path or os.environ.get("PERSONA_CONFIG"))
    logs.configure(settings.log)  # else Python prints warnings bare (no time) and drops INFO
    tail = os.environ.get("PERSONA_TAIL", "1") != "0"
    recovery = bool(os.environ.get("PERSONA_RECOVERY"))
    read_erasures = os.environ.get("PERSONA_READ_ERASURES", "1" if tail else "0") != "0"
    settle = os.environ.get("PERSONA_SETTLE") == "1"
    cpu = os.environ.get("PERSONA_CPU")  # `persona run --pin-cpus` (scripts/runner.py)
    if cpu is not None:  # before Bytewax starts its threads, which inherit the affinity
        os.sched_setaffinity(0, {int(cpu)})
    if settings.stream.gc_threshold:  # a worker process (see [stream] gc_threshold)
        gc.set_threshold(settings.stream.gc_threshold, *gc.get_threshold()[1:])
    metrics.GcPauses.install()
    if settings.stream.gc_freeze and freeze_after_full_collection not in gc.callbacks:
        gc.callbacks.append(freeze_after_full_collection)  # (after GcPauses: it times the pause)
    return build_flow(settings, tail=tail, recovery=recovery, read_erasures=read_erasures,
                      settle=settle)


__all__ = ["build_flow", "get_flow"]
