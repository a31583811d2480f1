"""Amazon Connect contact records and agent events → exact canonical events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from support.source_records import load, ms, summary, t

from stitchboard.adapters import connect
from stitchboard.deadletters import AdapterError
from stitchboard.events import Channel, CustomerIds, Direction

RECEIVED = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
CONVERSATION = "3f6e2b1a-8c4d-4e5f-9a7b-1c2d3e4f5a6b"
LEG2 = "7d1c0c7e-0b51-4a43-9d0f-2a8a4f0c1a02"


def test_first_contact_transferred_out() -> None:
    events = connect.parse(load("connect/voice_leg1_transferred.json"), "acme", RECEIVED)
    leg = CONVERSATION
    assert summary(events) == [
        ("arrived", t("08:00:00"), None, None, None, {}, 0),
        ("ivr_step", t("08:00:00"), None, None, None, {"node": "welcome"}, 0),
        ("ivr_step", t("08:00:15"), None, None, None, {"node": "main_menu"}, 0),
        ("queued", t("08:00:40"), leg, "billing", None, {}, 0),
        ("answered", t("08:00:55"), leg, "billing", "ann.lee", {}, 0),
        ("hold", t("08:00:55"), leg, "billing", "ann.lee", {"duration_ms": 30000, "count": 1}, 0),
        ("acw_start", t("08:03:20"), leg, "billing", "ann.lee", {}, 0),
        ("transfer_blind", t("08:03:20"), leg, "billing", "ann.lee", {"target_queue": "tech"}, 0),
        ("wrapup_set", t("08:03:45"), leg, "billing", "ann.lee", {"code": "transferred"}, ms("08:03:45")),
        ("acw_end", t("08:03:50"), leg, "billing", "ann.lee", {}, 0),
    ]
    assert {(e.conversation_id, e.channel, e.direction, e.intent) for e in events} == {
        (CONVERSATION, Channel.VOICE, Direction.INBOUND, "billing")
    }
    assert {e.customer for e in events} == {
        CustomerIds(phone_hash="9f86d081884c7d65", account_hash="acct-2c26b46b")
    }


def test_transferred_contact_answered_and_disconnected() -> None:
    events = connect.parse(load("connect/voice_leg2_answered.json"), "acme", RECEIVED)
    assert summary(events) == [
        ("queued", t("08:03:20"), LEG2, "tech", None, {}, 0),
        ("answered", t("08:03:32"), LEG2, "tech", "bob.ray", {}, 0),
        ("acw_start", t("08:08:20"), LEG2, "tech", "bob.ray", {}, 0),
        ("disconnected", t("08:08:20"), LEG2, "tech", "bob.ray", {}, 0),
        ("acw_end", t("08:09:20"), LEG2, "tech", "bob.ray", {}, 0),
        ("wrapup_set", t("09:00:00"), LEG2, "tech", "bob.ray", {"code": "resolved"}, ms("09:00:00")),
        ("qa_score_set", t("10:00:00"), LEG2, "tech", "bob.ray", {"score": 88}, ms("10:00:00")),
    ]
    assert {e.conversation_id for e in events} == {CONVERSATION}


def test_chat_abandoned_and_ivr_contained() -> None:
    chat = connect.parse(load("connect/chat_abandoned.json"), "acme", RECEIVED)
    leg = "c0ffee00-1111-4222-8333-444455556666"
    assert summary(chat) == [
        ("arrived", t("08:00:00"), None, None, None, {}, 0),
        ("queued", t("08:00:00"), leg, "support", None, {}, 0),
        ("abandoned", t("08:00:06"), leg, "support", None, {}, 0),
        ("disconnected", t("08:00:06"), None, None, None, {}, 0),
    ]
    ivr = connect.parse(load("connect/ivr_contained.json"), "acme", RECEIVED)
    assert summary(ivr)[-1] == ("disconnected", t("08:01:35"), None, None, None, {"self_served": True}, 0)
    assert [e.attributes["node"] for e in ivr if e.event_type.value == "ivr_step"] == [
        "welcome",
        "main_menu",
        "self_service",
    ]


def test_channel_subtypes_and_callbacks() -> None:
    record = load("connect/chat_abandoned.json")
    record["SegmentAttributes"]["connect:Subtype"]["ValueString"] = "connect:SMS"
    assert connect.parse(record, "acme", RECEIVED)[0].channel is Channel.MESSAGING
    record["Channel"], record["InitiationMethod"] = "VOICE", "CALLBACK"
    del record["SegmentAttributes"]
    assert connect.parse(record, "acme", RECEIVED)[0].channel is Channel.CALLBACK


def test_update_with_new_wrapup_keeps_ids_and_raises_only_its_sequence() -> None:
    record = load("connect/voice_leg2_answered.json")
    before = {e.event_id: e for e in connect.parse(record, "acme", RECEIVED)}
    updated = copy.deepcopy(record)
    updated["Attributes"].update(wrapupCode="escalated", wrapupSetAt="2026-03-29T11:00:00Z")
    updated["LastUpdateTimestamp"] = "2026-03-29T11:00:00Z"
    after = {e.event_id: e for e in connect.parse(updated, "acme", RECEIVED)}
    assert before.keys() == after.keys()
    (changed,) = [eid for eid in before if before[eid] != after[eid]]
    assert (after[changed].attributes, after[changed].sequence) == ({"code": "escalated"}, ms("11:00:00"))


def test_agent_events() -> None:
    (event,) = connect.parse_agent_event(load("connect_agent/state_change.json"), "acme", RECEIVED)
    assert (event.event_type.value, event.agent, event.attributes, event.event_time, event.source) == (
        "agent_state_changed",
        "ann.lee",
        {"state": "away"},
        t("08:00:03"),
        "connect_agent",
    )
    assert connect.parse_agent_event(load("connect_agent/heart_beat.json"), "acme", RECEIVED) == []
    renamed = load("connect_agent/state_change.json")
    renamed["CurrentAgentSnapshot"]["Configuration"]["Username"] = "a.lee@example.com"
    assert connect.parse_agent_event(renamed, "acme", RECEIVED)[0].agent == "ann.lee"  # the ARN's id
    del renamed["AgentARN"]
    assert connect.parse_agent_event(renamed, "acme", RECEIVED)[0].agent == "a.lee@example.com"
    logout = load("connect_agent/state_change.json")
    logout["EventType"] = "LOGOUT"
    assert connect.parse_agent_event(logout, "acme", RECEIVED)[0].attributes == {"state": "offline"}


@pytest.mark.parametrize(
    ("mutate", "reason", "field"),
    [
        (lambda r: r.pop("ContactId"), "missing_field", "payload.ContactId"),
        (lambda r: r.update(Tags={"tenant": "globex"}), "tenant_mismatch", "payload.Tags.tenant"),
        (lambda r: r.update(Channel="FAX"), "unknown_channel", "payload.Channel"),
        (lambda r: r.update(InitiationMethod="TELEPORT"), "unknown_event_type", "payload.InitiationMethod"),
        (
            lambda r: r.update(DisconnectTimestamp="2026-03-29T07:00:00Z"),
            "bad_timestamp",
            "DisconnectTimestamp",
        ),
        (lambda r: r["Agent"].update(NumberOfHolds="two"), "schema", "payload.Agent.NumberOfHolds"),
        (lambda r: r["Attributes"].update(qaScore="excellent"), "schema", "payload.Attributes.qaScore"),
        (lambda r: r["Attributes"].update(transferType="warm"), "schema", "payload.Attributes.transferType"),
    ],
)
def test_rejections_name_the_field(mutate: Any, reason: str, field: str) -> None:
    record = load("connect/voice_leg2_answered.json")
    record["Attributes"]["transferType"] = "blind"
    record["TransferCompletedTimestamp"] = "2026-03-29T08:08:20Z"
    mutate(record)
    with pytest.raises(AdapterError) as caught:
        connect.parse(record, "acme", RECEIVED)
    assert caught.value.reason == reason
    assert field in caught.value.detail


def test_unknown_agent_event_type() -> None:
    record = load("connect_agent/state_change.json")
    record["EventType"] = "TELEPORT"
    with pytest.raises(AdapterError) as caught:
        connect.parse_agent_event(record, "acme", RECEIVED)
    assert caught.value.reason == "unknown_event_type"
