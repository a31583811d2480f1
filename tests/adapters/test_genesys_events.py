"""Genesys Cloud conversation detail events (notification and EventBridge shapes) → provisional events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from support.source_records import FIXTURES, corpus_received_at, load

from stitchboard.adapters import genesys_events, normalise
from stitchboard.deadletters import AdapterError, DeadLetter
from stitchboard.events import CanonicalEvent, Channel, CustomerIds, Direction, EventType

RECEIVED = datetime(2024, 4, 29, 18, 0, tzinfo=UTC)
CORPUS = "corpus/genesys_events"
CONVERSATION = "32d23263-e5bd-4567-bff3-143e38f7b095"
ACD_LEG = "7fb7130d-e76c-450f-8bcd-72a730bacb0a"
QUEUE = "39988345-a7c5-4ce5-851e-334cb54efc79"
AGENT = "2eb54224-120e-47b0-aab1-8c2daeac20d9"


def at(clock: str) -> datetime:
    return datetime.fromisoformat(f"2024-04-29T{clock}+00:00")


def parse(payload: dict[str, Any]) -> list[CanonicalEvent]:
    return genesys_events.parse(payload, "acme", RECEIVED)


def rows(events: list[CanonicalEvent]) -> list[tuple[Any, ...]]:
    return [
        (e.event_type.value, e.event_time, e.leg_id, e.queue, e.agent, e.attributes, e.sequence)
        for e in events
    ]


def body_of(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["detail"]["eventBody"] if "detail" in payload else payload["eventBody"]


@pytest.mark.parametrize("name", ["eventbridge_customer_start.json", "eventbridge_customer_end.json"])
def test_class_9_the_genesys_blueprint_eventbridge_samples_are_accepted(name: str) -> None:
    """#11 class 9, failing first: the EventBridge events of Genesys's own streaming blueprint were
    dead-lettered (a record without ``conversationId``); they are now provisional events."""
    payload = (FIXTURES / "genesys_events" / name).read_bytes()
    raw = (
        b'{"tenant":"acme","source":"genesys","received_at":"2022-04-06T09:31:46Z","payload":'
        + payload
        + b"}"
    )
    events = normalise(raw)
    assert not isinstance(events, DeadLetter), events
    assert [e.event_type for e in events] == [
        EventType.ARRIVED if name.endswith("start.json") else EventType.DISCONNECTED
    ]
    (event,) = events
    assert (event.conversation_id, event.channel, event.direction) == (
        "2f7bf00a-0fc2-4d6a-9b56-92238191433e",
        Channel.CHAT,
        Direction.INBOUND,
    )
    assert (event.provisional, event.scope) == (True, "2f7bf00a-0fc2-4d6a-9b56-92238191433e")


def test_class_9_every_corpus_event_is_accepted_through_normalise() -> None:
    """#11 class 9: every streamed payload of the corpus group is accepted (none is an unknown shape)."""
    received = corpus_received_at(CORPUS)
    for path in sorted((FIXTURES / CORPUS).glob("voice_*_0*.json")):
        stamp = received[path.name].encode()
        raw = b'{"tenant":"acme","source":"genesys","received_at":"' + stamp + b'","payload":'
        events = normalise(raw + path.read_bytes() + b"}")
        assert not isinstance(events, DeadLetter), (path.name, events)
        assert all(e.provisional and e.scope == e.conversation_id for e in events), path.name


def test_a_whole_call_maps_to_the_record_adapters_leg_and_ids() -> None:
    names = [
        "01_customer_start",
        "02_flow_start",
        "03_flow_end",
        "04_acd_start",
        "05_user_start",
        "06_acd_end",
        "07_customer_end",
        "08_user_end",
        "09_acw",
    ]
    events = [e for name in names for e in parse(load(f"{CORPUS}/voice_answered_{name}.json"))]
    assert rows(events) == [
        ("arrived", at("17:30:43.077"), None, None, None, {}, 0),
        ("queued", at("17:31:47.638"), ACD_LEG, QUEUE, None, {}, 0),
        ("answered", at("17:32:00.063"), ACD_LEG, QUEUE, AGENT, {}, 0),
        ("disconnected", at("17:38:14.971"), None, None, None, {}, 0),
        ("acw_start", at("17:38:14.974"), None, QUEUE, AGENT, {}, 0),
        ("acw_end", at("17:38:17.974"), None, QUEUE, AGENT, {}, 0),
        (
            "wrapup_set",
            at("17:38:17.974"),
            None,
            QUEUE,
            AGENT,
            {"code": "ININ-WRAP-UP-TIMEOUT"},
            1714412297974,
        ),
    ]
    assert {(e.conversation_id, e.scope, e.provisional, e.source) for e in events} == {
        (CONVERSATION, CONVERSATION, True, "genesys")
    }
    assert events[0].customer == CustomerIds(
        phone_hash="sha256:8cac6c5234386eef", account_hash="d281ff23-af8a-48da-8ce3-7a7296405d4d"
    )
    record_ids = {e.event_id for e in normalise_record()}
    assert record_ids.isdisjoint(e.event_id for e in events)  # the record replaces, never collides


