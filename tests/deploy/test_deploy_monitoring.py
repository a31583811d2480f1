"""The optional components: the NetworkPolicy lets through exactly what the settings need, the
ServiceMonitor scrapes the flow's Service, and every alert uses metrics the flow exports, passes
promtool (syntax and unit tests) and has its runbook section in docs/operations.md."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import time
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE
from k8s_render import REPO, by_kind, render, tool
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from stitchboard import __version__, telemetry

RULE_TESTS = Path(__file__).parent / "prometheus" / "stitchboard-flow.test.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
# Series the rules read that the flow does not export, and where they come from.
EXTERNAL_SERIES = {
    "up": "Prometheus, per scrape target",
    "kube_pod_status_ready": "kube-state-metrics",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
}
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
}


def exported_series() -> set[str]:
    """The series names the flow's process exposes: stitchboard.telemetry and Bytewax's Kafka lag."""
    suffixes = {
        "counter": ["_total"],
        "gauge": [""],
        "histogram": ["_bucket", "_sum", "_count"],
        "info": ["_info"],
    }
    metrics = [value for value in vars(telemetry).values() if isinstance(value, MetricWrapperBase)]
    names = set()
    for metric in [*metrics, BYTEWAX_CONSUMER_LAG_GAUGE]:
        for family in metric.collect():
            names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


def series_in(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not functions, keywords,
    label names (in braces or after by/on/...), durations or strings."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    stripped = re.sub(r"\{[^}]*\}", "", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)
    stripped = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", stripped)
    names = re.findall(r"\b[A-Za-z_:][A-Za-z0-9_:]*\b(?!\s*\()", stripped)
    functions = set(re.findall(r"([A-Za-z_]+)\s*\(", stripped))
    return {name for name in names if name not in PROMQL_WORDS and name not in functions}


def rules() -> list[dict[str, Any]]:
    spec = by_kind(render(("prometheus-rules",)))["PrometheusRule"]["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"]]


def runbook_anchors() -> dict[str, str]:
    """GitHub-style anchor → heading text of every heading in docs/operations.md."""
    headings = re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-"): heading for heading in headings}


def test_the_flow_exports_its_last_write_time_and_build() -> None:
    before = time.time()
    telemetry.record_insert("conversations", 3, 0.01)
    written = REGISTRY.get_sample_value(
        "stitchboard_sink_last_write_timestamp_seconds", {"table": "conversations"}
    )
    assert written is not None and before <= written <= time.time()
    build = {"version": __version__, "python": platform.python_version(), "bytewax": version("bytewax")}
    assert REGISTRY.get_sample_value("stitchboard_build_info", build) == 1


def test_series_extraction_reads_promql() -> None:
    expr = (
        '(time() - max(a_seconds{job="x", le="0.5"})) > 300 and sum by (table) '
        '(rate(b_total{job="y"}[5m] offset 1m)) > 0 unless on (tenant) absent(c == 1)'
    )
    assert series_in(expr) == {"a_seconds", "b_total", "c"}


def test_every_alert_reads_series_that_exist() -> None:
    exported = exported_series()
    assert {"stitchboard_sink_last_write_timestamp_seconds", "stitchboard_build_info"} <= exported
    for rule in rules():
        unknown = series_in(rule["expr"]) - exported - set(EXTERNAL_SERIES)
        assert not unknown, (rule["alert"], unknown)


def test_alerts_cover_the_flow_and_each_has_a_runbook_section() -> None:
    alerts = {rule["alert"]: rule for rule in rules()}
    read = {name for rule in alerts.values() for name in series_in(rule["expr"])}
    assert {
        "bytewax_kafka_consumer_lag",
        "stitchboard_watermark_lag_seconds",
        "stitchboard_sink_retries_total",
        "stitchboard_sink_last_write_timestamp_seconds",
        "up",
        "kube_pod_status_ready",
    } <= read
    anchors = runbook_anchors()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"
        assert anchors.get(name.lower()) == name, f"docs/operations.md has no section {name}"
    documented = {heading for heading in anchors.values() if heading.startswith("Stitchboard")}
    assert documented == set(alerts), "a runbook section without its alert"


@pytest.fixture
def rule_files(tmp_path: Path) -> Path:
    """The PrometheusRule's groups as a Prometheus rule file, beside the promtool unit tests."""
    spec = by_kind(render(("prometheus-rules",)))["PrometheusRule"]["spec"]
    (tmp_path / "stitchboard-flow.rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return tmp_path


def test_promtool_checks_the_rules(rule_files: Path) -> None:
    result = subprocess.run(
        [tool("promtool"), "check", "rules", "stitchboard-flow.rules.yaml"],
        capture_output=True,
        text=True,
        cwd=rule_files,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_fire_each_alert_when_expected(rule_files: Path) -> None:
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == {rule["alert"] for rule in rules()}, "every alert has a unit test"
    result = subprocess.run(
        [tool("promtool"), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        cwd=rule_files,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_monitor_scrapes_the_flow_service() -> None:
    objects = by_kind(render(("service-monitor",)))
    monitor, service = objects["ServiceMonitor"], objects["Service"]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    jobs = {job for rule in rules() for job in re.findall(r'job="([^"]+)"', rule["expr"])}
    assert jobs == {service["metadata"]["name"]}, "the rules select the job the monitor creates"


def _peers(rule: dict[str, Any]) -> set[str]:
    return {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["to"]}


def _ports(rule: dict[str, Any]) -> set[tuple[int | str, str]]:
    return {(port["port"], port["protocol"]) for port in rule["ports"]}


def test_network_policy_allows_only_what_the_settings_need() -> None:
    objects = render(("network-policy",))
    policy = by_kind(objects)["NetworkPolicy"]["spec"]
    selector = policy["podSelector"]["matchLabels"]
    for kind in ("StatefulSet", "Job"):
        labels = by_kind(objects)[kind]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), kind
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}

    (ingress,) = policy["ingress"]
    (peer,) = ingress["from"]
    assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    flow = by_kind(objects)["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert _ports(ingress) == {(port["name"], "TCP") for port in flow["ports"]}

    egress = policy["egress"]
    assert all(rule.get("to") and rule.get("ports") for rule in egress), "no allow-all egress rule"
    allowed = {(namespace, port) for rule in egress for namespace in _peers(rule) for port in _ports(rule)}
    assert {("kube-system", (53, "UDP")), ("kube-system", (53, "TCP"))} <= allowed
    settings = tomllib.loads(by_kind(objects)["ConfigMap"]["data"]["settings.toml"])
    for broker in settings["kafka"]["brokers"]:
        host, _, port = broker.rpartition(":")
        namespace = host.split(".")[1]  # <service>.<namespace>.svc...
        assert (namespace, (int(port), "TCP")) in allowed, broker
    assert {("clickhouse", (8123, "TCP")), ("clickhouse", (8443, "TCP"))} <= allowed
    assert {namespace for namespace, _ in allowed} == {"kube-system", "kafka", "clickhouse"}
