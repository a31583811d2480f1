"""A wrap-up code corrected after its intervals were finalised yields exactly one dated restatement."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client

from stitchboard.app.runner import make_flow
from stitchboard.events import Channel, CustomerIds, Direction
from stitchboard.replay_file import write_records
from stitchboard.settings import ClickHouseSettings, Settings, TenantSettings
from stitchboard.sinks.clickhouse import init_db
from stitchboard.synthetic.render import render_conversation
from stitchboard.synthetic.scenario import Shape, SimConversation, SimLeg


def t(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 6, day, hour, minute, second, tzinfo=UTC)


def call(
    shape: Shape, conversation_id: str, start: datetime, *, changed_at: datetime | None = None
) -> SimConversation:
    """An answered call wrapped up 'callback_required', optionally corrected to 'resolved' later."""
    seconds = start.timestamp()
    at = lambda offset: datetime.fromtimestamp(seconds + offset, tz=UTC)  # noqa: E731
    leg = SimLeg(
        leg_id=f"{conversation_id}-l1",
        queue="sales",
        entered_at=at(10),
        outcome="answered",
        left_at=at(30),
        agent="ann",
        ended_at=at(300),
        acw_end=at(360),
        wrapup_code="callback_required",
        wrapup_set_at=at(420),
        wrapup_changed_to="resolved" if changed_at else None,
        wrapup_changed_at=changed_at,
    )
    return SimConversation(
        tenant="acme",
        conversation_id=conversation_id,
        shape=shape,
        channel=Channel.VOICE,
        direction=Direction.INBOUND,
        started_at=start,
        ended_at=at(300),
        customer=CustomerIds(phone_hash=f"phone-{conversation_id}"),
        intent="billing",
        legs=[leg],
    )


@pytest.mark.parametrize("shape", ["genesys", "connect", "webhook"])
def test_wrapup_change_after_finalisation_is_one_restatement_per_interval_length(
    shape: Shape, tmp_path: Path, chdb_dsn: str, chdb_client: Client
) -> None:
    corrected = call(shape, f"{shape}-a", t(1, 10), changed_at=t(2, 2))  # corrected next morning
    later = call(shape, f"{shape}-b", t(2, 1))  # next-day traffic moves the watermark past day 1
    records = sorted(render_conversation(corrected) + render_conversation(later), key=lambda r: r[0])
    events = tmp_path / "events.jsonl"
    write_records(events, records)

    database = f"wrapup_{uuid.uuid4().hex[:10]}"
    init_db(chdb_client, database)
    settings = Settings(
        tenants={"acme": TenantSettings(time_zone="Europe/London")},
        clickhouse=ClickHouseSettings(dsn=chdb_dsn, database=database),
        metrics_port=None,
    )
    run_main(make_flow(settings, replay=events, drain_at_eof=True))

    rows = chdb_client.query(
        "SELECT interval_minutes, interval_start, metric, published, previous, corrected, delta, reason,"
        f" restatement_seq FROM {database}.interval_restatements FINAL ORDER BY interval_minutes"
    ).result_rows
    disconnect = t(1, 10, 5)  # contacts_resolved is attributed to the disconnect
    assert [(r[0], r[2]) for r in rows] == [
        (15, "contacts_resolved"),
        (30, "contacts_resolved"),
        (60, "contacts_resolved"),
        (1440, "contacts_resolved"),
    ]
    starts = {minutes: start for minutes, start, *_ in rows}
    assert starts[15] == starts[30] == starts[60] == t(1, 10) <= disconnect
    assert starts[1440] == datetime(2026, 5, 31, 23, tzinfo=UTC)  # local midnight, BST
    assert {(r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows} == {(0, 0, 1, 1, "wrapup_set", 1)}

    current = chdb_client.query(
        f"SELECT status, contacts_resolved FROM {database}.interval_metrics FINAL"
        " WHERE interval_minutes = 15 AND interval_start = {start:DateTime64(3, 'UTC')} AND queue = 'sales'",
        parameters={"start": t(1, 10)},
    ).result_rows
    assert current == [("restated", 1)]
    published = chdb_client.query(
        f"SELECT contacts_resolved FROM {database}.interval_published FINAL"
        " WHERE interval_minutes = 15 AND interval_start = {start:DateTime64(3, 'UTC')} AND queue = 'sales'",
        parameters={"start": t(1, 10)},
    ).result_rows
    assert published == [(0,)]
    chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")
