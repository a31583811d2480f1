"""Crash test at CI size: SIGKILL the flow at seeded random points, restart, end exactly once."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from recovery.crash_harness import CrashPlan, crash_and_recover, expected_of, problems_of

from stitchboard.sinks.kafka import produce_records
from stitchboard.synthetic.dataset import DEMO_TENANTS, build_dataset
from stitchboard.testing.broker import Kafka, free_port


def run_crash_test(plan: CrashPlan, kafka: Kafka, work: Path) -> None:
    dataset = build_dataset(plan.zones, plan.day, plan.seed, scale=plan.scale)
    expected = expected_of(dataset)
    topic = kafka.create_topic(partitions=plan.partitions)
    values = [record.raw for record in dataset.delivery.records]
    produce_records([kafka.bootstrap], topic, values, {"sticky.partitioning.linger.ms": "0"})
    per_partition = {m.partition() for m in kafka.consume(topic, len(values), timeout=60)}
    assert per_partition == set(range(plan.partitions))  # every partition holds records

    report = crash_and_recover(
        plan, dataset, bootstrap=kafka.bootstrap, topic=topic, work=work, free_port=free_port
    )

    assert report.runs == plan.kills + 1
    assert report.resumes >= 1, report.kills  # at least one kill came after a committed epoch
    assert problems_of(dataset, expected, report.outcome) == []
    assert sum(report.outcome["dead_letters"].values()) == dataset.delivery.malformed > 0
    assert report.outcome["restatements"] > 0  # late records did restate final figures


def test_sigkilled_flow_ends_exactly_once(kafka: Kafka, tmp_path: Path) -> None:
    plan = CrashPlan(dict(DEMO_TENANTS), date(2026, 10, 25), seed=11, scale=1.0, partitions=3, kills=3)
    run_crash_test(plan, kafka, tmp_path)


@pytest.mark.slow
def test_sigkilled_flow_ends_exactly_once_on_a_full_day(kafka: Kafka, tmp_path: Path) -> None:
    """More than 200k canonical events, six kills (``pytest -m slow``; also bench/crash_test.py)."""
    plan = CrashPlan(dict(DEMO_TENANTS), date(2026, 3, 29), seed=5, scale=3.0, partitions=4, kills=6)
    dataset = build_dataset(plan.zones, plan.day, plan.seed, scale=plan.scale)
    assert expected_of(dataset).events >= 200_000
    run_crash_test(plan, kafka, tmp_path)
