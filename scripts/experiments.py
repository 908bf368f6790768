"""`persona experiments report SOURCE`: per-arm metrics with confidence intervals, from an event log
(counted with the flow's own code, operators/experiments/counts.py) or from the counters the workers
keep in Redis (SOURCE = "redis")."""

from __future__ import annotations

from pathlib import Path

import orjson
from rich.console import Console

from config import Settings
from operators.experiments import report as report_mod


def counts_from_log(path: Path, settings: Settings, console: Console) -> dict:
    from operators.evaluation.readers import ReadStats, read_events

    if not any(e.enabled for e in settings.experiments):
        raise ValueError("no enabled experiment in the configuration: pass the file that declares "
                         "it with --config (README \"Experiments\")")
    stats = ReadStats()
    seen = 0

    def counted(events):
        nonlocal seen
        for event in events:
            seen += 1
            if seen % 200_000 == 0:
                console.print(f"  {seen:,} events read…", style="dim")
            yield event

    counts = report_mod.from_events(counted(read_events(path, stats)), settings)
    console.print(f"read {seen:,} events from {path}", style="dim")
    return counts


def counts_from_redis(settings: Settings) -> dict:
    from reader.client import PersonaClient

    client = PersonaClient.from_settings(settings)
    counts = report_mod.from_redis(client.redis, client.keyspace())
    if not counts:
        raise ValueError(f"no experiment counters under {client.keyspace().base} in Redis: are the "
                         f"workers running with an enabled experiment (--config)?")
    return counts


def run(source: str, settings: Settings, json_path: str | None, console: Console,
        alpha: float | None = None, mixture_lift: float | None = None) -> list[dict]:
    """The report of `source`; alpha and mixture_lift, when None, are `report.build`'s defaults
    (stats.ALPHA, stats.MIXTURE_LIFT)."""
    if source == "redis":
        counts = counts_from_redis(settings)
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist (pass an event log, or `redis`)")
        counts = counts_from_log(path, settings, console)
    given = {"alpha": alpha, "mixture_lift": mixture_lift}
    report = report_mod.build(counts, settings, **{k: v for k, v in given.items() if v is not None})
    if json_path == "-":
        console.print_json(orjson.dumps(report).decode())
        return report
    report_mod.render(report, console)
    console.print("Rates: 95% Wilson intervals. Δ: difference from the control arm with a 95% "
                  "interval by user (users are what is randomised; --json also has the "
                  "per-impression Newcombe interval), valid for one look planned in advance; "
                  "* = excludes zero. \"any look\": the always-valid interval (mixture SPRT, "
                  "Bonferroni over the comparisons), valid however often the report is read; "
                  "† = excludes zero: only those are safe to act on while the experiment runs. "
                  "verdict (from the † intervals): win = engagement up and no rate worse; harm = "
                  "engagement down, negatives up or opens down; running = no conclusion yet; "
                  "invalid = sample ratio mismatch.",
                  style="dim")
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        console.print(f"wrote {json_path}")
    return report


def alarms(report: list[dict]) -> list[str]:
    """One line per arm whose verdict is harm or invalid (what `--check` exits on)."""
    out = []
    for exp in report:
        for row in exp["arms"]:
            v = row.get("verdict")
            if v is not None and v["state"] in ("harm", "invalid"):
                why = ", ".join(v["rates"]) or "sample ratio mismatch"
                out.append(f"{exp['experiment']}/{row['arm']}: {v['state']} ({why})")
    return out
