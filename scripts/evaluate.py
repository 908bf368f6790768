"""`persona evaluate`: prequential replay of a log through the production engine and the baselines."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

import config as config_mod
from operators.evaluation import GlobalPopularity, ItemKNN, ReadStats, evaluate, read_events
from operators.evaluation.engine_adapter import PersonaRecommender
from operators.evaluation.report import plot, print_table


def count_lines(path: Path) -> int | None:
    """Rough event count for the progress bar (None for directories / gz)."""
    if path.is_file() and path.suffix != ".gz":
        with path.open("rb") as f:
            return sum(1 for _ in f)
    return None


def run(log: Path, configs: list[Path | None], *, k: int = 10, window: int = 2000,
        json_path: Path | None = None, plot_path: Path | None = None,
        baselines: bool = True, console: Console | None = None):
    console = console or Console()
    recommenders = []
    for i, path in enumerate(configs):
        name = "persona" if len(configs) == 1 else f"persona:{path.stem if path else 'default'}"
        recommenders.append(PersonaRecommender(config_mod.load(path), name=name))
    if baselines:
        recommenders += [GlobalPopularity(), ItemKNN()]
    stats = ReadStats()
    total = count_lines(log)
    t0 = time.time()
    with Progress(TextColumn("evaluating"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("eval", total=total, info="")

        def progress(n: int, targets: int) -> None:
            rate = n / max(time.time() - t0, 1e-9)
            bar.update(task, completed=n, info=f"{n:,} events · {targets:,} targets · {rate:,.0f}/s")

        report = evaluate(read_events(log, stats), recommenders, k=k, window=window,
                          progress=progress)
    report.meta["source"] = {"path": str(log), "format": stats.format, "lines": stats.lines,
                             "invalid": stats.invalid}
    report.meta["configs"] = [str(c) if c else "config/default.toml" for c in configs]
    report.meta["wall_seconds"] = round(time.time() - t0, 1)
    print_table(report, console)
    console.print(f"evaluated {stats.events:,} events in {time.time() - t0:.0f}s")
    if json_path:
        json_path.write_text(report.to_json())
        console.print(f"wrote {json_path}")
    if plot_path:
        plot(report, plot_path)
        console.print(f"wrote {plot_path}")
    return report
