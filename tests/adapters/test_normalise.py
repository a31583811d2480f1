"""normalise: envelope bytes → events, or a dead letter with a precise reason; it never raises."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from support.source_records import load

from stitchboard.adapters import normalise
from stitchboard.deadletters import DeadLetter

TRANSPORT_TIME = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)


def envelope(source: str, payload: Any, **extra: Any) -> bytes:
    document = {"tenant": "acme", "source": source, "received_at": "2026-03-29T11:00:00Z", "payload": payload}
    return orjson.dumps(document | extra)


def dead(raw: bytes) -> DeadLetter:
    result = normalise(raw, "raw/0/42", TRANSPORT_TIME)
    assert isinstance(result, DeadLetter), result
    assert result.raw == raw
    assert result.origin == "raw/0/42"
    return result


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("genesys", "genesys/voice_ivr_transfer.json"),
        ("connect", "connect/voice_leg1_transferred.json"),
        ("connect_agent", "connect_agent/state_change.json"),
        ("webhook", "webhook/agent_call_final.json"),
    ],
)
def test_every_source_dispatches_and_stamps_the_envelope_time(source: str, name: str) -> None:
    events = normalise(envelope(source, load(name)), "f:1", TRANSPORT_TIME)
    assert isinstance(events, list) and events
    assert {(e.tenant, e.source, e.ingest_time) for e in events} == {
        ("acme", source, datetime(2026, 3, 29, 11, 0, tzinfo=UTC))
    }


def test_transport_time_when_envelope_has_none() -> None:
    raw = orjson.dumps({"tenant": "acme", "source": "webhook", "payload": load("webhook/agent_status.json")})
    (event,) = normalise(raw, "", TRANSPORT_TIME)  # type: ignore[misc]
    assert event.ingest_time == TRANSPORT_TIME


def test_heartbeat_is_no_events_not_a_dead_letter() -> None:
    assert normalise(envelope("connect_agent", load("connect_agent/heart_beat.json"))) == []


def voice_record(**changes: Any) -> dict[str, Any]:
    return load("genesys/voice_ivr_transfer.json") | changes


def deep(levels: int) -> bytes:
    return b'{"tenant":"acme","source":"webhook","payload":' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b" " * (1024 * 1024 + 1), "too_large", "bytes"),
        (b'{"tenant":"\xff"}', "not_utf8", "UTF-8"),
        (b'{"tenant": "acme", ', "invalid_json", "JSON"),
        (deep(70), "too_deep", "64"),
        (deep(2000), "too_deep", "nesting"),
        (b"[1, 2]", "bad_envelope", "JSON object"),
        (orjson.dumps({"source": "genesys", "payload": {}}), "bad_envelope", "envelope.tenant"),
        (orjson.dumps({"tenant": "acme", "source": 7, "payload": {}}), "bad_envelope", "envelope.source"),
        (
            orjson.dumps({"tenant": "acme", "source": "genesys", "payload": []}),
            "bad_envelope",
            "envelope.payload",
        ),
        (envelope("genesys", {}, received_at="soon"), "bad_envelope", "envelope.received_at"),
        (envelope("zendesk", {}), "unknown_source", "zendesk"),
        (envelope("genesys", voice_record(organizationId="globex")), "tenant_mismatch", "organizationId"),
        (
            envelope("genesys", voice_record(participants=[{"purpose": 3}])),
            "schema",
            "participants[0].purpose",
        ),
        (envelope("genesys", voice_record(conversationStart=None)), "missing_field", "conversationStart"),
        (
            envelope("genesys", voice_record(conversationStart="2101-01-01T00:00:00Z")),
            "bad_timestamp",
            "Start",
        ),
        (
            envelope("webhook", load("webhook/agent_sms.json") | {"event": "agent.fax"}),
            "unknown_channel",
            "fax",
        ),
        (
            envelope("webhook", load("webhook/agent_sms.json") | {"event": "x.sms"}),
            "unknown_event_type",
            "x.sms",
        ),
    ],
)
def test_dead_letter_reasons(raw: bytes, reason: str, field: str) -> None:
    letter = dead(raw)
    assert letter.reason == reason
    assert field in letter.detail


def test_dead_letter_keeps_tenant_source_and_envelope_time() -> None:
    letter = dead(envelope("genesys", voice_record(organizationId="globex")))
    assert (letter.tenant, letter.source, letter.received_at) == (
        "acme",
        "genesys",
        datetime(2026, 3, 29, 11, 0, tzinfo=UTC),
    )
    unparsable = dead(b"nope")
    assert (unparsable.tenant, unparsable.source, unparsable.received_at) == ("", "", TRANSPORT_TIME)


def test_identifier_too_long_is_a_schema_error_naming_the_field() -> None:
    letter = dead(envelope("webhook", load("webhook/agent_sms.json") | {"agent": "a" * 300}))
    assert letter.reason == "schema"
    assert "agent" in letter.detail
