"""The envelope every raw record arrives in: ``{"tenant", "source", "received_at", "payload"}``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stitchboard.adapters.fields import parse_time
from stitchboard.deadletters import AdapterError
from stitchboard.events import MAX_IDENTIFIER_LENGTH

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
        _check_name(name, document.get(name))
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
    return Envelope(document["tenant"], document["source"], received_at, payload)


def _check_name(name: str, value: Any) -> None:
    """Tenant and source are taken verbatim, so they must be clean: never trimmed or rewritten into
    another name (``" acme"`` is refused, not read as ``acme``), and free of invisible characters
    (controls, zero-width and direction marks, separators other than an inner space) that would
    make a name look like another one."""
    if not isinstance(value, str) or not value.strip():
        raise AdapterError("bad_envelope", f"envelope.{name} must be a non-empty string, got {_shown(value)}")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise AdapterError(
            "bad_envelope", f"envelope.{name} is longer than {MAX_IDENTIFIER_LENGTH} characters"
        )
    if not value.isprintable() or value[0] == " " or value[-1] == " ":
        raise AdapterError(
            "bad_envelope",
            f"envelope.{name} {_shown(value)} has surrounding spaces or invisible characters (taken verbatim)",
        )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}..."
