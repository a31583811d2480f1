"""The envelope every raw record arrives in, and the field readers all adapters share.

Adapters read untrusted JSON; these readers turn every way a field can be wrong into an
``AdapterError`` whose reason is the dead-letter class and whose detail names the field by its path,
so a rejected record tells an operator exactly what to fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from stitchboard.deadletters import AdapterError
from stitchboard.events import (
    EARLIEST_EVENT_TIME,
    LATEST_EVENT_TIME,
    CanonicalEvent,
    Channel,
    CustomerIds,
    Direction,
    EventType,
)

MAX_RAW_BYTES = 1024 * 1024
_fromisoformat = datetime.fromisoformat
_EVENT_ID_HASH = hashlib.blake2b(digest_size=16)  # copied per id: cheaper than a new hash object
MAX_DEPTH = 64
SOURCES = ("genesys", "connect", "connect_agent", "webhook")


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


def parse_time(value: Any, where: str) -> datetime:
    """An ISO-8601 instant with a zone, inside 2000..2100, as a UTC datetime."""
    return _parse_time(value, where, "")


_TIMES: dict[str, datetime] = {}  # timestamp text → parsed: records repeat times (segment bounds, re-sends)
_TIMES_LIMIT = 1 << 14


def _parse_time(value: Any, where: str | Fields, key: str) -> datetime:
    """``parse_time`` naming the field ``where`` (a path, or ``key`` of an object) only on error."""
    if value.__class__ is str:
        parsed = _TIMES.get(value)
        if parsed is not None:
            return parsed
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(UTC)
                if EARLIEST_EVENT_TIME <= parsed < LATEST_EVENT_TIME:
                    if len(_TIMES) >= _TIMES_LIMIT:
                        _TIMES.clear()
                    _TIMES[value] = parsed
                    return parsed
    return _reject_time(value, where if isinstance(where, str) else where.path(key))


def _reject_time(value: Any, place: str) -> datetime:
    """The precise reason a timestamp was refused (the slow path, taken only for bad input)."""
    if not isinstance(value, str):
        raise AdapterError("schema", f"{place} must be an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise AdapterError("bad_timestamp", f"{place} is not an ISO-8601 timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        raise AdapterError("bad_timestamp", f"{place} has no time zone: {value!r}")
    parsed = parsed.astimezone(UTC)
    if not EARLIEST_EVENT_TIME <= parsed < LATEST_EVENT_TIME:
        raise AdapterError("bad_timestamp", f"{place} is outside 2000..2100: {value!r}")
    return parsed  # a str subclass that parses: accepted like the fast path would


def check_order(start: datetime, end: datetime | None, where: str | Fields) -> None:
    if end is not None and end < start:
        place = where if isinstance(where, str) else where.where
        raise AdapterError("bad_timestamp", f"{place} ends before it starts")


def millis(moment: datetime) -> int:
    """Epoch milliseconds: the sequence of a mutable fact is the time it was last set."""
    return int(moment.timestamp() * 1000)


class Fields:
    """Typed access to one JSON object, reporting problems with the object's path.

    A nested object's path is spelled out only when a message needs it: most records are valid,
    and building every path eagerly cost more than reading the fields.
    """

    __slots__ = ("_index", "_key", "_parent", "_where", "data")

    def __init__(self, data: Any, where: str) -> None:
        self._where: str | None = where
        self._parent: Fields | None = None
        self._key = ""
        self._index: int | None = None
        self.data: dict[str, Any] = self._checked(data)

    @classmethod
    def _child(cls, data: Any, parent: Fields, key: str, index: int | None = None) -> Fields:
        child = _new_fields(cls)
        child._where = None
        child._parent = parent
        child._key = key
        child._index = index
        child.data = data if data.__class__ is dict else child._checked(data)
        return child

    def _checked(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise AdapterError("schema", f"{self.where} must be an object, got {type(data).__name__}")
        return data

    @property
    def where(self) -> str:
        """The object's path in the record, e.g. ``payload.participants[2].sessions[0]``."""
        if self._where is None:
            assert self._parent is not None
            path = self._parent.path(self._key)
            self._where = path if self._index is None else f"{path}[{self._index}]"
        return self._where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}"

    def _get(self, key: str, kind: type | tuple[type, ...], kind_name: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None:
            if required:
                raise AdapterError("missing_field", f"{self.path(key)} is missing")
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise AdapterError("schema", f"{self.path(key)} must be {kind_name}, got {type(value).__name__}")
        return value

    def text(self, key: str, required: bool = True) -> Any:
        value = self.data.get(key)
        if value.__class__ is str and value and not value.isspace():
            return value
        value = self._get(key, str, "a string", required)
        if value is not None and not value.strip():
            if required:
                raise AdapterError("missing_field", f"{self.path(key)} is empty")
            return None
        return value

    def integer(self, key: str, required: bool = True) -> Any:
        return self._get(key, int, "an integer", required)

    def number(self, key: str, required: bool = True) -> Any:
        return self._get(key, (int, float), "a number", required)

    def time(self, key: str, required: bool = True) -> Any:
        value = self.data.get(key)
        if value is None:
            if required:
                raise AdapterError("missing_field", f"{self.path(key)} is missing")
            return None
        return _parse_time(value, self, key)

    def obj(self, key: str, required: bool = True) -> Fields | None:
        value = self.data.get(key)
        if value.__class__ is not dict:
            value = self._get(key, dict, "an object", required)
            if value is None:
                return None
        return Fields._child(value, self, key)

    def objects(self, key: str, required: bool = True) -> list[Fields]:
        value = self.data.get(key)
        if value.__class__ is not list:
            value = self._get(key, list, "an array", required) or ()
        child = Fields._child
        return [child(item, self, key, i) for i, item in enumerate(value)]


_new_fields = object.__new__


def choose(mapping: dict[Any, Any], value: Any, reason: str, where: str | Fields, key: str = "") -> Any:
    """Explicit vocabulary mapping: an unmapped value is rejected, never guessed.

    ``where`` is the value's path, or the object holding it as ``key`` (spelled out only on error).
    """
    try:
        return mapping[value]
    except KeyError:
        place = where if isinstance(where, str) else where.path(key)
        raise AdapterError(reason, f"{place} has unknown value {value!r}") from None


def check_tenant(claimed: str | None, tenant: str, where: str | Fields, key: str = "") -> None:
    if claimed is not None and claimed != tenant:
        place = where if isinstance(where, str) else where.path(key)
        raise AdapterError("tenant_mismatch", f"{place} names tenant {claimed!r}, envelope says {tenant!r}")


def stable_id(*parts: str | int) -> str:
    """Deterministic event id from the semantic key of an event, so re-deliveries collide."""
    return hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=16).hexdigest()


