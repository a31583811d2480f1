"""Grafana provisioning: generated files are current, dashboards and alert rules are well formed."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from stitchboard.metrics import DERIVED
from stitchboard.testing.grafana import (
    GRAFANA,
    TimeRange,
    alert_queries,
    build_module,
    expand,
    load_alerts,
    load_dashboards,
    panel_queries,
    variable_queries,
)

TENANT_FILTER = build_module().TENANT_FILTER
DATASOURCE_UID = "stitchboard-clickhouse"
NOW = datetime(2026, 3, 30, 9, 7, tzinfo=UTC)

ALERTING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "groups"],
    "properties": {
        "apiVersion": {"const": 1},
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["orgId", "name", "folder", "interval", "rules"],
                "properties": {
                    "orgId": {"type": "integer"},
                    "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                    "rules": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": [
                                "uid",
                                "title",
                                "condition",
                                "data",
                                "for",
                                "noDataState",
                                "execErrState",
                            ],
                            "properties": {
                                "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
                                "for": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                                "noDataState": {"enum": ["Alerting", "NoData", "OK", "KeepLast"]},
                                "execErrState": {"enum": ["Alerting", "Error", "OK", "KeepLast"]},
                                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                "data": {
                                    "type": "array",
                                    "minItems": 2,
                                    "items": {
                                        "type": "object",
                                        "required": ["refId", "datasourceUid", "model"],
                                        "properties": {
                                            "relativeTimeRange": {
                                                "type": "object",
                                                "required": ["from", "to"],
                                                "properties": {
                                                    "from": {"type": "integer", "minimum": 0},
                                                    "to": {"type": "integer", "minimum": 0},
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def all_sql() -> list[tuple[str, str]]:
    """(where, sql) of every dashboard panel, dashboard variable and alert rule."""
    found = []
    for dashboard in load_dashboards().values():
        found += [(query.where, query.sql) for query in panel_queries(dashboard)]
        found += [(query.where, query.sql) for query in variable_queries(dashboard)]
    found += [(query.where, query.sql) for query in alert_queries(load_alerts())]
    return found


def test_committed_files_are_what_the_script_generates() -> None:
    assert build_module().stale_files() == []


def test_the_check_mode_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = build_module()
    monkeypatch.setattr(module, "ALERTS_FILE", tmp_path / "alerts.yaml")
    monkeypatch.setattr(module, "DASHBOARD_DIR", tmp_path / "dashboards")
    assert module.main(["--check"]) == 1
    assert module.main([]) == 0
    assert module.main(["--check"]) == 0


def test_five_dashboards_with_unique_uids_and_panel_ids() -> None:
    dashboards = load_dashboards()
    assert sorted(dashboards) == [
        "stitchboard-data-quality",
        "stitchboard-interval-report",
        "stitchboard-pipeline",
        "stitchboard-restatements",
        "stitchboard-wallboard",
    ]
    for uid, dashboard in dashboards.items():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), uid
        assert dashboard["schemaVersion"] >= 36
        for panel in dashboard["panels"]:
            assert panel["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": DATASOURCE_UID}
            assert panel["targets"], panel["title"]
            assert Counter(target["refId"] for target in panel["targets"]).most_common(1)[0][1] == 1
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == DATASOURCE_UID
                assert target["rawSql"].strip().startswith("SELECT")
                assert target["format"] in (0, 1)
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24


def test_every_dashboard_has_the_tenant_and_database_variables() -> None:
    for uid, dashboard in load_dashboards().items():
        variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
        assert variables["tenant"]["type"] == "query", uid
        assert variables["database"] == {
            "type": "constant",
            "name": "database",
            "hide": 2,
            "query": "stitchboard",
        }
        assert variables["tenant"]["datasource"]["uid"] == DATASOURCE_UID


def test_every_dashboard_query_filters_by_tenant() -> None:
    """Each ``FROM <table>`` has its own tenant filter, in subqueries and unions too."""
    reads = 0
    for dashboard in load_dashboards().values():
        for query in list(panel_queries(dashboard)) + list(variable_queries(dashboard)):
            if query.where.endswith("$tenant"):
                continue  # the query listing the tenants to choose from
            assert TENANT_FILTER in query.sql, query.where
            for match in re.finditer(r"FROM \$\{database\}\.\S+(?: FINAL)?\s+", query.sql):
                assert query.sql[match.end() :].startswith(f"WHERE {TENANT_FILTER}"), query.where
                reads += 1
    assert reads >= 30


def test_alert_rules_evaluate_every_tenant_and_need_no_dashboard_variable() -> None:
    for query in alert_queries(load_alerts()):
        assert "${" not in query.sql, query.where
        assert query.sql.startswith("SELECT tenant"), query.where
        assert re.search(r"GROUP BY tenant\b", query.sql), query.where


def test_derived_figures_come_from_the_metric_catalogue() -> None:
    """No hand-written KPI ratio: removing the catalogue's expressions leaves no ``nullIf(sum(``."""
    expressions = sorted((derived.aggregated() for derived in DERIVED), key=len, reverse=True)
    for where, sql in all_sql():
        for expression in expressions:
            sql = sql.replace(expression, "")
        assert "nullIf(sum(" not in sql, where
    wallboard = {
        panel["title"]: panel["targets"][0]["rawSql"]
        for panel in load_dashboards()["stitchboard-wallboard"]["panels"]
    }
    by_name = {derived.name: derived for derived in DERIVED}
    assert by_name["service_level"].aggregated() in wallboard["Service level"]
    assert f"{by_name['asa_ms'].aggregated()} / 1000" in wallboard["ASA"]


