"""Readable explanations: one short sentence for end users per machine-readable reason.

One renderer for every surface: feed items (`explain`, codes of `schemas.outputs.REASON_CODES`) and
suggestions / search results (`explain_suggestion`). The reader serves the sentences next to the
reasons (`explanations`), so apps never map codes themselves.

>>> explain({"code": "in_network", "detail": "u0042"})
'Because you follow u0042'
>>> explain({"code": "topic", "detail": "t03"})
'Popular in t03, which you like'
>>> explain({"code": "see_less", "detail": "u7", "weight": 0.6})
'Shown less often: you asked to see less of u7'
"""

from __future__ import annotations

from schemas import REASON_CODES

_FEED = {
    "in_network": "Because you follow {d}",
    "similar": "Similar to {d}, which you liked",
    "topic": "Popular in {d}, which you like",
    "interest": "About {d}, which you said you're interested in",
    "see_less": "Shown less often: you asked to see less of {d}",
    "see_more": "Because you asked to see more of {d}",
    "not_interested": "Shown less often: you weren't interested in a post by {d}",
}


def explain(reason: dict) -> str:
    """A short sentence for end users from a feed item's reason."""
    code, detail = reason.get("code"), reason.get("detail")
    if detail and code in _FEED:
        return _FEED[code].format(d=detail)
    return REASON_CODES.get(code, code or "").capitalize()


def explain_suggestion(kind: str, reason: dict) -> str:
    """A short sentence for a people / group / conversation / contact suggestion or a search result."""
    code, n, d = reason.get("code"), reason.get("count"), reason.get("detail")
    people = f"{n} {'person' if n == 1 else 'people'}"
    texts = {
        "fof": f"Followed by {people} you follow",
        "follows_you": "Follows you",
        "engaged": f"You engaged with their posts {n} time{'s' if n != 1 else ''}",
        "popular": f"Popular: followed by {n} people",
        "co_engaged": f"Likes the same authors as you (e.g. {d})",
        "shared_groups": f"In {n} of your groups",
        "followees_engage": f"{people.capitalize()} you follow "
                            f"{'engages' if n == 1 else 'engage'} with them",
        "topic_creator": f"Popular in {d}, which you're interested in",
        "followees_in_group": f"{people.capitalize()} you follow "
                              f"{'is a member' if n == 1 else 'are members'}",
        "co_membership": "Members of your groups are in it",
        "topic": f"Active in {d}, which you're interested in",
        "awaiting_reply": "Waiting for your reply",
        "recent": "Recent conversation",
        "reply_likelihood": "You often reply here",
        "messaged": f"You've exchanged {n} message{'s' if n != 1 else ''}",
        "mutual_follow": "You follow each other",
        "relevance": "Relevant to your search",
        "author_affinity": "From an author you engage with",
        "topic_affinity": "About a topic you engage with",
        "in_network": "Posted by someone you follow",
        "interest": "Matches an interest you chose",
        "group": "From a group you are in",
        "similar": "Like posts you engaged with",
    }
    return texts.get(code, str(code))
