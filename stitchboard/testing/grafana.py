"""Turn the SQL of a Grafana dashboard or alert rule into what ClickHouse receives, exactly as Grafana
and the ClickHouse plugin do, so tests (and ``bench/queries.py``) run the real queries on chDB.

Two passes, in Grafana's order:

1. **Dashboard variables, in the browser.** The plugin's ``applyTemplateVariables`` calls
   ``getTemplateSrv().replace(rawSql, scopedVars, this.format)``
   (grafana/clickhouse-datasource@1d04063a31fb30f9582cd0b3aeaacb7d350b0dcf, src/data/CHDatasource.ts),
   which in scene-based dashboards is ``sceneInterpolator`` (grafana/scenes@ac1dec6d5bb5607fadde0b5561dfad148ff70c4c,
   packages/scenes/src/variables/interpolation/sceneInterpolator.ts): every match of
   ``VARIABLE_REGEX`` (packages/scenes/src/variables/constants.ts) naming a variable is replaced by
   its value through the formatter named after ``:`` (formatRegistry.ts in the same directory), or
   through the plugin's own ``format`` when none is named: arrays as ``'a','b'`` *without any
   escaping*, single values raw. A name that is not a variable (``$__timeFilter``) stays for pass 2.
   The formatters below are ports of formatRegistry.ts; note that ``singlequote`` escapes ``'`` as
   ``\\'`` but leaves backslashes alone, and ``sqlstring`` doubles ``'`` and escapes ``"`` only, so
   neither is safe for ClickHouse string literals, where a backslash escapes the next character.
2. **Macros, in the plugin's backend** (pkg/macros/macros.go of the same commit):

   - ``$__timeFilter(col)``  → ``col >= toDateTime(FROM) AND col <= toDateTime(TO)`` (Unix seconds)
   - ``$__timeFilter_ms(col)`` → the same with ``fromUnixTimestamp64Milli(ms)``
   - ``$__fromTime`` / ``$__toTime`` → ``toDateTime(seconds)``; ``$__fromTime_ms`` / ``$__toTime_ms`` → ms
   - ``$__timeInterval(col)`` → ``toStartOfInterval(toDateTime(col), INTERVAL n second)``
   - ``$__interval_s`` → ``n``

A variable the caller gave no value for, a format not ported here, or any other ``$__`` macro is an
error, so a dashboard cannot use what the tests do not model.

Variable values are what Grafana holds (``MultiValueVariable.getValue``): a string for a
single-valued variable, a list for a multi-valued one, every option's value when *All* is selected
(no custom ``allValue``). Options of a query variable come from the plugin's ``metricFindQuery``:
one column is both text and value; with more, the first column is the value and the second the
text. Values need not be options: a dashboard URL (``?var-tenant=…``) can set any value, which
survives the first validation (``skipNextValidation`` in MultiValueVariable.ts). Constant variables
are never read from the URL (``skipUrlSync: true`` in ConstantVariable.ts).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
BUILD_SCRIPT = GRAFANA / "build_dashboards.py"

Value = str | Sequence[str]

# VARIABLE_REGEX of grafana/scenes constants.ts: $var | [[var]] | [[var:fmt]] | ${var} | ${var.path} | ${var:fmt}
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)((?:\.[^:^{}\[\]]+|\[\"[^\"]*\"\]|\['[^']*'\]|\[[^\]\"']*\])*)(?::([^}]+))?\}"
)
_FUNCTION_MACRO = re.compile(r"\$__(timeFilter_ms|timeFilter|timeInterval_ms|timeInterval)\(([^()]*)\)")
_PLAIN_MACRO = re.compile(r"\$__(fromTime_ms|toTime_ms|fromTime|toTime|interval_s)\b")


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


@dataclass(frozen=True, slots=True)
class Option:
    text: str
    value: str


@dataclass(frozen=True, slots=True)
class Url:
    """A variable value set through the dashboard URL rather than picked from the options."""

    value: Value


class All:
    """*All* selected in a multi-valued variable with ``includeAll``."""


# ----------------------------------------------------------------------------------------------
# formatRegistry.ts, ported


def _string(value: Value) -> str:
    """JavaScript's ``String(value)``: an array joins with commas."""
    return value if isinstance(value, str) else ",".join(value)


