"""A ConversationRow factory for tests: an open inbound voice conversation, overridable per field."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from stitchboard.rows import ConversationRow

T0 = datetime(2026, 3, 29, 8, 0, tzinfo=UTC)


def conversation_row(**fields: Any) -> ConversationRow:
    """Defaults describe a just-queued call in ``sales``; pass any field to change it."""
    queue = fields.pop("queue", "sales")
    base = ConversationRow(
        tenant="acme",
        conversation_id="c1",
        version=1,
        status="open",
        channel="voice",
        direction="inbound",
        started_at=T0,
        ended_at=None,
        first_queue=queue,
        last_queue=queue,
        queues=(queue,),
        agents=(),
        legs=1,
        transfers=0,
        answered=False,
        abandoned=False,
        ivr_outcome="",
        wait_ms=0,
        talk_ms=0,
        hold_ms=0,
        acw_ms=0,
        handle_ms=0,
        wrapup_code="",
        qa_score=None,
        reopened=0,
        intent="",
        customer_keys=(),
        updated_at=T0,
    )
    return replace(base, **fields)
