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
from stitchboard.metrics import contribution_values
from stitchboard.rows import ConversationRow
from stitchboard.settings import TenantSettings
from stitchboard.stitching.row import conversation_row
from stitchboard.stitching.store import AddResult, ConversationState

CONFLICT_REASON = "event_conflict"


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


def stitch_group(
    state: ConversationState | None,
    events: Sequence[CanonicalEvent],
    tenant: TenantSettings,
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
    ``origin`` are the record the events came from, for the letters of conflicting events.
    """
    if not events:
        raise ValueError("stitch_group needs at least one event")
    current = state if state is not None else ConversationState.for_event(events[0])
    results: list[AddResult] = []
    letters: list[DeadLetter] = []
    reasons: set[str] = set()
    for index, event in enumerate(events):
        result = current.add(event)
        results.append(result)
        if result is AddResult.APPLIED:
            reasons.add(event.event_type.value)
        elif result is AddResult.CONFLICT:
            letters.append(_conflict_letter(event, index, raw, origin))
    if not reasons:
        return GroupOutcome(current, results, [], letters, None)
    conversation = current.conversation()
    values = contribution_values(conversation, tenant)
    deltas = current.deltas(current.tenant, conversation.channel.value, values, ",".join(sorted(reasons)))
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
