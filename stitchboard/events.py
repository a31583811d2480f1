"""The canonical event model every source is normalised into.

One validated shape for voice, callback, chat, messaging, email, bot and web-form events from any
platform, so that stitching and metric rules are written once. Strict: wrong types are rejected,
never coerced, and every timestamp must carry a zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

MAX_IDENTIFIER_LENGTH = 256
# Taken verbatim: the model does not trim (the adapters trim what sources send, see ``trim``), so a
# validated event shares its strings with its record instead of holding a copy of each.
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=MAX_IDENTIFIER_LENGTH)]
AttributeValue = str | int | float | bool | None

EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)
# Invariants no configuration can widen (the configurable bounds, ``settings.InputBounds``, sit
# inside them): nothing lasts longer than the span event times may cover, and a count of holds
# beyond a million (one every 0.6 s through a week) is no measurement. Both keep any sum of a
# million contributions far inside Int64.
MAX_DURATION_MS = (LATEST_EVENT_TIME - EARLIEST_EVENT_TIME) // timedelta(milliseconds=1)
MAX_COUNT = 1_000_000
MAX_SCORE = 100


class Channel(StrEnum):
    VOICE = "voice"
    CALLBACK = "callback"
    CHAT = "chat"
    MESSAGING = "messaging"
    EMAIL = "email"
    BOT = "bot"
    WEB_FORM = "web_form"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class EventType(StrEnum):
    """What happened. The stitcher documents how each type moves a conversation."""

    ARRIVED = "arrived"  # conversation starts (first touch: IVR, bot, web form, direct queue)
    IVR_STEP = "ivr_step"  # a self-service node (IVR menu, bot turn); attributes["node"]
    QUEUED = "queued"  # a leg enters a queue: the contact is offered to the queue
    ALERTING = "alerting"  # offered to an agent (ringing, chat invite)
    ANSWERED = "answered"  # connected to an agent (per-channel meaning in docs/metrics.md)
    HOLD = "hold"  # customer put on hold; attributes["duration_ms"] when the source only reports totals
    RESUME = "resume"  # customer taken off hold
    TRANSFER_BLIND = "transfer_blind"  # agent leg ends by blind transfer; attributes["target_queue"]
    TRANSFER_CONSULT = "transfer_consult"  # agent leg ends by consult transfer
    CONFERENCE = "conference"  # a third party joins
    ABANDONED = "abandoned"  # customer left before an agent answered (queue set: in queue; else IVR)
    DISCONNECTED = "disconnected"  # conversation ends; attributes["self_served"] for IVR/bot ends
    ACW_START = "acw_start"  # after-call work starts
    ACW_END = "acw_end"  # after-call work ends
    WRAPUP_SET = "wrapup_set"  # wrap-up code set or changed; attributes["code"]
    QA_SCORE_SET = "qa_score_set"  # quality score set or changed; attributes["score"]
    TICKET_REOPENED = "ticket_reopened"  # a resolved ticket (email, messaging) is reopened
    AGENT_STATE_CHANGED = "agent_state_changed"  # agent presence; attributes["state"]; no conversation


_AGENT_STATE_CHANGED = EventType.AGENT_STATE_CHANGED
OUT_OF_RANGE = "out_of_range"  # the validation error type (and dead-letter reason) of a value beyond a bound
# attribute → (inclusive maximum, whether a float is allowed); every such attribute is at least 0
_NUMERIC_ATTRIBUTES: dict[str, tuple[int, bool]] = {
    "duration_ms": (MAX_DURATION_MS, False),
    "count": (MAX_COUNT, False),
    "score": (MAX_SCORE, True),
}


class CustomerIds(BaseModel):
    """Pseudonymous identifiers (hashes, never raw PII) used to link conversations to a customer."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    phone_hash: Identifier | None = None
    email_hash: Identifier | None = None
    account_hash: Identifier | None = None
    cookie_hash: Identifier | None = None

    def keys(self) -> list[str]:
        """Typed identifier keys, e.g. ``phone:ab12``; conversations sharing one are one customer."""
        return [
            f"{kind}:{value}"
            for kind, value in (
                ("phone", self.phone_hash),
                ("email", self.email_hash),
                ("account", self.account_hash),
                ("cookie", self.cookie_hash),
            )
            if value is not None
        ]


