"""Offline check of search re-ranking (`persona evaluate-links LOG --search`): replay a log through
the production engine (operators.engine.Engine); at each `search` with result ids, re-rank the
results for the searcher as the reader would (`search.rerank`, the feed's hydration and scoring);
when the searcher then clicks one (the flow's rule, `SearchSession`: the first engagement with a
result within 30 minutes of event time and before their next search), score its position in the original order, in the order re-ranked with the fixed prior weight (0.5) and in
the order re-ranked with the blend weight learned so far from earlier clicks (`SearchBlend`,
prequential: each click is scored before it is learned), as MRR and hit@3."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from config import Settings
from operators.engine import Engine
from operators.suggestions.search import base_relevance, rerank
from operators.suggestions.search_blend import SearchBlend, SearchSession
from schemas import ENGAGEMENT_WEIGHT, Event


@dataclass
class SearchReport:
    searches: int = 0
    clicks: int = 0
    mrr_base: float = 0.0
    mrr_personal: float = 0.0
    mrr_learned: float = 0.0
    hit3_base: float = 0.0
    hit3_personal: float = 0.0
    hit3_learned: float = 0.0
    learned_weight: float = 0.5

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def evaluate_search(events: Iterable[Event], settings: Settings) -> SearchReport:
    engine = Engine(settings)
    report = SearchReport()
    blend = SearchBlend()
    sessions: dict[str, SearchSession] = {}  # the flow's click matching (search_sessions step)
    # (user, search ts) -> (base order, fixed-weight order, learned-weight order)
    orders: dict[tuple[str, int], tuple[list[str], list[str], list[str]]] = {}
    for e in events:
        clicks = []
        if e.type == "search" and e.result_ids:
            engine.publish()
            base = base_relevance(e.result_ids)
            user = engine.users.get(e.user_id)
            scored = rerank(user, base, engine.store, engine.ctx, e.ts)
            learned = rerank(user, base, engine.store, engine.ctx, e.ts, blend.weight())
            orders[(e.user_id, e.ts)] = ([p for p, _ in base], [r["id"] for r in scored],
                                         [r["id"] for r in learned])
            personal = {r["id"]: r["personal"] for r in scored}
            session = sessions.setdefault(e.user_id, SearchSession())
            clicks = session.searched(e.ts, [(p, b, personal[p]) for p, b in base])
            report.searches += 1
        elif e.type in ENGAGEMENT_WEIGHT and e.post_id and e.user_id in sessions:
            clicks = sessions[e.user_id].engaged(e.ts, e.post_id)
        for ts, shown, clicked in clicks:
            ids, ranked, learned = orders.pop((e.user_id, ts))
            report.clicks += 1
            b, p = ids.index(clicked) + 1, ranked.index(clicked) + 1
            lp = learned.index(clicked) + 1
            report.mrr_base += 1.0 / b
            report.mrr_personal += 1.0 / p
            report.mrr_learned += 1.0 / lp
            report.hit3_base += b <= 3
            report.hit3_personal += p <= 3
            report.hit3_learned += lp <= 3
            blend.learn_click(shown, clicked)
        engine.learn_one(e)
    n = max(report.clicks, 1)
    report.learned_weight = blend.weight()
    for name in ("mrr_base", "mrr_personal", "mrr_learned", "hit3_base", "hit3_personal",
                 "hit3_learned"):
        setattr(report, name, getattr(report, name) / n)
    return report
