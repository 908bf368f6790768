"""The per-arm report of `persona experiments report`: counts, rates with 95% intervals, and each
arm's difference from the control arm with its interval (a difference whose interval excludes zero
is marked significant).

Counts come from the flow's `experiment_counts` step through Redis (`from_redis`) or from an event
log counted with the same code (`from_events`). Two intervals per rate and difference: Wilson /
Newcombe, which treat every impression as independent, and user-clustered (delta method over users,
the unit that is randomised), which is wider when users differ; significance uses the clustered one.

Each difference also has an always-valid interval (`stats.always_valid_diff`), at alpha divided by
the experiment's number of comparisons (arms besides the control × rates: Bonferroni), so that
reading the report at any time, as often as one likes, across every arm and rate, calls a
difference that is not there with probability at most alpha. The fixed 95% interval holds only for
one look planned in advance and one comparison. And a sample-ratio test per experiment: users per
arm against the configured fractions (a mismatch means the differences cannot be trusted). Each
arm's `verdict` reads the always-valid intervals only: win, harm, running, or invalid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import orjson

from config import Settings
from operators.experiments.counts import METRICS, ArmCounts, ExperimentCounts
from operators.experiments.stats import (
    ALPHA,
    MIXTURE_LIFT,
    always_valid_diff,
    clustered_diff,
    clustered_ratio,
    newcombe_diff,
    ratio_variance,
    sample_ratio,
    wilson,
)
from schemas import Event
from schemas.keyspace import Keyspace

SRM_ALPHA = 0.001  # a sample-ratio mismatch is flagged below this p (strict: it is checked often)
# the always-valid test calls nothing before both arms have this many users: its by-user variance
# is no estimate at 2 users (an A/A simulation looking after every user called 2-4% of
# experiments at the first looks against the 1.7% a rate's share of alpha allows; none from 20)
MIN_SEQUENTIAL_USERS = 20
# the mixture's scale is mixture_lift × the control's rate, but never under this absolute
# difference: at a control rate of 0 the scale was 0 and the test could never call anything
MIN_MIXTURE_SCALE = 0.001
# rate -> (numerator counters, denominator counters)
RATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "engagement_rate": (("engagements",), ("impressions",)),
    "negative_rate": (("negatives",), ("impressions",)),
    "open_rate": (("opens",), ("opens", "dismissals")),
}
PRIMARY = "engagement_rate"  # what an arm is meant to raise; the other rates are guardrails
BETTER = {"engagement_rate": 1, "negative_rate": -1, "open_rate": 1}  # the good direction


def from_events(events: Iterable[Event], settings: Settings) -> dict[str, dict[str, dict]]:
    """{experiment: {arm: counts}} of every enabled experiment over `events` (deduplicated by id)."""
    counts = ExperimentCounts(settings)
    seen: set[str] = set()
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        counts.learn_one(event)
    cells = counts.cells
    out: dict[str, dict[str, dict]] = {}
    for exp in settings.experiments:
        if exp.enabled:
            out[exp.name] = {a.name: cells.get(f"{exp.name}/{a.name}", ArmCounts()).to_dict()
                             for a in exp.arms}
    return out


def from_redis(client, keyspace: Keyspace) -> dict[str, dict[str, dict]]:
    """{experiment: {arm: counts}} as the workers last wrote them (every experiment ever counted)."""
    cells = [m.decode().split("/", 1) for m in sorted(client.smembers(keyspace.experiments))]
    pipe = client.pipeline(transaction=False)  # one round trip for every cell (a dashboard polls)
    for exp, arm in cells:
        pipe.get(keyspace.experiment(exp, arm))
    out: dict[str, dict[str, dict]] = {}
    for (exp, arm), raw in zip(cells, pipe.execute() if cells else [], strict=True):
        if raw is not None:
            out.setdefault(exp, {})[arm] = orjson.loads(raw)
    return out


def build(counts: dict[str, dict[str, dict]], settings: Settings, alpha: float = ALPHA,
          mixture_lift: float = MIXTURE_LIFT) -> list[dict]:
    """One entry per experiment: its control and, per arm, counts, rates and differences."""
    declared = {e.name: e for e in settings.experiments}
    report = []
    for name, arms in sorted(counts.items()):
        exp = declared.get(name)
        if exp is not None:  # a declared arm that counted nothing (Redis holds no key for it)
            arms = {**{a.name: {} for a in exp.arms}, **arms}  # is there, with zeros
        control = exp.control if exp is not None and exp.control in arms else sorted(arms)[0]
        base = arms[control]
        comparisons = max(1, (len(arms) - 1) * len(RATES))
        per_test = alpha / comparisons
        rows = []
        base_users = int(base.get("users", 0))
        for arm, c in sorted(arms.items(), key=lambda kv: (kv[0] != control, kv[0])):
            counts = {m: int(c.get(m, 0)) for m in METRICS}
            row: dict = {"arm": arm, "control": arm == control, "users": int(c.get("users", 0)),
                         "counts": counts}
            for rate in RATES:
                r, var, k, n = _rate(c, rate)
                p, lo, hi = wilson(k, n)
                _, clo, chi = clustered_ratio(k, n, var)
                entry: dict = {"value": _num(p), "low": _num(lo), "high": _num(hi), "n": n,
                               "clustered_low": _num(clo), "clustered_high": _num(chi)}
                if arm != control:
                    r0, var0, k0, n0 = _rate(base, rate)
                    d, dlo, dhi = clustered_diff(r, var, r0, var0)
                    _, nlo, nhi = newcombe_diff(k, n, k0, n0)
                    scale = max(mixture_lift * r0, MIN_MIXTURE_SCALE)
                    _, slo, shi, sp = always_valid_diff(d, var + var0, scale ** 2, per_test)
                    looked = min(row["users"], base_users) >= MIN_SEQUENTIAL_USERS
                    entry["diff"] = {"value": _num(d), "low": _num(dlo), "high": _num(dhi),
                                     "independent_low": _num(nlo), "independent_high": _num(nhi),
                                     "significant": bool(n and n0 and (dlo > 0 or dhi < 0)),
                                     "sequential": {"low": _num(slo), "high": _num(shi),
                                                    "p": _num(sp), "alpha": per_test,
                                                    "significant": bool(n and n0 and looked
                                                                        and sp < per_test)}}
                row[rate] = entry
            rows.append(row)
        srm = _sample_ratio(exp, rows)
        for row in rows:
            if not row["control"]:
                row["verdict"] = verdict(row, srm)
        report.append({"experiment": name, "control": control,
                       "enabled": bool(exp is not None and exp.enabled), "arms": rows,
                       "alpha": alpha, "comparisons": comparisons, "mixture_lift": mixture_lift,
                       "sample_ratio": srm})
    return report


def verdict(row: dict, srm: dict | None) -> dict:
    """What an arm's always-valid intervals allow one to say now, at any look:
    "invalid" (the sample ratio is off: nothing can be trusted), "harm" (a rate moved the wrong
    way: the primary fell, or a guardrail worsened), "win" (the primary rose and no rate moved the
    wrong way), else "running" (no conclusion yet: keep it running)."""
    if srm is not None and srm["mismatch"]:
        return {"state": "invalid", "rates": []}
    moved = {rate: BETTER[rate] * (1 if row[rate]["diff"]["value"] > 0 else -1)
             for rate in RATES if row[rate]["diff"]["sequential"]["significant"]}
    worse = sorted(rate for rate, sign in moved.items() if sign < 0)
    if worse:
        return {"state": "harm", "rates": worse}
    if moved.get(PRIMARY, 0) > 0:
        return {"state": "win", "rates": [PRIMARY]}
    return {"state": "running", "rates": []}


def _sample_ratio(exp, rows: list[dict]) -> dict | None:
    """Users per arm against the configured fractions; None for an experiment no longer declared
    or whose declared arms differ from the counted ones (the expected split is then unknown)."""
    if exp is None or {a.name for a in exp.arms} != {r["arm"] for r in rows}:
        return None
    users = [r["users"] for r in rows]
    fractions = [exp.arm(r["arm"]).fraction for r in rows]
    chi2, p = sample_ratio(users, fractions)
    return {"users": users, "fractions": fractions, "chi2": round(chi2, 4), "p": _num(p),
            "mismatch": p < SRM_ALPHA}


def _moment(moments: dict, a: str, b: str) -> int:
    return int(moments.get(f"{a}*{b}", moments.get(f"{b}*{a}", 0)))


def _rate(c: dict, rate: str) -> tuple[float, float, int, int]:
    """(ratio, its user-clustered variance, numerator, denominator) of one arm's counters."""
    num, den = RATES[rate]
    mom = c.get("moments", {})
    k, n = sum(int(c.get(m, 0)) for m in num), sum(int(c.get(m, 0)) for m in den)
    yy = sum(_moment(mom, a, b) for a in num for b in num)
    nn = sum(_moment(mom, a, b) for a in den for b in den)
    ny = sum(_moment(mom, a, b) for a in num for b in den)
    var = ratio_variance(k, n, yy, nn, ny, int(c.get("users", 0)))
    return (k / n if n else math.nan), var, k, n


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def render(report: list[dict], console=None) -> str:
    """The report as tables (one per experiment), printed to `console` (default: captured only);
    returns the text."""
    import io

    from rich.console import Console
    from rich.table import Table

    console = console or Console(file=io.StringIO(), width=240)
    console.record = True
    for exp in report:
        state = "running" if exp["enabled"] else "stopped"
        table = Table(title=f"experiment {exp['experiment']} ({state}; control: {exp['control']})",
                      caption=f"any look: always-valid interval, error {exp['alpha']:g} over all "
                              f"looks and {exp['comparisons']} comparisons. "
                              + _sample_ratio_line(exp.get("sample_ratio")),
                      caption_justify="left")
        for col in ("arm", "users", "impressions", "engaged/impr [95% CI]", "Δ [95% CI, by user]",
                    "negative/impr", "Δ", "notif open rate", "Δ", "verdict"):
            table.add_column(col, justify="left" if col == "arm" else "right", no_wrap=True)
        for row in exp["arms"]:
            cells = [row["arm"] + (" (ctl)" if row["control"] else ""), f"{row['users']:,}",
                     f"{row['counts']['impressions']:,}"]
            for rate in RATES:
                cells += [_interval(row[rate]), _diff(row[rate].get("diff"))]
            table.add_row(*cells, _verdict(row.get("verdict")))
        console.print(table)
    return console.export_text()


