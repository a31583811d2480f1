"""#13 Seen 2 (adapter and model side): values beyond physical limits are dead letters, not events.

A Connect ``CustomerHoldDuration`` of 10^16 s was accepted and crashed the stitcher's packing on
every restart; two holds of 5x10^15 s overflowed Int64 at the insert. Every numeric field an adapter
reads, and the canonical model's numeric attributes, are now bounded: beyond the bound the record is
dead-lettered ``out_of_range`` with its bytes.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from support.source_records import load

from stitchboard.adapters import normalise
from stitchboard.adapters.bounds import check_record
from stitchboard.deadletters import DeadLetter
from stitchboard.events import (
    MAX_COUNT,
    MAX_DURATION_MS,
    CanonicalEvent,
    Channel,
    EventType,
)
from stitchboard.settings import InputBounds, Settings, TenantSettings

RECEIVED = "2026-03-29T12:00:00Z"  # after every fixture's last event
GENESYS_EVENTS = "corpus/genesys_events"


def envelope(source: str, payload: Any, received_at: str = RECEIVED) -> bytes:
    return orjson.dumps({"tenant": "acme", "source": source, "received_at": received_at, "payload": payload})


def letter(raw: bytes, settings: Settings | None = None) -> DeadLetter:
    result = normalise(raw, "raw/0/7", None, settings)
    assert isinstance(result, DeadLetter), result
    assert result.raw == raw
    return result


def accepted(raw: bytes, settings: Settings | None = None) -> list[CanonicalEvent]:
    result = normalise(raw, "raw/0/7", None, settings)
    assert not isinstance(result, DeadLetter), result
    return result


def connect_record(**agent: Any) -> dict[str, Any]:
    record = load("connect/voice_leg1_transferred.json")  # connected 08:00:55, disconnected 08:03:20
    record["Agent"].update(agent)
    return record


def test_the_issue_case_a_connect_hold_of_ten_to_the_sixteen_seconds_is_out_of_range() -> None:
    dead = letter(envelope("connect", connect_record(CustomerHoldDuration=10**16)))
    assert dead.reason == "out_of_range"
    assert "payload.Agent.CustomerHoldDuration" in dead.detail


@pytest.mark.parametrize(
    ("agent", "field"),
    [
        ({"NumberOfHolds": 10**16}, "NumberOfHolds"),
        ({"NumberOfHolds": -1}, "NumberOfHolds"),
        ({"CustomerHoldDuration": -5}, "CustomerHoldDuration"),
        # held 146 s while connected only 145 s (+1 s of rounding allowed)
        ({"CustomerHoldDuration": 147}, "longer than the 145 s connected"),
        ({"NumberOfHolds": 1_001}, "max_holds_per_leg"),
    ],
)
def test_connect_hold_counts_and_durations_are_bounded(agent: dict[str, Any], field: str) -> None:
    dead = letter(envelope("connect", connect_record(**agent)))
    assert dead.reason == "out_of_range"
    assert field in dead.detail


def test_a_connect_hold_as_long_as_the_connection_is_accepted() -> None:
    events = accepted(envelope("connect", connect_record(CustomerHoldDuration=146, NumberOfHolds=3)))
    (hold,) = [e for e in events if e.event_type is EventType.HOLD]
    assert hold.attributes == {"duration_ms": 146_000, "count": 3}


def genesys_event(name: str, **body: Any) -> dict[str, Any]:
    payload = copy.deepcopy(load(f"{GENESYS_EVENTS}/{name}"))
    payload["detail"]["eventBody"].update(body)
    return payload


GENESYS_RECEIVED = "2024-04-29T18:00:00Z"


@pytest.mark.parametrize(
    ("name", "body", "reason", "field"),
    [
        ("voice_answered_08_user_end.json", {"heldDurationMs": 10**16}, "out_of_range", "heldDurationMs"),
        ("voice_answered_08_user_end.json", {"heldDurationMs": -1}, "out_of_range", "heldDurationMs"),
        (
            "voice_answered_08_user_end.json",
            {"interactingDurationMs": -374_911},
            "out_of_range",
            "interactingDurationMs",
        ),
        # a hold longer than a voice contact may last (7 days), though inside the model's range
        (
            "voice_answered_08_user_end.json",
            {"heldDurationMs": 8 * 24 * 3600 * 1000},
            "out_of_range",
            "longer than a voice contact",
        ),
        ("voice_answered_09_acw.json", {"wrapupDurationMs": 10**16}, "out_of_range", "wrapupDurationMs"),
        ("voice_answered_09_acw.json", {"wrapupDurationMs": 10**12}, "out_of_range", "before 2000"),
        # an epoch-ms integer too large for date arithmetic: a precise reason, not an internal error
        ("voice_answered_08_user_end.json", {"eventTime": 10**19}, "bad_timestamp", "eventTime"),
    ],
)
def test_genesys_stream_durations_are_bounded(
    name: str, body: dict[str, Any], reason: str, field: str
) -> None:
    dead = letter(envelope("genesys", genesys_event(name, **body), GENESYS_RECEIVED))
    assert dead.reason == reason
    assert field in dead.detail


def test_a_genesys_voice_hold_segment_longer_than_a_week_is_out_of_range() -> None:
    record = load("genesys/voice_ivr_transfer.json")
    (hold,) = [
        segment
        for segment in record["participants"][4]["sessions"][0]["segments"]
        if segment["segmentType"] == "hold"
    ]
    hold["segmentEnd"] = "2026-04-06T08:01:40.000Z"  # held from 29 March: 8 days
    dead = letter(envelope("genesys", record, "2026-04-06T09:00:00Z"))
    assert dead.reason == "out_of_range"
    assert "the voice contact spans" in dead.detail and "168 h" in dead.detail


def webhook_agent_call(**changes: Any) -> dict[str, Any]:
    return load("webhook/agent_call_final.json") | changes


@pytest.mark.parametrize(
    "changes",
    [
        {"holds": [{"start": "2026-03-29T08:04:00Z", "end": "2026-04-06T08:04:00Z"}]},  # an 8-day hold
        {"acw_ended_at": "2026-04-06T08:09:20Z"},  # 8 days of after-call work
    ],
)
def test_webhook_holds_and_after_call_work_are_bounded_by_the_contact(changes: dict[str, Any]) -> None:
    dead = letter(envelope("webhook", webhook_agent_call(**changes), "2026-04-07T00:00:00Z"))
    assert dead.reason == "out_of_range"
    assert "voice contact spans" in dead.detail


def test_an_email_ticket_may_stay_open_for_months() -> None:
    ticket = load("webhook/contact_email_reopened.json") | {
        "ended_at": "2026-06-29T09:40:00Z",  # three months after it started
        "ended_in": "queue",
    }
    events = accepted(envelope("webhook", ticket, "2026-07-01T00:00:00Z"))
    assert {e.channel for e in events} == {Channel.EMAIL}


def test_the_maximum_contact_length_is_a_tenant_setting() -> None:
    """The first leg lasts 3 min 20 s: refused under a tenant whose voice contacts last 0 hours is
    impossible (at least 1 h), so a 2-hour ACW is refused under 1 h and accepted by default."""
    long_acw = webhook_agent_call(acw_ended_at="2026-03-29T10:09:20Z")
    strict = Settings(
        tenants={"acme": TenantSettings(bounds=InputBounds(max_contact_hours={Channel.VOICE: 1}))}
    )
    assert letter(envelope("webhook", long_acw), strict).reason == "out_of_range"
    assert accepted(envelope("webhook", long_acw))
    assert strict.tenant("acme").bounds.max_contact_hours[Channel.EMAIL] == 365 * 24  # others keep defaults


@pytest.mark.parametrize(
    ("source", "payload", "field"),
    [
        ("webhook", webhook_agent_call(qa={"score": 101, "scored_at": "2026-03-29T10:00:00Z"}), "qa.score"),
        ("connect", connect_record() | {"Attributes": {"qaScore": "140", "qaScoredAt": RECEIVED}}, "qaScore"),
        ("connect", connect_record() | {"Attributes": {"qaScore": "1" + "0" * 5000}}, "qaScore"),
    ],
)
def test_qa_scores_outside_0_to_100_are_out_of_range(
    source: str, payload: dict[str, Any], field: str
) -> None:
    dead = letter(envelope(source, payload))
    assert dead.reason == "out_of_range"
    assert field in dead.detail


def test_an_attribute_text_longer_than_an_identifier_is_out_of_range() -> None:
    call = load("webhook/contact_call_ivr_queued.json")
    call["ivr"]["steps"][0]["node"] = "n" * 300
    dead = letter(envelope("webhook", call))
    assert dead.reason == "out_of_range"
    assert "attributes.node" in dead.detail


def event(event_type: EventType, **attributes: Any) -> dict[str, Any]:
    at = datetime(2026, 3, 29, 8, tzinfo=UTC)
    return {
        "tenant": "acme",
        "source": "webhook",
        "event_id": "e1",
        "conversation_id": "c1",
        "channel": Channel.VOICE,
        "event_type": event_type,
        "event_time": at,
        "ingest_time": at,
        "attributes": attributes,
    }


@pytest.mark.parametrize(
    ("event_type", "attributes"),
    [
        (EventType.HOLD, {"duration_ms": -1, "count": 1}),
        (EventType.HOLD, {"duration_ms": MAX_DURATION_MS + 1, "count": 1}),
        (EventType.HOLD, {"duration_ms": 1000, "count": MAX_COUNT + 1}),
        (EventType.HOLD, {"duration_ms": True, "count": 1}),
        (EventType.HOLD, {"duration_ms": 1.5, "count": 1}),
        (EventType.QA_SCORE_SET, {"score": 100.5}),
        (EventType.QA_SCORE_SET, {"score": "88"}),
        (EventType.WRAPUP_SET, {"code": "c" * 257}),
    ],
)
def test_the_model_refuses_attributes_beyond_its_invariants(
    event_type: EventType, attributes: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError) as caught:
        CanonicalEvent.model_validate(event(event_type, **attributes))
    assert caught.value.errors()[0]["type"] == "out_of_range"


def test_the_model_accepts_attributes_at_their_bounds() -> None:
    CanonicalEvent.model_validate(event(EventType.HOLD, duration_ms=MAX_DURATION_MS, count=MAX_COUNT))
    CanonicalEvent.model_validate(event(EventType.QA_SCORE_SET, score=100.0))
    CanonicalEvent.model_validate(event(EventType.WRAPUP_SET, code="c" * 256))


def test_facts_set_after_the_contact_do_not_lengthen_it_in_any_order() -> None:
    """A wrap-up corrected and a QA score given a month later leave a 7-minute call 7 minutes long."""
    late = webhook_agent_call(
        wrapup={"code": "resolved", "set_at": "2026-04-28T09:00:00Z"},
        qa={"score": 90, "scored_at": "2026-04-28T10:00:00Z"},
    )
    received = datetime(2026, 4, 28, 11, tzinfo=UTC)
    events = accepted(envelope("webhook", late, received.isoformat()))
    bounds = InputBounds(max_contact_hours={Channel.VOICE: 1})
    for order in (events, events[::-1]):
        check_record(order, received, bounds, 35)
