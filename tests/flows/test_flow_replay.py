"""The whole flow on a generated day with hostile delivery, compared with the generator's truth.

Out-of-order, duplicated, late and malformed records go in; final + restated figures must equal the
truth exactly for every interval length and metric, provisional figures must converge to it, and a
second replay of the same input must change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client

from stitchboard import telemetry
from stitchboard.app.runner import make_flow
from stitchboard.reconcile import compare, read_figures
from stitchboard.settings import ClickHouseSettings, Settings
from stitchboard.sinks.clickhouse import init_db
from stitchboard.synthetic.dataset import DEMO_TENANTS, Dataset, build_dataset, write_dataset
from stitchboard.synthetic.truth import interval_truth

DAY = date(2026, 10, 25)  # Europe/London falls back: a 25-hour local day for one tenant
LENGTHS = (15, 30, 60, 1440)


@dataclass(frozen=True)
class Replayed:
    dataset: Dataset
    settings: Settings
    events: Path
    database: str
    records_in: float
    accepted: float
    dead_lettered: float


def _counter(counter: object) -> float:
    return sum(
        sample.value
        for metric in counter.collect()  # type: ignore[attr-defined]
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def replay(settings: Settings, events: Path, *, drain: bool) -> tuple[float, float, float]:
    """Run the flow over ``events``; returns (records in, accepted, dead-lettered) of this run."""
    before = [
        _counter(c)
        for c in (telemetry.RECORDS_IN, telemetry.RECORDS_ACCEPTED, telemetry.RECORDS_DEAD_LETTERED)
    ]
    run_main(make_flow(settings, replay=events, drain_at_eof=drain))
    after = [
        _counter(c)
        for c in (telemetry.RECORDS_IN, telemetry.RECORDS_ACCEPTED, telemetry.RECORDS_DEAD_LETTERED)
    ]
    records_in, accepted, dead = (a - b for a, b in zip(after, before, strict=True))
    return records_in, accepted, dead


def _database(client: Client) -> str:
    database = f"flow_{uuid.uuid4().hex[:10]}"
    init_db(client, database)
    return database


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Path]:
    data = build_dataset(DEMO_TENANTS, DAY, seed=11, scale=0.3)
    events, _ = write_dataset(data, tmp_path_factory.mktemp("replay"))
    return data, events


@pytest.fixture(scope="module")
def drained(dataset: tuple[Dataset, Path], chdb_dsn: str, chdb_client: Client) -> Iterator[Replayed]:
    data, events = dataset
    database = _database(chdb_client)
    settings = data.settings.model_copy(
        update={"clickhouse": ClickHouseSettings(dsn=chdb_dsn, database=database), "metrics_port": None}
    )
    counts = replay(settings, events, drain=True)
    yield Replayed(data, settings, events, database, *counts)
    chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")


def _count(client: Client, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


@pytest.mark.parametrize("minutes", LENGTHS)
def test_final_and_restated_figures_equal_the_truth(
    drained: Replayed, chdb_client: Client, minutes: int
) -> None:
    truth = interval_truth(drained.dataset.days, drained.settings, minutes)
    published = read_figures(chdb_client, drained.database, minutes)
    assert len(truth) > 20
    assert compare(truth, published) == []


def test_the_input_was_hostile_and_reconciles_exactly(drained: Replayed, chdb_client: Client) -> None:
    delivery = drained.dataset.delivery
    assert delivery.duplicates > 0 and delivery.late > 0 and delivery.malformed > 0
    assert drained.records_in == delivery.consumed
    assert drained.accepted + drained.dead_lettered == drained.records_in
    assert drained.dead_lettered == delivery.malformed
    stored = _count(chdb_client, f"SELECT count() FROM {drained.database}.dead_letters FINAL")
    assert stored == delivery.malformed


def test_every_conversation_is_stitched_once(drained: Replayed, chdb_client: Client) -> None:
    expected = sum(len(day.conversations) for day in drained.dataset.days)
    db = drained.database
    assert _count(chdb_client, f"SELECT count() FROM {db}.conversations FINAL") == expected
    assert (
        _count(chdb_client, f"SELECT count() FROM {db}.conversations FINAL WHERE status = 'ended'")
        == expected
    )


def test_restatements_explain_every_change_to_a_published_figure(
    drained: Replayed, chdb_client: Client
) -> None:
    """published + sum(restatement deltas) = corrected, for every interval and metric."""
    db = drained.database
    restatements = chdb_client.query(
        "SELECT tenant, queue, channel, interval_minutes, interval_start, metric, sum(delta), count()"
        f" FROM {db}.interval_restatements FINAL GROUP BY ALL"
    ).result_rows
    assert restatements, "late and mutated data must have caused restatements"
    for minutes in LENGTHS:
        published = read_figures(chdb_client, db, minutes, view="published")
        corrected = read_figures(chdb_client, db, minutes)
        deltas = {
            ((t, q, c, start), metric): total
            for t, q, c, length, start, metric, total, _ in restatements
            if length == minutes
        }
        for key, figures in corrected.items():
            for metric, value in figures.items():
                assert published.get(key, {}).get(metric, 0) + deltas.get((key, metric), 0) == value


def test_replaying_the_same_input_changes_no_figure(drained: Replayed, chdb_client: Client) -> None:
    db = drained.database
    tables = (
        "conversations",
        "interval_metrics",
        "interval_published",
        "interval_restatements",
        "dead_letters",
    )
    before = {t: _count(chdb_client, f"SELECT count() FROM {db}.{t} FINAL") for t in tables}
    figures_before = {m: read_figures(chdb_client, db, m) for m in LENGTHS}
    replay(drained.settings, drained.events, drain=True)
    assert {t: _count(chdb_client, f"SELECT count() FROM {db}.{t} FINAL") for t in tables} == before
    assert {m: read_figures(chdb_client, db, m) for m in LENGTHS} == figures_before


def test_provisional_figures_converge_to_the_truth(
    dataset: tuple[Dataset, Path], chdb_dsn: str, chdb_client: Client
) -> None:
    """Without end-of-input finalisation the day's tail stays provisional, yet the live view is exact."""
    data, events = dataset
    database = _database(chdb_client)
    settings = data.settings.model_copy(
        update={"clickhouse": ClickHouseSettings(dsn=chdb_dsn, database=database), "metrics_port": None}
    )
    replay(settings, events, drain=False)
    provisional = _count(
        chdb_client, f"SELECT count() FROM {database}.interval_metrics FINAL WHERE status = 'provisional'"
    )
    assert provisional > 0
    for minutes in LENGTHS:
        truth = interval_truth(data.days, settings, minutes)
        assert compare(truth, read_figures(chdb_client, database, minutes, view="live")) == []
    chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")
