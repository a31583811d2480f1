"""Bytewax hosting of customer journeys: one stateful step per tenant over stitched conversation rows.

Identity resolution needs all of a tenant's identifiers (links are transitive), so the state is keyed
by tenant; it is bounded by the engagement window on the tenant's event-time watermark (see
``stitchboard.journeys``), never by system time.
"""

from __future__ import annotations

from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import KeyedStream, StatefulLogic

from stitchboard.journeys import TenantJourneys
from stitchboard.rows import ConversationRow, JourneyRow
from stitchboard.settings import JourneySettings, Settings


class JourneyStep(StatefulLogic[list[ConversationRow], list[JourneyRow], TenantJourneys]):
    """One tenant's journeys; the pure ``TenantJourneys`` is also the snapshot."""

    def __init__(self, settings: Settings, journeys: JourneySettings, resume: TenantJourneys | None) -> None:
        self._settings = settings
        self._journeys = journeys
        self._state = resume

    def on_item(self, value: list[ConversationRow]) -> tuple[list[list[JourneyRow]], bool]:
        """A batch of one tenant's changed conversations, in stitching order."""
        if self._state is None:
            tenant = value[0].tenant
            self._state = TenantJourneys(
                tenant, self._settings.tenant(tenant), self._settings.timing, self._journeys
            )
        now = datetime.now(UTC)
        rows = [row for conversation in value for row in self._state.apply(conversation, now)]
        return ([rows] if rows else []), StatefulLogic.RETAIN

    def snapshot(self) -> TenantJourneys:
        assert self._state is not None
        return self._state


def wire_journeys(
    conversation_rows: KeyedStream[list[ConversationRow]], settings: Settings
) -> Stream[JourneyRow]:
    """Engagement, customer-link, restatement and path rows from batches of conversation rows keyed
    by tenant."""
    chosen = settings.journeys
    step = op.stateful("journeys", conversation_rows, lambda resume: JourneyStep(settings, chosen, resume))
    return op.flatten("journey_rows", op.key_rm("journeys_unkeyed", step))