def _sample_ratio_line(srm: dict | None) -> str:
    if srm is None:
        return "Sample ratio: not checked (the declared arms differ from the counted ones)."
    split = " / ".join(f"{u:,}" for u in srm["users"])
    shares = " / ".join(f"{f:g}" for f in srm["fractions"])
    line = f"Sample ratio: users {split} for fractions {shares}, p {srm['p']:.3g}"
    if srm["mismatch"]:
        return (line + ": SAMPLE RATIO MISMATCH — the users are not split as configured; "
                "assignment or exposure logging is broken, so no difference above can be trusted.")
    return line + "."


def _verdict(v: dict | None) -> str:
    if v is None:
        return "—"
    return v["state"] + (f" ({', '.join(v['rates'])})" if v["rates"] else "")


def _interval(e: dict) -> str:
    if e["value"] is None:
        return "n/a"
    return f"{e['value']:.4f} [{e['low']:.4f}, {e['high']:.4f}]"


def _diff(d: dict | None) -> str:
    """The difference with its fixed interval (* when it excludes zero) and, below, its
    always-valid interval († when it excludes zero)."""
    if d is None:
        return "—"
    if d["value"] is None:
        return "n/a"
    star = " *" if d["significant"] else ""
    seq = d["sequential"]
    dagger = " †" if seq["significant"] else ""
    return (f"{d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]{star}\n"
            f"any look: [{seq['low']:+.4f}, {seq['high']:+.4f}]{dagger}")
