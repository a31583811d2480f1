"""ClickHouse failing or slow under the real flow: retries with backoff, back-pressure, nothing lost."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client
from prometheus_client import REGISTRY

from stitchboard.app.runner import make_flow, recovery_config
from stitchboard.reconcile import compare, read_figures
from stitchboard.replay_file import write_records
from stitchboard.settings import ClickHouseSettings, Settings
from stitchboard.sinks.clickhouse_sink import ClickHouseSink
from stitchboard.synthetic.dataset import DEMO_TENANTS, Dataset, build_dataset
from stitchboard.synthetic.truth import interval_truth

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class FlakyClient:
    """A real chDB client whose first ``failures`` inserts fail; every insert takes ``delay`` s."""

    def __init__(self, client: Client, failures: int, delay: float = 0.0) -> None:
        self._client = client
        self.failures = failures
        self.delay = delay
        self.attempts = 0

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        time.sleep(self.delay)
        if self.failures > 0:
            self.failures -= 1
            raise OSError("connection reset by peer")
        return self._client.insert(*args, **kwargs)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return build_dataset(dict(DEMO_TENANTS), date(2026, 10, 25), seed=3, scale=0.15)


def settings_for(dataset: Dataset, database: str, recovery: Path | None = None, retries: int = 8) -> Settings:
    clickhouse = ClickHouseSettings(
        dsn="chdb://unused", database=database, max_retries=retries, batch_rows=500
    )
    return dataset.settings.model_copy(
        update={
            "clickhouse": clickhouse,
            "metrics_port": None,
            "recovery_dir": recovery,
            "snapshot_seconds": 1,
        }
    )


def causes(error: BaseException | None) -> list[BaseException]:
    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__
    return chain


def assert_equal_to_truth(client: Client, database: str, dataset: Dataset) -> None:
    for minutes in dataset.settings.timing.interval_minutes:
        truth = interval_truth(dataset.days, dataset.settings, minutes)
        assert compare(truth, read_figures(client, database, minutes)) == []
    conversations = client.query(f"SELECT count() FROM {database}.conversations FINAL").result_rows[0][0]
    assert conversations == sum(len(day.conversations) for day in dataset.days)
    letters = client.query(f"SELECT count() FROM {database}.dead_letters FINAL").result_rows[0][0]
    assert letters == dataset.delivery.malformed


def total(sample_name: str) -> float:
    """A metric's sample summed over its labels, from the process registry."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == sample_name
    )


def retries_total() -> float:
    return total("stitchboard_sink_retries_total")


