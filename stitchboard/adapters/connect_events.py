"""Amazon Connect contact events (EventBridge ``Amazon Connect Contact Event``): live figures per contact.

Connect emits an event each time a contact changes state (INITIATED, QUEUED, CONNECTED_TO_AGENT,
DISCONNECTED, COMPLETED, ...). Each event carries the contact's state so far (``queueInfo``,
``agentInfo`` and the contact timestamps), so the adapter maps the *snapshot*, not the event type:
facts repeated by later events get the same ids and dedupe, and a later snapshot (its latest
timestamp is the ``sequence``) replaces an earlier one. The payload is the EventBridge event
(``{"version": "0", "detail-type": "Amazon Connect Contact Event", "source": "aws.connect", ...,
"detail": {...}}``) or its ``detail`` alone (an EventBridge input path of ``$.detail``). The admin
guide shows the detail's keys in camelCase and, in some examples, PascalCase: both are read.

The events are *provisional*, scoped to the contact (``scope`` = ``contactId``): a contact record
covers one contact, so the record of contact 1 replaces contact 1's events and leaves the live
events of a transferred contact 2 alone. Conversation and leg ids are the record adapter's
(``initialContactId`` or ``contactId``; ``contactId``). Events name queues and agents by ARN only;
queue and agent are the id that ends it (`connect.resource_id`), the key the record adapter uses
too, so the record replaces live figures under the same queue. Mapping table: docs/adapters.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stitchboard.adapters import connect
from stitchboard.adapters.event_builder import NO_CUSTOMER_IDS, EventBuilder
from stitchboard.adapters.fields import Fields, check_order, check_tenant, choose, millis
from stitchboard.deadletters import AdapterError
from stitchboard.events import CanonicalEvent, Channel, Direction, EventType

SOURCE = connect.SOURCE
DETAIL_TYPE = "Amazon Connect Contact Event"
EVENTBRIDGE_SOURCE = "aws.connect"
EVENT_TYPES = frozenset(
    {
        "INITIATED",
        "CONNECTED_TO_SYSTEM",
        "CONTACT_DATA_UPDATED",
        "QUEUED",
        "CONNECTED_TO_AGENT",
        "DISCONNECTED",
        "COMPLETED",
        "PAUSED",
        "RESUMED",
        "AMD_DISABLED",
        "WEBRTC_API",
    }
)
INITIATION_METHODS = connect.INITIATION_METHODS | {"MONITOR"}
NOT_CONTACTS = frozenset({"MONITOR"})  # a supervisor monitoring an agent: not a customer contact
OUTBOUND_METHODS = frozenset({"OUTBOUND", "EXTERNAL_OUTBOUND"})
# Connect writes a timestamp it has not set as the first millisecond of 1970 (admin guide, sample
# "contact properties are updated": connectedToAgentTimestamp 1970-01-01T00:00:00.001Z)
UNSET_TIME_PREFIX = "1970-01-01T00:00:00"
_STREAM = "stream"  # first part of every id key: stream events never share an id with record events


def is_contact_event(payload: dict[str, Any]) -> bool:
    """An EventBridge contact event or its detail; contact records have neither key."""
    return "detail-type" in payload or "eventType" in payload or "EventType" in payload


def parse(payload: dict[str, Any], tenant: str, received_at: datetime) -> list[CanonicalEvent]:
    """One delivery of the ``connect`` source: a contact record or a contact event."""
    if not is_contact_event(payload):
        return connect.parse(payload, tenant, received_at)
    detail = _detail(Fields(payload, "payload"))
    kind = detail.text("eventType")
    if kind not in EVENT_TYPES:
        raise AdapterError("unknown_event_type", f"{detail.path('eventType')} has unknown value {kind!r}")
    method = detail.text("initiationMethod", required=False)
    if method is not None and method not in INITIATION_METHODS:
        raise AdapterError(
            "unknown_event_type", f"{detail.path('initiationMethod')} has unknown value {method!r}"
        )
    if method in NOT_CONTACTS:
        return []
    contact = detail.text("contactId")
    conversation = (
        detail.text("initialContactId", required=False)
        or detail.text("previousContactId", required=False)
        or contact
    )
    tags = detail.obj("tags", required=False)
    if tags is not None:
        check_tenant(tags.text("tenant", required=False), tenant, tags, "tenant")
    direction = Direction.OUTBOUND if method in OUTBOUND_METHODS else Direction.INBOUND
    builder = EventBuilder(
        tenant,
        SOURCE,
        received_at,
        _channel(detail),
        direction,
        conversation,
        NO_CUSTOMER_IDS,
        scope=contact,
        provisional=True,
    )
    _snapshot(builder, detail, contact, first=contact == conversation)
    return builder.events


def _detail(payload: Fields) -> Fields:
    """The contact event itself, its keys in camelCase."""
    if "detail-type" in payload.data:
        kind = payload.text("detail-type")
        if kind != DETAIL_TYPE:
            raise AdapterError(
                "unknown_event_type", f"{payload.path('detail-type')} {kind!r} is not {DETAIL_TYPE!r}"
            )
        source = payload.text("source", required=False)
        if source is not None and source != EVENTBRIDGE_SOURCE:
            raise AdapterError("schema", f"{payload.path('source')} {source!r} is not {EVENTBRIDGE_SOURCE!r}")
        detail = payload.obj("detail")
        assert detail is not None
        payload = detail
    return Fields(_camel(payload.data, payload.where), payload.where)


def _camel(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Keys with a lower-case first letter (``QueueInfo`` → ``queueInfo``), nested objects too.

    Two spellings of one key (``queueInfo`` and ``QueueInfo``) are a key given twice: refused
    (``duplicate_key``), never one silently dropped for the other.
    """
    folded = {
        key[:1].lower() + key[1:]: _camel(value, f"{where}.{key}")
        if value.__class__ is dict and ":" not in key
        else value
        for key, value in data.items()
    }
    if len(folded) != len(data):
        seen: set[str] = set()
        for key in data:
            name = key[:1].lower() + key[1:]
            if name in seen:
                raise AdapterError(
                    "duplicate_key", f"{where} names the key {name!r} twice (in two spellings)"
                )
            seen.add(name)
    return folded


