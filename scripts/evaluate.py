"""`persona evaluate`: prequential replay of a log through the production engine and the baselines."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

import config as config_mod
from operators.evaluation import (
    GlobalPopularity,
    ItemKNN,
    OnlineBPR,
    ReadStats,
    evaluate,
    fold_exposures,
    read_events,
)
from operators.evaluation.engine_adapter import PersonaRecommender
from operators.evaluation.report import plot, print_table


def run(log: Path, configs: list[Path | None], *, k: int = 10, window: int = 2000,
        json_path: Path | None = None, plot_path: Path | None = None,
        baselines: bool = True, limit: int | None = None, console: Console | None = None):
    """Evaluate `configs` (None = the default config) and the baselines on the first `limit`
    events of `log` (all when None), with a progress bar; print the table, write JSON / PNG."""
    console = console or Console()
    recommenders = []
    for path in configs:
        name = "persona" if len(configs) == 1 else f"persona:{path.stem if path else 'default'}"
        recommenders.append(PersonaRecommender(config_mod.load(path), name=name))
    if baselines:
        recommenders += [GlobalPopularity(), ItemKNN(), OnlineBPR()]
    stats = ReadStats()
    t0 = time.time()
    console.print(f"reading {log} …")
    events = fold_exposures(itertools.islice(read_events(log, stats), limit))
    total = len(events)
    with Progress(TextColumn("evaluating"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("eval", total=total, info="")

        def progress(n: int, targets: int) -> None:
            rate = n / max(time.time() - t0, 1e-9)
            bar.update(task, completed=n, info=f"{n:,} events · {targets:,} targets · {rate:,.0f}/s")

        report = evaluate(events, recommenders, k=k, window=window,
                          progress=progress)
    report.meta["source"] = {"path": str(log), "format": stats.format, "lines": stats.lines,
                             "invalid": stats.invalid}
    report.meta["configs"] = [str(c) if c else "config/default.toml" for c in configs]
    report.meta["limit"] = limit
    report.meta["folded_exposures"] = stats.events - total
    report.meta["wall_seconds"] = round(time.time() - t0, 1)
    print_table(report, console)
    console.print(f"evaluated {total:,} events ({stats.events - total:,} impressions/dwells folded into "
                  f"the engagement they led to) in {time.time() - t0:.0f}s")
    if json_path:
        json_path.write_text(report.to_json())
        console.print(f"wrote {json_path}")
    if plot_path:
        plot(report, plot_path)
        console.print(f"wrote {plot_path}")
    return report
