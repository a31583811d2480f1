"""Amazon Connect contact records as Connect really sends them (tests/fixtures/corpus/connect_records).

Each test feeds real-shaped records through the adapter and the stitcher, the way the flow does,
and checks what the conversation and its contributions say. Provenance of every payload is in the
corpus manifest.
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from support.source_records import load

from stitchboard.adapters import connect
from stitchboard.conversation import Conversation
from stitchboard.deadletters import AdapterError
from stitchboard.events import CanonicalEvent, Channel, CustomerIds, Direction, EventType
from stitchboard.metrics import contribution_values
from stitchboard.settings import TenantSettings
from stitchboard.stitching.stitch import stitch_group
from stitchboard.stitching.store import AddResult, ConversationState

TENANT = "acme"
RECEIVED = datetime(2024, 8, 2, 18, 0, tzinfo=UTC)
SETTINGS = TenantSettings()
# queues and agents are keyed by the id that ends their ARN (the records' Queue.Name in comments)
REFRIG = "078ccbaa-ae69-4bf9-84bc-5c60ca9b1478"  # TCC Refrig AC LLA
OVERFLOW = "5d1e7a7c-2b0f-4f21-8a8e-0b9c4e6f1a10"  # TCC Overflow
GENERAL = "8f3c2d41-6a5b-4e7d-9c0b-1d2e3f4a5b11"  # TCC General
BASIC = "c677a7a5-1d56-4ce3-a890-79fc53f7fe3f"  # BasicQueue
INBOUND = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c51"  # InboundQueue
CALLBACK = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c52"  # CallbackQueue


def record(name: str) -> dict[str, Any]:
    return load(f"corpus/connect_records/{name}.json")


def replay(*records: dict[str, Any]) -> tuple[Conversation, ConversationState, list[AddResult]]:
    """Stitch the records of one conversation in the given order, one group per record."""
    state: ConversationState | None = None
    results: list[AddResult] = []
    for payload in records:
        events = connect.parse(payload, TENANT, RECEIVED)
        outcome = stitch_group(state, events, SETTINGS)
        assert not outcome.dead_letters, [letter.detail for letter in outcome.dead_letters]
        state = outcome.state
        results.extend(outcome.results)
    assert state is not None
    return state.conversation(), state, results


def totals(conversation: Conversation) -> Counter[tuple[str, str]]:
    """Contributions summed per (queue, metric), whatever their instant."""
    summed: Counter[tuple[str, str]] = Counter()
    for (queue, metric, _), value in contribution_values(conversation, SETTINGS).items():
        summed[(queue, metric)] += value
    return summed


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def of_type(events: list[CanonicalEvent], kind: EventType) -> list[CanonicalEvent]:
    return [event for event in events if event.event_type is kind]


# --- #11 class 7: conversations end when the source says they ended --------------------------------


def test_external_transfer_without_next_contact_ends_at_the_disconnect() -> None:
    payload = record("voice_external_transfer")
    events = connect.parse(payload, TENANT, RECEIVED)
    (transfer,) = of_type(events, EventType.TRANSFER_BLIND)
    (disconnect,) = of_type(events, EventType.DISCONNECTED)
    assert transfer.event_time == at("2022-01-05T17:28:12Z")
    assert disconnect.event_time == at("2022-01-05T17:47:28Z")
    conversation, _, _ = replay(payload)
    assert conversation.ended_at == at("2022-01-05T17:47:28Z")
    (leg,) = conversation.legs
    assert (leg.talk_ms, leg.hold_ms, leg.acw_ms, leg.transfer_at) == (
        239_000,
        221_000,
        5_000,
        transfer.event_time,
    )
    figures = totals(conversation)
    assert figures[(REFRIG, "transferred_out")] == 1
    assert figures[(REFRIG, "handled")] == 1


def test_transfer_to_a_next_contact_keeps_the_conversation_going() -> None:
    first, second = record("voice_agent_transfer_1"), record("voice_agent_transfer_2")
    assert not of_type(connect.parse(first, TENANT, RECEIVED), EventType.DISCONNECTED)
    conversation, _, _ = replay(first)
    assert conversation.ended_at is None
    conversation, _, _ = replay(first, second)
    assert conversation.ended_at == at("2024-08-02T17:51:37Z")
    assert [leg.transfer_at is not None for leg in conversation.legs] == [True, False]
    assert totals(conversation)[(BASIC, "transferred_out")] == 1


def test_external_transfer_with_a_consult_leg_ends_when_that_leg_disconnects() -> None:
    first, leg = record("voice_external_transfer_leg_1"), record("voice_external_transfer_leg_2")
    assert replay(first)[0].ended_at is None
    conversation, _, _ = replay(first, leg)
    assert conversation.ended_at == at("2024-08-02T16:21:40Z")
    assert len(conversation.legs) == 1
    assert conversation.customer_keys == ("phone:37729949016e5644",)
    assert {e.direction for e in connect.parse(leg, TENANT, RECEIVED)} == {Direction.INBOUND}


def test_consult_without_transfer_ends_with_the_customers_contact() -> None:
    first, consult = record("voice_agent_consult_1"), record("voice_agent_consult_2")
    ids = [
        of_type(connect.parse(r, TENANT, RECEIVED), EventType.DISCONNECTED)[0].event_id
        for r in (first, consult)
    ]
    assert ids[0] != ids[1]
    for order in ((first, consult), (consult, first)):
        conversation, _, _ = replay(*order)
        assert conversation.ended_at == at("2024-08-02T17:51:10Z")
        assert all(leg.transfer_at is None for leg in conversation.legs)


# --- unanswered contacts continued by a next contact -------------------------------------------------


def test_callback_request_is_not_an_abandon() -> None:
    conversation, _, _ = replay(record("voice_callback_1"), record("voice_callback_2"))
    figures = totals(conversation)
    assert figures[(INBOUND, "offered")] == 1
    assert figures[(INBOUND, "abandoned")] == 0
    assert figures[(CALLBACK, "answer_wait_ms")] == 46_000
    assert conversation.ended_at == at("2023-04-21T11:45:00Z")
    assert sum(leg.transfer_at is not None for leg in conversation.legs) == 1


def test_queue_to_queue_chain_offers_each_queue_once_and_abandons_none() -> None:
    chain = [record(f"voice_queue_chain_{n}") for n in (1, 2, 3)]
    conversation, _, _ = replay(*chain)
    figures = totals(conversation)
    assert [figures[(queue, "offered")] for queue in (REFRIG, OVERFLOW, GENERAL)] == [1, 1, 1]
    assert sum(value for (_, metric), value in figures.items() if metric == "abandoned") == 0
    assert conversation.ended_at == at("2022-01-05T17:25:31Z")
    assert [leg.transfer_at is not None for leg in conversation.legs] == [True, True, False]


def test_queue_abandon_without_next_contact_is_an_abandon() -> None:
    conversation, _, _ = replay(record("voice_queue_abandon"))
    assert totals(conversation)[(REFRIG, "abandon_wait_ms")] == 104_000
    assert conversation.ended_at == at("2022-01-05T17:16:30Z")


# --- re-deliveries -------------------------------------------------------------------------------------


def test_redelivered_records_repeat_every_event() -> None:
    deliveries = [record(f"voice_redelivered_{n}") for n in (1, 1, 2, 2, 3, 3)]
    first = connect.parse(deliveries[0], TENANT, RECEIVED)
    for payload in deliveries[1:]:
        again = connect.parse(payload, TENANT, RECEIVED)
        assert [e.model_dump(exclude={"ingest_time"}) for e in again] == [
            e.model_dump(exclude={"ingest_time"}) for e in first
        ]
    _, _, results = replay(*deliveries)
    assert results.count(AddResult.APPLIED) == len(first)


def test_wrapup_set_then_corrected_through_contact_attributes() -> None:
    deliveries = [record(f"voice_wrapup_update_{n}") for n in (1, 2, 3)]
    conversation, _, _ = replay(*deliveries)
    assert conversation.legs[0].wrapup_code == "escalated"
    conversation, _, results = replay(deliveries[0], deliveries[2], deliveries[1])
    assert conversation.legs[0].wrapup_code == "escalated"
    assert AddResult.STALE in results


# --- every field Connect documents as conditional may be absent ------------------------------------

NULLABLE = [
    ("Agent",),
    ("Queue",),
    ("Attributes",),
    ("Tags",),
    ("SegmentAttributes",),
    ("CustomerEndpoint",),
    ("SystemEndpoint",),
    ("DisconnectReason",),
    ("LastUpdateTimestamp",),
    ("InitialContactId",),
    ("PreviousContactId",),
    ("NextContactId",),
    ("TransferCompletedTimestamp",),
    ("TransferredToEndpoint",),
    ("ConnectedToSystemTimestamp",),
    ("Recording",),
    ("Recordings",),
    ("MediaStreams",),
    ("Agent", "Username"),
    ("Agent", "ConnectedToAgentTimestamp"),
    ("Agent", "CustomerHoldDuration"),
    ("Agent", "NumberOfHolds"),
    ("Agent", "LongestHoldDuration"),
    ("Agent", "AgentInteractionDuration"),
    ("Agent", "AfterContactWorkStartTimestamp"),
    ("Agent", "AfterContactWorkEndTimestamp"),
    ("Agent", "AfterContactWorkDuration"),
    ("Agent", "HierarchyGroups"),
    ("Agent", "RoutingProfile"),
    ("Queue", "Name"),
    ("Queue", "EnqueueTimestamp"),
    ("Queue", "DequeueTimestamp"),
    ("Queue", "Duration"),
    ("CustomerEndpoint", "Address"),
    ("CustomerEndpoint", "Type"),
]


@pytest.mark.parametrize("path", NULLABLE, ids=".".join)
@pytest.mark.parametrize("name", ["voice_external_transfer", "voice_queue_abandon", "voice_wrapup_update_3"])
def test_documented_conditional_fields_never_reject_a_record(name: str, path: tuple[str, ...]) -> None:
    for absent in ("null", "missing"):
        payload = copy.deepcopy(record(name))
        parent = payload
        for key in path[:-1]:
            parent = parent.get(key) or {}
        if absent == "null":
            parent[path[-1]] = None
        else:
            parent.pop(path[-1], None)
        assert connect.parse(payload, TENANT, RECEIVED)


def test_a_record_with_every_conditional_field_null_counts_its_answered_leg() -> None:
    conversation, _, _ = replay(record("voice_nulls"))
    (leg,) = conversation.legs
    assert (leg.queue, leg.agent) == (REFRIG, "e7c9afb6-b1e1-4afa-b5b5-d1c9bc752b69")
    assert (leg.answer_wait_ms, leg.talk_ms, leg.handle_ms) == (20_000, 240_000, 240_000)
    assert conversation.ended_at == at("2022-01-05T17:19:06Z")


def test_queue_and_agent_are_the_ids_that_end_their_arns() -> None:
    """The key rule contact events need too (they carry no names): the ARN's id, whatever the name;
    the name only for a record without an ARN; neither is a missing field."""
    agent = "e7c9afb6-b1e1-4afa-b5b5-d1c9bc752b69"
    (leg,) = replay(record("voice_answered"))[0].legs
    assert (leg.queue, leg.agent) == (REFRIG, agent)  # not "TCC Refrig AC LLA", "agent-e7c9afb6"
    agent_queue = replay(record("voice_agent_transfer_2"))[0].legs[0]  # .../queue/agent/<agent id>
    assert agent_queue.queue == agent_queue.agent == "4c0d2a63-8e4f-4b9c-8a32-6d7e8f9a0b02"
    unnamed = record("voice_answered")
    del unnamed["Queue"]["ARN"], unnamed["Agent"]["ARN"]
    (leg,) = replay(unnamed)[0].legs
    assert (leg.queue, leg.agent) == ("TCC Refrig AC LLA", "agent-e7c9afb6")
    del unnamed["Queue"]["Name"]
    with pytest.raises(AdapterError) as caught:
        connect.parse(unnamed, TENANT, RECEIVED)
    assert (caught.value.reason, "payload.Queue.ARN" in caught.value.detail) == ("missing_field", True)


def test_agent_never_connected_is_an_unanswered_leg() -> None:
    payload = record("voice_queue_abandon")
    payload["Agent"] = {
        "ARN": "arn:aws:connect:us-east-1:1:instance/x/agent/a1",
        "ConnectedToAgentTimestamp": None,
    }
    conversation, _, _ = replay(payload)
    assert conversation.legs[0].answered_at is None
    assert conversation.legs[0].abandoned_at == at("2022-01-05T17:16:30Z")


def test_attributes_the_adapter_does_not_read_may_hold_any_json() -> None:
    payload = record("voice_answered")
    payload["Attributes"]["sfdc-UserInputNum__c"] = 10
    assert connect.parse(payload, TENANT, RECEIVED)
    payload["Attributes"]["intent"] = 10
    with pytest.raises(AdapterError) as caught:
        connect.parse(payload, TENANT, RECEIVED)
    assert (caught.value.reason, "payload.Attributes.intent" in caught.value.detail) == ("schema", True)


# --- channels, initiation methods and chains -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "channel", "customer"),
    [
        ("chat_answered", Channel.CHAT, CustomerIds()),
        ("task_completed", Channel.WEB_FORM, CustomerIds()),
        ("email_answered", Channel.EMAIL, CustomerIds(email_hash="6b86b273ff34fce1")),
        ("voice_callback_2", Channel.CALLBACK, CustomerIds(phone_hash="37729949016e5644")),
    ],
)
def test_channels_of_real_shaped_records(name: str, channel: Channel, customer: CustomerIds) -> None:
    payload = record(name)
    tenant = (payload.get("Tags") or {}).get("tenant", TENANT)
    events = connect.parse(payload, tenant, RECEIVED)
    assert {(e.channel, e.customer) for e in events} == {(channel, customer)}


def test_monitor_contact_is_not_a_customer_contact() -> None:
    payload = record("voice_answered") | {"InitiationMethod": "MONITOR", "Queue": None}
    assert connect.parse(payload, TENANT, RECEIVED) == []


def test_chain_member_without_initial_contact_id_joins_its_previous_contact() -> None:
    payload = record("voice_callback_2") | {"InitialContactId": None}
    assert {e.conversation_id for e in connect.parse(payload, TENANT, RECEIVED)} == {
        "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b41"
    }
