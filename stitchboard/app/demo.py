"""The README's first command: a realistic day for two tenants, through the flow, into chDB."""

from __future__ import annotations

import shutil
import sys
import time
from datetime import date
from pathlib import Path

from stitchboard.kpi_summary import format_summary, read_summary
from stitchboard.reconcile import compare, read_figures
from stitchboard.settings import ClickHouseSettings
from stitchboard.synthetic.dataset import DEMO_TENANTS, build_dataset, write_dataset
from stitchboard.synthetic.truth import interval_truth


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class _Progress:
    """Prints replay progress at every 10%."""

    def __init__(self) -> None:
        self._next = 10

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent >= self._next:
            _say(f"  flow: {percent}% of input read")
            self._next = (percent // 10 + 1) * 10


def run_demo(directory: Path, day: date, seed: int, scale: float) -> int:
    from stitchboard.app.runner import run
    from stitchboard.sinks.clickhouse import connect

    directory = directory.resolve()
    chdb_dir = directory / "chdb"
    if chdb_dir.exists():
        shutil.rmtree(chdb_dir)
    directory.mkdir(parents=True, exist_ok=True)

    zones = ", ".join(f"{tenant} ({zone})" for tenant, zone in DEMO_TENANTS.items())
    _say(f"1/4 generating {day} for {zones}, with duplicates, late, out-of-order and malformed records")
    dataset = build_dataset(DEMO_TENANTS, day, seed, scale=scale)
    events, truth_path = write_dataset(dataset, directory)
    delivery = dataset.delivery
    conversations = sum(len(d.conversations) for d in dataset.days)
    _say(
        f"    {conversations} conversations → {delivery.consumed} records "
        f"({delivery.duplicates} duplicates, {delivery.late} late, {delivery.malformed} malformed) in {events}"
    )

    settings = dataset.settings.model_copy(
        update={"clickhouse": ClickHouseSettings(dsn=f"chdb://{chdb_dir}"), "metrics_port": None}
    )
    _say(f"2/4 running the flow: {events.name} → stitching → intervals → chDB at {chdb_dir}")
    started = time.perf_counter()
    run(settings, replay=events, drain_at_eof=True, progress=_Progress())
    elapsed = time.perf_counter() - started
    _say(f"    {delivery.consumed} records in {elapsed:.1f} s ({delivery.consumed / elapsed:,.0f} records/s)")

    _say("3/4 reconciling finalised figures with the generator's ground truth")
    client = connect(settings.clickhouse.dsn)
    database = settings.clickhouse.database
    differences = 0
    for minutes in settings.timing.interval_minutes:
        mismatches = compare(
            interval_truth(dataset.days, settings, minutes), read_figures(client, database, minutes)
        )
        differences += len(mismatches)
        _say(
            f"    {minutes:>4}-minute intervals: {'equal to truth' if not mismatches else f'{len(mismatches)} differ'}"
        )

    _say("4/4 KPI summary (finalised daily figures, as corrected)")
    print(format_summary(*read_summary(client, database)))
    print(
        f"\nData: {chdb_dir} (chDB; database '{database}'). Events: {events}; truth: {truth_path}.\n"
        "Query it from Python:\n"
        f"  .venv/bin/python -c \"import clickhouse_connect as c; cl = c.get_client(dsn='chdb://{chdb_dir}');"
        f" print(cl.query('SELECT * FROM {database}.interval_metrics FINAL LIMIT 5').result_rows)\"\n"
        "or: .venv/bin/stitchboard summary --dsn chdb://" + str(chdb_dir) + "\n"
        "Example dashboard queries: docs/queries.md"
    )
    return 0 if differences == 0 else 1
