"""Issue #13, seen #1: one future-dated record among a valid day must not erase the tenant's figures.

A webhook ``missed.call`` dated 2099, or only 37 days ahead, is delivered in the middle of a
generated day with an honest envelope ``received_at`` (or one forged to 2099 as well, while the
transport delivered it with the day's records). Before the watermark was bounded by receive
time, it jumped to the outlier's event time and every later valid delta fell beyond the restatement
horizon and was dead-lettered. The input-side check (event time against receive time) is absent
here on purpose: the watermark must hold on its own. The outlier itself is accepted and counts on
its own day; every figure of the valid day must equal the generator's truth.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client

from stitchboard import adapters
from stitchboard.app.runner import make_flow
from stitchboard.interval_book import BEYOND_HORIZON
from stitchboard.reconcile import compare, read_figures
from stitchboard.replay_file import write_records
from stitchboard.settings import ClickHouseSettings
from stitchboard.sinks.clickhouse import init_db
from stitchboard.synthetic.dataset import build_dataset
from stitchboard.synthetic.truth import interval_truth

DAY = date(2026, 3, 10)


def _outlier(queued_at: datetime, received_at: datetime) -> bytes:
    """The issue's record: a webhook missed call, valid in every field, dated ``queued_at``."""
    missed_at = queued_at + timedelta(seconds=65)
    payload = {
        "event": "missed.call",
        "id": "wh-outlier-1",
        "tenant": "acme",
        "conversation_id": "outlier-conversation-1",
        "direction": "inbound",
        "leg_id": "outlier-leg-1",
        "queue": "billing",
        "queued_at": queued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "missed_at": missed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    envelope = {
        "tenant": "acme",
        "source": "webhook",
        "received_at": received_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "payload": payload,
    }
    return orjson.dumps(envelope)


@pytest.fixture
def without_input_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The input-side check (event time against receive time, ``adapters.bounds``) would dead-letter
    the outlier: switched off here so that the watermark's own bound is what is tested."""
    monkeypatch.setattr(adapters, "check_received_at", lambda *args: None)
    monkeypatch.setattr(adapters, "check_record", lambda *args: None)


@pytest.mark.parametrize(
    ("queued_at", "forged"),
    [
        (datetime(2099, 6, 1, 12, tzinfo=UTC), False),
        (datetime(2026, 4, 16, 12, tzinfo=UTC), False),
        # the envelope's received_at forged to 2099 too: the transport's delivery time bounds it
        (datetime(2099, 6, 1, 12, tzinfo=UTC), True),
    ],
    ids=["2099", "37-days-ahead", "2099-received-2099"],
)
@pytest.mark.usefixtures("without_input_bounds")
def test_a_future_dated_record_leaves_the_valid_day_exact(
    queued_at: datetime, forged: bool, tmp_path: Path, chdb_dsn: str, chdb_client: Client
) -> None:
    data = build_dataset({"acme": "Europe/London"}, DAY, seed=5, scale=0.3)
    records = data.delivery.pairs()
    middle = len(records) // 2
    received_at = records[middle][0]
    records.insert(middle, (received_at, _outlier(queued_at, queued_at if forged else received_at)))
    events = tmp_path / "events.jsonl"
    write_records(events, records)
    database = f"outlier_{uuid.uuid4().hex[:10]}"
    init_db(chdb_client, database)
    settings = data.settings.model_copy(
        update={"clickhouse": ClickHouseSettings(dsn=chdb_dsn, database=database), "metrics_port": None}
    )
    try:
        run_main(make_flow(settings, replay=events, drain_at_eof=True))
        beyond = chdb_client.query(
            f"SELECT count() FROM {database}.dead_letters FINAL WHERE reason = '{BEYOND_HORIZON}'"
        ).result_rows[0][0]
        assert beyond == 0
        truth = interval_truth(data.days, settings, 1440)
        published = read_figures(chdb_client, database, 1440)
        outlier_day = {
            key: figures for key, figures in published.items() if key[3] >= queued_at - timedelta(days=1)
        }
        valid_day = {key: figures for key, figures in published.items() if key not in outlier_day}
        assert sum(figures["offered"] for figures in truth.values()) > 300
        assert compare(truth, valid_day) == []
        assert [
            (key[1], figures["offered"], figures["abandoned"]) for key, figures in outlier_day.items()
        ] == [("billing", 1, 1)]
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")