_validate_event = CanonicalEvent.__pydantic_validator__.validate_python
# Unicode White_Space: what pydantic's ``strip_whitespace`` trimmed (``str.strip()`` also trims \x1c-\x1f)
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def trim(value: Any) -> Any:
    """An identifier as the canonical event holds it: surrounding whitespace dropped (same object if none)."""
    return value.strip(WHITESPACE) if value.__class__ is str else value


NO_CUSTOMER_IDS = CustomerIds()  # frozen, so one instance serves every record without identifiers
_validate_customer_ids = CustomerIds.__pydantic_validator__.validate_python


_CUSTOMERS: dict[tuple[str | None, ...], CustomerIds] = {}  # re-sent records name the same customer
_CUSTOMERS_LIMIT = 1 << 14


def customer_ids(
    phone_hash: str | None, email_hash: str | None, account_hash: str | None, cookie_hash: str | None
) -> CustomerIds:
    """``CustomerIds(...)`` validated the same way; one shared (frozen) instance per distinct set of ids."""
    if phone_hash is None and email_hash is None and account_hash is None and cookie_hash is None:
        return NO_CUSTOMER_IDS
    key = (phone_hash, email_hash, account_hash, cookie_hash)
    known = _CUSTOMERS.get(key)
    if known is not None:
        return known
    customer = _validate_customer_ids(
        {
            "phone_hash": trim(phone_hash),
            "email_hash": trim(email_hash),
            "account_hash": trim(account_hash),
            "cookie_hash": trim(cookie_hash),
        }
    )
    if len(_CUSTOMERS) >= _CUSTOMERS_LIMIT:
        _CUSTOMERS.clear()
    _CUSTOMERS[key] = customer
    return customer


