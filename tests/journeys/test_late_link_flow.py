"""Through the real flow: a late identifier link merges two engagements and restates FCR once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client

from stitchboard.app.runner import make_flow
from stitchboard.events import Channel, CustomerIds, Direction
from stitchboard.replay_file import write_records
from stitchboard.settings import ClickHouseSettings, Settings, TenantSettings
from stitchboard.synthetic.render import render_conversation
from stitchboard.synthetic.scenario import Shape, SimConversation, SimLeg
from stitchboard.synthetic.truth import engagement_truth

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def contact(
    name: str, start: datetime, channel: Channel, shape: Shape, customer: CustomerIds, intent: str
) -> SimConversation:
    answered = start + timedelta(seconds=30)
    ended = answered + timedelta(minutes=5)
    leg = SimLeg(
        leg_id=f"{name}-leg",
        queue="billing",
        entered_at=start,
        outcome="answered",
        left_at=answered,
        agent="agent-001",
        ended_at=ended,
        wrapup_code="resolved",
        wrapup_set_at=ended + timedelta(seconds=20),
    )
    return SimConversation(
        tenant="acme",
        conversation_id=f"00000000-0000-4000-8000-00000000000{name}",
        shape=shape,
        channel=channel,
        direction=Direction.INBOUND,
        started_at=start,
        ended_at=ended,
        customer=customer,
        intent=intent,
        legs=[leg],
    )


def test_late_link_merges_engagements_and_restates_fcr_once(
    tmp_path: Path, chdb_dsn: str, chdb_client: Client, fresh_database: str
) -> None:
    conversations = [
        contact("1", T0, Channel.VOICE, "genesys", CustomerIds(phone_hash="p1"), "payment"),
        contact("2", T0 + timedelta(days=1), Channel.EMAIL, "webhook", CustomerIds(email_hash="e1"), "payment"),
        contact(
            "3",
            T0 + timedelta(days=2),
            Channel.CHAT,
            "genesys",
            CustomerIds(cookie_hash="k1", email_hash="e1", account_hash="a1"),
            "how_to",
        ),
        contact("4", T0 + timedelta(days=3), Channel.VOICE, "genesys", CustomerIds(phone_hash="p1", account_hash="a1"), "how_to"),
    ]  # fmt: skip
    records = sorted((r for c in conversations for r in render_conversation(c)), key=lambda r: r[0])
    events = tmp_path / "events.jsonl"
    write_records(events, records)
    settings = Settings(
        tenants={"acme": TenantSettings()},
        clickhouse=ClickHouseSettings(dsn=chdb_dsn, database=fresh_database),
        metrics_port=None,
    )
    for _ in range(2):  # a second replay of the same input must reproduce every version
        run_main(make_flow(settings, replay=events))

    engagements = chdb_client.query(
        f"SELECT intent, conversation_ids, fcr, channel_switches FROM `{fresh_database}`.engagements FINAL"
        " ORDER BY engagement_id"
    ).result_rows
    ids = [c.conversation_id for c in conversations]
    assert engagements == [
        ("payment", [ids[0], ids[1]], False, 1),
        ("how_to", [ids[2], ids[3]], False, 1),
    ]
    truth = engagement_truth(conversations, settings)["acme"]
    assert sorted(e.conversation_ids for e in truth.detail) == sorted(tuple(e[1]) for e in engagements)
    assert truth.first_contact_resolutions == 0

    restatements = chdb_client.query(
        "SELECT engagement_id, previous_engagement_ids, previous_fcr, corrected_fcr, reason"
        f" FROM `{fresh_database}`.engagement_restatements FINAL ORDER BY restatement_seq"
    ).result_rows
    assert restatements == [(ids[0], [ids[0], ids[1]], 2, 0, "identity_merge")]  # a repeat is no restatement
    links = chdb_client.query(
        f"SELECT conversation_id, link_seq FROM `{fresh_database}`.customer_links FINAL"
    ).result_rows
    assert links == [(ids[3], 1)]  # contact 3 only adds new identifiers; contact 4 joins two customers
