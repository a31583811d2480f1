"""#13 Seen 1 (input side): event time is bounded by the record's receive time, per tenant.

A webhook ``missed.call`` dated 2099 (or only 37 days ahead) was accepted, moved the tenant's
watermark, and every later valid record fell beyond the restatement horizon. An event later than its
record's receive time plus the tenant's skew is now ``clock_skew``, a record whose newest event is
older than the maximum age ``too_old``: the whole record is the dead letter, with its bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from support.source_records import load

from stitchboard.adapters import normalise
from stitchboard.deadletters import DeadLetter
from stitchboard.events import CanonicalEvent
from stitchboard.settings import InputBounds, Settings, TenantSettings, TimingSettings

RECEIVED = datetime(2026, 3, 29, 8, 12, tzinfo=UTC)  # the fixture's call was missed at 08:11:05


def missed_call(shift: timedelta = timedelta(0)) -> dict[str, Any]:
    """The fixture's missed call, its times moved by ``shift``."""
    call = load("webhook/missed_call.json")
    for key in ("queued_at", "missed_at"):
        call[key] = (datetime.fromisoformat(call[key]) + shift).strftime("%Y-%m-%dT%H:%M:%SZ")
    return call


def envelope(payload: Any, received_at: datetime = RECEIVED, tenant: str = "acme") -> bytes:
    return orjson.dumps(
        {"tenant": tenant, "source": "webhook", "received_at": received_at.isoformat(), "payload": payload}
    )


def outcome(
    raw: bytes, settings: Settings | None = None, transport: datetime | None = None
) -> list[CanonicalEvent] | DeadLetter:
    return normalise(raw, "raw/3/99", transport, settings)


def dead(raw: bytes, settings: Settings | None = None, transport: datetime | None = None) -> DeadLetter:
    result = outcome(raw, settings, transport)
    assert isinstance(result, DeadLetter), result
    assert (result.raw, result.origin) == (raw, "raw/3/99")
    return result


@pytest.mark.parametrize(
    "payload",
    [
        missed_call() | {"queued_at": "2099-03-29T08:10:00Z", "missed_at": "2099-03-29T08:11:05Z"},
        missed_call(timedelta(days=37)),
    ],
    ids=["dated_2099", "37_days_ahead"],
)
def test_the_issue_case_a_missed_call_dated_ahead_of_its_receipt_is_clock_skew(payload: Any) -> None:
    letter = dead(envelope(payload))
    assert letter.reason == "clock_skew"
    assert "after the record was received (2026-03-29T08:12:00+00:00; at most 300 s)" in letter.detail
    assert (letter.tenant, letter.source, letter.received_at) == ("acme", "webhook", RECEIVED)


def test_a_clock_a_few_minutes_fast_is_tolerated_up_to_the_tenants_skew() -> None:
    four_minutes_fast = envelope(missed_call(timedelta(minutes=4, seconds=55)))  # missed 08:16:00
    assert not isinstance(outcome(four_minutes_fast), DeadLetter)
    assert dead(envelope(missed_call(timedelta(minutes=6)))).reason == "clock_skew"
    strict = Settings(tenants={"acme": TenantSettings(bounds=InputBounds(max_future_skew_seconds=0))})
    assert dead(four_minutes_fast, strict).reason == "clock_skew"


def test_the_envelope_may_not_claim_a_receipt_after_the_transport_delivered_it() -> None:
    """Otherwise a hostile envelope would carry its own 2099 receive time past the event check."""
    payload = missed_call(timedelta(days=37))
    forged = envelope(payload, received_at=RECEIVED + timedelta(days=37, minutes=1))
    letter = dead(forged, transport=RECEIVED)
    assert letter.reason == "clock_skew"
    assert "envelope.received_at" in letter.detail and "transport" in letter.detail
    assert not isinstance(outcome(envelope(missed_call()), transport=RECEIVED), DeadLetter)
    skewed_within_limit = envelope(missed_call(), received_at=RECEIVED + timedelta(minutes=4))
    assert not isinstance(outcome(skewed_within_limit, transport=RECEIVED), DeadLetter)


def test_a_record_whose_newest_event_is_older_than_the_restatement_horizon_is_too_old() -> None:
    old = envelope(missed_call(), received_at=RECEIVED + timedelta(days=36))
    letter = dead(old)
    assert letter.reason == "too_old"
    assert "older than" in letter.detail
    assert not isinstance(
        outcome(envelope(missed_call(), received_at=RECEIVED + timedelta(days=34))), DeadLetter
    )
    # the default maximum age follows the restatement horizon; a tenant may set its own
    longer_horizon = Settings(timing=TimingSettings(restatement_horizon_days=60))
    assert not isinstance(outcome(old, longer_horizon), DeadLetter)
    tenant_age = Settings(tenants={"acme": TenantSettings(bounds=InputBounds(max_event_age_days=40))})
    assert not isinstance(outcome(old, tenant_age), DeadLetter)


def test_an_old_ticket_reopened_now_is_not_too_old() -> None:
    """Age is the record's newest event: a ticket opened months ago and reopened today is current."""
    ticket = load("webhook/contact_email_reopened.json")
    ticket["reopened_at"] = ["2026-06-20T10:00:00Z"]
    events = outcome(envelope(ticket, received_at=datetime(2026, 6, 20, 10, 1, tzinfo=UTC)))
    assert not isinstance(events, DeadLetter), events
