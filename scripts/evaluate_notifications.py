"""`persona evaluate-notifications LOG`: the production notification policy against the "send
everything until the budget", "send the most recent" and "a random subset as large as the learned
policy's sends" baselines, at the same daily budgets, in one closed-loop run over a generated log
(operators/notifications/evaluate.py). Reports open rate and opens per user-day: a policy that sends
less must not win on open rate alone."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

import config as config_mod
from operators.notifications.evaluate import POLICIES, evaluate
from operators.notifications.policy import Policy
from schemas import decode_event
from scripts.generate import read_log, read_truth


def run(log: Path, config_path: Path | None = None, *, budget: int | None = None, seed: int = 0,
        json_path: Path | None = None, console: Console | None = None) -> list[dict]:
    console = console or Console()
    settings = config_mod.load(config_path)
    truth = read_truth(log)
    if not truth.notif_open:
        raise ValueError(f"{log}.truth.json has no planted notification behaviour; regenerate the "
                         "log with `persona generate`")
    events = [e for e in (decode_event(line)[0] for line in read_log(log)) if e is not None]
    events.sort(key=lambda e: e.ts)
    policy = Policy.from_settings(settings)
    if budget is not None:
        policy = Policy(**{**{f: getattr(policy, f) for f in policy.__slots__},
                           "daily_budget": budget})
    t0 = time.time()
    results = [r.to_dict() for r in evaluate(events, truth, policy, seed=seed,
                                             settings=settings)]
    table = Table(title=f"notifications · {log.name} · daily budget {policy.daily_budget} · "
                        f"{len(events):,} events")
    for col in ("policy", "delivered", "opened", "open rate", "sent/user/day", "opens/user/day"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in results:
        table.add_row(r["policy"], f"{r['delivered']:,}",
                      f"{r['opened']:,}", f"{r['open_rate']:.4f}",
                      f"{r['delivered_per_user_day']:.3f}", f"{r['opens_per_user_day']:.3f}")
    console.print(table)
    for name, what in POLICIES.items():
        console.print(f"  {name}: {what}")
    learned = results[0]
    for r in results[1:]:
        ratio = learned["open_rate"] / max(r["open_rate"], 1e-9)
        opens = learned["opens_per_user_day"] - r["opens_per_user_day"]
        console.print(f"learned vs {r['policy']}: open rate {learned['open_rate']:.4f} vs "
                      f"{r['open_rate']:.4f} ({ratio:.2f}x); opens per user-day "
                      f"{learned['opens_per_user_day']:.3f} vs {r['opens_per_user_day']:.3f} "
                      f"({'more' if opens > 0 else 'FEWER' if opens < 0 else 'as many'})")
    console.print("learned policy decisions: " + ", ".join(
        f"{k} {v:,}" for k, v in learned["decisions"].items()))
    console.print(f"evaluated in {time.time() - t0:.1f}s")
    if json_path:
        json_path.write_bytes(orjson.dumps({"log": str(log), "daily_budget": policy.daily_budget,
                                            "results": results}, option=orjson.OPT_INDENT_2))
        console.print(f"wrote {json_path}")
    return results
