"""Stitching a delivery: a record's events for one conversation applied to its state, then one
summary and one set of contribution deltas to publish."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from stitchboard.contributions import Delta
from stitchboard.conversation import Conversation
from stitchboard.deadletters import DeadLetter
from stitchboard.events import CanonicalEvent
from stitchboard.metrics import ValueKey, contribution_values
from stitchboard.rows import ConversationRow
from stitchboard.settings import ConversationLimits, TenantSettings
from stitchboard.stitching.row import conversation_row
from stitchboard.stitching.store import AddResult, ConversationState, LimitExceeded

CONFLICT_REASON = "event_conflict"
LIMIT_REASON = "conversation_limit"
DEFAULT_LIMITS = ConversationLimits()
_INT64 = range(-(2**63), 2**63)  # the interval and conversation tables' figure columns
_INT32 = range(-(2**31), 2**31)  # the conversations table's qa_score column


@dataclass(frozen=True, slots=True)
class StitchOutcome:
    """What one event did: the (in-place updated) state, and what to publish because of it."""

    state: ConversationState
    result: AddResult
    row: ConversationRow | None
    deltas: list[Delta]
    dead_letter: DeadLetter | None
    conversation: Conversation | None = None  # the summary after an applied event


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """What a group of one conversation's events did, stitched together (see `stitch_group`)."""

    state: ConversationState
    results: list[AddResult]  # one per event, in the order given
    deltas: list[Delta]
    dead_letters: list[DeadLetter]
    conversation: Conversation | None  # the summary after the group, when any event applied


def _conflict_letter(event: CanonicalEvent, index: int, raw: bytes, origin: str) -> DeadLetter:
    """The letter of the ``index``-th event of a delivery: the record's bytes and origin (the event
    as JSON when called without a record), and the event's place in it as the letter's part."""
    return DeadLetter(
        reason=CONFLICT_REASON,
        detail=f"event {event.event_id} sequence {event.sequence} was re-sent with different content",
        raw=raw or event.model_dump_json().encode("utf-8"),
        received_at=event.ingest_time,
        tenant=event.tenant,
        source=event.source,
        origin=origin,
        part=f"conversation {event.conversation_id} event {index} {event.event_id}",
    )


def _limit_letter(
    events: Sequence[CanonicalEvent], conversation_id: str, detail: str, raw: bytes, origin: str
) -> DeadLetter:
    """The dead letter of a whole delivery: the record's bytes and origin (its events as JSON when
    called without a record), the conversation as the letter's part."""
    first = events[0]
    return DeadLetter(
        reason=LIMIT_REASON,
        detail=f"conversation {conversation_id}: {detail}; the delivery of {len(events)} events is refused",
        raw=raw or b"[" + b",".join(event.model_dump_json().encode("utf-8") for event in events) + b"]",
        received_at=first.ingest_time,
        tenant=first.tenant,
        source=first.source,
        origin=origin,
        part=f"conversation {conversation_id}",
    )


def _unfit_figure(values: dict[ValueKey, int]) -> str | None:
    """A contribution that would not fit the interval table's 64-bit columns (nor the packed
    emitted state): durations are bounded by the summary, counts and scores are not."""
    if not values or (max(values.values()) <= _INT64[-1] and min(values.values()) >= _INT64[0]):
        return None
    (queue, metric, _), value = next(item for item in values.items() if item[1] not in _INT64)
    return f"{metric} of {value} in queue {queue!r} does not fit a 64-bit figure"


def _too_many_values(state: ConversationState, limits: ConversationLimits) -> str | None:
    if state.distinct_values > limits.max_distinct_values:
        return f"{state.distinct_values} distinct values, more than the limit of {limits.max_distinct_values}"
    return None


