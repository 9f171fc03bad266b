"""MUTT's deploy files as tests read them: the Prometheus rules, the Grafana dashboard's queries, and
the metric names a PromQL expression reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"

PROMQL_WORDS = {
    # functions, aggregations and keywords that may stand where a metric name could
    *[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ],
    *[
        "rate",
        "irate",
        "increase",
        "delta",
        "idelta",
        "deriv",
        "predict_linear",
        "histogram_quantile",
    ],
    *[
        "abs",
        "ceil",
        "floor",
        "round",
        "clamp",
        "clamp_min",
        "clamp_max",
        "vector",
        "scalar",
        "time",
        "timestamp",
    ],
    *[
        "absent",
        "absent_over_time",
        "avg_over_time",
        "max_over_time",
        "min_over_time",
        "sum_over_time",
    ],
    *[
        "count_over_time",
        "last_over_time",
        "label_replace",
        "label_join",
        "sort",
        "sort_desc",
        "resets",
        "changes",
    ],
    *[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    ],
    "label_values",  # Grafana's template-variable function
}


def yaml_module() -> Any:
    """PyYAML, or a skip where it is not installed."""
    # PyYAML is not a MUTT dependency; the test extra should carry it (pyyaml>=6).
    return pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml)")


def metric_names(expr: str) -> set[str]:
    """The metric (or recording-rule) names an expression reads, by a small PromQL scan."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, regexes
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    text = re.sub(r"\{\{[^}]*\}\}", "", text)
    text = re.sub(r"\b\d+(?:ms|[smhdwy])\b", "", text)  # durations (offset 5m)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return names - PROMQL_WORDS


def alert_rules() -> list[dict[str, Any]]:
    """The Prometheus alerting and recording rules in deploy/prometheus/alerts.yml."""
    document = yaml_module().safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    """The PromQL expressions of the Grafana dashboard's panels."""
    dashboard = json.loads((DEPLOY / "grafana" / "mutt-dashboard.json").read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    return exprs
