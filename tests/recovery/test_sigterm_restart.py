"""SIGTERM mid-run, restart: nothing lost, nothing doubled, nothing read twice.

``stitchboard run`` over Tansu with recovery on, as Kubernetes runs it (tailing Kafka), gets SIGTERM
after a third of the records; it must exit 0 within the pod's grace period
(``terminationGracePeriodSeconds`` of deploy/kubernetes/statefulset.yaml) with a log line saying
why. A catch-up run (``--until-eof``, which drains at its end) gets SIGTERM too, where stopping
must not finalise anything; a last run reads to the end. The stored figures, conversations, agent
states, dead letters and restatement chains then equal the generator's truth, as in the SIGKILL
crash test (crash_harness.py), and, unlike after a SIGKILL, no record was read twice: each stopped
run snapshotted exactly where its input ended.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from recovery.crash_harness import (
    DATABASE,
    expected_of,
    health,
    problems_of,
    read_outcome,
    scrape,
    start_flow,
    write_settings,
)

from stitchboard.sinks.kafka import produce_records
from stitchboard.synthetic.dataset import DEMO_TENANTS, build_dataset
from stitchboard.testing.broker import Kafka, free_port

STATEFULSET = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "statefulset.yaml"


def grace_period() -> int:
    """The seconds Kubernetes waits after SIGTERM before SIGKILL."""
    spec = yaml.safe_load(STATEFULSET.read_text(encoding="utf-8"))["spec"]["template"]["spec"]
    return int(spec["terminationGracePeriodSeconds"])


def log_lines(log: Path) -> list[dict[str, Any]]:
    lines = log.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def run_until_sigterm(
    process: subprocess.Popen[bytes], port: int, records: int, timeout: float = 240
) -> tuple[int, float, list[int]]:
    """SIGTERM once the run has read ``records``; returns its exit status, the seconds it took to
    exit, and the /readyz statuses seen before the signal."""
    readiness: list[int] = []
    deadline = time.monotonic() + timeout
    while scrape(port).get("stitchboard_records_in_total", 0) < records:
        assert process.poll() is None, "the run ended before the signal"
        assert time.monotonic() < deadline, f"fewer than {records} records read in {timeout} s"
        answer = health(port)
        if answer is not None:
            readiness.append(answer[0])
        time.sleep(0.05)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    status = process.wait(timeout=grace_period() + 30)
    return status, time.monotonic() - signalled, readiness


def test_sigterm_stops_cleanly_and_a_restart_ends_exactly_once(kafka: Kafka, tmp_path: Path) -> None:
    dataset = build_dataset(dict(DEMO_TENANTS), date(2026, 10, 25), seed=13, scale=0.6)
    expected = expected_of(dataset)
    total = dataset.delivery.consumed
    topic = kafka.create_topic(partitions=3)
    produce_records([kafka.bootstrap], topic, [r.raw for r in dataset.delivery.records])

    def settings(run: int) -> tuple[Path, int]:
        port = free_port()
        config = write_settings(
            tmp_path / f"settings-{run}.json",
            dataset,
            bootstrap=kafka.bootstrap,
            topic=topic,
            work=tmp_path,
            port=port,
            snapshot_seconds=1,
            health={"check_seconds": 0.5},
        )
        return config, port

    config, port = settings(0)
    tailing = start_flow(config, tmp_path / "run-0.log", until_eof=False)
    status, seconds, readiness = run_until_sigterm(tailing, port, total // 3)
    assert status == 0, (tmp_path / "run-0.log").read_text()
    assert seconds < grace_period(), seconds
    assert 200 in readiness  # ready while it ran
    stopped = log_lines(tmp_path / "run-0.log")
    assert [line["reason"] for line in stopped if line["msg"] == "stop requested"] == ["SIGTERM received"]
    (first,) = [line for line in stopped if line["msg"] == "flow stopped"]
    assert first["reason"] == "SIGTERM received"
    after_first = read_outcome(f"chdb://{tmp_path / 'chdb'}", DATABASE, tmp_path / "outcome-0.json")
    assert after_first["conversations"] > 0  # the staged rows were written before the exit

    config, port = settings(1)
    catching_up = start_flow(config, tmp_path / "run-1.log")
    status, seconds, _ = run_until_sigterm(catching_up, port, total // 3)
    assert status == 0, (tmp_path / "run-1.log").read_text()
    assert seconds < grace_period(), seconds
    (second,) = [line for line in log_lines(tmp_path / "run-1.log") if line["msg"] == "flow stopped"]

    config, _ = settings(2)
    assert start_flow(config, tmp_path / "run-2.log").wait(timeout=300) == 0
    last = log_lines(tmp_path / "run-2.log")
    (third,) = [line for line in last if line["msg"] == "flow finished"]
    assert any(line["msg"] == "sink resumed" for line in last)

    assert first["records_in"] + second["records_in"] + third["records_in"] == total  # none read twice
    outcome = read_outcome(f"chdb://{tmp_path / 'chdb'}", DATABASE, tmp_path / "outcome.json")
    assert problems_of(dataset, expected, outcome) == []
    assert outcome["restatements"] > 0  # late records restated final figures, as in one run
