"""Compare published interval figures with an expected set (the generator's truth, or a rerun).

Used by the demo to say "matches the ground truth", by the end-to-end tests, and by operators who
want to diff two runs. Absent rows count as zeros, so only real differences are reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stitchboard.metrics import METRIC_NAMES

IntervalKey = tuple[str, str, str, datetime]  # (tenant, queue, channel, interval start UTC)
Figures = dict[IntervalKey, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Mismatch:
    key: IntervalKey
    metric: str
    expected: int
    actual: int


def read_figures(client: Any, database: str, minutes: int, *, view: str = "corrected") -> Figures:
    """Interval figures from ClickHouse: ``corrected`` (final + restatements), ``published`` or ``live``."""
    table, where = {
        "corrected": ("interval_metrics", "AND status != 'provisional'"),
        "published": ("interval_published", ""),
        "live": ("interval_metrics", ""),
    }[view]
    columns = ", ".join(METRIC_NAMES)
    result = client.query(
        f"SELECT tenant, queue, channel, interval_start, {columns} FROM {database}.{table} FINAL"
        f" WHERE interval_minutes = {int(minutes)} {where}"
    )
    figures: Figures = {}
    for row in result.result_rows:
        tenant, queue, channel, start, *values = row
        figures[(tenant, queue, channel, start)] = dict(
            zip(METRIC_NAMES, (int(v) for v in values), strict=True)
        )
    return figures


def compare(
    expected: Mapping[IntervalKey, Mapping[str, int]], actual: Mapping[IntervalKey, Mapping[str, int]]
) -> list[Mismatch]:
    """Every (interval, metric) whose values differ, treating absent as zero."""
    mismatches: list[Mismatch] = []
    for key in sorted(set(expected) | set(actual)):
        want, got = expected.get(key, {}), actual.get(key, {})
        for metric in METRIC_NAMES:
            if want.get(metric, 0) != got.get(metric, 0):
                mismatches.append(Mismatch(key, metric, want.get(metric, 0), got.get(metric, 0)))
    return mismatches