class CanonicalEvent(BaseModel):
    """One normalised contact-centre event.

    ``event_id`` is the idempotency key: the same id with the same ``sequence`` is a duplicate; the
    same id with a higher ``sequence`` is a mutation that replaces the earlier version (a wrap-up
    code changed, a QA score re-marked).

    ``provisional`` marks what a live stream reported while the contact was in progress; ``scope``
    names the unit one complete record of the source describes (Genesys: the conversation, Amazon
    Connect: the contact). The complete record wins: once an event that is not provisional arrives
    with scope S, the provisional events of scope S are dropped and later ones are ignored.
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    tenant: Identifier
    source: Identifier
    event_id: Identifier
    conversation_id: Identifier | None = None
    leg_id: Identifier | None = None
    channel: Channel
    direction: Direction = Direction.INBOUND
    event_type: EventType
    event_time: datetime  # zone required: checked with the other cross-field rules below
    ingest_time: datetime
    queue: Identifier | None = None
    agent: Identifier | None = None
    customer: CustomerIds = Field(default_factory=CustomerIds)
    intent: Identifier | None = None
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    sequence: int = Field(default=0, ge=0)
    provisional: bool = False
    scope: Identifier | None = None

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        # The zone check lives here rather than in ``AwareDatetime``: one Python call per event does
        # every cross-field rule, and pydantic-core's own zone check cost more than all of them. It
        # reports the same error (type ``timezone_aware``, at the field) as ``AwareDatetime`` would.
        event_time, ingest_time = self.event_time, self.ingest_time
        if event_time.tzinfo is not UTC and event_time.utcoffset() is None:
            raise _naive_time(type(self).__name__, "event_time", event_time)
        if ingest_time.tzinfo is not UTC and ingest_time.utcoffset() is None:
            raise _naive_time(type(self).__name__, "ingest_time", ingest_time)
        if not EARLIEST_EVENT_TIME <= event_time < LATEST_EVENT_TIME:
            raise ValueError(f"event_time {event_time.isoformat()} is outside 2000..2100")
        if self.event_type is _AGENT_STATE_CHANGED:
            if self.agent is None:
                raise ValueError("agent_state_changed needs an agent")
        elif self.conversation_id is None:
            raise ValueError(f"{self.event_type.value} needs a conversation_id")
        if self.attributes:
            _check_attributes(type(self).__name__, self.attributes)
        return self


def _check_attributes(title: str, attributes: dict[str, AttributeValue]) -> None:
    """Text no longer than an identifier; durations, counts and scores numbers within their range."""
    for key, value in attributes.items():
        kind = value.__class__
        bound = _NUMERIC_ATTRIBUTES.get(key)
        if bound is None:
            if kind is str and len(value) > MAX_IDENTIFIER_LENGTH:  # type: ignore[arg-type]
                raise _out_of_range(title, key, value, f"longer than {MAX_IDENTIFIER_LENGTH} characters")
            continue
        maximum, decimal = bound
        if kind is not int and not (decimal and kind is float):
            raise _out_of_range(title, key, value, "not a number" if decimal else "not an integer")
        if not 0 <= value <= maximum:  # type: ignore[operator]
            raise _out_of_range(title, key, value, f"outside 0..{maximum}")


def _out_of_range(title: str, key: str, value: object, problem: str) -> ValidationError:
    shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."
    error = PydanticCustomError(OUT_OF_RANGE, "{problem}: {shown}", {"problem": problem, "shown": shown})
    return ValidationError.from_exception_data(
        title, [InitErrorDetails(type=error, loc=("attributes", key), input=value)]
    )


def _naive_time(title: str, field: str, value: datetime) -> ValidationError:
    problem = PydanticCustomError("timezone_aware", "Input should have timezone info")
    return ValidationError.from_exception_data(
        title, [InitErrorDetails(type=problem, loc=(field,), input=value)]
    )


def json_schema() -> dict[str, object]:
    """The canonical event's JSON Schema (committed as schemas/canonical-event.schema.json)."""
    schema = CanonicalEvent.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://stitchboard.dev/schemas/canonical-event.schema.json"
    return schema


if __name__ == "__main__":
    import json

    print(json.dumps(json_schema(), indent=2, sort_keys=True))
