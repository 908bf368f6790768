"""The result of a prequential run: per-recommender metrics, JSON form, rich table, and plots.

Baselines are the recommenders whose name starts with "baseline:"; the table shows every metric with
its ratio to the best baseline for that metric (highest for HR/NDCG/MRR/coverage, lowest for Gini).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

BASELINE_PREFIX = "baseline:"

# metric -> (label, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "hr": ("HR@{k}", True),
    "ndcg": ("NDCG@{k}", True),
    "mrr": ("MRR", True),
    "coverage": ("Coverage", True),
    "gini": ("Gini", False),
}


@dataclass
class RecommenderResult:
    name: str
    hr: float
    ndcg: float
    mrr: float
    coverage: float
    gini: float
    n_targets: int
    not_served: int
    elapsed_s: float
    # metric -> [(n_targets, ts_ms, value)] over a sliding window of targets
    series: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        return self.name.startswith(BASELINE_PREFIX)


@dataclass
class Report:
    k: int
    window: int
    n_events: int
    n_positives: int
    n_targets: int
    skipped_no_history: int
    skipped_touched: int
    catalog_size: int
    first_ts: int | None
    last_ts: int | None
    elapsed_s: float
    results: list[RecommenderResult]
    meta: dict[str, Any] = field(default_factory=dict)

    def result(self, name: str) -> RecommenderResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def best_baseline(self, metric: str) -> float | None:
        """Best baseline value of a metric (None when there is no baseline)."""
        values = [getattr(r, metric) for r in self.results if r.is_baseline]
        if not values:
            return None
        return max(values) if METRICS[metric][1] else min(values)

    def ratio_to_best_baseline(self, name: str, metric: str) -> float | None:
        best = self.best_baseline(metric)
        if best is None:
            return None
        value = getattr(self.result(name), metric)
        if best == 0:
            return 1.0 if value == 0 else math.inf
        return value / best

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: bool = True) -> str:
        option = orjson.OPT_INDENT_2 if indent else 0
        return orjson.dumps(self.to_dict(), option=option).decode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        data = dict(data)
        results = []
        for r in data.pop("results"):
            r = dict(r)
            r["series"] = {m: [tuple(p) for p in pts] for m, pts in r.get("series", {}).items()}
            results.append(RecommenderResult(**r))
        return cls(results=results, **data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Report:
        return cls.from_dict(orjson.loads(text))


def _fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    if math.isinf(ratio):
        return "∞"
    return f"{ratio:.2f}×"


def print_table(report: Report, console=None) -> None:
    """Print every metric (rows) for every recommender (columns), each with its ratio to the best
    baseline for that metric."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    span = ""
    if report.first_ts is not None and report.last_ts is not None:
        span = f", {_date(report.first_ts):%Y-%m-%d} → {_date(report.last_ts):%Y-%m-%d}"
    table = Table(
        title=f"Prequential evaluation: {report.n_targets:,} targets, {report.n_events:,} events, "
        f"catalog {report.catalog_size:,}{span}",
        caption="÷bl = value ÷ best baseline (highest, or lowest for Gini)",
    )
    table.add_column("metric", style="bold")
    table.add_column("best baseline", justify="right")
    for r in report.results:
        table.add_column(
            r.name, justify="right", overflow="fold", style=None if r.is_baseline else "green"
        )
        table.add_column("÷bl", justify="right", style="dim")
    for metric, (label, _) in METRICS.items():
        best = report.best_baseline(metric)
        cells = [label.format(k=report.k), "—" if best is None else f"{best:.4f}"]
        for r in report.results:
            cells.append(f"{getattr(r, metric):.4f}")
            cells.append(_fmt_ratio(report.ratio_to_best_baseline(r.name, metric)))
        table.add_row(*cells)
    table.add_section()
    table.add_row("targets", "", *[c for r in report.results for c in (f"{r.n_targets:,}", "")])
    table.add_row("time s", "", *[c for r in report.results for c in (f"{r.elapsed_s:.1f}", "")])
    console.print(table)


def _date(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


def plot(report: Report, path: str | Path) -> Path:
    """Save a PNG with one subplot per metric over event time (sliding window of targets)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(10, 2.3 * len(METRICS)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(METRICS), 1, sharex=True)
    for ax, (metric, (label, _)) in zip(axes, METRICS.items(), strict=True):
        for r in report.results:
            pts = r.series.get(metric) or []
            if not pts:
                continue
            xs = [_date(ts) for _, ts, _ in pts]
            ax.plot(
                xs,
                [v for _, _, v in pts],
                label=r.name,
                linestyle="--" if r.is_baseline else "-",
                linewidth=1.3,
            )
        ax.set_ylabel(label.format(k=report.k))
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    axes[-1].set_xlabel(f"event time (sliding window of {report.window:,} targets)")
    fig.suptitle(f"Prequential evaluation, k={report.k}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
