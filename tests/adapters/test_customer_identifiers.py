"""A customer identifier the model refuses is a dead letter with a reason, not a caught exception.

Found by the fuzz test's long run (``python -m bench --only fuzz``, kind ``long_string``): a webhook,
Genesys or Connect record whose customer hash is longer than an identifier may be (256 characters)
was dead-lettered ``internal_error`` (pydantic's ValidationError escaping the adapter), the reason
reserved for adapter bugs. Like any other identifier, it is ``schema``, naming the field.
"""

from __future__ import annotations

import orjson
import pytest
from support.source_records import load

from stitchboard.adapters import normalise
from stitchboard.deadletters import DeadLetter


@pytest.mark.parametrize("key", ["phone_hash", "email_hash", "account_hash"])
def test_an_overlong_customer_identifier_is_a_schema_dead_letter(key: str) -> None:
    contact = load("webhook/contact_call_ivr_contained.json")
    contact["customer"] = {key: "h" * 257}
    raw = orjson.dumps(
        {"tenant": "acme", "source": "webhook", "received_at": "2026-03-29T12:00:00Z", "payload": contact}
    )
    dead = normalise(raw, "raw/0/1")
    assert isinstance(dead, DeadLetter)
    assert (dead.reason, dead.raw) == ("schema", raw)
    assert f"customer: field {key}" in dead.detail


def test_a_customer_identifier_of_256_characters_is_accepted() -> None:
    contact = load("webhook/contact_call_ivr_contained.json")
    contact["customer"] = {"phone_hash": "h" * 256}
    raw = orjson.dumps(
        {"tenant": "acme", "source": "webhook", "received_at": "2026-03-29T12:00:00Z", "payload": contact}
    )
    events = normalise(raw, "raw/0/1")
    assert not isinstance(events, DeadLetter), events
    assert {event.customer.phone_hash for event in events} == {"h" * 256}
