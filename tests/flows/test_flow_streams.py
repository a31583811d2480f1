"""Live-stream events and complete records through the real flow into chDB, in both orders.

For each vendor the same call is replayed as its stream events then its record, as its record then
its stream events, and as its record alone; the conversation rows and the interval figures of every
length must be identical, and replaying the input again must change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client

from stitchboard.app.runner import make_flow
from stitchboard.metrics import METRIC_NAMES
from stitchboard.replay_file import write_records
from stitchboard.settings import ClickHouseSettings, Settings
from stitchboard.sinks.clickhouse import init_db

CORPUS = Path(__file__).parents[1] / "fixtures" / "corpus"
LENGTHS = (15, 30, 60, 1440)
# a row's figures and what they describe; ``version`` and ``updated_at`` say when, not what
ROW_COLUMNS = (
    "conversation_id, status, channel, direction, started_at, ended_at, first_queue, last_queue, queues, "
    "agents, legs, transfers, answered, abandoned, ivr_outcome, wait_ms, talk_ms, hold_ms, acw_ms, handle_ms, "
    "wrapup_code, qa_score, reopened, intent, customer_keys, path"
)


@dataclass(frozen=True)
class Call:
    vendor: str
    source: str
    received_at: str  # every delivery minutes after the call: live events are within the retention
    record: str
    stream: tuple[str, ...]


CALLS = (
    Call(
        "genesys",
        "genesys",
        "2024-04-29T17:45:00Z",
        "genesys_events/voice_answered_record.json",
        tuple(
            f"genesys_events/voice_answered_0{n}_{name}.json"
            for n, name in enumerate(
                (
                    "customer_start",
                    "flow_start",
                    "flow_end",
                    "acd_start",
                    "user_start",
                    "acd_end",
                    "customer_end",
                    "user_end",
                    "acw",
                ),
                start=1,
            )
        ),
    ),
    Call(
        "connect",
        "connect",
        "2022-01-05T17:35:00Z",
        "connect_events/contact_a_record.json",
        tuple(
            f"connect_events/contact_a_0{n}_{name}.json"
            for n, name in enumerate(
                ("initiated", "queued", "connected_to_agent", "disconnected", "completed"), start=1
            )
        ),
    ),
)
ORDERS = ("stream_then_record", "record_then_stream", "record_alone")


def _deliveries(call: Call, order: str) -> list[tuple[datetime, bytes]]:
    stream, record = list(call.stream), [call.record]
    files = {
        "stream_then_record": stream + record,
        "record_then_stream": record + stream,
        "record_alone": record,
    }[order]
    at = datetime.fromisoformat(call.received_at)
    return [
        (
            at,
            orjson.dumps(
                {
                    "tenant": "acme",
                    "source": call.source,
                    "received_at": call.received_at,
                    "payload": orjson.loads((CORPUS / name).read_bytes()),
                }
            ),
        )
        for name in files
    ]


def _replay(settings: Settings, path: Path) -> None:
    run_main(make_flow(settings, replay=path, drain_at_eof=True))


def _rows(client: Client, database: str) -> list[tuple[Any, ...]]:
    return client.query(
        f"SELECT {ROW_COLUMNS} FROM {database}.conversations FINAL ORDER BY conversation_id"
    ).result_rows


def _figures(
    client: Client, database: str, minutes: int, view: str
) -> dict[tuple[Any, ...], tuple[int, ...]]:
    where = "AND status != 'provisional'" if view == "corrected" else ""
    columns = ", ".join(f"sum({name})" for name in METRIC_NAMES)
    result = client.query(
        f"SELECT queue, channel, interval_start, {columns} FROM {database}.interval_metrics FINAL"
        f" WHERE interval_minutes = {minutes} {where} GROUP BY queue, channel, interval_start"
    )
    return {tuple(row[:3]): tuple(int(v) for v in row[3:]) for row in result.result_rows if any(row[3:])}


def _observed(client: Client, database: str) -> dict[str, Any]:
    return {
        "rows": _rows(client, database),
        "figures": {
            (m, view): _figures(client, database, m, view) for m in LENGTHS for view in ("corrected", "live")
        },
        "dead_letters": client.query(f"SELECT count() FROM {database}.dead_letters FINAL").result_rows[0][0],
    }


@pytest.fixture(scope="module")
def observed(
    chdb_dsn: str, chdb_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[tuple[str, str], Any]]:
    """Each (vendor, order) replayed into its own database, and the stream-then-record case twice."""
    workdir = tmp_path_factory.mktemp("streams")
    databases, results = [], {}
    for call in CALLS:
        for order in ORDERS:
            database = f"streams_{uuid.uuid4().hex[:10]}"
            init_db(chdb_client, database)
            databases.append(database)
            settings = Settings(
                clickhouse=ClickHouseSettings(dsn=chdb_dsn, database=database), metrics_port=None
            )
            path = workdir / f"{call.vendor}_{order}.jsonl"
            write_records(path, _deliveries(call, order))
            _replay(settings, path)
            results[(call.vendor, order)] = _observed(chdb_client, database)
            if order == "stream_then_record":
                _replay(settings, path)
                results[(call.vendor, "replayed_twice")] = _observed(chdb_client, database)
    yield results
    for database in databases:
        chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")


@pytest.mark.parametrize("vendor", [call.vendor for call in CALLS])
@pytest.mark.parametrize("order", ["stream_then_record", "record_then_stream", "replayed_twice"])
def test_stream_and_record_in_any_order_equal_the_record_alone(
    observed: dict[tuple[str, str], Any], vendor: str, order: str
) -> None:
    alone = observed[(vendor, "record_alone")]
    got = observed[(vendor, order)]
    assert len(alone["rows"]) == 1 and alone["rows"][0][1] == "ended"
    assert got["rows"] == alone["rows"]
    assert got["figures"] == alone["figures"]
    assert got["dead_letters"] == alone["dead_letters"] == 0
    daily = alone["figures"][(1440, "corrected")]
    offered = METRIC_NAMES.index("offered")
    assert sum(values[offered] for values in daily.values()) == 1  # one call, counted once