def encode_uri_component_strict(value: str) -> str:
    """``encodeURIComponentStrict``: ``encodeURIComponent`` (UTF-8, unreserved ``A-Za-z0-9-_.!~*'()``
    kept) and then ``!'()*`` percent-encoded too, so only ``A-Za-z0-9-_.~`` and ``%XX`` remain."""
    return quote(value, safe="")


def _encode_uri_strict(value: str) -> str:
    """``encodeURIStrict``: ``encodeURI`` (reserved ``;,/?:@&=+$#`` kept), then ``!'()*`` encoded."""
    return quote(value, safe=";,/?:@&=+$#")


def _quoted(value: Value, quote_char: str, escapes: Mapping[str, str]) -> str:
    pattern = re.compile("|".join(re.escape(char) for char in escapes))
    values = [value] if isinstance(value, str) else list(value)
    return ",".join(
        f"{quote_char}{pattern.sub(lambda match: escapes[match.group(0)], item)}{quote_char}"
        for item in values
    )


def _distributed(value: Value, name: str) -> str:
    if isinstance(value, str):
        return value
    return ",".join(item if index == 0 else f"{name}={item}" for index, item in enumerate(value))


def _custom_query_param(value: Value, args: Sequence[str], name: str) -> str:
    key = encode_uri_component_strict(args[0] if args and args[0] else name)
    prefix = encode_uri_component_strict(args[1] if len(args) > 1 else "")
    values = [value] if isinstance(value, str) else list(value)
    return "&".join(f"{key}={prefix}{encode_uri_component_strict(item)}" for item in values)


Formatter = Callable[[Value, Sequence[str], str], str]

FORMATS: dict[str, Formatter] = {
    "raw": lambda value, args, name: _string(value),
    "csv": lambda value, args, name: _string(value),
    "pipe": lambda value, args, name: value if isinstance(value, str) else "|".join(value),
    "glob": lambda value, args, name: (
        "{" + ",".join(value) + "}" if not isinstance(value, str) and len(value) > 1 else _string(value)
    ),
    "join": lambda value, args, name: (
        value if isinstance(value, str) else (args[0] if args else ",").join(value)
    ),
    "distributed": lambda value, args, name: _distributed(value, name),
    "json": lambda value, args, name: (
        value
        if isinstance(value, str)
        else json.dumps(list(value), ensure_ascii=False, separators=(",", ":"))
    ),
    "percentencode": lambda value, args, name: encode_uri_component_strict(
        value if isinstance(value, str) else "{" + ",".join(value) + "}"
    ),
    "uriencode": lambda value, args, name: _encode_uri_strict(
        value if isinstance(value, str) else "{" + ",".join(value) + "}"
    ),
    "singlequote": lambda value, args, name: _quoted(value, "'", {"'": "\\'"}),
    "doublequote": lambda value, args, name: _quoted(value, '"', {'"': '\\"'}),
    "sqlstring": lambda value, args, name: _quoted(value, "'", {"'": "''", '"': '\\"'}),
    "customqueryparam": lambda value, args, name: _custom_query_param(value, args, name),
}


def plugin_format(value: Value) -> str:
    """The ClickHouse plugin's ``format`` (CHDatasource.ts): used when the SQL names no format."""
    return value if isinstance(value, str) else "'" + "','".join(value) + "'"


def format_value(value: Value, fmt: str | None, name: str) -> str:
    """``formatValue`` of sceneInterpolator.ts: ``fmt`` may carry arguments after ``:``."""
    if fmt is None:
        return plugin_format(value)
    format_id, *args = fmt.split(":")
    if format_id not in FORMATS:
        raise ValueError(f"variable format {format_id!r} of ${name} is not modelled by the test harness")
    return FORMATS[format_id](value, args, name)


# ----------------------------------------------------------------------------------------------
# The two passes


