"""Stopping a run by ending its input (stitchboard.flows.sources.StopFlag).

A stopped partition must snapshot where it ended, so the next run resumes there (nothing skipped,
nothing read twice), and a stopped run must not finalise intervals the way the end of a replay
does: a stop is not the end of the data.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main
from clickhouse_connect.driver.client import Client

from stitchboard import telemetry
from stitchboard.app.runner import run
from stitchboard.flows.sources import RawRecord, ReplayFileSource, StopFlag, StoppableSource
from stitchboard.settings import ClickHouseSettings, Settings
from stitchboard.synthetic.dataset import DEMO_TENANTS, build_dataset, write_dataset


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """``run`` tunes the garbage collector for a long-lived process; give the test process its own back."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset = build_dataset(DEMO_TENANTS, date(2026, 10, 25), seed=3, scale=0.3)
    path, _ = write_dataset(dataset, tmp_path_factory.mktemp("stop"))
    return path


def stopping_flow(events: Path, stop: StopFlag, out: list[str], after: int) -> Dataflow:
    """The replay's record origins into ``out``; sets ``stop`` when the ``after``-th arrives."""
    flow = Dataflow("stoppable")
    records = op.input("replay", flow, StoppableSource(ReplayFileSource(events, batch_size=500), stop))
    count = 0

    def origin(record: RawRecord) -> str:
        nonlocal count
        count += 1
        if count == after:
            stop.set("test")
        return record.origin

    op.output("out", op.map("origin", records, origin), TestingSink(out))
    return flow


def test_a_stopped_source_resumes_exactly_where_it_ended(events: Path, tmp_path: Path) -> None:
    lines = sum(1 for line in events.read_bytes().splitlines() if line.strip())
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    seen: list[list[str]] = []
    for _ in range(10):
        stop = StopFlag()
        out: list[str] = []
        run_main(
            stopping_flow(events, stop, out, 1200),
            epoch_interval=None,
            recovery_config=RecoveryConfig(recovery),
        )
        seen.append(out)
        if not stop.is_set():
            break
    *stopped, last = (len(out) for out in seen)
    assert stopped and set(stopped) == {1500} and 0 < last <= 1500  # each stop ends at its batch's end
    everything = [origin for out in seen for origin in out]
    assert len(everything) == len(set(everything)) == lines


@pytest.mark.usefixtures("restored_gc")
def test_sigterm_ends_a_replay_without_finalising_it(
    events: Path, chdb_client: Client, chdb_dsn: str, fresh_database: str
) -> None:
    settings = Settings(
        clickhouse=ClickHouseSettings(dsn=chdb_dsn, database=fresh_database), metrics_port=None
    )
    total = sum(1 for line in events.read_bytes().splitlines() if line.strip())
    before = telemetry.counter_total(telemetry.RECORDS_IN)

    def sigterm_after_the_first_batch(read: int, size: int) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    run(settings, replay=events, drain_at_eof=True, progress=sigterm_after_the_first_batch)

    read = telemetry.counter_total(telemetry.RECORDS_IN) - before
    assert 0 < read < total
    statuses = dict(
        chdb_client.query(
            f"SELECT status, count() FROM `{fresh_database}`.interval_metrics FINAL GROUP BY status"
        ).result_rows
    )
    # Intervals the watermark passed are final as usual; the end of a replay would have finalised
    # the rest too (drained), leaving nothing provisional.
    assert statuses.get("provisional", 0) > 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was removed again
