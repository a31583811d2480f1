"""Issue #13, seen #7: dead letters raised after acceptance are exact.

``event_conflict`` letters carried the event as JSON and ``beyond_restatement_horizon`` letters a
text, both with an empty origin, and identical letters merged under the ``dead_letters`` key
(2,746 conflicts counted against 2,374 rows). Through the real flow: every letter counted is a row,
a conflict holds the record's bytes and origin, a correction beyond the horizon names its record's
origin and SHA-256 (its bytes are the correction: see ``stitchboard.interval_book.beyond_horizon``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client
from prometheus_client import REGISTRY

from stitchboard.app.runner import make_flow
from stitchboard.interval_book import BEYOND_HORIZON
from stitchboard.replay_file import write_records
from stitchboard.settings import ClickHouseSettings, InputBounds, Settings, TenantSettings, TimingSettings
from stitchboard.sinks.clickhouse_sink import ClickHouseSink
from stitchboard.stitching.stitch import CONFLICT_REASON

T0 = datetime(2026, 3, 29, 9, tzinfo=UTC)


def envelope(payload: dict[str, Any], received_at: datetime) -> bytes:
    return orjson.dumps(
        {"tenant": "acme", "source": "webhook", "received_at": received_at.isoformat(), "payload": payload}
    )


def agent_call(agent: str, received_at: datetime) -> bytes:
    """One answered call: answered, disconnected, after-call work and a wrap-up, all by ``agent``."""
    return envelope(
        {
            "event": "agent.call",
            "id": "exact-letters-call",
            "tenant": "acme",
            "conversation_id": "exact-letters-conversation",
            "direction": "inbound",
            "leg_id": "exact-letters-leg",
            "queue": "tech",
            "agent": agent,
            "answered_at": "2026-03-29T08:03:32Z",
            "holds": [],
            "ended_at": "2026-03-29T08:08:20Z",
            "end_reason": "customer_disconnect",
            "acw_started_at": "2026-03-29T08:08:20Z",
            "acw_ended_at": "2026-03-29T08:09:20Z",
            "wrapup": {"code": "resolved", "set_at": "2026-03-29T08:09:20Z"},
        },
        received_at,
    )


def missed_call(conversation: str, queued_at: datetime, received_at: datetime) -> bytes:
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return envelope(
        {
            "event": "missed.call",
            "id": f"missed-{conversation}",
            "tenant": "acme",
            "conversation_id": conversation,
            "direction": "inbound",
            "leg_id": f"leg-{conversation}",
            "queue": "billing",
            "queued_at": queued_at.strftime(stamp),
            "missed_at": (queued_at + timedelta(seconds=65)).strftime(stamp),
        },
        received_at,
    )


def _received_at(raw: bytes) -> datetime:
    return datetime.fromisoformat(orjson.loads(raw)["received_at"])


def counted(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("stitchboard_dead_letters_after_acceptance_total", {"reason": reason})
        or 0.0
    )


def test_every_letter_counted_is_a_row_with_its_record(
    chdb_client: Client, fresh_database: str, tmp_path: Path
) -> None:
    original = agent_call("bob.ray", T0)
    resend = agent_call("eve.fox", T0 + timedelta(minutes=1))  # every event of bob's leg, now eve's
    today = missed_call("today", T0 + timedelta(days=3), T0 + timedelta(days=3, minutes=2))
    # two contacts with the same figures at the same time, beyond a 1-day horizon: the same corrections
    too_old = missed_call("too-old", T0, T0 + timedelta(days=3, minutes=3))
    also_too_old = missed_call("also-too-old", T0, T0 + timedelta(days=3, minutes=3))
    stream = [original, resend, resend, today, too_old, also_too_old]
    events = tmp_path / "events.jsonl"
    write_records(events, [(_received_at(raw), raw) for raw in stream])  # delivered as received
    lines = events.read_bytes().splitlines(keepends=True)
    origin = [f"events.jsonl@{sum(len(line) for line in lines[:i])}" for i in range(len(stream))]

    settings = Settings(
        metrics_port=None,
        timing=TimingSettings(restatement_horizon_days=1),
        # records older than the horizon pass the input-side age check, so the book meets them
        default_tenant=TenantSettings(bounds=InputBounds(max_event_age_days=30)),
        clickhouse=ClickHouseSettings(dsn="chdb://unused", database=fresh_database),
    )
    before = {reason: counted(reason) for reason in (CONFLICT_REASON, BEYOND_HORIZON)}
    run_main(
        make_flow(
            settings,
            replay=events,
            drain_at_eof=True,
            sink=ClickHouseSink(lambda: chdb_client, settings.clickhouse),
        )
    )
    letters = chdb_client.query(
        f"SELECT reason, hex(raw), origin, part, received_at FROM {fresh_database}.dead_letters FINAL"
    ).result_rows
    rows = Counter(reason for reason, *_ in letters)

    conflicts = [
        (bytes.fromhex(raw), where, part)
        for reason, raw, where, part, _ in letters
        if reason == CONFLICT_REASON
    ]
    assert counted(CONFLICT_REASON) - before[CONFLICT_REASON] == rows[CONFLICT_REASON] == len(conflicts) >= 6
    assert {raw for raw, _, _ in conflicts} == {resend}
    assert Counter(where for _, where, _ in conflicts) == {
        origin[1]: len(conflicts) // 2,
        origin[2]: len(conflicts) // 2,
    }
    assert len({part for _, _, part in conflicts}) == len(conflicts) // 2

    beyond = [
        (orjson.loads(bytes.fromhex(raw)), where, at)
        for reason, raw, where, _, at in letters
        if reason == BEYOND_HORIZON
    ]
    assert counted(BEYOND_HORIZON) - before[BEYOND_HORIZON] == rows[BEYOND_HORIZON] == len(beyond) > 0
    assert Counter(where for _, where, _ in beyond) == {
        origin[4]: len(beyond) // 2,
        origin[5]: len(beyond) // 2,
    }
    assert {(document["conversation_id"], document["record_sha256"]) for document, _, _ in beyond} == {
        ("too-old", hashlib.sha256(too_old).hexdigest()),
        ("also-too-old", hashlib.sha256(also_too_old).hexdigest()),
    }
    assert {at for _, _, at in beyond} == {T0 + timedelta(days=3, minutes=3)}  # the record's receive time
