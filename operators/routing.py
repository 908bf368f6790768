"""Which partition learns what from an event. Shared by the streaming flow and the in-process engine,
so both apply every event to the same state in the same way.
"""

from __future__ import annotations

from schemas import POST_ACTIONS, Event

ITEM_EVENTS = POST_ACTIONS | {"post_created", "post_deleted"}


def item_key(event: Event) -> str | None:
    """The post whose statistics this event updates (item partition key)."""
    if event.post_id is not None and event.type in ITEM_EVENTS:
        return event.post_id
    return None


def follower_updates(event: Event) -> list[tuple[str, str, str]]:
    """(followed user, "follow" | "unfollow" | "block_by_target", follower): reverse edges for the
    followers partition. A block ends both follows: the blocker's of the target, and the
    target's of the blocker (who no longer gets the blocker's new posts)."""
    if event.target_id is None or event.target_id == event.user_id:
        return []
    if event.type == "follow":
        return [(event.target_id, "follow", event.user_id)]
    if event.type == "unfollow":
        return [(event.target_id, "unfollow", event.user_id)]
    if event.type == "block":
        return [(event.target_id, "unfollow", event.user_id),
                (event.user_id, "block_by_target", event.target_id)]
    return []


def is_fan_out(event: Event) -> bool:
    """A new post to deliver to the author's followers."""
    return event.type == "post_created" and event.post_id is not None


# Events that only record what the user already saw or did elsewhere: the served feed stays right
# for what the user is looking at (it is being scrolled), and the seen filter drops those posts at
# the next rank; re-ranking on each of them was most of the worker's ranks (a rank per ~1.6 events).
SEEN_ONLY_TYPES = frozenset({"impression", "dwell", "search", "notification_opened",
                             "notification_dismissed"})


def reads_feed(event: Event) -> bool:
    """The user is reading their feed: a feed made stale by earlier inputs is ranked first, so
    what the user learns from (the choice set of the feed read) holds every input before the
    read, whenever the timers fired."""
    return event.type == "impression"


def reranks_now(event: Event) -> bool:
    """Whether the actor's feed is re-ranked at the next micro-batch (`stream.rank_interval_s`);
    other events wait `stream.seen_rerank_s` (their state changes are applied at once)."""
    return event.type not in SEEN_ONLY_TYPES