@dataclass(slots=True)
class EventBuilder:
    """Builds the events of one record: the record-wide fields are set once.

    Each event is validated by the canonical model's pydantic-core validator from a plain dict (the
    same strict validation as ``CanonicalEvent(**fields)``, without the keyword-argument detour).
    ``scope`` is the unit a complete record of the source describes and ``provisional`` marks a live
    stream's events (see `CanonicalEvent`); both are the same for every event of one record.
    """

    tenant: str
    source: str
    ingest_time: datetime
    channel: Channel
    direction: Direction = Direction.INBOUND
    conversation_id: str | None = None
    customer: CustomerIds = NO_CUSTOMER_IDS
    intent: str | None = None
    scope: str | None = None
    provisional: bool = False
    events: list[CanonicalEvent] = field(default_factory=list)
    _id_prefix: str = field(default="", init=False, repr=False)
    _conversation: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.conversation_id is not None:
            self._id_prefix = f"{self.tenant}\x1f{self.source}\x1f{self.conversation_id}\x1f"
            self._conversation = trim(self.conversation_id)
        if self.scope is not None:
            scope = trim(self.scope)
            # one string object for the conversation and a scope equal to it: stored states share it
            self.scope = self._conversation if scope == self._conversation else scope

    def emit(
        self,
        event_type: EventType,
        at: datetime,
        key: tuple[str | int, ...],
        *,
        leg_id: str | None = None,
        queue: str | None = None,
        agent: str | None = None,
        attributes: dict[str, str | int | float | bool | None] | None = None,
        sequence: int = 0,
    ) -> None:
        """Add one event; its id hashes tenant, conversation (or agent), type and ``key``.

        The id is ``stable_id(tenant, source, owner, event type, *key)``, with the record-wide
        prefix joined once per record.
        """
        prefix = self._id_prefix or f"{self.tenant}\x1f{self.source}\x1fagent:{agent}\x1f"
        text = prefix + event_type._value_
        for part in key:
            text += f"\x1f{part}"
        # ids hash what the source sent; the event holds identifiers trimmed
        if leg_id.__class__ is str:
            leg_id = leg_id.strip(WHITESPACE)  # type: ignore[union-attr]
        if queue.__class__ is str:
            queue = queue.strip(WHITESPACE)  # type: ignore[union-attr]
        if agent.__class__ is str:
            agent = agent.strip(WHITESPACE)  # type: ignore[union-attr]
        intent = self.intent
        if intent.__class__ is str:
            intent = intent.strip(WHITESPACE)  # type: ignore[union-attr]
        digest = _EVENT_ID_HASH.copy()
        digest.update(text.encode())
        try:
            event = _validate_event(
                {
                    "tenant": self.tenant,
                    "source": self.source,
                    "event_id": digest.hexdigest(),
                    "conversation_id": self._conversation,
                    "leg_id": leg_id,
                    "channel": self.channel,
                    "direction": self.direction,
                    "event_type": event_type,
                    "event_time": at,
                    "ingest_time": self.ingest_time,
                    "queue": queue,
                    "agent": agent,
                    "customer": self.customer,
                    "intent": intent,
                    "attributes": attributes or {},
                    "sequence": sequence,
                    "provisional": self.provisional,
                    "scope": self.scope,
                }
            )
        except ValidationError as exc:
            raise AdapterError("schema", describe_validation_error(exc, event_type.value)) from exc
        self.events.append(event)

    def wrapup(
        self, leg_id: str, code: str, at: datetime, *, queue: str | None = None, agent: str | None = None
    ) -> None:
        """A wrap-up code set at ``at``; a later setting of the same leg's code is a higher sequence."""
        self.emit(
            EventType.WRAPUP_SET,
            at,
            (leg_id,),
            leg_id=leg_id,
            queue=queue,
            agent=agent,
            attributes={"code": code},
            sequence=millis(at),
        )


def agent_state_events(
    tenant: str, source: str, received_at: datetime, agent: str, state: str, at: datetime
) -> list[CanonicalEvent]:
    """One agent presence change: the same canonical event whatever platform reported it."""
    builder = EventBuilder(tenant, source, received_at, Channel.VOICE)
    builder.emit(
        EventType.AGENT_STATE_CHANGED, at, (at.isoformat(), state), agent=agent, attributes={"state": state}
    )
    return builder.events


def describe_validation_error(exc: ValidationError, context: str) -> str:
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "event"
    return f"{context}: field {location}: {first['msg']} ({exc.error_count()} error(s))"
