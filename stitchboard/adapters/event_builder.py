"""Building canonical events from a record: deterministic ids, shared customer ids, strict validation."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from stitchboard.adapters.fields import WHITESPACE, millis, trim
from stitchboard.deadletters import AdapterError
from stitchboard.events import OUT_OF_RANGE, CanonicalEvent, Channel, CustomerIds, Direction, EventType

_EVENT_ID_HASH = hashlib.blake2b(digest_size=16)  # copied per id: cheaper than a new hash object


def stable_id(*parts: str | int) -> str:
    """Deterministic event id from the semantic key of an event, so re-deliveries collide."""
    return hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=16).hexdigest()


_validate_event = CanonicalEvent.__pydantic_validator__.validate_python
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
    try:
        customer: CustomerIds = _validate_customer_ids(
            {
                "phone_hash": trim(phone_hash),
                "email_hash": trim(email_hash),
                "account_hash": trim(account_hash),
                "cookie_hash": trim(cookie_hash),
            }
        )
    except ValidationError as exc:  # an identifier the model refuses, like an event's (see `emit`)
        raise AdapterError("schema", describe_validation_error(exc, "customer")) from exc
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
        attributes: Mapping[str, str | int | float | bool | None] | None = None,
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
            leg_id = leg_id.strip(WHITESPACE)
        if queue.__class__ is str:
            queue = queue.strip(WHITESPACE)
        if agent.__class__ is str:
            agent = agent.strip(WHITESPACE)
        intent = self.intent
        if intent.__class__ is str:
            intent = intent.strip(WHITESPACE)
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
            reason = OUT_OF_RANGE if exc.errors()[0]["type"] == OUT_OF_RANGE else "schema"
            raise AdapterError(reason, describe_validation_error(exc, event_type.value)) from exc
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
