"""Issue #13, seen 2, through the real flow into chDB: the issue's hold values no longer stop it.

A Connect ``CustomerHoldDuration`` of 10^16 s raised ``struct.error`` while packing conversation
state (again on every restart); two holds of 5 * 10^15 s overflowed Int64 at the ClickHouse insert.
Each tenant here is its own conversation. The adapter now refuses a hold total longer than the time
connected to the agent, and a hold count beyond the tenant's bound (``out_of_range``, with the
record's bytes); the stitcher's own limits behind it are tested with unchecked events in
tests/domain/test_stitching_limits.py. The flow goes on and a good record after them is stitched.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client
from support.source_records import load

from stitchboard.app.runner import make_flow
from stitchboard.replay_file import write_records
from stitchboard.settings import ClickHouseSettings, Settings
from stitchboard.sinks.clickhouse_sink import ClickHouseSink

RECEIVED = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
CONVERSATION = "3f6e2b1a-8c4d-4e5f-9a7b-1c2d3e4f5a6b"


def connect_record(name: str, tenant: str, hold_seconds: int, holds: int = 1) -> bytes:
    payload: dict[str, Any] = copy.deepcopy(load(name))
    payload["Tags"]["tenant"] = tenant
    payload["Agent"]["CustomerHoldDuration"] = hold_seconds
    payload["Agent"]["NumberOfHolds"] = holds
    return orjson.dumps(
        {"tenant": tenant, "source": "connect", "received_at": "2026-03-29T12:00:00Z", "payload": payload}
    )


def test_the_issues_hold_values_stitch_or_are_dead_lettered_and_the_flow_goes_on(
    chdb_client: Client, fresh_database: str, tmp_path: Path
) -> None:
    records = [
        connect_record("connect/voice_leg2_answered.json", "huge-hold", 10**16),
        connect_record("connect/voice_leg1_transferred.json", "two-holds", 5 * 10**15),
        connect_record("connect/voice_leg2_answered.json", "two-holds", 5 * 10**15),
        connect_record("connect/voice_leg2_answered.json", "hold-count", 30, holds=10**19),
        connect_record("connect/voice_leg2_answered.json", "after", 30),
    ]
    replay = tmp_path / "records.jsonl"
    write_records(replay, [(RECEIVED + timedelta(seconds=index), raw) for index, raw in enumerate(records)])
    settings = Settings(
        metrics_port=None, clickhouse=ClickHouseSettings(dsn="chdb://unused", database=fresh_database)
    )
    run_main(
        make_flow(
            settings,
            replay=replay,
            drain_at_eof=True,
            sink=ClickHouseSink(lambda: chdb_client, settings.clickhouse),
        )
    )

    rows = chdb_client.query(
        f"SELECT tenant, hold_ms, talk_ms, handle_ms FROM {fresh_database}.conversations FINAL"
        f" WHERE conversation_id = '{CONVERSATION}' ORDER BY tenant"
    ).result_rows
    # after: 30 s of hold in 288 s of talk (08:03:32-08:08:20), plus 60 s of ACW
    assert rows == [("after", 30_000, 258_000, 348_000)]
    held = chdb_client.query(
        f"SELECT tenant, sum(hold_ms) FROM {fresh_database}.interval_metrics FINAL"
        f" WHERE interval_minutes = 1440 GROUP BY tenant HAVING sum(hold_ms) > 0 ORDER BY tenant"
    ).result_rows
    assert held == [("after", 30_000)]
    letters = chdb_client.query(
        f"SELECT tenant, reason, raw FROM {fresh_database}.dead_letters FINAL ORDER BY tenant"
    ).result_rows
    assert [(tenant, reason) for tenant, reason, _ in letters] == [
        ("hold-count", "out_of_range"),
        ("huge-hold", "out_of_range"),
        ("two-holds", "out_of_range"),
        ("two-holds", "out_of_range"),
    ]
    assert sorted(raw.encode() if isinstance(raw, str) else raw for _, _, raw in letters) == sorted(
        records[:4]
    )
