"""Genesys Cloud conversation detail events (``v2.detail.events.conversation.{id}.*``): live figures.

Genesys publishes one small event per participant session start and end while a conversation is in
progress, as a notification (``{"topicName", "version", "eventBody", "metadata"}``, the WebSocket
and Process Automation shape) or wrapped by the Amazon EventBridge integration (``{"version": "0",
"detail-type", "source": "aws.partner/genesys.com/...", ..., "detail": <the notification>}``). Field
names and vocabularies follow the platform SDK models (``AcdStartDetailEventTopicAcdStartEvent``,
``AcdEndDetailEventTopicAcdEndEvent``, ``UserEndDetailEventTopicUserEndEvent``,
``AcwDetailEventTopicAfterCallWorkEvent``, ...): every field there is optional, ``eventTime`` is epoch
milliseconds, enums are upper case.

The events are *provisional*: they move offered, answered, abandoned and waiting (and talk, hold,
ACW as far as they tell) while the contact is in progress; the conversation detail record of the
same conversation (``scope`` = the conversation id) replaces them when it arrives. Ids are the ones
the record adapter uses (``conversationId``, the acd ``participantId`` as the leg id), so the stream
and the record describe the same legs. What the stream cannot say precisely is left to the record.
Mapping table: docs/adapters.md.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from stitchboard.adapters import genesys
from stitchboard.adapters.event_builder import NO_CUSTOMER_IDS, EventBuilder, customer_ids
from stitchboard.adapters.fields import Fields, check_tenant, choose
from stitchboard.deadletters import AdapterError
from stitchboard.events import (
    EARLIEST_EVENT_TIME,
    LATEST_EVENT_TIME,
    OUT_OF_RANGE,
    CanonicalEvent,
    Channel,
    CustomerIds,
    Direction,
    EventType,
)

SOURCE = genesys.SOURCE
DETAIL_TOPIC = re.compile(
    r"^v2\.detail\.events\.conversation\.(?P<conversation>[^.]+)\.(?P<kind>[a-z]+(?:\.[a-z]+)?)$"
)
MEDIA_TYPES: dict[str, Channel] = {
    "VOICE": Channel.VOICE,
    "CALLBACK": Channel.CALLBACK,
    "CHAT": Channel.CHAT,
    "MESSAGE": Channel.MESSAGING,
    "EMAIL": Channel.EMAIL,
}
DIRECTIONS: dict[str, Direction] = {"INBOUND": Direction.INBOUND, "OUTBOUND": Direction.OUTBOUND}
# Topics that carry something the stitcher uses, and documented topics that carry nothing it can use
# while the contact is in progress (IVR path, containment, attributes and voicemail come with the record).
USED_TOPICS = frozenset({"customer.start", "customer.end", "acd.start", "acd.end", "user.end", "acw"})
IGNORED_TOPICS = frozenset(
    {
        "user.start",
        "flow.start",
        "flow.end",
        "flow.outcome",
        "outbound",
        "attributes",
        "contact",
        "voicemail.start",
        "voicemail.end",
        "wrapup",
    }
)
ACD_OUTCOMES = frozenset({"ABANDON", "ANSWERED", "FLOW_OUT", "UNKNOWN"})
USER_TRANSFERS: dict[str, EventType] = {
    "TRANSFER": EventType.TRANSFER_BLIND,
    "FORWARD_TRANSFER": EventType.TRANSFER_BLIND,
    "CONSULT_TRANSFER": EventType.TRANSFER_CONSULT,
    "CONFERENCE_TRANSFER": EventType.TRANSFER_CONSULT,
}
# acd.end without acdOutcome: a customer-side or system end of the queue visit, without an answer
ACD_ABANDON_DISCONNECTS = frozenset(
    {"ENDPOINT", "CLIENT", "PEER", "SYSTEM", "TIMEOUT", "ERROR", "OTHER", "TRANSPORT_FAILURE", "SPAM"}
)
EVENTBRIDGE_PARTNER_SOURCE = "aws.partner/genesys.com"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STREAM = "stream"  # first part of every id key: stream events never share an id with record events


def is_notification(payload: dict[str, Any]) -> bool:
    """A notification (``topicName``) or an EventBridge event (``detail-type``), not a detail record."""
    return "topicName" in payload or "detail-type" in payload


def parse(payload: dict[str, Any], tenant: str, received_at: datetime) -> list[CanonicalEvent]:
    """One delivery of the ``genesys`` source: a detail record or a notification of any wrapping."""
    if not is_notification(payload):
        return genesys.parse(payload, tenant, received_at)
    note = _unwrap(Fields(payload, "payload"))
    topic = note.text("topicName")
    match = DETAIL_TOPIC.match(topic)
    if match is None:
        if genesys.PRESENCE_TOPIC.match(topic):
            return genesys.parse(note.data, tenant, received_at)
        raise AdapterError("unknown_event_type", f"{note.path('topicName')} {topic!r} is not a known topic")
    kind = match.group("kind")
    if kind not in USED_TOPICS:
        if kind in IGNORED_TOPICS:
            return []
        raise AdapterError("unknown_event_type", f"{note.path('topicName')} has unknown event {kind!r}")
    body = note.obj("eventBody")
    assert body is not None
    return _events(kind, match.group("conversation"), body, tenant, received_at)


def _unwrap(envelope: Fields) -> Fields:
    """The notification itself: the EventBridge ``detail``, or the payload when it is not wrapped."""
    if "detail-type" not in envelope.data:
        return envelope
    source = envelope.text("source", required=False)
    if source is not None and not source.startswith(EVENTBRIDGE_PARTNER_SOURCE):
        raise AdapterError(
            "schema", f"{envelope.path('source')} {source!r} is not a Genesys Cloud partner source"
        )
    detail = envelope.obj("detail")
    assert detail is not None
    return detail


def _events(
    kind: str, topic_conversation: str, body: Fields, tenant: str, received_at: datetime
) -> list[CanonicalEvent]:
    check_tenant(body.text("organizationId", required=False), tenant, body, "organizationId")
    conversation = body.text("conversationId", required=False) or topic_conversation
    if conversation != topic_conversation:
        raise AdapterError(
            "schema",
            f"{body.path('conversationId')} {conversation!r} is not the topic's {topic_conversation!r}",
        )
    at = _event_time(body)
    channel = choose(MEDIA_TYPES, body.text("mediaType"), "unknown_channel", body, "mediaType")
    declared = body.text("direction", required=False)
    direction = (
        Direction.INBOUND if declared is None else choose(DIRECTIONS, declared, "schema", body, "direction")
    )
    customer = _customer(body) if kind.startswith("customer.") else NO_CUSTOMER_IDS
    builder = EventBuilder(
        tenant,
        SOURCE,
        received_at,
        channel,
        direction,
        conversation,
        customer,
        scope=conversation,
        provisional=True,
    )
    participant = body.text("participantId", required=False)
    session = body.text("sessionId", required=False)
    if kind == "customer.start":
        builder.emit(EventType.ARRIVED, at, (_STREAM, session or participant or ""))
    elif kind == "customer.end":
        builder.emit(EventType.DISCONNECTED, at, (_STREAM, session or participant or ""))
    elif kind == "acd.start":
        queue = body.text("queueId", required=False)
        if queue is not None:
            builder.emit(
                EventType.QUEUED, at, (_STREAM, participant or queue), leg_id=participant, queue=queue
            )
    elif kind == "acd.end":
        _acd_end(builder, body, at, participant)
    elif kind == "user.end":
        _user_end(builder, body, at, participant)
    else:
        _acw(builder, body, at, participant)
    return builder.events


_EARLIEST_MS = (EARLIEST_EVENT_TIME - _EPOCH) // timedelta(milliseconds=1)
_LATEST_MS = (LATEST_EVENT_TIME - _EPOCH) // timedelta(milliseconds=1)


def _event_time(body: Fields) -> datetime:
    """``eventTime``: epoch milliseconds (an integer), inside 2000..2100 (checked before any date
    arithmetic, which a huge integer would overflow)."""
    millis = body.integer("eventTime")
    if not _EARLIEST_MS <= millis < _LATEST_MS:
        raise AdapterError("bad_timestamp", f"{body.path('eventTime')} {millis} is outside 2000..2100")
    return _EPOCH + timedelta(milliseconds=millis)


def _customer(body: Fields) -> CustomerIds:
    return customer_ids(
        body.text("ani", required=False),
        body.text("addressFrom", required=False),
        body.text("externalContactId", required=False),
        None,
    )


def _acd_end(builder: EventBuilder, body: Fields, at: datetime, participant: str | None) -> None:
    """The queue visit ends: answered (by ``answeredUserId``) or abandoned; a flow-out says neither."""
    queue = body.text("queueId", required=False)
    if queue is None and participant is None:
        return  # a visit to no named queue and no named leg: nothing to attach the outcome to
    outcome = body.text("acdOutcome", required=False)
    if outcome is not None and outcome not in ACD_OUTCOMES:
        raise AdapterError("unknown_event_type", f"{body.path('acdOutcome')} has unknown value {outcome!r}")
    agent = body.text("answeredUserId", required=False)
    key = (_STREAM, participant or queue or "")
    if outcome == "ANSWERED" or (outcome is None and agent is not None):
        builder.emit(EventType.ANSWERED, at, key, leg_id=participant, queue=queue, agent=agent)
    elif outcome == "ABANDON" or (
        outcome is None and body.text("disconnectType", required=False) in ACD_ABANDON_DISCONNECTS
    ):
        builder.emit(EventType.ABANDONED, at, key, leg_id=participant, queue=queue)


def _user_end(builder: EventBuilder, body: Fields, at: datetime, participant: str | None) -> None:
    """An agent's session ends: its held time, and a transfer when it ended by one.

    Only an agent who interacted (``interactingDurationMs`` > 0) handled the contact; an offer the
    agent did not take adds nothing. The session names the agent, not the queue visit, so the events
    carry ``agent`` and no leg id: the stitcher puts them on that agent's answered leg.
    """
    interacted = body.duration_ms("interactingDurationMs")
    if not interacted:
        return
    agent, queue = body.text("userId", required=False), body.text("queueId", required=False)
    key = (_STREAM, participant or agent or "")
    held = body.duration_ms("heldDurationMs")
    if held:
        # the stream reports the held time, not the number of holds: the count comes with the record
        attributes = {"duration_ms": held, "count": 0}
        builder.emit(EventType.HOLD, at, key, queue=queue, agent=agent, attributes=attributes)
    transfer = USER_TRANSFERS.get(body.text("disconnectType", required=False) or "")
    if transfer is not None:
        builder.emit(transfer, at, key, queue=queue, agent=agent)


def _acw(builder: EventBuilder, body: Fields, at: datetime, participant: str | None) -> None:
    """After-call work ends when the wrap-up is applied (``eventTime``); it took ``wrapupDurationMs``."""
    agent, queue = body.text("userId", required=False), body.text("queueId", required=False)
    key = (_STREAM, participant or agent or "")
    duration = body.duration_ms("wrapupDurationMs")
    if duration is not None:
        started = at - timedelta(milliseconds=duration)
        if started < EARLIEST_EVENT_TIME:
            raise AdapterError(
                OUT_OF_RANGE, f"{body.path('wrapupDurationMs')} {duration} starts the work before 2000"
            )
        builder.emit(EventType.ACW_START, started, key, queue=queue, agent=agent)
    builder.emit(EventType.ACW_END, at, key, queue=queue, agent=agent)
    code = body.text("wrapupCode", required=False)
    if code is not None:
        attributes = {"code": code}
        builder.emit(
            EventType.WRAPUP_SET,
            at,
            key,
            queue=queue,
            agent=agent,
            attributes=attributes,
            sequence=body.integer("eventTime"),
        )
