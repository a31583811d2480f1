"""Raw envelope bytes → canonical events, or a dead letter saying precisely why not.

``normalise`` is the only entry point the dataflow calls. It never raises: every way a record can
be unusable (too big, not UTF-8, not JSON, a key given twice, too deeply nested, a bad envelope, a
tenant not allowed, an unknown source, a payload an adapter rejects, events beyond the tenant's
bounds) becomes a ``DeadLetter`` with a machine-readable reason, so nothing is dropped silently and
one bad record never stops the stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from stitchboard.adapters import connect, connect_events, genesys_events, webhook
from stitchboard.adapters.bounds import check_received_at, check_record
from stitchboard.adapters.envelope import MAX_DEPTH, MAX_RAW_BYTES, nesting_depth_exceeds, parse_envelope
from stitchboard.deadletters import AdapterError, DeadLetter
from stitchboard.events import CanonicalEvent
from stitchboard.settings import Settings, TenantSettings, TimingSettings

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


_DEFAULT_TENANT = TenantSettings()
_DEFAULT_HORIZON_DAYS = TimingSettings().restatement_horizon_days


def normalise(
    raw: bytes, origin: str = "", received_at: datetime | None = None, settings: Settings | None = None
) -> list[CanonicalEvent] | DeadLetter:
    """Parse one envelope and run its source's adapter; any failure becomes a ``DeadLetter``.

    ``settings`` gives the tenant allow-list and each tenant's bounds; without it every tenant is
    accepted under the default bounds.
    """
    fallback = received_at  # the clock is read only when neither envelope nor transport has a time
    tenant = source = ""
    try:
        document = _decode(raw)
        envelope = parse_envelope(document, fallback)
        fallback = envelope.received_at
        if settings is not None and not settings.accepts(envelope.tenant):
            raise AdapterError(
                "unknown_tenant", f"envelope.tenant {envelope.tenant!r} is not an allowed tenant"
            )
        tenant, source = envelope.tenant, envelope.source
        if settings is None:
            bounds, horizon_days = _DEFAULT_TENANT.bounds, _DEFAULT_HORIZON_DAYS
        else:
            bounds, horizon_days = settings.tenant(tenant).bounds, settings.timing.restatement_horizon_days
        check_received_at(envelope.received_at, received_at, bounds)
        adapter = ADAPTERS.get(source)
        if adapter is None:
            raise AdapterError(
                "unknown_source", f"envelope.source {source!r} is not one of {sorted(ADAPTERS)}"
            )
        events = adapter(envelope.payload, tenant, envelope.received_at)
        check_record(events, envelope.received_at, bounds, horizon_days)
        return events
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
    _reject_duplicate_keys(raw, document)
    return document


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return document


def _reject_duplicate_keys(raw: bytes, document: Any) -> None:
    """An object naming a key twice is refused: orjson keeps the last value silently, so
    ``{"tenant": "acme", ..., "tenant": "globex"}`` would be read as another tenant than a reader
    keeping the first sees. A record orjson writes back byte for byte (compact JSON, as orjson,
    ``JSON.stringify`` and Jackson write it) holds no duplicate, since the parsed document has none;
    any other record is parsed again by the standard library, which reports every key it reads.
    """
    canonical = orjson.dumps(document)
    if canonical == raw or canonical == raw.strip():
        return
    try:
        json.loads(raw, object_pairs_hook=_unique_keys)
    except _DuplicateKey as duplicate:
        shown = repr(duplicate.key) if len(duplicate.key) <= 80 else f"{duplicate.key[:80]!r}..."
        raise AdapterError("duplicate_key", f"an object names the key {shown} more than once") from None
    except ValueError as exc:  # orjson and the standard library both follow RFC 8259: not expected
        raise AdapterError("invalid_json", f"not JSON: {exc}") from exc
