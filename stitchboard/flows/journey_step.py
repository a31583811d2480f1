"""Bytewax hosting of customer journeys: one stateful step per tenant over stitched conversation rows.

Identity resolution needs all of a tenant's identifiers (links are transitive), so the state is keyed
by tenant; it is bounded by the engagement window on the tenant's event-time watermark (see
``stitchboard.journeys``), never by system time.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import KeyedStream, StatefulLogic

from stitchboard import telemetry
from stitchboard.deadletters import DeadLetter, RecordRef, held_bytes, internal_error
from stitchboard.journeys import TenantJourneys
from stitchboard.rows import ConversationRow, JourneyRow
from stitchboard.settings import JourneySettings, Settings
from stitchboard.state_version import StateSchema, Versioned, unchanged

JOURNEY_STEP = "journeys"  # names the step in the dead letter of a row the journeys failed on
JourneyInput = tuple[ConversationRow, RecordRef | None]  # a changed conversation and its last record
_log = logging.getLogger("stitchboard.flow")
# Version 0: the same ``TenantJourneys`` written before snapshots were versioned (``state_version``).
JOURNEY_STATE = StateSchema[TenantJourneys](
    "journeys", 1, {0: unchanged}, lambda s: isinstance(s, TenantJourneys)
)


def row_letter(exc: Exception, row: ConversationRow, record: RecordRef | None, now: datetime) -> DeadLetter:
    """The letter of a conversation row the journeys failed on: the row as JSON (a row sums up many
    records, whose bytes stay behind at the stitcher) and the origin of its last record."""
    return internal_error(
        exc,
        JOURNEY_STEP,
        held_bytes(lambda: {field.name: getattr(row, field.name) for field in dataclasses.fields(row)}),
        now if record is None else record.received_at,
        tenant=row.tenant,
        source="" if record is None else record.source,
        origin="" if record is None else record.origin,
        part=f"conversation {row.conversation_id} version {row.version}",
    )


class JourneyStep(StatefulLogic[list[JourneyInput], list[JourneyRow | DeadLetter], Versioned]):
    """One tenant's journeys; the pure ``TenantJourneys`` is also the snapshot (``JOURNEY_STATE``).

    A row the journeys fail on becomes a dead letter and the next row goes on. Its customer's
    engagements stay as last published: they are recomputed from scratch by the next row that
    touches the customer (``stitchboard.journeys``), which is what heals a half-applied row.
    """

    def __init__(self, settings: Settings, journeys: JourneySettings, snapshot: object | None) -> None:
        self._settings = settings
        self._journeys = journeys
        resume = JOURNEY_STATE.restore(snapshot)
        self._state = resume
        if resume is not None and resume.resumed(settings.timing, datetime.now(UTC)):
            _log.warning(
                "restored journeys watermark was ahead of the clock; repaired",
                extra={"tenant": resume.tenant},
            )

    def on_item(self, value: list[JourneyInput]) -> tuple[list[list[JourneyRow | DeadLetter]], bool]:
        """A batch of one tenant's changed conversations, in stitching order."""
        if self._state is None:
            tenant = value[0][0].tenant
            self._state = TenantJourneys(
                tenant, self._settings.tenant(tenant), self._settings.timing, self._journeys
            )
        now = datetime.now(UTC)
        rows: list[JourneyRow | DeadLetter] = []
        for conversation, record in value:
            try:
                rows.extend(
                    self._state.apply(conversation, now, None if record is None else record.received_at)
                )
            except Exception as exc:
                letter = row_letter(exc, conversation, record, now)
                telemetry.DEAD_LETTERS_AFTER_ACCEPTANCE.labels(letter.reason).inc()
                rows.append(letter)
        return ([rows] if rows else []), StatefulLogic.RETAIN

    def snapshot(self) -> Versioned:
        assert self._state is not None
        return JOURNEY_STATE.wrap(self._state)


def wire_journeys(
    conversation_rows: KeyedStream[list[JourneyInput]], settings: Settings
) -> Stream[JourneyRow | DeadLetter]:
    """Engagement, customer-link, restatement and path rows (and the dead letters of rows the
    journeys failed on) from batches of conversation rows keyed by tenant."""
    chosen = settings.journeys
    step = op.stateful("journeys", conversation_rows, lambda resume: JourneyStep(settings, chosen, resume))
    return op.flatten("journey_rows", op.key_rm("journeys_unkeyed", step))
