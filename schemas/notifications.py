"""Notification decisions: the record on the `persona.notifications` topic (key = recipient) and the
items of the recipient's Redis value `…:notifs:{user}`.

A decision record (orjson object): `notification_id` (deterministic from the trigger; a delivery
service deduplicates by it), `user_id` (recipient), `kind` (like, comment, share, follow, reply,
new_post, trending), `actor_id`, `post_id`? / `conversation_id`?, `ts` (event time of the trigger),
`decision` (send | delay | aggregate | suppress), `reason` (REASONS), `p_open` (predicted open
probability, null when a hard rule decided), `send_at` (epoch ms to deliver; null when suppressed),
`group`, `count`, `actors`, `text` ("u7 and 3 others liked your post"), `into` (aggregate: the
notification it was merged into; that one is re-published with the new count and text), and on the
topic only, when the recipient is in an experiment, `arms` ({experiment: arm}: the arms whose
settings decided it, for exposure logging).
No wall-clock time inside: replaying the same events gives the same bytes.
"""

from __future__ import annotations

import orjson

DECISIONS = ("send", "delay", "aggregate", "suppress")
REASONS = {
    "send_now": "sent now: a good hour and enough predicted value",
    "quiet_hours": "delayed: the recipient's quiet hours, delivered at the best allowed hour",
    "best_hour": "delayed to the recipient's learned best hour",
    "aggregated": "merged into an earlier notification of the same post/conversation",
    "budget": "suppressed: the recipient's daily budget is spent",
    "kind_budget": "suppressed: the daily budget of this kind (notifications.budget_<kind>) is spent",
    "low_value": "suppressed: predicted open probability below notifications.min_p_open",
    "blocked": "suppressed: the recipient blocked the actor",
    "muted": "suppressed: the recipient muted the actor",
    "duplicate": "suppressed: the same notification was already decided",
    "recipient_deleted": "suppressed: the recipient's account is deleted",
    "superseded": "suppressed: replaced by a newer one (most-recent baseline)",
    "withdrawn": "suppressed before it was due: the recipient's follow of the author ended before the post",
    "send_all": "sent (send-everything baseline)",
    "next_slot": "delayed to the next budget slot (most-recent baseline)",
    "random": "sent (random-subset baseline)",
    "not_drawn": "suppressed: not in the random subset (random-subset baseline)",
}


def encode_decision(record: dict) -> bytes:
    return orjson.dumps(record)


def encode_inbox(user_id: str, updated_at: int, items: list[dict]) -> bytes:
    """The recipient's Redis value: the newest decisions, newest first, replaced whole."""
    return orjson.dumps({"user_id": user_id, "updated_at": updated_at, "items": items})
