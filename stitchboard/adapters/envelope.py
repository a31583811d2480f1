"""The envelope every raw record arrives in: ``{"tenant", "source", "received_at", "payload"}``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stitchboard.adapters.fields import parse_time
from stitchboard.deadletters import AdapterError

MAX_RAW_BYTES = 1024 * 1024
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Envelope:
    tenant: str
    source: str
    received_at: datetime
    payload: dict[str, Any]


def nesting_depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when containers nest deeper than ``limit``; iterative, so hostile input cannot recurse."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return False


def parse_envelope(document: Any, fallback_received_at: datetime | None) -> Envelope:
    """Validate the envelope fields; the envelope's own ``received_at`` wins over the transport's.

    Without either, the record was received now.
    """
    if not isinstance(document, dict):
        raise AdapterError("bad_envelope", f"envelope must be a JSON object, got {type(document).__name__}")
    for name in ("tenant", "source"):
        value = document.get(name)
        if not isinstance(value, str) or not value.strip():
            raise AdapterError("bad_envelope", f"envelope.{name} must be a non-empty string, got {value!r}")
    payload = document.get("payload")
    if not isinstance(payload, dict):
        raise AdapterError("bad_envelope", "envelope.payload must be a JSON object")
    if document.get("received_at") is not None:
        try:
            received_at = parse_time(document["received_at"], "envelope.received_at")
        except AdapterError as exc:
            raise AdapterError("bad_envelope", exc.detail) from exc
    else:
        received_at = fallback_received_at if fallback_received_at is not None else datetime.now(UTC)
    return Envelope(document["tenant"].strip(), document["source"].strip(), received_at, payload)
