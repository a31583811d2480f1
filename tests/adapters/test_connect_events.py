"""Amazon Connect contact events (EventBridge, bare detail, camel or Pascal case) → provisional events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from support.source_records import FIXTURES, corpus_received_at, load

from stitchboard.adapters import connect_events, normalise
from stitchboard.deadletters import AdapterError, DeadLetter
from stitchboard.events import CanonicalEvent, Channel, Direction, EventType
from stitchboard.interval_book import IntervalBook
from stitchboard.metrics import METRIC_NAMES
from stitchboard.rows import IntervalRow
from stitchboard.settings import TenantSettings, TimingSettings
from stitchboard.stitching.stitch import stitch_group
from stitchboard.stitching.store import ConversationState

RECEIVED = datetime(2022, 1, 5, 18, 0, tzinfo=UTC)
CORPUS = "corpus/connect_events"
A = "6fe40d2a-1a89-4d73-bfcf-5d9c33894f47"
B = "9a3c5e71-4b2d-4f80-8e16-0c7d2b5a9f34"
QUEUE_A = "078ccbaa-ae69-4bf9-84bc-5c60ca9b1478"
AGENT_A = "e7c9afb6-b1e1-4afa-b5b5-d1c9bc752b69"


def at(clock: str, day: str = "2022-01-05") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}+00:00")


def parse(payload: dict[str, Any]) -> list[CanonicalEvent]:
    return connect_events.parse(payload, "acme", RECEIVED)


def rows(events: list[CanonicalEvent]) -> list[tuple[Any, ...]]:
    return [(e.event_type.value, e.event_time, e.leg_id, e.queue, e.agent) for e in events]


def test_class_9_every_corpus_contact_event_is_accepted_through_normalise() -> None:
    """#11 class 9, failing first: contact events were dead-lettered as records missing fields, or (a
    bare PascalCase detail) mistaken for a contact record; now they are provisional events."""
    received = corpus_received_at(CORPUS)
    for path in sorted((FIXTURES / CORPUS).glob("*_0*.json")):
        stamp = received[path.name].encode()
        raw = b'{"tenant":"acme","source":"connect","received_at":"' + stamp + b'","payload":'
        events = normalise(raw + path.read_bytes() + b"}")
        assert not isinstance(events, DeadLetter), (path.name, events)
        assert all(e.provisional for e in events), path.name
        assert all(e.leg_id is None or e.scope == e.leg_id for e in events), path.name  # scope = the contact


def test_each_snapshot_states_what_the_contact_has_done_so_far() -> None:
    names = ["01_initiated", "02_queued", "03_connected_to_agent", "04_disconnected", "05_completed"]
    snapshots = [parse(load(f"{CORPUS}/contact_a_{name}.json")) for name in names]
    assert rows(snapshots[-1]) == [
        ("arrived", at("17:12:59"), None, None, None),
        ("queued", at("17:14:46"), A, QUEUE_A, None),
        ("answered", at("17:20:32"), A, QUEUE_A, AGENT_A),
        ("acw_start", at("17:28:12"), A, QUEUE_A, AGENT_A),
        ("acw_end", at("17:28:17"), A, QUEUE_A, AGENT_A),
        ("disconnected", at("17:28:12"), A, QUEUE_A, AGENT_A),
    ]
    assert [len(events) for events in snapshots] == [1, 2, 3, 4, 6]
    # a fact keeps its id from snapshot to snapshot; the later snapshot has the higher sequence
    queued = [next(e for e in events if e.event_type is EventType.QUEUED) for events in snapshots[1:]]
    assert len({e.event_id for e in queued}) == 1
    assert [e.sequence for e in queued] == sorted(e.sequence for e in queued)
    assert snapshots[-1][0].sequence == int(at("17:28:17").timestamp() * 1000)
    event = snapshots[-1][0]
    assert (event.conversation_id, event.scope, event.channel, event.direction, event.source) == (
        A,
        A,
        Channel.VOICE,
        Direction.INBOUND,
        "connect",
    )


def test_a_transferred_contact_is_a_new_leg_of_the_first_contacts_conversation() -> None:
    events = parse(load(f"{CORPUS}/chain_contact_2_03_connected_to_agent.json"))
    assert {(e.conversation_id, e.leg_id, e.scope) for e in events} == {(A, B, B)}
    assert [e.event_type for e in events] == [EventType.QUEUED, EventType.ANSWERED]
    assert parse(load(f"{CORPUS}/chain_contact_2_01_initiated.json")) == []  # no second arrival
    without_initial = load(f"{CORPUS}/chain_contact_2_02_queued.json")
    del without_initial["detail"]["initialContactId"]  # the previous contact names the conversation then
    assert {e.conversation_id for e in parse(without_initial)} == {A}


def test_abandon_in_queue_and_the_unset_1970_timestamps() -> None:
    updated = parse(load(f"{CORPUS}/abandoned_03_contact_data_updated.json"))
    assert [e.event_type for e in updated] == [EventType.ARRIVED, EventType.QUEUED]  # 1970 = not connected
    disconnected = parse(load(f"{CORPUS}/abandoned_04_disconnected_detail.json"))
    queue, contact = "12345678-1234-1234-1234-123456789012", "11111111-1111-1111-1111-111111111111"
    day = "2021-08-04"
    assert rows(disconnected) == [
        ("arrived", at("17:17:53", day), None, None, None),
        ("queued", at("17:29:04", day), contact, queue, None),
        ("abandoned", at("17:29:31", day), contact, queue, None),
        ("disconnected", at("17:29:31", day), None, None, None),
    ]
    assert "self_served" not in disconnected[-1].attributes  # the event does not say who ended it


def test_live_figures_stay_under_the_queue_and_agent_the_record_names() -> None:
    """#11 follow-up, failing first: the events keyed queue and agent by the ARN's id, the record by
    ``Queue.Name`` / ``Agent.Username``, so the record moved the live figures to another queue (a
    wallboard saw the queue appear and vanish) and restated the quarter-hour of the queue entry that
    was already final. Both shapes now key by the id, so the record restates nothing there."""
    settings = TenantSettings()
    book = IntervalBook("acme", settings, TimingSettings(allowed_lateness_seconds=600), METRIC_NAMES)
    stream = ["01_initiated", "02_queued", "03_connected_to_agent", "04_disconnected", "05_completed"]
    state: ConversationState | None = None
    published: list[IntervalRow] = []
    agents: list[str | None] = []
    for name in [f"contact_a_{part}" for part in stream] + ["contact_a_record"]:
        events = parse(load(f"{CORPUS}/{name}.json"))
        outcome = stitch_group(state, events, settings)
        state = outcome.state
        book.apply_all(outcome.deltas)
        book.observe(max(e.event_time for e in events), RECEIVED)
        flushed = book.flush(RECEIVED, all_provisional=True)
        published += flushed.interval_rows
        agents.append(state.conversation().legs[0].agent if state.conversation().legs else None)
        if name == "contact_a_record":
            assert (flushed.restated, flushed.restatements) == ([], [])
    # the watermark (17:27:17) finalised the quarter-hour of the queue entry before the record came
    assert {(r.interval_minutes, r.interval_start) for r in published if r.status == "final"} == {
        (15, at("17:00:00"))
    }
    # queue "" held the contact only until it queued (INITIATED); every other row is the queue's id
    assert {r.queue for r in published if r.queue} == {QUEUE_A}
    assert {r.queue for r in book.drain(RECEIVED).final if any(r.metrics.values())} == {QUEUE_A}
    assert agents == [None, None, AGENT_A, AGENT_A, AGENT_A, AGENT_A]


def test_eventbridge_event_and_its_bare_detail_give_the_same_events() -> None:
    wrapped = load(f"{CORPUS}/contact_a_03_connected_to_agent.json")
    assert parse(wrapped) == parse(wrapped["detail"])


def test_pascal_case_keys_and_mixed_case_channel_read_the_same() -> None:
    camel = load(f"{CORPUS}/contact_a_03_connected_to_agent.json")["detail"]

    def pascal(value: Any) -> Any:
        if isinstance(value, dict):
            return {key[:1].upper() + key[1:]: pascal(item) for key, item in value.items()}
        return value

    shouted = pascal(camel)
    shouted["Channel"] = "Voice"
    assert parse(shouted) == parse(camel)


def test_segment_attributes_subtype_sets_the_channel() -> None:
    detail = load(f"{CORPUS}/contact_a_02_queued.json")["detail"]
    detail.update(channel="CHAT", segmentAttributes={"connect:Subtype": {"ValueString": "connect:SMS"}})
    assert {e.channel for e in parse(detail)} == {Channel.MESSAGING}


def test_outbound_and_monitor_contacts() -> None:
    detail = load(f"{CORPUS}/contact_a_02_queued.json")["detail"]
    detail["initiationMethod"] = "OUTBOUND"
    assert {e.direction for e in parse(detail)} == {Direction.OUTBOUND}
    detail["initiationMethod"] = "MONITOR"  # a supervisor listening in: not a customer contact
    assert parse(detail) == []


def test_a_record_still_goes_to_the_record_adapter_with_its_contact_as_scope() -> None:
    events = parse(load(f"{CORPUS}/chain_contact_1_record.json"))
    assert {(e.provisional, e.scope) for e in events} == {(False, A)}
    assert EventType.TRANSFER_BLIND in {e.event_type for e in events}


@pytest.mark.parametrize(
    ("change", "reason", "where"),
    [
        (
            lambda p: p.update({"detail-type": "Contact Lens Realtime Rules Matched"}),
            "unknown_event_type",
            "detail-type",
        ),
        (lambda p: p.update(source="aws.partner/genesys.com"), "schema", "source"),
        (lambda p: p["detail"].update(eventType="TELEPORTED"), "unknown_event_type", "eventType"),
        (lambda p: p["detail"].update(initiationMethod="PIGEON"), "unknown_event_type", "initiationMethod"),
        (lambda p: p["detail"].pop("contactId"), "missing_field", "contactId"),
        (lambda p: p["detail"].update(channel="FAX"), "unknown_channel", "channel"),
        (
            lambda p: p["detail"]["queueInfo"].update(enqueueTimestamp="yesterday"),
            "bad_timestamp",
            "enqueueTimestamp",
        ),
        (lambda p: p["detail"].update(queueInfo="Basic"), "schema", "queueInfo"),
        (lambda p: p["detail"]["tags"].update(tenant="globex"), "tenant_mismatch", "tenant"),
    ],
)
def test_rejections_name_the_field(change: Any, reason: str, where: str) -> None:
    payload = load(f"{CORPUS}/contact_a_02_queued.json")
    change(payload)
    with pytest.raises(AdapterError) as raised:
        parse(payload)
    assert (raised.value.reason, where in raised.value.detail) == (reason, True)


def test_acw_that_ends_before_it_starts_is_rejected() -> None:
    payload = load(f"{CORPUS}/contact_a_05_completed.json")
    payload["detail"]["agentInfo"]["afterContactWorkEndTimestamp"] = "2022-01-05T17:28:00.000Z"
    with pytest.raises(AdapterError) as raised:
        parse(payload)
    assert raised.value.reason == "bad_timestamp"