def normalise_record() -> list[CanonicalEvent]:
    return genesys_events.parse(load(f"{CORPUS}/voice_answered_record.json"), "acme", RECEIVED)


def test_notification_and_eventbridge_wrappings_give_the_same_events() -> None:
    wrapped = load(f"{CORPUS}/voice_answered_04_acd_start.json")
    notification = wrapped["detail"]
    notification.pop("timestamp")
    assert parse(wrapped) == parse(notification)


def test_a_redelivered_event_has_the_same_ids() -> None:
    payload = load(f"{CORPUS}/voice_answered_06_acd_end.json")
    assert [e.event_id for e in parse(payload)] == [e.event_id for e in parse(copy.deepcopy(payload))]


def test_presence_still_arrives_as_a_notification_and_through_eventbridge() -> None:
    note = load("genesys/user_presence.json")
    wrapped = {
        "version": "0",
        "detail-type": "v2.users.{id}.presence",
        "source": "aws.partner/genesys.com/cloud/org/bus",
        "detail": note,
    }
    for payload in (note, wrapped):
        (event,) = genesys_events.parse(payload, "acme", RECEIVED)
        assert (event.event_type, event.agent, event.attributes) == (
            EventType.AGENT_STATE_CHANGED,
            "ann.lee",
            {"state": "available"},
        )
        assert not event.provisional


def test_a_record_still_goes_to_the_record_adapter_with_its_conversation_as_scope() -> None:
    events = normalise_record()
    assert {(e.provisional, e.scope) for e in events} == {(False, CONVERSATION)}
    assert events[0].scope is events[0].conversation_id  # one string for both


@pytest.mark.parametrize(
    ("name", "outcome", "expected"),
    [
        ("voice_abandoned_03_acd_end.json", None, [("abandoned", "PEER")]),
        ("voice_answered_06_acd_end.json", "FLOW_OUT", []),
        ("voice_answered_06_acd_end.json", "UNKNOWN", []),
    ],
)
def test_acd_end_outcomes(name: str, outcome: str | None, expected: list[tuple[str, str]]) -> None:
    payload = load(f"{CORPUS}/{name}")
    if outcome is not None:
        body_of(payload)["acdOutcome"] = outcome
    events = parse(payload)
    assert [e.event_type.value for e in events] == [kind for kind, _ in expected]


def test_acd_end_without_acd_outcome_reads_the_answering_user_or_the_disconnect() -> None:
    answered = load(f"{CORPUS}/voice_answered_06_acd_end.json")
    del body_of(answered)["acdOutcome"]
    assert [(e.event_type, e.agent) for e in parse(answered)] == [(EventType.ANSWERED, AGENT)]
    abandoned = load(f"{CORPUS}/voice_abandoned_03_acd_end.json")
    del body_of(abandoned)["acdOutcome"]
    assert [e.event_type for e in parse(abandoned)] == [EventType.ABANDONED]
    transferred = load(f"{CORPUS}/voice_abandoned_03_acd_end.json")
    del body_of(transferred)["acdOutcome"]
    body_of(transferred)["disconnectType"] = "TRANSFER"
    assert parse(transferred) == []  # left the queue some other way: nothing invented


