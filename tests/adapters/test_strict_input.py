"""#13 Seen 9: no record is read as another tenant's, or as something other than what it says.

Any envelope tenant created a tenant with default settings; duplicate JSON keys resolved last-wins
(``tenant`` included); ``" acme"`` was trimmed to ``acme``. Now: a tenant allow-list in settings
(``unknown_tenant``), duplicate keys anywhere refused (``duplicate_key``), and tenant and source
taken verbatim, so a padded or invisible-character name is ``bad_envelope``, never another name.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from support.source_records import load

from stitchboard.adapters import normalise
from stitchboard.deadletters import DeadLetter
from stitchboard.deliveries import Delivery
from stitchboard.events import CanonicalEvent
from stitchboard.flows.steps import shard_key
from stitchboard.settings import Settings, TenantSettings

RECEIVED = "2026-03-29T12:00:00Z"


def missed_call(tenant: str = "acme") -> dict[str, Any]:
    return load("webhook/missed_call.json") | {"tenant": tenant}


def envelope(tenant: str = "acme", payload: Any = None, source: str = "webhook") -> dict[str, Any]:
    payload = missed_call(tenant) if payload is None else payload
    return {"tenant": tenant, "source": source, "received_at": RECEIVED, "payload": payload}


def outcome(raw: bytes, settings: Settings | None = None) -> list[CanonicalEvent] | DeadLetter:
    return normalise(raw, "raw/1/5", None, settings)


def dead(raw: bytes, settings: Settings | None = None) -> DeadLetter:
    result = outcome(raw, settings)
    assert isinstance(result, DeadLetter), result
    assert result.raw == raw
    return result


def events(raw: bytes, settings: Settings | None = None) -> list[CanonicalEvent]:
    result = outcome(raw, settings)
    assert not isinstance(result, DeadLetter), result
    return result


# --- duplicate keys ---------------------------------------------------------------------------------


def test_the_issue_case_a_tenant_named_twice_is_refused_not_read_as_the_last() -> None:
    """orjson keeps the last ``tenant``: this record was accepted as globex's."""
    raw = orjson.dumps(envelope("acme", missed_call("globex")))[:-1] + b',"tenant":"globex"}'
    assert orjson.loads(raw)["tenant"] == "globex"
    letter = dead(raw)
    assert letter.reason == "duplicate_key"
    assert "'tenant'" in letter.detail
    assert letter.tenant == ""  # no tenant is vouched for by a record that names two


@pytest.mark.parametrize(
    "raw",
    [
        # a nested key twice: the queue the record counts would be the last one's
        orjson.dumps(envelope()).replace(b'"queue":"billing"', b'"queue":"billing","queue":"sales"'),
        # two spellings of one key: the JSON escape makes them equal once parsed
        orjson.dumps(envelope()).replace(b'"leg_id":', b'"leg_id":"x","leg\\u005fid":'),
        # pretty-printed (not compact) records take the standard library's path: still found
        json.dumps(envelope(), indent=2).encode().replace(b'"queue": "billing"', b'"queue": 1, "queue": 2'),
    ],
    ids=["nested", "escaped", "pretty_printed"],
)
def test_a_key_twice_anywhere_in_a_record_is_a_duplicate_key(raw: bytes) -> None:
    assert dead(raw).reason == "duplicate_key"


@pytest.mark.parametrize(
    "raw",
    [
        orjson.dumps(envelope()),
        orjson.dumps(envelope()) + b"\n",
        json.dumps(envelope(), indent=2).encode(),
        json.dumps(envelope()).encode(),  # ", " and ": " separators
    ],
    ids=["compact", "trailing_newline", "pretty_printed", "spaced"],
)
def test_records_without_duplicates_are_accepted_however_they_are_formatted(raw: bytes) -> None:
    assert len(events(raw)) == 2


def test_the_same_key_in_different_objects_is_no_duplicate() -> None:
    payload = missed_call() | {"meta": {"id": "m-1", "tenant": "acme"}}
    assert events(json.dumps(envelope(payload=payload), indent=1).encode())


