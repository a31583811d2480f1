"""What one accepted record becomes: its agent presence rows and its deliveries.

A *delivery* is the events one record carries for one conversation; it is stitched as one group
(``stitchboard.shards``). Agent presence events belong to no conversation and become
``agent_states`` rows directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from stitchboard.events import CanonicalEvent, EventType
from stitchboard.rows import AgentStateRow


@dataclass(frozen=True, slots=True)
class Delivery:
    """The events one raw record carries for one conversation: stitched as one group.

    ``raw`` and ``origin`` are the record's bytes and where it came from, so that whatever the
    stitcher rejects of it (a conflicting re-send, a failure) is dead-lettered with them. They
    travel with the delivery between steps and are never stored: the stitcher keeps none of it.
    ``transport_at`` is the transport's own time for the record (the broker's timestamp, a replay
    file's delivery time), when it has one.
    """

    tenant: str
    conversation_id: str
    events: tuple[CanonicalEvent, ...]
    raw: bytes = b""
    origin: str = ""
    transport_at: datetime | None = None

    @property
    def received_at(self) -> datetime:
        """When the record was received: its envelope's time (its events' ``ingest_time``), or the
        transport's when that is earlier; a record cannot be received twice at different times, so
        the earlier claim is the one the watermark may trust (``stitchboard.watermark``)."""
        envelope = self.events[0].ingest_time
        transport = self.transport_at
        return envelope if transport is None or envelope <= transport else transport

    @property
    def source(self) -> str:
        return self.events[0].source


def deliveries(
    events: Sequence[CanonicalEvent], raw: bytes = b"", origin: str = "", transport_at: datetime | None = None
) -> list[Delivery]:
    """Group a record's conversation events by conversation, in order of first appearance.

    Agent presence events (no conversation) are not deliveries; callers route them first.
    """
    groups: dict[tuple[str, str], list[CanonicalEvent]] = {}
    for event in events:
        if event.event_type is EventType.AGENT_STATE_CHANGED or event.conversation_id is None:
            raise ValueError(f"{event.event_type.value} event {event.event_id} belongs to no conversation")
        groups.setdefault((event.tenant, event.conversation_id), []).append(event)
    return [
        Delivery(tenant, conversation, tuple(group), raw, origin, transport_at)
        for (tenant, conversation), group in groups.items()
    ]


def agent_state_row(event: CanonicalEvent) -> AgentStateRow:
    """The ``agent_states`` row of an agent presence event."""
    return AgentStateRow(
        tenant=event.tenant,
        agent=event.agent or "",
        state=str(event.attributes.get("state", "")),
        at=event.event_time,
        event_id=event.event_id,
    )


def split_record(
    events: Sequence[CanonicalEvent], raw: bytes = b"", origin: str = "", transport_at: datetime | None = None
) -> list[AgentStateRow | Delivery]:
    """A record's agent presence rows, then its conversation events grouped into deliveries
    (carrying the record's bytes, origin and transport time)."""
    presence = [
        agent_state_row(event) for event in events if event.event_type is EventType.AGENT_STATE_CHANGED
    ]
    if not presence:
        return list(deliveries(events, raw, origin, transport_at))
    conversational = [event for event in events if event.event_type is not EventType.AGENT_STATE_CHANGED]
    return [*presence, *deliveries(conversational, raw, origin, transport_at)]