def test_user_end_reports_held_time_and_transfers_of_an_agent_who_interacted() -> None:
    payload = load(f"{CORPUS}/voice_answered_08_user_end.json")
    body = body_of(payload)
    assert parse(payload) == []  # ended by the peer, no hold: the customer's end ends the talk
    body.update(disconnectType="CONSULT_TRANSFER", heldDurationMs=45_000)
    assert rows(parse(payload)) == [
        ("hold", at("17:38:14.974"), None, QUEUE, AGENT, {"duration_ms": 45_000, "count": 0}, 0),
        ("transfer_consult", at("17:38:14.974"), None, QUEUE, AGENT, {}, 0),
    ]
    body["interactingDurationMs"] = 0  # an offer the agent never took (alert only)
    assert parse(payload) == []
    del body["interactingDurationMs"]
    assert parse(payload) == []


def test_acw_without_its_duration_still_ends_after_call_work() -> None:
    payload = load(f"{CORPUS}/voice_answered_09_acw.json")
    del body_of(payload)["wrapupDurationMs"]
    assert [e.event_type for e in parse(payload)] == [EventType.ACW_END, EventType.WRAPUP_SET]


@pytest.mark.parametrize(
    "topic", ["user.start", "flow.start", "flow.end", "flow.outcome", "outbound", "attributes", "wrapup"]
)
def test_documented_topics_without_live_figures_are_accepted_and_carry_nothing(topic: str) -> None:
    payload = load(f"{CORPUS}/voice_abandoned_01_customer_start.json")
    payload["topicName"] = f"v2.detail.events.conversation.5e0c7a41-2d8b-4f6e-9c13-7a2b8d4e6f10.{topic}"
    assert parse(payload) == []


def test_optional_fields_absent() -> None:
    payload = load(f"{CORPUS}/voice_abandoned_02_acd_start.json")
    body = payload["eventBody"]
    for key in ("participantId", "sessionId", "direction", "ani", "dnis", "provider", "conversationId"):
        del body[key]
    (event,) = parse(payload)  # the queue visit is keyed by queue; the conversation from the topic
    assert (event.conversation_id, event.leg_id, event.queue, event.direction) == (
        "5e0c7a41-2d8b-4f6e-9c13-7a2b8d4e6f10",
        None,
        QUEUE,
        Direction.INBOUND,
    )
    del body["queueId"]
    assert parse(payload) == []  # an offer needs a queue


@pytest.mark.parametrize(
    ("change", "reason", "where"),
    [
        (
            lambda p: p.update(topicName="v2.detail.events.conversation.c1.surprise"),
            "unknown_event_type",
            "topicName",
        ),
        (lambda p: p.update(topicName="v2.routing.queues.q1.users"), "unknown_event_type", "topicName"),
        (lambda p: p["eventBody"].pop("eventTime"), "missing_field", "eventTime"),
        (lambda p: p["eventBody"].update(eventTime="2024-04-29T17:31:58Z"), "schema", "eventTime"),
        (lambda p: p["eventBody"].update(eventTime=1), "bad_timestamp", "eventTime"),
        (lambda p: p["eventBody"].update(mediaType="COBROWSE"), "unknown_channel", "mediaType"),
        (lambda p: p["eventBody"].update(direction="SIDEWAYS"), "schema", "direction"),
        (lambda p: p["eventBody"].update(acdOutcome="MAYBE"), "unknown_event_type", "acdOutcome"),
        (lambda p: p["eventBody"].update(conversationId="other"), "schema", "conversationId"),
        (lambda p: p["eventBody"].update(organizationId="globex"), "tenant_mismatch", "organizationId"),
    ],
)
def test_rejections_name_the_field(change: Any, reason: str, where: str) -> None:
    payload = load(f"{CORPUS}/voice_abandoned_03_acd_end.json")
    change(payload)
    with pytest.raises(AdapterError) as raised:
        parse(payload)
    assert (raised.value.reason, where in raised.value.detail) == (reason, True)


def test_an_eventbridge_event_from_another_source_is_rejected() -> None:
    payload = load(f"{CORPUS}/voice_answered_04_acd_start.json")
    payload["source"] = "aws.connect"
    with pytest.raises(AdapterError) as raised:
        parse(payload)
    assert raised.value.reason == "schema"


def test_the_envelope_bytes_of_a_wrapped_event_round_trip() -> None:
    payload = load(f"{CORPUS}/voice_answered_07_customer_end.json")
    raw = orjson.dumps(
        {"tenant": "acme", "source": "genesys", "received_at": "2024-04-29T17:38:16Z", "payload": payload}
    )
    events = normalise(raw)
    assert isinstance(events, list) and [e.event_type for e in events] == [EventType.DISCONNECTED]