def test_sink_failing_then_recovering_loses_nothing(
    dataset: Dataset, chdb_client: Client, fresh_database: str, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    write_records(events, dataset.delivery.records)
    flaky = FlakyClient(chdb_client, failures=5, delay=0.01)
    settings = settings_for(dataset, fresh_database)
    sink = ClickHouseSink(lambda: flaky, settings.clickhouse, backoff_seconds=0.01)  # type: ignore[arg-type, return-value]
    before = retries_total()
    names = (
        "stitchboard_sink_batch_seconds_count",
        "stitchboard_late_deliveries_total",
        "stitchboard_restated_intervals_total",
    )
    counts = {name: total(name) for name in names}

    run_main(make_flow(settings, replay=events, drain_at_eof=True, sink=sink))

    assert flaky.failures == 0
    assert retries_total() - before == 5
    assert all(total(name) > counts[name] for name in names)  # inserts timed; late data seen and restated
    for tenant in DEMO_TENANTS:
        assert REGISTRY.get_sample_value("stitchboard_watermark_lag_seconds", {"tenant": tenant}) is not None
    assert_equal_to_truth(chdb_client, fresh_database, dataset)


def test_outage_longer_than_the_retries_stops_the_flow_and_recovery_loses_nothing(
    dataset: Dataset, chdb_client: Client, fresh_database: str, tmp_path: Path
) -> None:
    """Retries exhausted → the flow stops instead of dropping rows; the restarted flow resumes."""
    events = tmp_path / "events.jsonl"
    write_records(events, dataset.delivery.records)
    settings = settings_for(dataset, fresh_database, recovery=tmp_path / "recovery", retries=2)
    config = recovery_config(settings)
    assert config is not None
    epoch = timedelta(seconds=0.2)

    down = FlakyClient(chdb_client, failures=10**9)
    first = ClickHouseSink(
        lambda: down, settings.clickhouse, recovery_dir=settings.recovery_dir, backoff_seconds=0.01
    )  # type: ignore[arg-type, return-value]
    with pytest.raises(RuntimeError) as failure:  # in the flow, or when finishing after it
        run_main(
            make_flow(settings, replay=events, drain_at_eof=True, sink=first),
            epoch_interval=epoch,
            recovery_config=config,
        )
        first.finish()
    first.stop()
    assert any(isinstance(cause, OSError) for cause in causes(failure.value))  # the sink's error
    assert down.attempts >= 3  # one try and two retries, then the flow stopped
    assert chdb_client.query(f"SELECT count() FROM {fresh_database}.conversations").result_rows[0][0] == 0

    second = ClickHouseSink(lambda: chdb_client, settings.clickhouse, recovery_dir=settings.recovery_dir)
    run_main(
        make_flow(settings, replay=events, drain_at_eof=True, sink=second),
        epoch_interval=epoch,
        recovery_config=config,
    )
    second.finish()
    second.stop()

    assert_equal_to_truth(chdb_client, fresh_database, dataset)


def agent_state_record(at: datetime, index: int) -> bytes:
    """A Connect agent event of ``at``, received then: one agent-state row in ``at``'s month."""
    payload = orjson.loads((FIXTURES / "connect_agent" / "state_change.json").read_bytes())
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    payload |= {"EventId": f"month-{index}", "EventTimestamp": stamp}
    payload["CurrentAgentSnapshot"]["AgentStatus"]["StartTimestamp"] = stamp
    envelope = {"tenant": "acme", "source": "connect_agent", "received_at": stamp, "payload": payload}
    return orjson.dumps(envelope)


def rejected_record(at: datetime, index: int) -> bytes:
    """A record of an unknown source received at ``at``: one dead letter in ``at``'s month."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return orjson.dumps({"tenant": "acme", "source": "fax", "received_at": stamp, "payload": {"n": index}})


@pytest.mark.parametrize("recovery", [False, True], ids=["background-writer", "staged-epochs"])
def test_rows_spanning_120_months_reach_clickhouse_and_the_flow_goes_on(
    recovery: bool, chdb_client: Client, fresh_database: str, tmp_path: Path
) -> None:
    """Issue 13 #3: 120 rejected records and 120 agent states whose times span 120 months made the
    dead-letter and agent-state inserts fail ("Too many partitions for single INSERT block") until
    the retries ran out and the flow died. Each insert now touches at most 100 partitions."""
    instants = [datetime(2016 + i // 12, i % 12 + 1, 15, 12, tzinfo=UTC) for i in range(120)]
    records = [(at, rejected_record(at, i)) for i, at in enumerate(instants)]
    records += [(at, agent_state_record(at, i)) for i, at in enumerate(instants)]
    events = tmp_path / "events.jsonl"
    write_records(events, records)
    settings = Settings(
        clickhouse=ClickHouseSettings(dsn="chdb://unused", database=fresh_database, max_retries=1),
        metrics_port=None,
        recovery_dir=tmp_path / "recovery" if recovery else None,
        snapshot_seconds=1,
    )
    sink = ClickHouseSink(
        lambda: chdb_client, settings.clickhouse, recovery_dir=settings.recovery_dir, backoff_seconds=0.01
    )
    config = recovery_config(settings)
    run_main(make_flow(settings, replay=events, drain_at_eof=True, sink=sink), recovery_config=config)
    sink.finish()
    sink.stop()

    def months_of(table: str, column: str) -> int:
        query = f"SELECT uniqExact(toYYYYMM({column})), count() FROM {fresh_database}.{table} FINAL"
        return chdb_client.query(query).result_rows[0]

    assert months_of("dead_letters", "received_at") == (120, 120)
    assert months_of("agent_states", "at") == (120, 120)
