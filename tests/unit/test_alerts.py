"""docs/prometheus-alerts.yml: well-formed Prometheus rule groups whose every metric exists with
that name in the workers' or the reader's /metrics (a renamed metric would silently never fire)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus-alerts.yml"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"),
            "summary": ("_count", "_sum", "")}


def exposed_names() -> set[str]:
    """Every sample name the workers and the reader expose (Bytewax's own besides)."""
    import flows.kafka_delivery  # noqa: F401 - registers the Kafka delivery counters
    from flows import metrics
    from reader.metrics import ReaderMetrics

    metrics.GcPauses.install()  # (the workers' entry point installs it)
    names = {"up"}  # Prometheus's own, per scrape target
    for registry in (REGISTRY, ReaderMetrics().registry):
        for family in registry.collect():
            names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    return [rule for group in groups for rule in group["rules"]]


def test_every_rule_is_complete():
    seen = set()
    for rule in rules():
        assert rule["alert"] not in seen, f"two rules named {rule['alert']}"
        seen.add(rule["alert"])
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("page", "warning"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
        assert "for" not in rule or re.fullmatch(r"\d+[smh]", rule["for"]), rule
        expr = rule["expr"]
        for opening, closing in ("()", "{}", "[]"):
            assert expr.count(opening) == expr.count(closing), rule


def test_every_metric_an_alert_reads_is_exposed():
    names = exposed_names()
    for rule in rules():
        used = set(re.findall(r"\bpersona_[a-z0-9_]+|\bup\b", rule["expr"]))
        assert used, f"{rule['alert']} reads no metric"
        assert used <= names, (rule["alert"], sorted(used - names))
