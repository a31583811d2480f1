"""A CanonicalEvent builder for domain tests: ``seconds`` after T0, with an id derived like adapters do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stitchboard.events import CanonicalEvent, Channel, CustomerIds, EventType

T0 = datetime(2026, 3, 29, 8, 0, tzinfo=UTC)


def event(
    kind: EventType,
    seconds: float,
    *,
    conversation: str = "c1",
    channel: Channel = Channel.VOICE,
    leg: str | None = None,
    queue: str | None = None,
    agent: str | None = None,
    sequence: int = 0,
    event_id: str | None = None,
    customer: CustomerIds | None = None,
    intent: str | None = None,
    received: float | None = None,
    source: str = "genesys",
    validated: bool = True,
    **attributes: str | int | bool,
) -> CanonicalEvent:
    """``received`` (seconds after T0) is the ingest time; by default a second after the event.

    ``validated=False`` builds the event without the model's checks (``model_construct``): what the
    stitcher could still meet — state restored from an older release, or values past bounds the
    model adds later — to show that the stitcher defends itself whatever the model lets through.
    """
    build = CanonicalEvent if validated else CanonicalEvent.model_construct
    return build(
        tenant="acme",
        source=source,
        event_id=event_id or f"{conversation}:{leg}:{kind.value}:{seconds}",
        conversation_id=conversation,
        leg_id=leg,
        channel=channel,
        event_type=kind,
        event_time=T0 + timedelta(seconds=seconds),
        ingest_time=T0 + timedelta(seconds=received if received is not None else seconds + 1),
        queue=queue,
        agent=agent,
        customer=customer or CustomerIds(),
        intent=intent,
        attributes=dict(attributes),
        sequence=sequence,
    )


def chat_event(kind: EventType, seconds: int, **fields: object) -> CanonicalEvent:
    """An event of chat conversation ``c1``, leg ``l1``, for tests of the Bytewax steps."""
    return CanonicalEvent(
        tenant="acme",
        source="test",
        event_id=f"{kind.value}-{seconds}",
        conversation_id="c1",
        leg_id="l1",
        channel=Channel.CHAT,
        event_type=kind,
        event_time=T0 + timedelta(seconds=seconds),
        ingest_time=T0 + timedelta(seconds=seconds),
        **fields,  # type: ignore[arg-type]
    )


def unchecked_event(kind: EventType, seconds: float, **fields: Any) -> CanonicalEvent:
    """``event(..., validated=False)``: for tests of the stitcher's own limits."""
    return event(kind, seconds, validated=False, **fields)