def _breach(state: ConversationState, conversation: Conversation, limits: ConversationLimits) -> str | None:
    """Which of ``limits`` the stitched state crosses, or a QA score the conversations table cannot hold."""
    if len(state) > limits.max_events:
        return f"{len(state)} events, more than the limit of {limits.max_events}"
    too_many = _too_many_values(state, limits)
    if too_many is not None:
        return too_many
    legs = conversation.legs
    holds = sum(leg.holds for leg in legs)
    if holds > limits.max_holds:
        return f"{holds} holds, more than the limit of {limits.max_holds}"
    if len(conversation.ivr_steps) > limits.max_ivr_steps:
        return f"{len(conversation.ivr_steps)} IVR steps, more than the limit of {limits.max_ivr_steps}"
    for leg in legs:
        if leg.qa_score is not None and leg.qa_score not in _INT32:
            return f"QA score {leg.qa_score} does not fit a 32-bit column"
    return None


def stitch_group(
    state: ConversationState | None,
    events: Sequence[CanonicalEvent],
    tenant: TenantSettings,
    limits: ConversationLimits = DEFAULT_LIMITS,
    *,
    raw: bytes = b"",
    origin: str = "",
) -> GroupOutcome:
    """Apply the events one record carries for one conversation, then summarise once.

    The state is updated in place (copying it would cost more than it protects) and returned.
    Deltas are computed against the contributions this state last emitted, so they retract
    exactly what was published even if rules or settings changed in between. One summary and one
    set of deltas per group, not per event, is what keeps stitching linear in a conversation's
    length: a detail record carries a whole conversation. The delta reason names the event types
    that applied (comma-separated, sorted); the interval book decides lateness. ``raw`` and
    ``origin`` are the record the events came from, for the letters of conflicting events and of
    a refused delivery.

    A group that would take the conversation past one of its ``limits``, or put a value in it that
    its packed state or the tables cannot hold, is undone and dead-lettered whole
    (``conversation_limit``): the conversation keeps its earlier state and publishes nothing, so a
    state in memory or in a snapshot never holds what cannot be packed. (A new conversation is
    left with no events; `stitchboard.shards` does not keep it.)
    """
    if not events:
        raise ValueError("stitch_group needs at least one event")
    current = state if state is not None else ConversationState.for_event(events[0])
    saved = current.checkpoint()
    try:
        results = current.add_all(events)
        reasons: set[str] = set()
        letters: list[DeadLetter] = []
        for index, (event, result) in enumerate(zip(events, results, strict=True)):
            if result is AddResult.APPLIED:
                reasons.add(event.event_type.value)
            elif result is AddResult.CONFLICT:
                letters.append(_conflict_letter(event, index, raw, origin))
        if not reasons:
            return GroupOutcome(current, results, [], letters, None)
        conversation = current.conversation()
        values = contribution_values(conversation, tenant)
        breach = _breach(current, conversation, limits) or _unfit_figure(values)
        if breach is not None:
            raise LimitExceeded(breach)
        deltas = current.deltas(current.tenant, conversation.channel.value, values, ",".join(sorted(reasons)))
        breach = _too_many_values(current, limits)  # the queues of what was emitted are values too
        if breach is not None:
            raise LimitExceeded(breach)
    except LimitExceeded as exc:
        current.restore(saved)
        letter = _limit_letter(events, current.conversation_id, str(exc), raw, origin)
        return GroupOutcome(current, [AddResult.REJECTED] * len(events), [], [letter], None)
    return GroupOutcome(current, results, deltas, letters, conversation)


def stitch(
    state: ConversationState | None,
    event: CanonicalEvent,
    tenant: TenantSettings,
    updated_at: datetime | None = None,
    *,
    with_row: bool = True,
) -> StitchOutcome:
    """`stitch_group` for one event, with its conversation row (``with_row``), or a dead letter
    when it conflicts with an earlier version of the same event."""
    outcome = stitch_group(state, [event], tenant)
    conversation = outcome.conversation
    row = None
    if with_row and conversation is not None:
        row = conversation_row(conversation, updated_at or event.ingest_time, tenant)
    letter = outcome.dead_letters[0] if outcome.dead_letters else None
    return StitchOutcome(outcome.state, outcome.results[0], row, outcome.deltas, letter, conversation)
