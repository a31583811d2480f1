"""The canonical event model: strict validation, and its committed JSON Schema kept in sync."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from stitchboard.events import CanonicalEvent, Channel, CustomerIds, EventType, json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "canonical-event.schema.json"
WHEN = datetime(2026, 3, 29, 8, 0, tzinfo=UTC)


def valid(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "tenant": "acme",
        "source": "genesys",
        "event_id": "e1",
        "conversation_id": "c1",
        "leg_id": "l1",
        "channel": Channel.VOICE,
        "event_type": EventType.QUEUED,
        "event_time": WHEN,
        "ingest_time": WHEN + timedelta(seconds=2),
        "queue": "sales",
    }
    base.update(overrides)
    return base


def test_a_valid_event_round_trips_through_json() -> None:
    event = CanonicalEvent(**valid(customer=CustomerIds(phone_hash="ab12"), attributes={"node": "menu"}))
    again = CanonicalEvent.model_validate_json(event.model_dump_json())
    assert again == event
    assert again.customer.keys() == ["phone:ab12"]


def test_the_committed_schema_is_in_sync() -> None:
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == json_schema(), (
        "regenerate with: python -m stitchboard.events > schemas/canonical-event.schema.json"
    )


def test_the_schema_accepts_real_events_and_rejects_bad_ones() -> None:
    event = CanonicalEvent(**valid())
    jsonschema.validate(json.loads(event.model_dump_json()), json_schema())
    bad = json.loads(event.model_dump_json()) | {"channel": "pigeon"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json_schema())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"event_time": datetime(2026, 3, 29, 8, 0)}, "timezone"),  # naive
        ({"ingest_time": datetime(2026, 3, 29, 8, 0)}, "timezone"),
        ({"event_time": datetime(1970, 1, 1, tzinfo=UTC)}, "outside 2000..2100"),
        ({"event_time": datetime(2999, 1, 1, tzinfo=UTC)}, "outside 2000..2100"),
        ({"conversation_id": None}, "needs a conversation_id"),
        ({"event_type": EventType.AGENT_STATE_CHANGED, "conversation_id": None}, "needs an agent"),
        ({"channel": "voice"}, "instance of Channel"),  # strict: no coercion from str in Python mode
        ({"sequence": -1}, "greater than or equal to 0"),
        ({"tenant": ""}, "at least 1 character"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_events_are_rejected_with_a_precise_message(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        CanonicalEvent(**valid(**overrides))


def test_a_naive_time_is_reported_at_its_field_as_pydantic_reports_it() -> None:
    with pytest.raises(ValidationError) as caught:
        CanonicalEvent(**valid(ingest_time=datetime(2026, 3, 29, 8, 0)))
    [error] = caught.value.errors(include_url=False)
    assert (error["type"], error["loc"], error["msg"]) == (
        "timezone_aware",
        ("ingest_time",),
        "Input should have timezone info",
    )
    with pytest.raises(ValidationError, match="timezone"):
        CanonicalEvent.model_validate_json(
            CanonicalEvent(**valid()).model_dump_json().replace("08:00:00Z", "08:00:00")
        )


def test_offsets_other_than_utc_are_accepted_and_compare_by_instant() -> None:
    local = datetime(2026, 3, 29, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    assert CanonicalEvent(**valid(event_time=local)).event_time == WHEN


def test_identifiers_are_taken_verbatim_not_rewritten() -> None:
    event = CanonicalEvent(**valid(queue=" sales "))
    assert event.queue == " sales "
    with pytest.raises(ValidationError, match="at most 256 characters"):
        CanonicalEvent(**valid(queue="q" * 257))
