"""How much a user's affinities should move search results: a weight learned from search → click.

Re-ranking scores `base relevance + weight × personal` (`search.rerank`; personal = the feed model's
centred logit). The weight is learned online by a pairwise River logistic model (`OnlineLogit`) on
clicks: a clicked result should outscore each result shown above it (skip-above, as the feed's
labels) and the one right below it (click > skip-next, which balances the position bias of
skip-above pairs), so the example is the difference of their (base, personal) features, labelled 1,
and its mirror labelled 0. Base relevance sets the scale: its weight is held at 1 (and the
intercept at 0) after every step, so only the personal weight learns; it is bounded to
[0, MAX_WEIGHT], and the fixed 0.5 is used until MIN_CLICKS clicks were learned.

>>> blend = SearchBlend()
>>> blend.weight()
0.5
>>> for _ in range(40):  # users keep clicking the 3rd result when it is the most personal one
...     blend.learn_click([("a", 0.0, -1.0), ("b", -1.0, -1.0), ("c", -2.0, 2.0)], "c")
>>> blend.weight() > 0.5
True
"""

from __future__ import annotations

import orjson

from operators.models import OnlineLogit
from schemas import ENGAGEMENT_WEIGHT, Event

PRIOR_WEIGHT = 0.5
MAX_WEIGHT = 5.0
MIN_CLICKS = 20
WINDOW_MS = 30 * 60_000  # an engagement with a result this soon after the search is its click
FEATURES = ("base", "personal")


class SearchBlend:
    """Picklable, a few numbers; one instance (key "global") in the flow."""

    def __init__(self, learning_rate: float = 0.05):
        self.model = OnlineLogit(FEATURES, prior={"base": 1.0, "personal": PRIOR_WEIGHT},
                                 learning_rate=learning_rate)
        self.clicks = 0

    def learn_click(self, shown: list[tuple[str, float, float]], clicked: str) -> None:
        """shown: [(id, base, personal)] in the order the user saw them; `clicked` one of them."""
        ids = [s[0] for s in shown]
        if clicked not in ids:
            return
        at = ids.index(clicked)
        _, b_c, p_c = shown[at]
        for _, b, p in shown[:at] + shown[at + 1:at + 2]:
            x = {"base": b_c - b, "personal": p_c - p}
            for example, label in ((x, True), ({k: -v for k, v in x.items()}, False)):
                self.model.learn_one(example, label)
                self.model.model._weights["base"] = 1.0  # the scale: only personal learns
                self.model.model.intercept = 0.0  # pairwise: a preference has no bias
        self.clicks += 1

    def weight(self) -> float:
        if self.clicks < MIN_CLICKS:
            return PRIOR_WEIGHT
        (_, w_personal), _ = self.model.vector()
        return float(min(max(w_personal, 0.0), MAX_WEIGHT))

    def export(self) -> dict:
        return {"weight": round(self.weight(), 6), "clicks": self.clicks}

    def write(self) -> tuple[str, bytes]:
        """The write record of the current weight (`…:model:search_blend`)."""
        return ("search_blend", orjson.dumps(self.export()))


def search_message(event: Event) -> tuple[str, Event] | None:
    """The flow's routing to the `search_sessions` step (key = the searcher)."""
    if (event.type == "search" and event.result_ids) or (
            event.type in ENGAGEMENT_WEIGHT and event.post_id):
        return event.user_id, event
    return None


class SearchSession:
    """A user's recent searches (results as shown: [(id, base, personal)]) and engagements. A click
    is the first engagement with one of a search's results within WINDOW_MS of event time and before
    the user's next search; it is returned once, as (search ts, shown, clicked id).

    Both sides are kept (the latest KEPT of each) because they reach the step by different paths
    (engagements through the item step), so a click can arrive before its search.

    >>> s = SearchSession()
    >>> s.engaged(10_000, "p2")  # overtook its search
    []
    >>> s.searched(9_000, [("p1", 0.0, 0.0), ("p2", -1.0, 0.3)])
    [(9000, [('p1', 0.0, 0.0), ('p2', -1.0, 0.3)], 'p2')]
    >>> s.engaged(11_000, "p1")  # that search was already clicked
    []
    """

    KEPT = 16  # per side: enough for a batch of a backlog to arrive in any order

    def __init__(self):
        self.searches: list[tuple[int, list[tuple[str, float, float]]]] = []  # unclicked, by ts
        self.engagements: list[tuple[int, str]] = []  # unmatched, by ts

    def searched(self, ts: int, shown: list[tuple[str, float, float]]) -> list[tuple[int, list, str]]:
        self.searches.append((ts, shown))
        self.searches.sort(key=lambda s: s[0])
        return self._match()

    def engaged(self, ts: int, post_id: str) -> list[tuple[int, list, str]]:
        self.engagements.append((ts, post_id))
        self.engagements.sort()
        return self._match()

    def _match(self) -> list[tuple[int, list, str]]:
        clicks = []
        for i, (ts, shown) in enumerate(self.searches):
            until = ts + WINDOW_MS
            if i + 1 < len(self.searches):  # a later search ends this one's window
                until = min(until, self.searches[i + 1][0] - 1)
            ids = {s[0] for s in shown}
            hit = next((e for e in self.engagements if ts <= e[0] <= until and e[1] in ids), None)
            if hit is not None:
                clicks.append((i, ts, shown, hit))
        for i, *_ in reversed(clicks):  # each engagement clicks at most one search
            del self.searches[i]
        used = {c[3] for c in clicks}
        self.engagements = [e for e in self.engagements if e not in used]
        self._prune()
        return [(ts, shown, hit[1]) for _, ts, shown, hit in clicks]

    def _prune(self) -> None:
        # by count, and searches whose window closed a window before the newest event seen: the
        # two paths reorder a user's events by at most a batch, not by hours of event time
        newest = max([s[0] for s in self.searches[-1:]] + [e[0] for e in self.engagements[-1:]],
                     default=0)
        self.searches = [s for s in self.searches[-self.KEPT:]
                         if s[0] + 2 * WINDOW_MS >= newest]
        self.engagements = self.engagements[-self.KEPT:]
