"""Dead letters: input that could not be accepted, kept with its reason and original bytes."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected input record. Nothing is dropped silently: every rejection becomes one of these."""

    reason: str  # machine-readable class, e.g. "invalid_json", "schema", "unknown_source"
    detail: str  # human-readable explanation naming the offending field
    raw: bytes  # the original bytes, untouched
    received_at: datetime
    tenant: str = ""  # the tenant the transport vouched for, when known
    source: str = ""  # the adapter named by the envelope, when known
    origin: str = ""  # where it came from: "topic/partition/offset" or "file:line"

    def raw_base64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")


class AdapterError(ValueError):
    """A payload that an adapter cannot map; ``reason`` is the dead-letter class."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
