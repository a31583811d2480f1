"""Conversation paths from stitched events; opt-out, containment and frustration signals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from stitchboard.conversation_paths import FrustrationThresholds, last_self_service_step, opted_out, path_row
from stitchboard.events import CanonicalEvent, Channel, EventType
from stitchboard.rows import ConversationRow
from stitchboard.settings import TenantSettings
from stitchboard.sinks.clickhouse import init_db
from stitchboard.stitching.stitch import stitch
from stitchboard.stitching.store import ConversationState

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def stitched(channel: Channel, steps: list[tuple[int, EventType, dict[str, Any]]]) -> ConversationRow:
    state: ConversationState | None = None
    row: ConversationRow | None = None
    for index, (second, kind, fields) in enumerate(steps):
        event = CanonicalEvent(
            tenant="acme",
            source="test",
            event_id=f"e{index}",
            conversation_id="conv-1",
            channel=channel,
            event_type=kind,
            event_time=T0 + timedelta(seconds=second),
            ingest_time=T0 + timedelta(seconds=second),
            **fields,
        )
        outcome = stitch(state, event, TenantSettings(), T0)
        state, row = outcome.state, outcome.row or row
    assert row is not None
    return row


def ivr(node: str) -> dict[str, Any]:
    return {"attributes": {"node": node}}


def test_ivr_opt_out_with_transfer_has_every_step_in_order() -> None:
    row = stitched(
        Channel.VOICE,
        [
            (0, EventType.ARRIVED, {}),
            (1, EventType.IVR_STEP, ivr("welcome")),
            (9, EventType.IVR_STEP, ivr("main_menu")),
            (15, EventType.QUEUED, {"leg_id": "l1", "queue": "billing"}),
            (40, EventType.ANSWERED, {"leg_id": "l1", "queue": "billing", "agent": "ann"}),
            (300, EventType.TRANSFER_BLIND, {"leg_id": "l1", "attributes": {"target_queue": "sales"}}),
            (300, EventType.QUEUED, {"leg_id": "l2", "queue": "sales"}),
            (330, EventType.ANSWERED, {"leg_id": "l2", "queue": "sales", "agent": "bob"}),
            (900, EventType.DISCONNECTED, {}),
        ],
    )
    assert row.path == (
        "ivr:welcome",
        "ivr:main_menu",
        "queue:billing",
        "agent:ann",
        "transfer:blind",
        "queue:sales",
        "agent:bob",
    )
    paths = path_row(row, FrustrationThresholds(long_duration_ms=600_000, many_transfers=2, many_steps=10))
    assert (paths.first_step, paths.last_step, paths.step_count) == ("ivr:welcome", "agent:bob", 7)
    assert (paths.self_service, paths.opted_out, paths.last_self_service_step) == (True, True, "main_menu")
    assert (paths.contained, paths.transfers, paths.duration_ms) == (False, 1, 900_000)
    assert (paths.long_duration, paths.many_transfers, paths.many_steps, paths.frustrated) == (
        True,
        False,
        False,
        True,
    )


def test_contained_bot_conversation_ends_in_contained() -> None:
    row = stitched(
        Channel.BOT,
        [
            (0, EventType.IVR_STEP, ivr("bot_greeting")),
            (5, EventType.IVR_STEP, ivr("bot_answer")),
            (60, EventType.DISCONNECTED, {"attributes": {"self_served": True}}),
        ],
    )
    assert row.path == ("bot:bot_greeting", "bot:bot_answer", "contained")
    paths = path_row(row, FrustrationThresholds())
    assert (paths.contained, paths.opted_out, paths.last_self_service_step, paths.frustrated) == (
        True,
        False,
        "bot_answer",
        False,
    )


def test_queue_abandon_and_self_service_abandon_are_steps() -> None:
    abandoned = stitched(
        Channel.CHAT,
        [
            (0, EventType.QUEUED, {"leg_id": "l1", "queue": "support"}),
            (30, EventType.ABANDONED, {"leg_id": "l1", "queue": "support"}),
        ],
    )
    assert abandoned.path == ("queue:support", "abandoned")
    assert not opted_out(abandoned.path)
    left = stitched(Channel.VOICE, [(0, EventType.IVR_STEP, ivr("welcome")), (7, EventType.DISCONNECTED, {})])
    assert left.path == ("ivr:welcome", "self_service_abandoned")
    assert last_self_service_step(left.path) == "welcome"


def test_many_transfers_and_many_steps_are_flagged_at_their_thresholds() -> None:
    row = stitched(Channel.CHAT, [(0, EventType.QUEUED, {"leg_id": "l1", "queue": "support"})])
    busy = replace(row, transfers=2, path=tuple(f"ivr:n{i}" for i in range(10)), ended_at=None)
    flags = path_row(busy, FrustrationThresholds(many_transfers=2, many_steps=10))
    assert (flags.many_transfers, flags.many_steps, flags.duration_ms, flags.long_duration) == (
        True,
        True,
        None,
        False,
    )
    calm = path_row(replace(busy, transfers=1, path=busy.path[:9]), FrustrationThresholds())
    assert (calm.many_transfers, calm.many_steps, calm.frustrated) == (False, False, False)


def test_init_db_adds_the_path_column_to_an_older_conversations_table(
    chdb_client: Client, fresh_database: str
) -> None:
    chdb_client.command(f"ALTER TABLE `{fresh_database}`.conversations DROP COLUMN `path`")
    init_db(chdb_client, fresh_database)
    columns = chdb_client.query(
        f"SELECT name FROM system.columns WHERE database = '{fresh_database}' AND table = 'conversations'"
    ).result_rows
    assert ("path",) in columns