def test_a_connect_event_naming_a_key_in_both_spellings_is_a_duplicate_key() -> None:
    """The contact-event adapter folds ``QueueInfo`` into ``queueInfo``: two spellings are one key."""
    event = load("corpus/connect_events/contact_a_02_queued.json")
    detail = event["detail"]
    detail["QueueInfo"] = detail["queueInfo"] | {"queueArn": detail["queueInfo"]["queueArn"] + "-other"}
    document = envelope(payload=event, source="connect") | {"received_at": "2022-01-05T17:15:00Z"}
    letter = dead(orjson.dumps(document))
    assert letter.reason == "duplicate_key"
    assert "'queueInfo'" in letter.detail


# --- identifiers taken verbatim -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tenant",
    [
        " acme",
        "acme ",
        "acme\n",
        "\tacme",
        "ac\x00me",
        "acme\u200b",
        "\u00a0acme",
        "acme\u2028",
        "acme\u202e",
    ],
    ids=["lead", "trail", "newline", "tab", "nul", "zero_width", "nbsp", "line_separator", "bidi"],
)
def test_a_padded_or_invisible_tenant_is_refused_not_trimmed_into_another(tenant: str) -> None:
    letter = dead(orjson.dumps(envelope(tenant, missed_call("acme"))))
    assert letter.reason == "bad_envelope"
    assert "envelope.tenant" in letter.detail
    assert letter.tenant == ""


def test_a_padded_source_is_refused_too() -> None:
    assert dead(orjson.dumps(envelope(source=" webhook"))).reason == "bad_envelope"


def test_clean_tenant_names_are_taken_verbatim() -> None:
    assert {e.tenant for e in events(orjson.dumps(envelope("acme corp")))} == {"acme corp"}
    assert {e.tenant for e in events(orjson.dumps(envelope("Zürich-1")))} == {"Zürich-1"}


def test_a_payload_tenant_claim_is_compared_verbatim() -> None:
    letter = dead(orjson.dumps(envelope("acme", missed_call(" acme"))))
    assert letter.reason == "tenant_mismatch"


def test_conversation_state_is_keyed_by_tenant_so_equal_ids_never_meet() -> None:
    """Stitching state is keyed ``tenant + \\x1f + shard``; the shard is a number and a tenant cannot
    hold ``\\x1f`` (refused above), so two tenants' conversations with one id never share state."""
    keys = {shard_key(16, (0, Delivery(tenant, "conv-1", ()))) for tenant in ("acme", "globex", "acme\x1f3")}
    assert len(keys) == 3
    assert dead(orjson.dumps(envelope("acme\x1f3"))).reason == "bad_envelope"


# --- the tenant allow-list ----------------------------------------------------------------------------


def test_with_an_allow_list_other_tenants_are_dead_lettered() -> None:
    settings = Settings(allowed_tenants=frozenset({"acme"}))
    assert events(orjson.dumps(envelope("acme")), settings)
    letter = dead(orjson.dumps(envelope("mallory")), settings)
    assert letter.reason == "unknown_tenant"
    assert "'mallory'" in letter.detail
    assert (letter.tenant, letter.received_at) == ("", datetime(2026, 3, 29, 12, tzinfo=UTC))


def test_without_an_allow_list_every_tenant_is_accepted_as_today() -> None:
    assert Settings().allowed_tenants is None
    assert {e.tenant for e in events(orjson.dumps(envelope("mallory")), Settings())} == {"mallory"}


def test_a_configured_tenant_missing_from_the_allow_list_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="not in allowed_tenants"):
        Settings(allowed_tenants=frozenset({"acme"}), tenants={"globex": TenantSettings()})


def test_the_allow_list_comes_from_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STITCHBOARD_ALLOWED_TENANTS", '["acme", "globex"]')
    assert Settings().allowed_tenants == frozenset({"acme", "globex"})
