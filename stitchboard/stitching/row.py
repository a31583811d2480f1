"""The conversations-table row of a stitched conversation."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from stitchboard.conversation import Conversation
from stitchboard.conversation_paths import conversation_path
from stitchboard.rows import ConversationRow
from stitchboard.settings import TenantSettings


def _distinct(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value for value in values if value))


def conversation_row(
    conversation: Conversation, updated_at: datetime, tenant: TenantSettings | None = None
) -> ConversationRow:
    """The conversation table row; ``tenant`` fills a missing intent from the wrap-up code."""
    legs = conversation.legs
    queued = conversation.queued_legs
    last_answered = conversation.last_answered_leg
    wrapup = (last_answered.wrapup_code if last_answered else None) or ""
    intent = conversation.intent or ""
    if not intent and tenant is not None:
        intent = tenant.intent_by_wrapup_code.get(wrapup, "")
    scored = [leg.qa_score for leg in legs if leg.qa_score is not None]
    return ConversationRow(
        tenant=conversation.tenant,
        conversation_id=conversation.conversation_id,
        version=conversation.version,
        status="ended" if conversation.ended else "open",
        channel=conversation.channel.value,
        direction=conversation.direction.value,
        started_at=conversation.started_at,
        ended_at=conversation.ended_at,
        first_queue=conversation.first_queue,
        last_queue=queued[-1].queue if queued else "",
        queues=_distinct(leg.queue for leg in queued),
        agents=_distinct(leg.agent for leg in legs),
        legs=sum(1 for leg in legs if leg.queue or leg.answered_at is not None),
        transfers=sum(1 for leg in legs if leg.transfer_at is not None),
        answered=last_answered is not None,
        abandoned=bool(queued) and queued[-1].abandoned_at is not None,
        ivr_outcome=conversation.ivr_outcome,
        wait_ms=sum((leg.answer_wait_ms or 0) + (leg.abandon_wait_ms or 0) for leg in legs),
        talk_ms=sum(leg.talk_ms for leg in legs),
        hold_ms=sum(leg.hold_ms for leg in legs),
        acw_ms=sum(leg.acw_ms for leg in legs),
        handle_ms=sum(leg.handle_ms for leg in legs),
        wrapup_code=wrapup,
        qa_score=scored[-1] if scored else None,
        reopened=len(conversation.reopened_at),
        intent=intent,
        customer_keys=conversation.customer_keys,
        updated_at=updated_at,
        path=conversation_path(conversation),
    )
