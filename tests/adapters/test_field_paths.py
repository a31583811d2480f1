"""Rejections name the exact field, also deep inside a record (paths are spelled out lazily)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from stitchboard.adapters import genesys
from stitchboard.deadletters import AdapterError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "genesys" / "voice_ivr_transfer.json"
RECEIVED = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)


def record() -> dict[str, Any]:
    return orjson.loads(FIXTURE.read_bytes())


def rejection(payload: dict[str, Any]) -> AdapterError:
    with pytest.raises(AdapterError) as caught:
        genesys.parse(payload, "acme", RECEIVED)
    return caught.value


def test_a_bad_timestamp_deep_in_a_record_names_its_path() -> None:
    payload = record()
    payload["participants"][2]["sessions"][0]["segments"][0]["segmentStart"] = "yesterday"
    error = rejection(payload)
    assert (error.reason, error.detail) == (
        "bad_timestamp",
        "payload.participants[2].sessions[0].segments[0].segmentStart is not an ISO-8601 timestamp:"
        " 'yesterday'",
    )


def test_a_segment_ending_before_it_starts_names_the_segment() -> None:
    payload = record()
    segment = payload["participants"][3]["sessions"][0]["segments"][0]
    segment["segmentEnd"] = "2000-01-01T00:00:00Z"
    error = rejection(payload)
    assert (error.reason, error.detail) == (
        "bad_timestamp",
        "payload.participants[3].sessions[0].segments[0] ends before it starts",
    )


def test_a_nested_value_of_the_wrong_type_names_its_path() -> None:
    payload = record()
    payload["participants"][1]["sessions"][0] = ["not", "an", "object"]
    error = rejection(payload)
    assert (error.reason, error.detail) == (
        "schema",
        "payload.participants[1].sessions[0] must be an object, got list",
    )
