"""Expand Grafana ClickHouse-plugin macros and dashboard variables into SQL chDB can run.

Supported, with the expansions of grafana-clickhouse-datasource v4 (``pkg/macros/macros.go``):

- ``$__timeFilter(col)``  → ``col >= toDateTime(FROM) AND col <= toDateTime(TO)`` (Unix seconds)
- ``$__timeFilter_ms(col)`` → the same with ``fromUnixTimestamp64Milli(ms)``
- ``$__fromTime`` / ``$__toTime`` → ``toDateTime(seconds)``; ``$__fromTime_ms`` / ``$__toTime_ms`` → ms
- ``$__timeInterval(col)`` → ``toStartOfInterval(toDateTime(col), INTERVAL n second)``
- ``$__interval_s`` → ``n``
- ``${name}``, ``$name`` → the value (a list joins with ``,``); ``${name:singlequote}`` → ``'a','b'``

Anything else starting with ``$`` is an error, so a dashboard cannot use a macro the tests do not
understand.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
BUILD_SCRIPT = GRAFANA / "build_dashboards.py"

Value = str | Sequence[str]

_FUNCTION_MACRO = re.compile(r"\$__(timeFilter_ms|timeFilter|timeInterval_ms|timeInterval)\(([^()]*)\)")
_PLAIN_MACRO = re.compile(r"\$__(fromTime_ms|toTime_ms|fromTime|toTime|interval_s)\b")
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


@dataclass(frozen=True, slots=True)
class TimeRange:
    """The dashboard (or alert) time range and the panel's interval."""

    start: datetime
    end: datetime
    interval_seconds: int = 60


@dataclass(frozen=True, slots=True)
class Query:
    """One SQL text found in a dashboard or in the alert rules, with where it came from."""

    where: str
    sql: str
    format: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _seconds(instant: datetime) -> str:
    return f"toDateTime({int(instant.timestamp())})"


def _millis(instant: datetime) -> str:
    return f"fromUnixTimestamp64Milli({int(instant.timestamp() * 1000)})"


def _function_macro(match: re.Match[str], time_range: TimeRange) -> str:
    name, column = match.group(1), match.group(2).strip()
    if name == "timeFilter":
        return f"{column} >= {_seconds(time_range.start)} AND {column} <= {_seconds(time_range.end)}"
    if name == "timeFilter_ms":
        return f"{column} >= {_millis(time_range.start)} AND {column} <= {_millis(time_range.end)}"
    if name == "timeInterval":
        return f"toStartOfInterval(toDateTime({column}), INTERVAL {time_range.interval_seconds} second)"
    millis = time_range.interval_seconds * 1000
    return f"toStartOfInterval(toDateTime64({column}, 3), INTERVAL {millis} millisecond)"


def _plain_macro(match: re.Match[str], time_range: TimeRange) -> str:
    return {
        "fromTime": _seconds(time_range.start),
        "toTime": _seconds(time_range.end),
        "fromTime_ms": _millis(time_range.start),
        "toTime_ms": _millis(time_range.end),
        "interval_s": str(time_range.interval_seconds),
    }[match.group(1)]


def _variable(match: re.Match[str], variables: Mapping[str, Value]) -> str:
    name = match.group(1) or match.group(3)
    style = match.group(2)
    if name not in variables:
        raise KeyError(f"no value for variable ${name}")
    value = variables[name]
    values = [value] if isinstance(value, str) else list(value)
    if style == "singlequote":
        return ",".join(quote(item) for item in values)
    if style is not None:
        raise ValueError(f"unsupported variable format ${{{name}:{style}}}")
    return ",".join(values)


def expand(sql: str, time_range: TimeRange, variables: Mapping[str, Value]) -> str:
    """SQL with every macro and variable replaced; raises on anything it does not know."""
    sql = _FUNCTION_MACRO.sub(lambda match: _function_macro(match, time_range), sql)
    sql = _PLAIN_MACRO.sub(lambda match: _plain_macro(match, time_range), sql)
    if "$__" in sql:
        raise ValueError(f"unsupported macro in: {sql[sql.index('$__') :][:40]}")
    return _VARIABLE.sub(lambda match: _variable(match, variables), sql)


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Committed dashboards by uid."""
    models = (
        json.loads(path.read_text(encoding="utf-8")) for path in (GRAFANA / "dashboards").glob("*.json")
    )
    return {model["uid"]: model for model in models}


def load_alerts() -> dict[str, Any]:
    return yaml.safe_load((GRAFANA / "provisioning" / "alerting" / "stitchboard-alerts.yaml").read_text())


def panel_queries(dashboard: Mapping[str, Any]) -> Iterator[Query]:
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            where = f"{dashboard['uid']} / {panel['title']} / {target['refId']}"
            yield Query(where, target["rawSql"], target["format"])


def variable_queries(dashboard: Mapping[str, Any]) -> Iterator[Query]:
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield Query(f"{dashboard['uid']} / ${variable['name']}", variable["query"])


def alert_queries(provisioning: Mapping[str, Any]) -> Iterator[Query]:
    """Each rule's data-source query, with its threshold (``evaluator``) for checking results."""
    for group in provisioning["groups"]:
        for rule in group["rules"]:
            by_ref = {item["refId"]: item for item in rule["data"]}
            condition = by_ref[rule["condition"]]["model"]
            source = by_ref[condition["expression"]]
            evaluator = condition["conditions"][0]["evaluator"]
            yield Query(
                rule["uid"], source["model"]["rawSql"], source["model"]["format"], {"evaluator": evaluator}
            )


def fires(evaluator: Mapping[str, Any], value: float) -> bool:
    """Grafana's threshold expression for the comparison types the rules use."""
    threshold = evaluator["params"][0]
    comparisons = {"gt": value > threshold, "lt": value < threshold}
    return comparisons[evaluator["type"]]


@functools.cache
def build_module() -> ModuleType:
    """``deploy/grafana/build_dashboards.py`` loaded by path (``deploy`` is not an installed package)."""
    spec = importlib.util.spec_from_file_location("stitchboard_build_dashboards", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
