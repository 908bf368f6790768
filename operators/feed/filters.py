"""Filters: remove what must never be served. Cheap, run before scoring.

>>> from operators.item_stats import ItemView
>>> class U: user_id="u1"; blocked={"bad"}; muted=set(); seen=set(); following=set()
>>> keep(U, ItemView("p1", author_id="bad"), sources=[("trending", None)])
False
>>> keep(U, ItemView("p2", author_id="ok"), sources=[("trending", None)])
True
"""

from __future__ import annotations

import numpy as np

from operators.item_stats import ItemView


def seen_mask(user, post_ids: list[str]) -> np.ndarray:
    """Which of `post_ids` the user already touched (impressed, engaged, hid, wrote)."""
    seen = user.seen
    if hasattr(seen, "contains_many"):
        return seen.contains_many(post_ids)
    return np.array([p in seen for p in post_ids], dtype=bool)


def keep(user, view: ItemView, sources: list, seen: bool | None = None) -> bool:
    """Whether `view` may be served to `user`; `seen` is the precomputed `seen_mask` entry."""
    author = view.author_id
    if author is None or view.deleted:  # unknown or deleted post
        return False
    if author == user.user_id or author in user.blocked or author in user.muted:
        return False
    if seen if seen is not None else view.post_id in user.seen:  # already impressed or engaged
        return False
    # an in-network-only post of an author no longer followed was delivered before an unfollow
    return author in user.following or any(code != "in_network" for code, _ in sources)


def apply(user, proposals: dict[str, list], found: dict[str, ItemView]) -> list[str]:
    """The proposed post ids that may be served, in proposal order (`keep`, over many)."""
    ids = [p for p in proposals if p in found]
    seen = seen_mask(user, ids).tolist()
    banned = {user.user_id, None} | user.blocked | user.muted
    following = user.following
    out = []
    for p, s in zip(ids, seen, strict=True):
        view = found[p]
        author = view.author_id
        if s or view.deleted or author in banned:
            continue
        if author not in following:
            whys = proposals[p]  # in-network only? (the in_network source proposes a post once)
            if whys[0][0] == "in_network" and (len(whys) == 1 or all(
                    code == "in_network" for code, _ in whys)):
                continue
        out.append(p)
    return out
