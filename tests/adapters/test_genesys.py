"""Genesys detail records and presence notifications → exact canonical events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from support.source_records import load, ms, summary, t

from stitchboard.adapters import genesys
from stitchboard.deadletters import AdapterError
from stitchboard.events import Channel, CustomerIds, Direction

RECEIVED = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
LEG1, LEG2 = "7d1c0c7e-0b51-4a43-9d0f-2a8a4f0c1a01", "7d1c0c7e-0b51-4a43-9d0f-2a8a4f0c1a02"


def test_voice_record_with_ivr_transfer_holds_acw_wrapup_and_evaluation() -> None:
    events = genesys.parse(load("genesys/voice_ivr_transfer.json"), "acme", RECEIVED)
    expected = [
        ("arrived", t("08:00:00"), None, None, None, {}, 0),
        ("ivr_step", t("08:00:00"), None, None, None, {"node": "welcome"}, 0),
        ("ivr_step", t("08:00:15"), None, None, None, {"node": "main_menu"}, 0),
        ("queued", t("08:00:40"), LEG1, "billing", None, {}, 0),
        ("answered", t("08:00:55"), LEG1, "billing", "ann.lee", {}, 0),
        ("hold", t("08:01:10"), LEG1, "billing", "ann.lee", {}, 0),
        ("resume", t("08:01:40"), LEG1, "billing", "ann.lee", {}, 0),
        ("acw_start", t("08:03:20"), LEG1, "billing", "ann.lee", {}, 0),
        ("queued", t("08:03:20"), LEG2, "tech", None, {}, 0),
        ("transfer_blind", t("08:03:20"), LEG1, "billing", "ann.lee", {"target_queue": "tech"}, 0),
        ("answered", t("08:03:32"), LEG2, "tech", "bob.ray", {}, 0),
        ("wrapup_set", t("08:03:45"), LEG1, "billing", "ann.lee", {"code": "transferred"}, ms("08:03:45")),
        ("acw_end", t("08:03:50"), LEG1, "billing", "ann.lee", {}, 0),
        ("acw_start", t("08:08:20"), LEG2, "tech", "bob.ray", {}, 0),
        ("disconnected", t("08:08:20"), LEG2, "tech", "bob.ray", {}, 0),
        ("acw_end", t("08:09:20"), LEG2, "tech", "bob.ray", {}, 0),
        ("wrapup_set", t("09:00:00"), LEG2, "tech", "bob.ray", {"code": "resolved"}, ms("09:00:00")),
        ("qa_score_set", t("10:00:00"), LEG2, "tech", "bob.ray", {"score": 88}, ms("10:00:00")),
    ]
    assert summary(events) == expected
    assert {e.conversation_id for e in events} == {"3f6e2b1a-8c4d-4e5f-9a7b-1c2d3e4f5a6b"}
    assert {(e.channel, e.direction, e.intent, e.source, e.ingest_time) for e in events} == {
        (Channel.VOICE, Direction.INBOUND, "billing", "genesys", RECEIVED)
    }
    assert {e.customer for e in events} == {
        CustomerIds(phone_hash="9f86d081884c7d65", account_hash="acct-2c26b46b")
    }


def test_chat_abandoned_in_queue_ends_the_conversation() -> None:
    events = genesys.parse(load("genesys/chat_abandoned.json"), "acme", RECEIVED)
    leg = "c0ffee00-1111-4222-8333-444455556667"
    assert summary(events) == [
        ("arrived", t("08:00:00"), None, None, None, {}, 0),
        ("queued", t("08:00:00"), leg, "support", None, {}, 0),
        ("abandoned", t("08:00:06"), leg, "support", None, {}, 0),
        ("disconnected", t("08:00:06"), None, None, None, {}, 0),
    ]
    assert {(e.channel, e.customer.cookie_hash, e.intent) for e in events} == {
        (Channel.CHAT, "ck-fcde2b2e", None)
    }


def test_ivr_contained_marks_the_disconnect_self_served() -> None:
    events = genesys.parse(load("genesys/ivr_contained.json"), "acme", RECEIVED)
    assert summary(events) == [
        ("arrived", t("08:00:00"), None, None, None, {}, 0),
        ("ivr_step", t("08:00:00"), None, None, None, {"node": "welcome"}, 0),
        ("ivr_step", t("08:00:10"), None, None, None, {"node": "main_menu"}, 0),
        ("ivr_step", t("08:00:40"), None, None, None, {"node": "self_service"}, 0),
        ("disconnected", t("08:01:35"), None, None, None, {"self_served": True}, 0),
    ]


def test_ivr_hang_up_is_not_self_served() -> None:
    record = load("genesys/ivr_contained.json")
    ivr = next(p for p in record["participants"] if p["purpose"] == "ivr")
    ivr["sessions"][0]["segments"][-1]["disconnectType"] = "peer"
    (ending,) = [e for e in genesys.parse(record, "acme", RECEIVED) if e.event_type.value == "disconnected"]
    assert ending.attributes == {"self_served": False}


def test_redelivered_record_gives_identical_ids_and_a_changed_wrapup_a_higher_sequence() -> None:
    record = load("genesys/voice_ivr_transfer.json")
    first = genesys.parse(record, "acme", RECEIVED)
    again = genesys.parse(copy.deepcopy(record), "acme", RECEIVED)
    assert [e.event_id for e in first] == [e.event_id for e in again]
    changed = copy.deepcopy(record)
    agent = next(p for p in changed["participants"] if p.get("userId") == "bob.ray")
    agent["wrapup"] = {"code": "escalated", "endTime": "2026-03-29T11:00:00.000Z"}
    before = {e.event_id: e for e in first}
    after = {e.event_id: e for e in genesys.parse(changed, "acme", RECEIVED)}
    assert before.keys() == after.keys()
    differing = [eid for eid in before if before[eid] != after[eid]]
    (wrapup_id,) = differing
    assert after[wrapup_id].attributes == {"code": "escalated"}
    assert after[wrapup_id].sequence > before[wrapup_id].sequence


def test_wrapup_code_from_segment_when_no_wrapup_object() -> None:
    record = load("genesys/voice_ivr_transfer.json")
    agent = next(p for p in record["participants"] if p.get("userId") == "ann.lee")
    del agent["wrapup"]
    (wrapup,) = [
        e for e in genesys.parse(record, "acme", RECEIVED) if e.leg_id == LEG1 and e.attributes.get("code")
    ]
    assert (wrapup.attributes, wrapup.event_time) == ({"code": "transferred"}, t("08:03:50"))


def test_presence_notification() -> None:
    (event,) = genesys.parse(load("genesys/user_presence.json"), "acme", RECEIVED)
    assert (
        event.event_type.value,
        event.agent,
        event.attributes,
        event.event_time,
        event.conversation_id,
    ) == (
        "agent_state_changed",
        "ann.lee",
        {"state": "available"},
        t("08:00:03"),
        None,
    )


@pytest.mark.parametrize(
    ("mutate", "reason", "field"),
    [
        (lambda r: r.pop("conversationId"), "missing_field", "payload.conversationId"),
        (lambda r: r.update(organizationId="globex"), "tenant_mismatch", "payload.organizationId"),
        (lambda r: r.update(conversationEnd="2026-03-29T07:00:00Z"), "bad_timestamp", "payload.conversation"),
        (lambda r: r.update(conversationStart="yesterday"), "bad_timestamp", "payload.conversationStart"),
        (
            lambda r: r.update(conversationStart="1999-12-31T23:59:59Z"),
            "bad_timestamp",
            "payload.conversationStart",
        ),
        (
            lambda r: r["participants"][0]["sessions"][0].update(mediaType="fax"),
            "unknown_channel",
            "mediaType",
        ),
        (
            lambda r: r["participants"][2]["sessions"][0]["segments"][0].update(segmentType="xyz"),
            "unknown_event_type",
            "segmentType",
        ),
        (lambda r: r.update(participants="none"), "schema", "payload.participants"),
        (lambda r: r["evaluations"][0].update(oTotalScore=140), "out_of_range", "oTotalScore"),
    ],
)
def test_rejections_name_the_field(mutate: Any, reason: str, field: str) -> None:
    record = load("genesys/voice_ivr_transfer.json")
    mutate(record)
    with pytest.raises(AdapterError) as caught:
        genesys.parse(record, "acme", RECEIVED)
    assert caught.value.reason == reason
    assert field in caught.value.detail
