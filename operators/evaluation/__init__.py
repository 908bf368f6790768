"""Offline, prequential (test-then-train) evaluation of recommenders on an event stream.

Plain Python — no Bytewax, Kafka or Redis: events come from the project's JSONL event log or from
MovieLens ratings (`readers`), flow in time order through every recommender (`prequential`), which is
asked to rank each new positive engagement of a user *before* it learns it. Metrics use fair ties
(`metrics`); incremental popularity, item-kNN and online BPR matrix factorisation are the reference
baselines (`baselines`); `report` holds the result, its JSON form, a rich table and a plot.

    from operators.evaluation import read_events, evaluate, GlobalPopularity, ItemKNN, print_table
    report = evaluate(read_events("/work/shared/datasets/movielens-100k"),
                      [GlobalPopularity(), ItemKNN()], k=10)
    print_table(report)

Command line: `python -m operators.evaluation PATH [--k 10] [--json out.json] [--plot out.png]`.
"""

from operators.evaluation.baselines import GlobalPopularity, IncrementalCatalog, ItemKNN, OnlineBPR
from operators.evaluation.metrics import (
    ExposureAccumulator,
    RankingAccumulator,
    TiedRank,
    WindowedSeries,
    catalog_coverage,
    gini,
    hit_at_k,
    ndcg_at_k,
    rank_in,
    reciprocal_rank,
    tied_rank,
    top_k,
)
from operators.evaluation.prequential import (
    TOUCH_TYPES,
    Recommender,
    evaluate,
    fold_exposures,
    touched_post,
)
from operators.evaluation.readers import ReadStats, detect_format, read_events
from operators.evaluation.report import RecommenderResult, Report, plot, print_table

__all__ = [
    "TOUCH_TYPES",
    "ExposureAccumulator",
    "GlobalPopularity",
    "IncrementalCatalog",
    "ItemKNN",
    "OnlineBPR",
    "RankingAccumulator",
    "ReadStats",
    "Recommender",
    "RecommenderResult",
    "Report",
    "TiedRank",
    "WindowedSeries",
    "catalog_coverage",
    "detect_format",
    "evaluate",
    "fold_exposures",
    "gini",
    "hit_at_k",
    "ndcg_at_k",
    "plot",
    "print_table",
    "rank_in",
    "read_events",
    "reciprocal_rank",
    "tied_rank",
    "top_k",
    "touched_post",
]
