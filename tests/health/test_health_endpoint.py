"""The metrics port: /metrics, /healthz and /readyz, and 404 for every other path (it used to
answer every path, /healthz included, with the metrics and 200)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from stitchboard.app.health import HealthMonitor, HealthServer
from stitchboard.flows.sources import StopFlag
from stitchboard.settings import HealthSettings


def get(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.headers["Content-Type"], error.read()


@pytest.fixture
def monitor() -> HealthMonitor:
    return HealthMonitor(HealthSettings(), StopFlag(), [])


@pytest.fixture
def port(monitor: HealthMonitor) -> Iterator[int]:
    server = HealthServer(0, monitor)
    yield server.port
    server.close()


def test_metrics_are_prometheus_text(port: int) -> None:
    status, content_type, body = get(port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert b"stitchboard_build_info{" in body


def test_healthz_says_the_process_is_alive(port: int) -> None:
    assert get(port, "/healthz") == (200, "application/json", b'{"alive":true}')


def test_readyz_is_503_with_the_failing_checks_until_the_flow_runs(port: int, monitor: HealthMonitor) -> None:
    status, content_type, body = get(port, "/readyz")
    assert (status, content_type) == (503, "application/json")
    report = json.loads(body)
    assert report["ready"] is False
    assert report["checks"]["flow"] == {"ok": False, "detail": "starting: waiting for the dependencies"}
    assert set(report["checks"]) == {"flow", "sink", "progress"}  # no dependency probed: none listed


@pytest.mark.parametrize("path", ["/", "/health", "/healthz/", "/metrics/x", "/metricsx", "/favicon.ico"])
def test_every_other_path_is_404(port: int, path: str) -> None:
    status, _, body = get(port, path)
    assert status == 404, path
    assert b"stitchboard" not in body  # no metrics on a wrong path


def test_without_a_monitor_readyz_only_says_the_process_runs() -> None:
    server = HealthServer(0, None)
    try:
        assert get(server.port, "/readyz")[:2] == (200, "application/json")
    finally:
        server.close()


def test_a_port_in_use_is_an_os_error(port: int) -> None:
    with pytest.raises(OSError):
        HealthServer(port, None)
