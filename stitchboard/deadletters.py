"""Dead letters: input that could not be accepted, kept with its reason and original bytes."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import orjson

INTERNAL_ERROR = "internal_error"
"""The reason of a record a step failed on (a bug, or a value no rule foresaw): the flow goes on."""
_MESSAGE_CHARS = 1000  # of an exception's message in a letter's detail (some repeat their input)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected input record. Nothing is dropped silently: every rejection becomes one of these.

    ``part`` says which part of the record a letter is about when one record can yield several
    (an event, a correction, a step's item); it is empty for a letter about the whole record. With
    tenant, reason, origin and the bytes it makes the ``dead_letters`` table's key, so distinct
    letters never merge and a replayed letter replaces itself.
    """

    reason: str  # machine-readable class, e.g. "invalid_json", "schema", "unknown_source"
    detail: str  # human-readable explanation naming the offending field
    raw: bytes  # the original bytes, untouched
    received_at: datetime
    tenant: str = ""  # the tenant the transport vouched for, when known
    source: str = ""  # the adapter named by the envelope, when known
    origin: str = ""  # where it came from: "topic/partition/offset" or "file@offset"
    part: str = ""  # which part of the record, e.g. "conversation c1 event 3"; "" for all of it

    def raw_base64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class RecordRef:
    """An accepted record, named without its bytes: what travels with the figures derived from it
    (``TenantFeed``) so that a later rejection (a correction beyond the horizon) says which record
    to replay, and the watermark knows when the record was received."""

    origin: str  # "topic/partition/offset" or "file@offset"
    sha256: str  # hex digest of the record's bytes
    received_at: datetime  # the envelope's receive time, or the transport's when earlier
    source: str

    @classmethod
    def of(cls, raw: bytes, origin: str, received_at: datetime, source: str) -> RecordRef:
        return cls(origin, hashlib.sha256(raw).hexdigest(), received_at, source)


def held_bytes(held: Callable[[], object]) -> bytes:
    """What a step held of a record, as the bytes of its letter: JSON when it can be written
    (times as ISO text), else its ``repr``; never raises, since the letter is the failure path."""
    try:
        return orjson.dumps(held(), default=str)
    except Exception:  # e.g. an integer beyond 64 bits, the very value that failed the step
        pass
    try:
        return repr(held()).encode("utf-8", "backslashreplace")
    except Exception as exc:
        return f"<unprintable: {type(exc).__name__}>".encode()


def internal_error(
    exc: BaseException,
    step: str,
    raw: bytes,
    received_at: datetime,
    *,
    tenant: str = "",
    source: str = "",
    origin: str = "",
    part: str = "",
) -> DeadLetter:
    """The letter of an item ``step`` failed on: the exception's type and message, the record."""
    return DeadLetter(
        INTERNAL_ERROR,
        f"{step}: {type(exc).__name__}: {str(exc)[:_MESSAGE_CHARS]}",
        raw,
        received_at,
        tenant,
        source,
        origin,
        f"{step} {part}".rstrip(),
    )


class AdapterError(ValueError):
    """A payload that an adapter cannot map; ``reason`` is the dead-letter class."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
