"""`python -m operators.evaluation PATH`: run the baselines prequentially on an event log or MovieLens."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from operators.evaluation.baselines import GlobalPopularity, ItemKNN
from operators.evaluation.prequential import evaluate
from operators.evaluation.readers import ReadStats, read_events
from operators.evaluation.report import plot, print_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m operators.evaluation", description=__doc__)
    parser.add_argument("path", help="*.jsonl[.gz] event log, MovieLens u.data / ratings.csv, or dir")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--window", type=int, default=2000, help="sliding window (targets) for plots")
    parser.add_argument("--json", help="write the report as JSON here")
    parser.add_argument("--plot", help="write a PNG of the metrics over time here")
    args = parser.parse_args(argv)

    console = Console(stderr=True)
    stats = ReadStats()
    with console.status("evaluating...") as status:
        report = evaluate(
            read_events(args.path, stats), [GlobalPopularity(), ItemKNN()], k=args.k,
            window=args.window,
            progress=lambda n, t: status.update(f"evaluating: {n:,} events, {t:,} targets"),
        )
    report.meta["source"] = {"path": stats.path, "format": stats.format, "lines": stats.lines,
                             "invalid": stats.invalid}
    if stats.invalid:
        console.print(f"[yellow]{stats.invalid:,} invalid lines skipped[/] "
                      f"(e.g. {next(iter(stats.reasons))})")
    print_table(report, Console())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(report.to_json())
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
