"""Ranked suggestions with reasons for one user: people, groups, conversations, contacts.

Reads only the user's own `SocialState`, other users' published graph records (`store.GraphReader`)
and the feed's feature store (trending posts per topic, for cold start). Run by the `suggestions`
step for dirty users in micro-batches and by `linkpred` offline — one code path.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict

import orjson

from operators.suggestions.state import SocialState

SIZE = 30  # suggestions kept per kind
FOLLOWEES_READ = 200  # newest followees whose graph records are read (friends-of-friends)
AUTHORS_READ = 10  # top engaged authors whose likers are read (co-engagement)
GROUPS_READ = 20
TRENDING_READ = 50  # trending posts per topic read for cold start / topic match
CONVERSATION_HALF_LIFE_MS = 24 * 3_600_000

# People score = Σ weight × signal (signals are documented in README "Social discovery"); weights
# tuned with `persona evaluate-links` on generated logs with split seeds 3 and 11 (7 is reported).
PEOPLE_WEIGHTS = {"fof": 1.0, "follows_you": 3.0, "engaged": 1.5, "co_engaged": 0.3,
                  "shared_groups": 0.5, "followees_engage": 0.3, "topic_creator": 0.3,
                  "popular": 0.5}
POPULAR_READ = 100
FOLLOWEE_SIGNALS = frozenset({"fof", "followees_engage"})


def _top(scores: dict[str, float], n: int) -> list[str]:
    """The n best keys by (-score, key), without sorting them all: the n-th best score is found
    first (a heap over plain floats), then only the keys at or above it are sorted."""
    if len(scores) <= n:
        return sorted(scores, key=lambda k: (-scores[k], k))
    floor = heapq.nlargest(n, scores.values())[-1]
    best = [k for k, v in scores.items() if v >= floor]
    return sorted(best, key=lambda k: (-scores[k], k))[:n]


def people(state: SocialState, graph, features, now: int, n: int = SIZE) -> list[dict]:
    """Score every candidate with one float per candidate (Σ weight × signal over the signals
    in `PEOPLE_WEIGHTS`); the per-signal values and details behind the reasons are worked out for
    the n chosen only (`_people_reasons`). The candidate pool is large (a followee's record
    names up to 300 users), so the per-candidate work is one dict update per edge."""
    followees = list(state.following)[-FOLLOWEES_READ:]
    records = graph.graphs(followees) if followees else {}
    authors = _top(state.authors, AUTHORS_READ)
    likers = graph.likers(authors) if authors else {}
    groups_read = list(state.groups)[-GROUPS_READ:]
    members = graph.group_members(groups_read) if groups_read else {}
    additive = _additive_sources(followees, records, likers, members)
    assigned = _assigned_signals(state, graph, features)  # kind -> {candidate: (value, detail)}
    score: dict[str, float] = {}
    get = score.get
    for kind, weight, _source, candidates in additive:
        w = PEOPLE_WEIGHTS[kind] * weight
        for c in candidates:
            score[c] = get(c, 0.0) + w
    for kind, values in assigned.items():
        w = PEOPLE_WEIGHTS[kind]
        for c, (value, _detail) in values.items():
            score[c] = get(c, 0.0) + w * value
    for c in state.excluded():
        score.pop(c, None)
    chosen = _top(score, n)
    reasons = _people_reasons(chosen, additive, assigned)
    return [{"id": c, "score": round(score[c], 6), "reasons": reasons[c]} for c in chosen]


def _additive_sources(followees, records, likers, members) -> list[tuple]:
    """(kind, weight, source, candidates) for the signals that add up over sources: friends of
    friends and what followees engage with (Adamic-Adar over the followee's out-degree),
    co-engagement (an engaged author's likers), shared groups (a group's members)."""
    out: list[tuple] = []
    for f in followees:
        rec = records.get(f)
        if not rec:
            continue
        if rec["f"]:
            out.append(("fof", 1.0 / math.log(2.0 + len(rec["f"])), f, rec["f"]))
        if rec["a"]:
            out.append(("followees_engage", 1.0 / math.log(2.0 + len(rec["a"])), f, rec["a"]))
    for a, users in likers.items():
        out.append(("co_engaged", 1.0 / math.log(2.0 + len(users)), a, users))
    for g, users in members.items():
        out.append(("shared_groups", 1.0 / math.log(2.0 + len(users)), g, users))
    return out


def _assigned_signals(state: SocialState, graph, features) -> dict[str, dict]:
    """kind -> {candidate: (value, details)} for the signals set once per candidate."""
    out: dict[str, dict] = {"follows_you": {c: (1.0, ()) for c in state.followers},
                            "engaged": {c: (math.log1p(count), (round(count),))
                                        for c, count in state.authors.items()}}
    creators: dict[str, tuple[float, list]] = {}
    for topic, post_authors in _topic_authors(state, features).items():
        for rank, c in enumerate(post_authors):
            value = 1.0 / (1.0 + 0.1 * rank)
            best, topics = creators.get(c, (0.0, []))
            topics.append(topic)
            creators[c] = (max(best, value), topics)
    out["topic_creator"] = creators
    top = graph.popular(POPULAR_READ)
    if top:  # most-followed prior: log-scaled to [0, 1]
        scale = math.log1p(top[0][1])
        out["popular"] = {c: (math.log1p(count) / scale, (int(count),)) for c, count in top}
    return out


def _people_reasons(chosen: list[str], additive: list[tuple], assigned: dict) -> dict[str, list]:
    """The reasons of the chosen candidates: each signal's value and details (which followees,
    authors, groups, topics), recomputed for them alone."""
    signal: dict[str, dict[str, float]] = {c: {} for c in chosen}
    detail: dict[str, dict[str, list]] = {c: {} for c in chosen}
    wanted = set(chosen)

    def add(sources) -> None:
        for kind, weight, source, candidates in sources:
            for c in wanted.intersection(candidates):
                signal[c][kind] = signal[c].get(kind, 0.0) + weight
                detail[c].setdefault(kind, []).append(source)

    def assign(kinds) -> None:
        for kind in kinds:
            values = assigned.get(kind, {})
            for c in wanted.intersection(values):
                signal[c][kind], details = values[c]
                detail[c][kind] = list(details)

    # the order the signals were first met in (reasons of equal weight keep it): followee
    # signals, follows you, engaged, co-engaged, groups, topics, popular
    add(s for s in additive if s[0] in FOLLOWEE_SIGNALS)
    assign(("follows_you", "engaged"))
    add(s for s in additive if s[0] not in FOLLOWEE_SIGNALS)
    assign(("topic_creator", "popular"))
    return {c: _reasons(signal[c], detail[c]) for c in chosen}


def _topic_authors(state: SocialState, features) -> dict[str, list[str]]:
    """Authors of trending posts in the user's interests/top topics (newest users' only signal)."""
    if features is None:
        return {}
    out: dict[str, list[str]] = {}
    for topic in state.top_topics(3):
        posts = features.trending(topic, TRENDING_READ)
        views = features.items(posts)
        out[topic] = list(dict.fromkeys(views[p].author_id for p in posts
                                        if p in views and views[p].author_id))
    return out


def _reasons(signal: dict[str, float], detail: dict[str, list]) -> list[dict]:
    ranked = sorted((k for k in signal if signal[k] > 0),
                    key=lambda k: -PEOPLE_WEIGHTS[k] * signal[k])
    out = []
    for code in ranked[:3]:
        d = detail.get(code, [])
        r: dict = {"code": code}
        if code in ("engaged", "popular"):
            r["count"] = d[0] if d else 1
        elif d:
            r["count"] = len(set(d))
            r["detail"] = str(d[0])
        out.append(r)
    return out


def _co_members(state: SocialState, graph) -> list[str]:
    """Members of the user's groups (a sample per group), whose groups are suggested."""
    mine = list(state.groups)[-GROUPS_READ:]
    members = graph.group_members(mine) if mine else {}
    return sorted({m for ms in members.values() for m in ms} - {state.user_id})[:100]


