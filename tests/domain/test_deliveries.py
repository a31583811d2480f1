"""A record's events split into agent presence rows and one delivery per conversation."""

from __future__ import annotations

from datetime import timedelta

from support.events import T0, event

from stitchboard.deliveries import Delivery, split_record
from stitchboard.events import CanonicalEvent, Channel, EventType
from stitchboard.rows import AgentStateRow


def presence(agent: str, state: str) -> CanonicalEvent:
    return CanonicalEvent(
        tenant="acme",
        source="connect_agent",
        event_id=f"{agent}-{state}",
        channel=Channel.VOICE,
        event_type=EventType.AGENT_STATE_CHANGED,
        event_time=T0,
        ingest_time=T0,
        agent=agent,
        attributes={"state": state},
    )


def test_presence_becomes_rows_first_then_one_delivery_per_conversation() -> None:
    queued = event(EventType.QUEUED, 0, conversation="c1", queue="sales")
    other = event(EventType.QUEUED, 1, conversation="c2", queue="sales")
    answered = event(EventType.ANSWERED, 5, conversation="c1", queue="sales", agent="ann")
    parts = split_record([queued, presence("ann", "busy"), other, answered])
    assert parts == [
        AgentStateRow("acme", "ann", "busy", T0, "ann-busy"),
        Delivery("acme", "c1", (queued, answered)),
        Delivery("acme", "c2", (other,)),
    ]


def test_a_record_of_conversation_events_only_is_its_deliveries() -> None:
    queued = event(EventType.QUEUED, 0, queue="sales")
    assert split_record([queued]) == [Delivery("acme", "c1", (queued,))]


def test_a_delivery_carries_its_record_and_the_earlier_of_its_receive_times() -> None:
    """The envelope's ``received_at`` (the events' ingest time) or the transport's, whichever is
    earlier: a record claiming a later receive time than its transport gave it is not trusted."""
    queued = event(EventType.QUEUED, 0, conversation="c1", queue="sales")
    [delivery] = split_record([queued], b"raw", "raw/0/7", queued.ingest_time - timedelta(hours=1))
    assert (delivery.raw, delivery.origin) == (b"raw", "raw/0/7")
    assert delivery.received_at == queued.ingest_time - timedelta(hours=1)
    [later] = split_record([queued], b"raw", "raw/0/7", queued.ingest_time + timedelta(hours=1))
    assert later.received_at == queued.ingest_time
    assert Delivery("acme", "c1", (queued,)).received_at == queued.ingest_time