def _channel(detail: Fields) -> Channel:
    name = detail.text("channel").upper()  # the admin guide writes both VOICE and Voice
    if name not in connect.CHANNELS:
        raise AdapterError("unknown_channel", f"{detail.path('channel')} has unknown value {name!r}")
    segment_attributes = detail.obj("segmentAttributes", required=False)
    subtype = segment_attributes.obj("connect:Subtype", required=False) if segment_attributes else None
    if subtype is None:
        return connect.DEFAULT_CHANNEL[name]
    value = subtype.text("ValueString", required=False) or subtype.text("valueString")
    return choose(connect.SUBTYPES, (name, value), "unknown_channel", subtype, "ValueString")


def _time(fields: Fields | None, key: str) -> datetime | None:
    """An optional contact timestamp; Connect's "not set" value (the epoch) is absent too."""
    if fields is None:
        return None
    value = fields.data.get(key)
    if isinstance(value, str) and value.startswith(UNSET_TIME_PREFIX):
        return None
    return fields.time(key, required=False)


def _arn_id(fields: Fields, key: str) -> str | None:
    arn = fields.text(key, required=False)
    return None if arn is None else connect.resource_id(arn)


def _snapshot(builder: EventBuilder, detail: Fields, contact: str, *, first: bool) -> None:
    """The facts the contact's state so far establishes, each once per contact."""
    queue_info = detail.obj("queueInfo", required=False)
    agent_info = detail.obj("agentInfo", required=False)
    initiated = _time(detail, "initiationTimestamp")
    enqueued = _time(queue_info, "enqueueTimestamp")
    connected = _time(agent_info, "connectedToAgentTimestamp")
    acw_start = _time(agent_info, "afterContactWorkStartTimestamp")
    acw_end = _time(agent_info, "afterContactWorkEndTimestamp")
    disconnected = _time(detail, "disconnectTimestamp")
    if acw_start is not None:
        check_order(acw_start, acw_end, f"{detail.where}.agentInfo after-contact work")
    queue = _arn_id(queue_info, "queueArn") if queue_info is not None else None
    agent = _arn_id(agent_info, "agentArn") if agent_info is not None else None
    known = [
        moment for moment in (initiated, enqueued, connected, acw_start, acw_end, disconnected) if moment
    ]
    sequence = millis(max(known)) if known else 0  # the latest snapshot of a contact wins
    leg: dict[str, Any] = {"leg_id": contact, "sequence": sequence}
    key = (_STREAM, contact)
    if first and initiated is not None:
        builder.emit(EventType.ARRIVED, initiated, key, sequence=sequence)
    queued = enqueued is not None and queue is not None
    if queued:
        assert enqueued is not None
        builder.emit(EventType.QUEUED, enqueued, key, queue=queue, **leg)
    if connected is not None:
        builder.emit(EventType.ANSWERED, connected, key, queue=queue, agent=agent, **leg)
    if acw_start is not None:
        builder.emit(EventType.ACW_START, acw_start, key, queue=queue, agent=agent, **leg)
    if acw_end is not None:
        builder.emit(EventType.ACW_END, acw_end, key, queue=queue, agent=agent, **leg)
    if disconnected is None:
        return
    if connected is not None:
        builder.emit(EventType.DISCONNECTED, disconnected, key, queue=queue, agent=agent, **leg)
        return
    if queued:
        builder.emit(EventType.ABANDONED, disconnected, key, queue=queue, **leg)
    # whether the flow ended it (contained) or the customer hung up is not in the event: left unset
    builder.emit(EventType.DISCONNECTED, disconnected, key, sequence=sequence)