def groups(state: SocialState, graph, features, n: int = SIZE) -> list[dict]:
    """Groups the user's followees and group co-members are in, and groups posting in their topics."""
    score: dict[str, float] = defaultdict(float)
    why: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    followees = list(state.following)[-FOLLOWEES_READ:]
    for f, rec in (graph.graphs(followees) if followees else {}).items():
        for g in rec["g"]:
            score[g] += 1.0 / math.log(2.0 + len(rec["g"]))
            why[g]["followees_in_group"].append(f)
    co_members = _co_members(state, graph)
    for m, rec in (graph.graphs(co_members) if co_members else {}).items():
        for g in rec["g"]:
            score[g] += 0.5 / math.log(2.0 + len(rec["g"]))
            why[g]["co_membership"].append(m)
    if features is not None:
        for topic in state.top_topics(3):
            posts = features.trending(topic, TRENDING_READ)
            views = features.items(posts)
            for p in posts:
                g = views[p].group_id if p in views else None
                if g:
                    score[g] += 0.2
                    why[g]["topic"].append(topic)
    for g in state.groups:
        score.pop(g, None)
    return [{"id": g, "score": round(score[g], 6),
             "reasons": [{"code": code, "count": len(set(d)), "detail": str(d[0])}
                         for code, d in why[g].items()]}
            for g in _top(score, n)]


