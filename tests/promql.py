"""Prometheus in tests: the dashboard's PromQL, the metric names it reads, promtool's verdict."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "natsmesh.json"

# What Grafana puts in place of the dashboard's variables before it asks Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$job": ".*"}

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}
_SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def exprs(board: dict[str, Any]) -> list[str]:
    """Every panel's queries and every variable's, as written in the dashboard."""
    found = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":  # label_values(metric, label): Grafana's, not PromQL
            query = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["definition"])
            assert query is not None, variable["definition"]
            found.append(query.group(1))
    return found


def for_prometheus(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: what is left once strings, label matchers,
    ranges, grouping label lists, functions, keywords and numbers are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[0-9][\w.]*|[A-Za-z_:][\w:]*", expr):  # numbers, durations, names
        rest = expr[match.end() :].lstrip()
        if match.group()[0].isdigit() or rest.startswith("(") or match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def exported(text: str) -> set[str]:
    """Every sample name a /metrics page may carry, even a family with no sample yet."""
    names = set()
    for family in text_string_to_metric_families(text):
        suffixes = _SAMPLE_SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def promtool_problems(text: str) -> str:
    """What `promtool check metrics` says of a /metrics page: "" when it is clean, lint
    included (help text, counter suffixes, units)."""
    checked = subprocess.run(
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return (checked.stdout + checked.stderr).strip() or (
        f"exit {checked.returncode}" if checked.returncode else ""
    )