def test_only_macros_the_plugin_supports() -> None:
    known = {"timeFilter", "timeFilter_ms", "fromTime", "toTime", "fromTime_ms", "toTime_ms", "timeInterval"}
    for where, sql in all_sql():
        used = set(re.findall(r"\$__(\w+)", sql))
        assert used <= known, where
        values = {"database": "db", "tenant": ["x61"], "queue": ["x71"], "channel": ["x63"], "view": "v"}
        values |= {"interval_length": "15"}
        assert not re.search(
            r"\$\{|\$\w|\[\[", expand(sql, TimeRange(NOW - timedelta(hours=1), NOW), values)
        ), where


def test_variables_reach_the_sql_only_percent_encoded_in_a_string_literal() -> None:
    """Safe by construction: a value can only appear as ``'${name:percentencode}'`` (Grafana leaves
    ``A-Za-z0-9-_.~`` and ``%XX``), decoded by ClickHouse; the database constant, which no URL or
    data can set, is the only variable pasted as SQL."""
    reference = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)([^}:]*)(?::([^}]+))?\}")
    for dashboard in load_dashboards().values():
        variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
        assert variables["database"]["type"] == "constant"
        sqls = [query.sql for query in panel_queries(dashboard)] + [
            query.sql for query in variable_queries(dashboard)
        ]
        for sql in sqls:
            for match in reference.finditer(sql):
                name = match.group(1) or match.group(2) or match.group(4)
                if name.startswith("__"):
                    continue
                if name == "database":
                    assert match.group(0) == "${database}"
                    continue
                assert match.group(0) == f"${{{name}:percentencode}}", (dashboard["uid"], match.group(0))
                before, after = sql[: match.start()], sql[match.end() :]
                assert before.endswith("decodeURLComponent('") and after.startswith("')"), dashboard["uid"]
        for variable in variables.values():
            assert not variable.get("allValue"), variable["name"]
            if variable["type"] == "query":
                assert variable["query"].startswith(f"SELECT DISTINCT concat('x', hex({variable['name']}))")


def test_alerting_file_matches_the_provisioning_format() -> None:
    provisioning = load_alerts()
    jsonschema.validate(provisioning, ALERTING_SCHEMA)
    uids = [rule["uid"] for group in provisioning["groups"] for rule in group["rules"]]
    assert len(uids) == len(set(uids)) == 6
    for group in provisioning["groups"]:
        for rule in group["rules"]:
            refs = {item["refId"]: item for item in rule["data"]}
            assert rule["condition"] in refs
            assert refs["A"]["datasourceUid"] == DATASOURCE_UID
            assert refs["A"]["model"]["datasource"]["uid"] == DATASOURCE_UID
            assert refs[rule["condition"]]["datasourceUid"] == "__expr__"
            # Grafana expands $NAME in labels from the environment; templates belong in annotations.
            assert all("$" not in value for value in rule["labels"].values()), rule["uid"]
            assert "{{ $labels.tenant }}" in rule["annotations"]["summary"]


def test_datasource_and_dashboard_providers() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert (source["type"], source["uid"]) == ("grafana-clickhouse-datasource", DATASOURCE_UID)
    assert {"host", "port", "protocol", "defaultDatabase", "username"} <= set(source["jsonData"])
    assert source["jsonData"]["protocol"] in ("native", "http")
    assert source["jsonData"]["defaultDatabase"] == "stitchboard"
    assert re.fullmatch(r"\$\{?[A-Z_]+\}?", source["secureJsonData"]["password"])
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "stitchboard.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
