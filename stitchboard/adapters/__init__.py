"""Raw envelope bytes → canonical events, or a dead letter saying precisely why not.

``normalise`` is the only entry point the dataflow calls. It never raises: every way a record can
be unusable (too big, not UTF-8, not JSON, too deeply nested, a bad envelope, an unknown source, a
payload an adapter rejects) becomes a ``DeadLetter`` with a machine-readable reason, so nothing is
dropped silently and one bad record never stops the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from stitchboard.adapters import connect, connect_events, genesys_events, webhook
from stitchboard.adapters.envelope import MAX_DEPTH, MAX_RAW_BYTES, nesting_depth_exceeds, parse_envelope
from stitchboard.deadletters import AdapterError, DeadLetter
from stitchboard.events import CanonicalEvent

Adapter = Callable[[dict[str, Any], str, datetime], list[CanonicalEvent]]

# ``genesys`` and ``connect`` take whatever the vendor sends: a complete record, or a live event
# (Genesys notification or EventBridge event, Connect contact event), told apart by its shape.
ADAPTERS: dict[str, Adapter] = {
    "genesys": genesys_events.parse,
    "connect": connect_events.parse,
    "connect_agent": connect.parse_agent_event,
    "webhook": webhook.parse,
}

__all__ = ["ADAPTERS", "normalise"]


def normalise(
    raw: bytes, origin: str = "", received_at: datetime | None = None
) -> list[CanonicalEvent] | DeadLetter:
    """Parse one envelope and run its source's adapter; any failure becomes a ``DeadLetter``."""
    fallback = received_at  # the clock is read only when neither envelope nor transport has a time
    tenant = source = ""
    try:
        document = _decode(raw)
        envelope = parse_envelope(document, fallback)
        tenant, source, fallback = envelope.tenant, envelope.source, envelope.received_at
        adapter = ADAPTERS.get(source)
        if adapter is None:
            raise AdapterError(
                "unknown_source", f"envelope.source {source!r} is not one of {sorted(ADAPTERS)}"
            )
        return adapter(envelope.payload, tenant, envelope.received_at)
    except AdapterError as exc:
        when = fallback if fallback is not None else datetime.now(UTC)
        return DeadLetter(exc.reason, exc.detail, raw, when, tenant, source, origin)
    except Exception as exc:  # an adapter bug must not stop the stream; keep the record for replay
        detail = f"{type(exc).__name__}: {exc}"
        when = fallback if fallback is not None else datetime.now(UTC)
        return DeadLetter("internal_error", detail, raw, when, tenant, source, origin)


def _decode(raw: bytes) -> Any:
    if len(raw) > MAX_RAW_BYTES:
        raise AdapterError("too_large", f"record is {len(raw)} bytes, the limit is {MAX_RAW_BYTES}")
    try:
        document = orjson.loads(raw)  # validates the UTF-8 of the whole input before parsing
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")  # not UTF-8 is the more precise reason, so it is reported first
        except UnicodeDecodeError as not_utf8:
            raise AdapterError("not_utf8", f"byte {not_utf8.start} is not valid UTF-8") from not_utf8
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise AdapterError("too_deep", f"nesting exceeds orjson's limit (ours is {MAX_DEPTH})") from exc
        raise AdapterError("invalid_json", f"not JSON: {exc}") from exc
    # fewer brackets than the limit cannot nest deeper than it: skip the walk (nearly every record)
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and nesting_depth_exceeds(document):
        raise AdapterError("too_deep", f"JSON nests deeper than {MAX_DEPTH} levels")
    return document
