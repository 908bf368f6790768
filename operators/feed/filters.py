"""Filters: remove what must never be served. Cheap, run before scoring.

>>> from operators.item_stats import ItemView
>>> class U: user_id="u1"; blocked={"bad"}; muted=set(); seen=set(); following=set()
>>> keep(U, ItemView("p1", author_id="bad"), sources=[("trending", None)])
False
"""

from __future__ import annotations

from operators.item_stats import ItemView


def keep(user, view: ItemView, sources: list) -> bool:
    author = view.author_id
    if author is None or view.deleted:  # unknown or deleted post
        return False
    if author == user.user_id or author in user.blocked or author in user.muted:
        return False
    if view.post_id in user.seen:  # already impressed or engaged
        return False
    if author not in user.following and all(code == "in_network" for code, _ in sources):
        return False  # delivered before an unfollow
    return True
