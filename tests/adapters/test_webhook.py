"""Offline-reporting webhooks → exact canonical events; overlapping webhooks share event ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from support.source_records import load, ms, summary, t

from stitchboard.adapters import webhook
from stitchboard.deadletters import AdapterError
from stitchboard.events import Channel, CustomerIds, Direction

RECEIVED = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
LEG1 = "7d1c0c7e-0b51-4a43-9d0f-2a8a4f0c1a01"


def test_contact_call_with_ivr_that_queued() -> None:
    events = webhook.parse(load("webhook/contact_call_ivr_queued.json"), "acme", RECEIVED)
    assert summary(events) == [
        ("arrived", t("08:00:00"), None, None, None, {}, 0),
        ("ivr_step", t("08:00:00"), None, None, None, {"node": "welcome"}, 0),
        ("ivr_step", t("08:00:15"), None, None, None, {"node": "main_menu"}, 0),
    ]
    assert {(e.channel, e.direction, e.intent, e.customer) for e in events} == {
        (
            Channel.VOICE,
            Direction.INBOUND,
            "billing",
            CustomerIds(phone_hash="9f86d081884c7d65", account_hash="acct-2c26b46b"),
        )
    }


def test_contact_ends_in_ivr_or_queue_and_reopens() -> None:
    contained = webhook.parse(load("webhook/contact_call_ivr_contained.json"), "acme", RECEIVED)
    assert summary(contained)[-1] == (
        "disconnected",
        t("08:01:35"),
        None,
        None,
        None,
        {"self_served": True},
        0,
    )
    abandoned = webhook.parse(load("webhook/contact_chat_abandoned.json"), "acme", RECEIVED)
    assert summary(abandoned) == [
        ("arrived", t("08:00:00"), None, None, None, {}, 0),
        ("disconnected", t("08:00:06"), None, None, None, {}, 0),
    ]
    email = webhook.parse(load("webhook/contact_email_reopened.json"), "acme", RECEIVED)
    assert summary(email) == [
        ("arrived", t("08:00:00"), None, None, None, {}, 0),
        ("ticket_reopened", t("13:33:20"), None, None, None, {}, 0),
    ]
    assert {e.channel for e in email} == {Channel.EMAIL}


def test_queue_and_agent_call_for_a_transferred_leg() -> None:
    queue = webhook.parse(load("webhook/queue_call_answered.json"), "acme", RECEIVED)
    assert summary(queue) == [
        ("queued", t("08:00:40"), LEG1, "billing", None, {}, 0),
        ("answered", t("08:00:55"), LEG1, "billing", "ann.lee", {}, 0),
    ]
    agent = webhook.parse(load("webhook/agent_call_transfer.json"), "acme", RECEIVED)
    assert summary(agent) == [
        ("answered", t("08:00:55"), LEG1, "billing", "ann.lee", {}, 0),
        ("hold", t("08:01:10"), LEG1, "billing", "ann.lee", {}, 0),
        ("resume", t("08:01:40"), LEG1, "billing", "ann.lee", {}, 0),
        ("acw_start", t("08:03:20"), LEG1, "billing", "ann.lee", {}, 0),
        ("transfer_blind", t("08:03:20"), LEG1, "billing", "ann.lee", {"target_queue": "tech"}, 0),
        ("wrapup_set", t("08:03:45"), LEG1, "billing", "ann.lee", {"code": "transferred"}, ms("08:03:45")),
        ("acw_end", t("08:03:50"), LEG1, "billing", "ann.lee", {}, 0),
    ]
    assert queue[1].event_id == agent[0].event_id


def test_agent_call_final_version_with_changed_wrapup_and_qa() -> None:
    events = webhook.parse(load("webhook/agent_call_final.json"), "acme", RECEIVED)
    leg = "7d1c0c7e-0b51-4a43-9d0f-2a8a4f0c1a02"
    assert summary(events)[-3:] == [
        ("acw_end", t("08:09:20"), leg, "tech", "bob.ray", {}, 0),
        ("wrapup_set", t("09:00:00"), leg, "tech", "bob.ray", {"code": "resolved"}, ms("09:00:00")),
        ("qa_score_set", t("10:00:00"), leg, "tech", "bob.ray", {"score": 88}, ms("10:00:00")),
    ]
    assert ("disconnected", t("08:08:20"), leg, "tech", "bob.ray", {}, 0) in summary(events)


def test_sms_queue_and_agent() -> None:
    leg = "a5a5a5a5-0000-4000-8000-000000000002"
    queue = webhook.parse(load("webhook/queue_sms_answered.json"), "acme", RECEIVED)
    agent = webhook.parse(load("webhook/agent_sms.json"), "acme", RECEIVED)
    assert {e.channel for e in queue + agent} == {Channel.MESSAGING}
    assert summary(agent) == [
        ("answered", t("09:20:00"), leg, "support", "eve.kim", {}, 0),
        ("disconnected", t("09:45:00"), leg, "support", "eve.kim", {}, 0),
        ("wrapup_set", t("09:46:00"), leg, "support", "eve.kim", {"code": "resolved"}, ms("09:46:00")),
        ("qa_score_set", t("13:00:00"), leg, "support", "eve.kim", {"score": 72}, ms("13:00:00")),
    ]


def test_missed_call_dedupes_with_the_queue_webhook() -> None:
    missed = webhook.parse(load("webhook/missed_call.json"), "acme", RECEIVED)
    leg = "b7b7b7b7-0000-4000-8000-000000000002"
    assert summary(missed) == [
        ("queued", t("08:10:00"), leg, "billing", None, {}, 0),
        ("abandoned", t("08:11:05"), leg, "billing", None, {}, 0),
    ]
    queue_view = {
        "event": "queue.call",
        "id": "another-delivery",
        "tenant": "acme",
        "conversation_id": "b7b7b7b7-0000-4000-8000-000000000001",
        "direction": "inbound",
        "leg_id": leg,
        "queue": "billing",
        "queued_at": "2026-03-29T08:10:00Z",
        "outcome": "abandoned",
        "left_at": "2026-03-29T08:11:05Z",
    }
    from_queue = webhook.parse(queue_view, "acme", datetime(2026, 3, 29, 13, 0, tzinfo=UTC))
    assert [e.model_copy(update={"ingest_time": RECEIVED}) for e in from_queue] == missed


def test_agent_status() -> None:
    (event,) = webhook.parse(load("webhook/agent_status.json"), "acme", RECEIVED)
    assert (event.event_type.value, event.agent, event.attributes, event.event_time) == (
        "agent_state_changed",
        "ann.lee",
        {"state": "offline"},
        t("08:00:03"),
    )


@pytest.mark.parametrize(
    ("mutate", "reason", "field"),
    [
        (lambda p: p.update(tenant="globex"), "tenant_mismatch", "payload.tenant"),
        (lambda p: p.update(event="invoice.call"), "unknown_event_type", "payload.event"),
        (lambda p: p.update(event="agent.fax"), "unknown_channel", "payload.event"),
        (lambda p: p.update(end_reason="vanished"), "unknown_event_type", "payload.end_reason"),
        (lambda p: p.pop("leg_id"), "missing_field", "payload.leg_id"),
        (lambda p: p.update(ended_at="2026-03-29T08:00:00Z"), "bad_timestamp", "answered_at..ended_at"),
        (lambda p: p.update(answered_at="2126-03-29T08:00:00Z"), "bad_timestamp", "payload.answered_at"),
        (lambda p: p.update(holds=[{"start": 5}]), "schema", "payload.holds[0].start"),
        (lambda p: p["qa"].update(score=101), "out_of_range", "payload.qa.score"),
        (lambda p: p.update(direction="sideways"), "schema", "payload.direction"),
    ],
)
def test_rejections_name_the_field(mutate: Any, reason: str, field: str) -> None:
    payload = load("webhook/agent_call_final.json")
    mutate(payload)
    with pytest.raises(AdapterError) as caught:
        webhook.parse(payload, "acme", RECEIVED)
    assert caught.value.reason == reason
    assert field in caught.value.detail


def test_identifiers_are_trimmed_by_the_adapter() -> None:
    padded = load("webhook/agent_call_final.json")
    padded.update(
        queue="\u3000tech ", agent="\tbob.ray\n", conversation_id=" 3f6e2b1a-8c4d-4e5f-9a7b-1c2d3e4f5a6b"
    )
    plain = webhook.parse(load("webhook/agent_call_final.json"), "acme", RECEIVED)
    trimmed = webhook.parse(padded, "acme", RECEIVED)
    assert [(e.conversation_id, e.queue, e.agent) for e in trimmed] == [
        (e.conversation_id, e.queue, e.agent) for e in plain
    ]