def interpolate(sql: str, variables: Mapping[str, Value]) -> str:
    """Pass 1: dashboard variables, as ``sceneInterpolator`` with the plugin's default format."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if name.startswith("__"):
            return match.group(0)  # a plugin macro: the backend expands it
        if match.group(5):
            raise ValueError(f"field paths ({match.group(0)}) are not modelled by the test harness")
        if name not in variables:
            raise KeyError(f"no value for variable ${name}")
        return format_value(variables[name], fmt, name)

    return _VARIABLE.sub(replace, sql)


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


def expand_macros(sql: str, time_range: TimeRange) -> str:
    """Pass 2: the plugin backend's macros."""
    sql = _FUNCTION_MACRO.sub(lambda match: _function_macro(match, time_range), sql)
    sql = _PLAIN_MACRO.sub(lambda match: _plain_macro(match, time_range), sql)
    if "$__" in sql:
        raise ValueError(f"unsupported macro in: {sql[sql.index('$__') :][:40]}")
    return sql


def expand(sql: str, time_range: TimeRange, variables: Mapping[str, Value]) -> str:
    """The SQL ClickHouse receives: variables (browser), then macros (plugin backend)."""
    return expand_macros(interpolate(sql, variables), time_range)


# ----------------------------------------------------------------------------------------------
# Variables as a dashboard holds them


def option_value(name: str) -> str:
    """The option value the generated dashboards' variable queries list for ``name``
    (``concat('x', hex(name))``), for SQL outside a dashboard such as the docs' examples."""
    return "x" + name.encode("utf-8").hex().upper()


def options_from_rows(rows: Sequence[Sequence[Any]]) -> list[Option]:
    """``metricFindQuery``: one column is text and value; otherwise value first, text second."""
    return [
        Option(str(row[0]), str(row[0])) if len(row) == 1 else Option(str(row[1]), str(row[0]))
        for row in rows
    ]


Choice = str | Sequence[str] | All | Url


def choose(variable: Mapping[str, Any], options: Sequence[Option], choice: Choice) -> Value:
    """The value Grafana holds when ``choice`` (option texts, All, or a URL value) is selected."""
    if isinstance(choice, Url):
        return choice.value
    values = [option.value for option in options]
    if isinstance(choice, All):
        if not variable.get("includeAll") or variable.get("allValue"):
            raise ValueError(f"${variable['name']}: All means every option only without a custom allValue")
        return values
    by_text = {option.text: option.value for option in options}
    texts = [choice] if isinstance(choice, str) else list(choice)
    missing = [text for text in texts if text not in by_text]
    if missing:
        raise KeyError(f"${variable['name']} has no option {missing} among {sorted(by_text)}")
    chosen = [by_text[text] for text in texts]
    if variable.get("multi"):
        return chosen
    if len(chosen) != 1:
        raise ValueError(f"${variable['name']} is single-valued")
    return chosen[0]


def resolve(
    dashboard: Mapping[str, Any],
    choices: Mapping[str, Choice],
    run_query: Callable[[str], Sequence[Sequence[Any]]],
    time_range: TimeRange,
    constants: Mapping[str, str] | None = None,
) -> dict[str, Value]:
    """Every variable of ``dashboard`` in templating order: constants from the model (or
    ``constants``), custom options from the model, query options by running their query (with the
    values chosen so far) through ``run_query``; unchosen variables take their first option."""
    values: dict[str, Value] = {}
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        if variable["type"] == "constant":
            values[name] = (constants or {}).get(name, variable["query"])
            continue
        if variable["type"] == "custom":
            options = [Option(option["text"], option["value"]) for option in variable["options"]]
        else:
            options = options_from_rows(run_query(expand(variable["query"], time_range, values)))
        if name in choices:
            values[name] = choose(variable, options, choices[name])
        elif options:
            values[name] = choose(variable, options, options[0].text)
        else:  # getStateUpdateGivenNewOptions: nothing to choose from
            values[name] = [] if variable.get("multi") else ""
    return values


# ----------------------------------------------------------------------------------------------
# The committed files


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