def conversations(state: SocialState, now: int, n: int = SIZE) -> list[dict]:
    """Recency + affinity + reply likelihood (Beta-smoothed replies per received prompt)."""
    out = []
    for conv_id, c in state.conversations.items():
        recency = 0.5 ** (max(0, now - c.last_ts) / CONVERSATION_HALF_LIFE_MS)
        affinity = math.log1p(c.sent + c.received) / 3.0
        reply = (c.replies + 1.0) / (c.prompts + 2.0)
        s = recency + affinity + reply + (0.5 if c.awaiting else 0.0)
        reasons = [{"code": "recent", "weight": round(recency, 4)},
                   {"code": "reply_likelihood", "weight": round(reply, 4)}]
        if c.awaiting:
            reasons.insert(0, {"code": "awaiting_reply"})
        out.append({"id": conv_id, "score": round(s, 6), "peers": list(c.peers),
                    "reasons": reasons})
    out.sort(key=lambda x: (-x["score"], x["id"]))
    return out[:n]


def contacts(state: SocialState, now: int, n: int = SIZE) -> list[dict]:
    """People to message: frequent contacts, mutual follows and engaged authors, not messaged today."""
    recent = {p for c in state.conversations.values()
              if now - c.last_ts < CONVERSATION_HALF_LIFE_MS for p in c.peers}
    blocked = state.blocked | state.muted | state.blocked_by | recent | {state.user_id}
    score: dict[str, float] = defaultdict(float)
    why: dict[str, list] = defaultdict(list)
    for p, count in state.contacts.items():
        score[p] += math.log1p(count)
        why[p].append({"code": "messaged", "count": round(count)})
    for p in state.following:
        if p in state.followers:
            score[p] += 1.0
            why[p].append({"code": "mutual_follow"})
    for p, count in state.authors.items():
        if p in state.following:
            score[p] += 0.3 * math.log1p(count)
            why[p].append({"code": "engaged", "count": round(count)})
    for p in blocked:
        score.pop(p, None)
    return [{"id": p, "score": round(score[p], 6), "reasons": why[p]} for p in _top(score, n)]


def suggest(state: SocialState, graph, features, now: int) -> dict:
    """All four kinds. The graph reads go in two round trips (`graph.prefetch`): the followees'
    records, engaged authors' likers and groups' members first; then the group co-members'
    records with the deleted-user check of the people and contacts chosen."""
    graph.prefetch(graph=list(state.following)[-FOLLOWEES_READ:],
                   likers=_top(state.authors, AUTHORS_READ),
                   members=list(state.groups)[-GROUPS_READ:])
    out = {"user_id": state.user_id, "generated_at": now,
           "people": people(state, graph, features, now),
           "groups": [],
           "conversations": conversations(state, now),
           "contacts": contacts(state, now)}
    named = [s["id"] for k in ("people", "contacts") for s in out[k]]
    graph.prefetch(graph=_co_members(state, graph), deleted=named)
    out["groups"] = groups(state, graph, features)
    # Deleted users linger in others' states and graph records: never suggest them.
    gone = graph.deleted(named)
    if gone:
        for k in ("people", "contacts"):
            out[k] = [s for s in out[k] if s["id"] not in gone]
    return out


USER_DETAILS = frozenset({"fof", "co_engaged", "followees_engage", "followees_in_group",
                          "co_membership"})  # reason codes whose detail is a user id


def mentioned_users(state: SocialState, suggestions: dict) -> list[str]:
    """Every user this user's published values (graph record, suggestions) may name, for erasure
    (operators.erasure): the state's edges and contacts, suggested people and contacts,
    conversation peers and the users named in reasons."""
    out = [*state.following, *state.followers, *state.authors, *state.contacts, *state.blocked,
           *state.muted, *state.blocked_by]
    for kind in ("people", "contacts"):
        out.extend(s["id"] for s in suggestions[kind])
    for kind in ("people", "groups"):
        out.extend(r["detail"] for s in suggestions[kind] for r in s["reasons"]
                   if r["code"] in USER_DETAILS and "detail" in r)
    out.extend(p for c in suggestions["conversations"] for p in c["peers"])
    return out


def encode(suggestions: dict) -> bytes:
    return orjson.dumps(suggestions)
