"""A broker or ClickHouse that does not answer: not ready, then one error line and exit status 1.

Against real parts: Tansu never started (a closed port), Tansu stopped in the middle of a run, and
a ClickHouse server DSN on a closed port. ``health.unreachable_exit_seconds`` is a few seconds
here; the run must exit within it (plus the time to notice, stop and start up), say which
dependency and what to check on one line, and log nothing else but JSON lines, with librdkafka's
(about 19 a second while a broker is down) rate-limited.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from recovery.crash_harness import health

from stitchboard.sinks.kafka import produce_records
from stitchboard.synthetic.dataset import DEMO_TENANTS, build_dataset, write_dataset
from stitchboard.testing.broker import Kafka, free_port, tansu_broker

ROOT = Path(__file__).resolve().parents[2]
BOUND = 6.0  # health.unreachable_exit_seconds
SLACK = 25.0  # start-up (imports, chDB) and the clean stop on a loaded 2-core machine
PASSWORD = "Unr3achableS3cret"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Flow:
    """``stitchboard run`` as a subprocess with its stderr in a file."""

    def __init__(self, tmp_path: Path, settings: dict[str, Any], *args: str) -> None:
        self.port = free_port()
        document = {
            "metrics_port": self.port,
            "health": {"unreachable_exit_seconds": BOUND, "check_seconds": 0.5},
            **settings,
        }
        config = tmp_path / "settings.json"
        config.write_text(json.dumps(document), encoding="utf-8")
        self.stderr = tmp_path / "stderr.log"
        environment = {k: v for k, v in os.environ.items() if not k.upper().startswith("STITCHBOARD_")}
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "stitchboard.app.cli", "run", "--config", str(config), *args]
        with self.stderr.open("wb") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=sink, env=environment)
        self.started = time.monotonic()

    def ready(self, timeout: float = 60) -> dict[str, Any]:
        """The /readyz body once it answers 200."""
        return self._readiness(lambda status, _: status == 200, timeout)

    def unreachable(self, dependency: str, timeout: float = 60) -> dict[str, Any]:
        """The /readyz body once it answers 503 because ``dependency`` did not answer a probe."""

        def down(status: int, body: dict[str, Any]) -> bool:
            check = body["checks"].get(dependency, {})
            return status == 503 and str(check.get("detail", "")).startswith("unreachable")

        return self._readiness(down, timeout)

    def _readiness(self, until: Callable[[int, dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.stderr.read_text()
            answer = health(self.port)
            if answer is not None and until(*answer):
                body: dict[str, Any] = answer[1]
                return body
            time.sleep(0.1)
        raise TimeoutError(f"/readyz never said so: {health(self.port)}")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def error_line(self) -> str:
        """The one line that is not a JSON log line: the error, last."""
        lines = self.stderr.read_text(encoding="utf-8").splitlines()
        plain = [line for line in lines if not line.startswith("{")]
        assert len(plain) == 1 and lines[-1] == plain[0], lines[-10:]
        return plain[0]

    def logs(self) -> list[dict[str, Any]]:
        lines = self.stderr.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def librdkafka_lines_per_kind(logs: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter(
        (line["level"], line["msg"].split(" ", 1)[0])
        for line in logs
        if line["logger"] == "stitchboard.kafka"
    )


@pytest.fixture
def flows() -> Iterator[list[Flow]]:
    started: list[Flow] = []
    yield started
    for flow in started:
        flow.kill()


def test_a_broker_that_never_answers_is_not_ready_then_one_line(
    tmp_path: Path, closed_port: int, flows: list[Flow]
) -> None:
    flow = Flow(
        tmp_path,
        {
            "kafka": {"brokers": [f"127.0.0.1:{closed_port}"]},
            "clickhouse": {"dsn": f"chdb://{tmp_path / 'chdb'}"},
        },
    )
    flows.append(flow)
    body = flow.unreachable("kafka")
    assert body["ready"] is False and body["checks"]["kafka"]["ok"] is False
    assert "Broker transport failure" in body["checks"]["kafka"]["detail"]
    assert health(flow.port, "/healthz") == (200, {"alive": True})
    assert health(flow.port, "/") is not None and health(flow.port, "/")[0] == 404  # type: ignore[index]

    assert flow.wait(timeout=BOUND + SLACK) == 1
    assert time.monotonic() - flow.started < BOUND + SLACK
    line = flow.error_line()
    assert line.startswith(f"stitchboard run: error: Kafka unreachable at 127.0.0.1:{closed_port} for ")
    assert line.endswith(
        "check kafka.brokers (and kafka.extra_config for TLS or SASL), the network path and "
        "that the brokers are up; a restart resumes from the last snapshot"
    )
    kinds = librdkafka_lines_per_kind(flow.logs())
    assert kinds and max(kinds.values()) <= 5, kinds  # about 19 a second without the rate limit


def test_a_broker_stopped_mid_run_makes_the_flow_not_ready_then_exit(
    tmp_path: Path, flows: list[Flow]
) -> None:
    dataset = build_dataset(dict(DEMO_TENANTS), date(2026, 10, 25), seed=4, scale=0.1)
    with contextlib.ExitStack() as broker:
        bootstrap = broker.enter_context(tansu_broker())
        topic = Kafka(bootstrap).create_topic(partitions=2)
        produce_records([bootstrap], topic, [r.raw for r in dataset.delivery.records])
        flow = Flow(
            tmp_path,
            {
                "kafka": {"brokers": [bootstrap], "topics": [topic], "dead_letter_topic": f"{topic}.dead"},
                "clickhouse": {"dsn": f"chdb://{tmp_path / 'chdb'}"},
                "recovery_dir": str(tmp_path / "recovery"),
                "snapshot_seconds": 1,
            },
        )
        flows.append(flow)
        ready = flow.ready()
        assert all(check["ok"] for check in ready["checks"].values())
    stopped = time.monotonic()  # the broker got SIGTERM and is gone

    body = flow.unreachable("kafka")
    assert body["checks"]["flow"]["ok"] is True  # running: only the broker is missing
    assert flow.wait(timeout=BOUND + SLACK) == 1
    assert time.monotonic() - stopped < BOUND + SLACK
    assert flow.error_line().startswith(f"stitchboard run: error: Kafka unreachable at {bootstrap} for ")
    kinds = librdkafka_lines_per_kind(flow.logs())
    assert max(kinds.values(), default=0) <= 5, kinds


def test_a_clickhouse_that_never_answers_is_not_ready_then_one_line(
    tmp_path: Path, closed_port: int, flows: list[Flow]
) -> None:
    events, _ = write_dataset(
        build_dataset(dict(DEMO_TENANTS), date(2026, 10, 25), seed=4, scale=0.02), tmp_path
    )
    dsn = f"http://writer:{PASSWORD}@127.0.0.1:{closed_port}"
    flow = Flow(tmp_path, {"clickhouse": {"dsn": dsn}}, "--replay", str(events))
    flows.append(flow)
    body = flow.unreachable("clickhouse")
    assert "Connection refused" in body["checks"]["clickhouse"]["detail"]
    assert "kafka" not in body["checks"]  # a replay reads no broker

    assert flow.wait(timeout=BOUND + SLACK) == 1
    assert time.monotonic() - flow.started < BOUND + SLACK
    line = flow.error_line()
    assert line.startswith(
        f"stitchboard run: error: ClickHouse unreachable at http://writer:***@127.0.0.1:{closed_port} for "
    )
    assert "Connection refused" in line and "check clickhouse.dsn" in line
    assert PASSWORD not in flow.stderr.read_text(encoding="utf-8")
    client_lines = Counter(
        line["logger"] for line in flow.logs() if line["logger"].startswith(("clickhouse_connect", "urllib3"))
    )
    assert client_lines and max(client_lines.values()) <= 5, client_lines  # JSON, rate-limited
