"""``python -m bench --quick`` runs every benchmark end to end and prints every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = ("throughput", "end_to_end", "freshness", "queries", "memory", "large_conversation")


@pytest.mark.slow
def test_quick_run_prints_every_benchmark_and_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(report)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = completed.stdout.split("=== summary: every figure and ratio ===")[1]
    for figure in (
        "flow → chDB, 1 worker:",
        "flow → chDB ÷ orjson parse rate:",
        "Kafka → flow → chDB, sustained over the backlog, 1 worker:",
        "flow ÷ bare consumer:",
        "produce → provisional row visible, p99:",
        "slowest committed query, p50:",
        "raw ÷ stitched:",
        "bytes per open conversation (first wave):",
        "RSS growth after eviction, first → last wave:",
        "webhook agent.call, holds in any order: time per event at",
    ):
        assert figure in summary
    assert " events/s" in summary and " ms" in summary and "%" in summary
    text = report.read_text(encoding="utf-8")
    assert "python -m bench --quick" in text and "CPUs (`nproc`)" in text
    for name in BENCHMARKS:
        assert f"| {name} |" in text or name.replace("_", " ") in text.lower()
