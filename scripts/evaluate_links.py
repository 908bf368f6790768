"""`persona evaluate-links`: link-prediction evaluation of people suggestions (operators.suggestions)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from operators.evaluation import ReadStats, read_events
from operators.suggestions.linkpred import evaluate_links


def run(log: Path, *, k: int = 10, fraction: float = 0.2, seed: int = 7, undirected: bool = False,
        search: bool = False, json_path: Path | None = None, console: Console | None = None):
    console = console or Console()
    stats = ReadStats()
    t0 = time.time()
    report = evaluate_links(read_events(log, stats), k=k, fraction=fraction, seed=seed,
                            undirected=undirected)
    table = Table(title=f"link prediction · {log.name} ({stats.format}) · hidden {fraction:.0%} "
                        f"of follow edges, seed {seed}")
    table.add_column("method")
    table.add_column(f"Recall@{k}", justify="right")
    table.add_column("hits", justify="right")
    for method in ("persona", "most_followed", "random"):
        table.add_row(method, f"{report.recall[method]:.4f}", str(report.hits[method]))
    console.print(table)
    console.print(f"{report.users} users with hidden edges · {report.hidden_edges} hidden · "
                  f"{report.train_edges} training edges · {time.time() - t0:.1f}s")
    extra = {}
    if search:
        import config as config_mod
        from operators.suggestions.search_eval import evaluate_search
        s = evaluate_search(read_events(log), config_mod.load())
        extra["search"] = s.to_dict()
        t = Table(title=f"search re-ranking · {s.searches} searches · {s.clicks} engaged results")
        for col in ("order", "MRR", "hit@3"):
            t.add_column(col)
        t.add_row("base (as given)", f"{s.mrr_base:.4f}", f"{s.hit3_base:.4f}")
        t.add_row("re-ranked, fixed weight 0.5", f"{s.mrr_personal:.4f}", f"{s.hit3_personal:.4f}")
        t.add_row("re-ranked, learned weight", f"{s.mrr_learned:.4f}", f"{s.hit3_learned:.4f}")
        console.print(t)
        console.print(f"blend weight learned from {s.clicks} search clicks (prequential): "
                      f"{s.learned_weight:.3f}")
    if json_path:
        json_path.write_bytes(orjson.dumps({**report.to_dict(), "source": str(log),
                                            "fraction": fraction, "seed": seed, **extra}))
        console.print(f"wrote {json_path}")
    return report
