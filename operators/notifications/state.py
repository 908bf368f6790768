"""Everything one recipient's partition keeps for notifications, and the decision per candidate.

Hard rules first (recipient deleted, actor blocked or muted, duplicate id), then aggregation (a
candidate of the same group within `aggregate_window_ms` of a live notification folds into it), then
the policy (`policy.choose`: now / later / too low), then the daily budget and the candidate kind's
daily budget on the local day of delivery. Every decision is a dict record (schemas/notifications.py) with a reason code and the
predicted open probability; the newest `history` are kept for Redis. Sent notifications wait for
feedback (`notification_opened` / `notification_dismissed`); none within `feedback_timeout_ms` of
event time is a negative. Each label trains the recipient's residual model and is returned as an
example (x, y) for the global model. A new post's delivery taken back (an unfollow processed after
the post) withdraws its notification if not sent yet (`withdraw`). All containers are bounded.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np

from operators.bounded import add_capped
from operators.notifications import model as M
from operators.notifications.candidates import KINDS, POST_KINDS, VERBS, Candidate
from operators.notifications.policy import (
    Policy,
    choose,
    chosen_at_random,
    local_day,
    offsets_at,
    slots,
    utc_offset_ms,
)
from schemas import Event

MAX_EDGES = 5000
MAX_AUTHORS = 500
MAX_PENDING = 200
MAX_ACTORS = 5
LIVE = ("send", "delay")

Example = tuple[Sequence[float], bool]


class RecipientState:
    """Picklable per-recipient notification state (no clients)."""

    def __init__(self, user_id: str, policy: Policy):
        self.user_id = user_id
        self.policy = policy
        self.timezone: str | None = None
        self.blocked: set[str] = set()
        self.muted: set[str] = set()
        self.following: set[str] = set()
        self.author_eng: dict[str, int] = {}  # author -> the recipient's likes/comments/shares
        self.deleted = False
        # id -> head id (itself unless merged), oldest first. Plain dicts, not OrderedDicts: a
        # recipient named by many (a creator) keeps `policy.decided_ids`, and an OrderedDict costs ~50
        # bytes more per entry (measured: 458 → 327 KB for a state of 6,000 candidates)
        self.decided: dict[str, str] = {}
        self.sent_per_day: dict[int, int] = {}  # local day -> notifications sent or scheduled
        self.kind_sent: dict[tuple[int, str], int] = {}  # (local day, kind) -> the same, per kind
        self.groups: dict[str, str] = {}  # aggregation group -> head notification id
        self.records: dict[str, dict] = {}  # id -> decision record, newest last
        # head id -> (deadline, x). x as packed doubles, not a list of float objects: 160
        # instead of ~440 bytes for every sent notification awaiting feedback (states pickled
        # before hold lists, which every reader of x takes as well)
        self.pending: dict[str, tuple[int, Sequence[float]]] = {}
        self.slot: tuple[int, str] | None = None  # most_recent baseline: (slot time, waiting id)
        self.model = M.new_user(policy.user_learning_rate)
        self.last_ts = 0

    # ------------------------------------------------------------------------------ own events
    def apply(self, event: Event, author: str | None, exported: dict | None) -> list[Example]:
        """The recipient's own event; returns labelled examples for the global model."""
        out = self.expire(event.ts, exported)
        kind, target = event.type, event.target_id
        if kind == "user_created":
            if self.deleted:  # a new account under a deleted user's id: a fresh recipient
                self.__init__(self.user_id, self.policy)  # (as the other steps take it)
                self.last_ts = event.ts
            self.timezone = event.timezone
        elif kind == "user_deleted":
            self.deleted = True
            self.records.clear()
            self.pending.clear()
            self.groups.clear()
        elif kind == "block" and target:
            _add(self.blocked, target)
            self.following.discard(target)
        elif kind == "mute" and target:
            _add(self.muted, target)
        elif kind == "follow" and target:
            _add(self.following, target)
        elif kind == "unfollow" and target:
            self.following.discard(target)
        elif kind in POST_KINDS and author and author != self.user_id:
            self.author_eng[author] = self.author_eng.get(author, 0) + 1
            if len(self.author_eng) > MAX_AUTHORS:
                weakest = min(self.author_eng, key=lambda a: (self.author_eng[a], a))
                del self.author_eng[weakest]
        elif kind in ("notification_opened", "notification_dismissed") and event.notification_id:
            head = self.decided.get(event.notification_id)
            waiting = self.pending.pop(head, None) if head else None
            if waiting is not None:
                out.append(self._label(waiting[1], kind == "notification_opened", exported))
        return out

    def expire(self, now: int, exported: dict | None) -> list[Example]:
        """Sent notifications without feedback by `now` (event time) become negatives."""
        self.last_ts = max(self.last_ts, now)
        if not self.pending:
            return []
        late = [n for n, (deadline, _) in self.pending.items() if deadline < now]
        return [self._label(self.pending.pop(n)[1], False, exported) for n in late]

    def _label(self, x: list[float], y: bool, exported: dict | None) -> Example:
        M.learn_user(self.model, np.asarray(x), y, exported)
        return x, y

    # ------------------------------------------------------------------------------ candidates
    def offer(self, c: Candidate, exported: dict | None) -> tuple[list[dict], list[Example]]:
        """Decide one candidate. Returns (decision records to publish, examples for the global
        model). A new_post candidate from an author the recipient rarely engages with is no
        candidate at all (no record)."""
        examples = self.expire(c.ts, exported)
        pol = self.policy
        if c.kind == "new_post" and self.author_eng.get(c.actor, 0) < pol.min_author_engagements:
            return [], examples
        if c.kind == "trending" and c.notification_id in self.decided:
            return [], examples  # the same post reached the recipient via another topic/group
        if c.notification_id in self.decided:  # the same like / follow again: never twice
            dup = f"{c.notification_id}~{c.ts}"[:128]
            if dup in self.decided:
                return [], examples
            return [self._record(c, dup, "suppress", "duplicate", None, None)], examples
        if self.deleted:
            return [self._record(c, c.notification_id, "suppress", "recipient_deleted", None,
                                 None)], examples
        if c.actor in self.blocked or c.actor in self.muted:
            reason = "blocked" if c.actor in self.blocked else "muted"
            return [self._record(c, c.notification_id, "suppress", reason, None, None)], examples

        times = slots(c.ts, pol.max_delay_h)
        offsets = offsets_at(times, self.timezone)  # (per slot: a DST change may fall among them)
        offset = offsets[0]
        head_id = self.groups.get(c.group) if pol.mode == "learned" else None
        head = self.records.get(head_id) if head_id else None
        if (head is not None and head["decision"] in LIVE
                and c.ts - head["ts"] <= pol.aggregate_window_ms):
            return self._aggregate(c, head), examples

        x0 = M.row(c.kind, 0.0, self.author_eng.get(c.actor, 0), c.actor in self.following, 1,
                   self.sent_per_day.get(local_day(c.ts, offset), 0))
        hours = [((t + off) % 86_400_000) / 3_600_000 for t, off in zip(times, offsets, strict=True)]
        p = M.predict(self.model, M.at_hours(x0, hours), exported).tolist()
        decision, reason, send_at, value = choose(pol, times, p, offsets)
        send_offset = offsets[times.index(send_at)] if send_at in times else offset
        if pol.mode == "random" and not chosen_at_random(pol, c.notification_id):
            decision, reason = "suppress", "not_drawn"
        out: list[dict] = []
        if decision in LIVE:
            day = local_day(send_at, send_offset)
            if self.sent_per_day.get(day, 0) >= pol.daily_budget:
                decision, reason = "suppress", "budget"
            elif self.kind_sent.get((day, c.kind), 0) >= pol.kind_budget(c.kind):
                decision, reason = "suppress", "kind_budget"
        if decision in LIVE and pol.mode == "most_recent":
            if self.slot is not None and self.slot[0] == send_at:  # newer candidate, same slot
                old = self.records.get(self.slot[1])
                if old is not None and old["decision"] == "delay":
                    out.append(self._cancel(old, "superseded", day))
            self.slot = (send_at, c.notification_id)
        record = self._record(c, c.notification_id, decision, reason, value,
                              send_at if decision in LIVE else None)
        out.append(record)
        if decision in LIVE:
            self.sent_per_day[day] = self.sent_per_day.get(day, 0) + 1
            if len(self.sent_per_day) > 8:
                del self.sent_per_day[min(self.sent_per_day)]
            self.kind_sent[(day, c.kind)] = self.kind_sent.get((day, c.kind), 0) + 1
            if len(self.kind_sent) > 8 * len(KINDS):
                del self.kind_sent[min(self.kind_sent)]
            self.groups[c.group] = c.notification_id
            if len(self.groups) > pol.decided_ids:
                del self.groups[next(iter(self.groups))]
            if len(self.pending) < MAX_PENDING:
                at_send = M.at_hours(x0, [((send_at + send_offset) % 86_400_000) / 3_600_000])[0]
                self.pending[c.notification_id] = (send_at + pol.feedback_timeout_ms,
                                                   array("d", at_send.tolist()))
        return out, examples

    def _aggregate(self, c: Candidate, head: dict) -> list[dict]:
        """`c` merged into the live notification `head` of its group: one notification, updated
        in place ("a and 4 others liked your post"), counting each actor once (a conversation's
        replies come from the same few people). The head moves to the newest place among the
        records, so the aggregate records it gathers never push it out of `history`, where
        the next candidate of the group looks for it."""
        if c.actor not in head["actors"]:
            head["count"] += 1
            if len(head["actors"]) < MAX_ACTORS:
                head["actors"].append(c.actor)
        head_id = head["notification_id"]
        self.records[head_id] = self.records.pop(head_id)
        head["text"] = text(head["kind"], head["actors"][0], head["count"])
        record = self._record(c, c.notification_id, "aggregate", "aggregated", head["p_open"],
                              head["send_at"], into=head["notification_id"])
        self.decided[c.notification_id] = head["notification_id"]
        return [dict(head, actors=list(head["actors"])), record]

    def _cancel(self, old: dict, reason: str, day: int) -> dict:
        """A scheduled (delayed) notification suppressed after all, its place in the budgets of
        its local `day` freed; the record to publish again (the delivery service drops it)."""
        old.update(decision="suppress", reason=reason, send_at=None)
        self.pending.pop(old["notification_id"], None)
        if day in self.sent_per_day:
            self.sent_per_day[day] -= 1
        if (day, old["kind"]) in self.kind_sent:
            self.kind_sent[(day, old["kind"])] -= 1
        return dict(old, actors=list(old["actors"]))

    def withdraw(self, c: Candidate) -> list[dict]:
        """A new post's delivery taken back (an unfollow processed after the post:
        operators.graph): its notification is withdrawn if it is not sent yet — delayed to after
        the newest event time this recipient saw — and may be decided afresh if the post is
        delivered again (a follow processed later still). One sent (`send`, or a delay already
        due) stays sent: nothing unsends it; the recipient did follow the author when it went
        out. (A new-post notification is never aggregated: one per recipient and post.)"""
        rec = self.records.get(c.notification_id)
        if (rec is None or rec["decision"] != "delay" or rec["send_at"] <= self.last_ts
                or self.decided.get(c.notification_id) != c.notification_id):
            return []
        day = local_day(rec["send_at"], utc_offset_ms(rec["ts"], self.timezone))
        out = self._cancel(rec, "withdrawn", day)
        del self.decided[c.notification_id]
        if self.groups.get(c.group) == c.notification_id:
            del self.groups[c.group]
        if self.slot is not None and self.slot[1] == c.notification_id:
            self.slot = None
        return [out]

    def _record(self, c: Candidate, nid: str, decision: str, reason: str, p: float | None,
                send_at: int | None, into: str | None = None) -> dict:
        rec = {"notification_id": nid, "user_id": self.user_id, "kind": c.kind,
               "actor_id": c.actor, "ts": c.ts, "decision": decision, "reason": reason,
               "p_open": None if p is None else round(float(p), 4), "send_at": send_at,
               "group": c.group, "count": 1, "actors": [c.actor], "text": text(c.kind, c.actor, 1)}
        if c.post_id is not None:
            rec["post_id"] = c.post_id
        if c.conversation_id is not None:
            rec["conversation_id"] = c.conversation_id
        if into is not None:
            rec["into"] = into
        self.decided[nid] = into or nid
        if len(self.decided) > self.policy.decided_ids:
            del self.decided[next(iter(self.decided))]
        if not self.deleted:
            self.records.pop(nid, None)  # (re-decided: newest again)
            self.records[nid] = rec
            if len(self.records) > self.policy.history:
                self._evict(c.ts)
        return dict(rec, actors=list(rec["actors"]))

    def _evict(self, now: int) -> None:
        """Down to `history` records, the oldest first, but a delay still to go out (after
        `now`) last: `withdraw` and the cancellations find it there while it can be taken back."""
        keep = self.policy.history
        waiting = [n for n, r in self.records.items()
                   if r["decision"] == "delay" and (r["send_at"] or 0) > now]
        held = set(waiting)
        for nid in [n for n in self.records if n not in held]:
            if len(self.records) <= keep:
                return
            del self.records[nid]
        for nid in waiting:
            if len(self.records) <= keep:
                return
            del self.records[nid]

    def cancellations(self, event: Event) -> list[dict]:
        """Records to publish again for delays that must no longer go out once `event` (the
        recipient's own) is applied: every one at their deletion, those of the actor they block
        or mute. Suppressed, their budget freed; the delivery service drops them."""
        kind, target = event.type, event.target_id
        if kind == "user_deleted":
            gone = lambda r: True  # noqa: E731
        elif kind in ("block", "mute") and target:
            gone = lambda r: r["actor_id"] == target and r["actors"] == [target]  # noqa: E731
        else:
            return []
        reason = {"user_deleted": "recipient_deleted", "block": "blocked", "mute": "muted"}[kind]
        out = []
        for rec in list(self.records.values()):
            if rec["decision"] == "delay" and (rec["send_at"] or 0) > event.ts and gone(rec):
                day = local_day(rec["send_at"], utc_offset_ms(rec["send_at"], self.timezone))
                out.append(self._cancel(rec, reason, day))
        return out

    def forget(self, user_id: str, posts: tuple[str, ...]) -> bool:
        """Erasure (operators.erasure): drop a deleted user (as actor, edge, engaged author) and
        every record about them or their posts; True when the inbox changed."""
        gone = set(posts)
        names = gone | {user_id}
        for edges in (self.blocked, self.muted, self.following):
            edges.discard(user_id)
        self.author_eng.pop(user_id, None)

        def named(nid: str | None) -> bool:  # ids are "kind.recipient.post.actor" (~ts for repeats)
            return nid is not None and not names.isdisjoint(nid.replace("~", ".").split("."))

        # a record by its fields (its id's pieces would also match "ann" in "ann.lee": ids may
        # hold dots); what is known by id only — the head a record was merged into when that
        # head has left the records, the dedup memory — by the id's pieces (a stranger's id
        # matched there costs one merged record, or one repeat notification)
        dropped = {nid for nid, r in self.records.items()
                   if r["actor_id"] == user_id or r.get("post_id") in gone
                   or (r.get("into") not in (None, nid) and r["into"] not in self.records
                       and named(r["into"]))}
        changed = False
        for r in self.records.values():  # an aggregated notification keeps its other actors
            if r["notification_id"] not in dropped and user_id in r["actors"]:
                changed = True
                r["actors"].remove(user_id)
                r["count"] -= 1
                r["text"] = text(r["kind"], r["actors"][0], r["count"])
        dropped |= {nid for nid, r in self.records.items() if r.get("into") in dropped}
        for nid in dropped:
            del self.records[nid]
            self.pending.pop(nid, None)
        for nid in [n for n, head in self.decided.items()
                    if n in dropped or head in dropped or named(n) or named(head)]:
            del self.decided[nid]
        for group in [g for g, head in self.groups.items() if head in dropped or named(head)]:
            del self.groups[group]
        if self.slot is not None and self.slot[1] in dropped:
            self.slot = None
        reported = getattr(self, "reported", None)
        if reported is not None:
            reported.forget(user_id)
        return changed or bool(dropped)

    def inbox(self) -> list[dict]:
        """The newest `history` decision records, newest first (the Redis value's items). The
        records themselves, not copies (encoded at once after every changed batch: copying them
        was a fifth of the step's time): read them, do not change them."""
        return list(reversed(self.records.values()))


def text(kind: str, actor: str, count: int) -> str:
    verb = VERBS[kind]
    if count <= 1:
        return f"{actor} {verb}"
    return f"{actor} and {count - 1} other{'s' if count > 2 else ''} {verb}"


def _add(edges: set[str], target: str) -> None:
    add_capped(edges, target, MAX_EDGES)
