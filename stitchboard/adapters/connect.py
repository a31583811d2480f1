"""Amazon Connect contact records (one per contact, i.e. per leg) and agent event stream records.

A transfer creates a new contact whose ``InitialContactId`` names the first contact, so the
conversation id is ``InitialContactId`` (or ``ContactId`` for the first contact) and the leg id is
``ContactId``. Connect re-delivers a record whenever it is updated (``LastUpdateTimestamp``); event
ids come from the contact and what the event is about, and mutable facts carry the time they were
set as ``sequence``, so re-deliveries dedupe and corrections replace. Facts Connect has no field for
(IVR path, wrap-up code, QA score, reopens) are contact attributes set by the flow or agent
application, per docs/adapters.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stitchboard.adapters.envelope import (
    EventBuilder,
    Fields,
    agent_state_events,
    check_order,
    check_tenant,
    choose,
    customer_ids,
    millis,
    parse_time,
)
from stitchboard.deadletters import AdapterError
from stitchboard.events import CanonicalEvent, Channel, CustomerIds, Direction, EventType

SOURCE = "connect"
AGENT_SOURCE = "connect_agent"

CHANNELS = frozenset({"VOICE", "CHAT", "TASK", "EMAIL"})
SUBTYPES: dict[tuple[str, str], Channel] = {
    ("VOICE", "connect:Telephony"): Channel.VOICE,
    ("VOICE", "connect:WebRTC"): Channel.VOICE,
    ("VOICE", "connect:Callback"): Channel.CALLBACK,
    ("CHAT", "connect:Chat"): Channel.CHAT,
    ("CHAT", "connect:SMS"): Channel.MESSAGING,
    ("CHAT", "connect:WhatsApp"): Channel.MESSAGING,
    ("CHAT", "connect:Apple"): Channel.MESSAGING,
    ("CHAT", "connect:Bot"): Channel.BOT,
    ("TASK", "connect:Task"): Channel.WEB_FORM,
    ("EMAIL", "connect:Email"): Channel.EMAIL,
}
DEFAULT_CHANNEL: dict[str, Channel] = {
    "VOICE": Channel.VOICE,
    "CHAT": Channel.CHAT,
    "TASK": Channel.WEB_FORM,
    "EMAIL": Channel.EMAIL,
}
INITIATION_METHODS = frozenset(
    {
        "INBOUND",
        "OUTBOUND",
        "TRANSFER",
        "QUEUE_TRANSFER",
        "CALLBACK",
        "API",
        "DISCONNECT",
        "EXTERNAL_OUTBOUND",
        "AGENT_REPLY",
        "FLOW",
        "WEBRTC_API",
    }
)
DIRECTIONS: dict[str, Direction] = {
    "inbound": Direction.INBOUND,
    "outbound": Direction.OUTBOUND,
    "internal": Direction.INTERNAL,
}
TRANSFER_TYPES: dict[str, EventType] = {
    "blind": EventType.TRANSFER_BLIND,
    "consult": EventType.TRANSFER_CONSULT,
}
AGENT_EVENT_TYPES = frozenset({"STATE_CHANGE", "LOGIN", "LOGOUT", "HEART_BEAT"})
CONTAINED_REASONS = frozenset({"CONTACT_FLOW_DISCONNECT"})  # the flow ended the contact: self-served
IVR_STEP_SEPARATOR = "|"
IVR_NODE_TIME_SEPARATOR = "@"


def parse(payload: dict[str, Any], tenant: str, received_at: datetime) -> list[CanonicalEvent]:
    """One contact record → the events of that leg (and, for the first contact, of the IVR)."""
    record = Fields(payload, "payload")
    contact_id = record.text("ContactId")
    conversation_id = record.text("InitialContactId", required=False) or contact_id
    _check_tags(record, tenant)
    attributes = _attributes(record)
    method = record.text("InitiationMethod")
    if method not in INITIATION_METHODS:
        raise AdapterError("unknown_event_type", f"payload.InitiationMethod has unknown value {method!r}")
    initiated = record.time("InitiationTimestamp")
    disconnected = record.time("DisconnectTimestamp")
    check_order(initiated, disconnected, "payload.contact (InitiationTimestamp..DisconnectTimestamp)")
    builder = EventBuilder(
        tenant,
        SOURCE,
        received_at,
        _channel(record, method),
        _direction(attributes, method),
        conversation_id,
        _customer(record, attributes),
        attributes.text("intent", required=False),
        scope=contact_id,
    )
    leg_id = contact_id
    if contact_id == conversation_id:
        builder.emit(EventType.ARRIVED, initiated, ())
        _ivr_steps(builder, attributes)
    queue_info = record.obj("Queue", required=False)
    agent_info = record.obj("Agent", required=False)
    queue = _queue(builder, queue_info, leg_id, answered=agent_info is not None)
    agent = _agent(builder, agent_info, leg_id, queue) if agent_info is not None else None
    transferred_at = record.time("TransferCompletedTimestamp", required=False)
    if transferred_at is not None:
        kind = choose(
            TRANSFER_TYPES,
            attributes.text("transferType", required=False) or "blind",
            "schema",
            attributes,
            "transferType",
        )
        target = attributes.text("transferQueue", required=False)
        builder.emit(
            kind,
            transferred_at,
            (leg_id,),
            leg_id=leg_id,
            queue=queue,
            agent=agent,
            attributes={"target_queue": target} if target else {},
        )
    elif agent is not None:
        builder.emit(EventType.DISCONNECTED, disconnected, (), leg_id=leg_id, queue=queue, agent=agent)
    else:
        reason = record.text("DisconnectReason", required=False)
        ending = {} if queue is not None else {"self_served": reason in CONTAINED_REASONS}
        builder.emit(EventType.DISCONNECTED, disconnected, (), attributes=ending)
    if agent is not None:
        _wrapup_and_qa(builder, attributes, record, leg_id, queue, agent)
    _reopens(builder, attributes)
    return builder.events


def parse_agent_event(payload: dict[str, Any], tenant: str, received_at: datetime) -> list[CanonicalEvent]:
    """Agent event stream: state changes and log-ins/outs become agent_state_changed; heartbeats nothing."""
    record = Fields(payload, "payload")
    kind = record.text("EventType")
    if kind not in AGENT_EVENT_TYPES:
        raise AdapterError("unknown_event_type", f"payload.EventType has unknown value {kind!r}")
    if kind == "HEART_BEAT":
        return []
    _check_tags(record, tenant)
    at = record.time("EventTimestamp")
    snapshot = record.obj("CurrentAgentSnapshot")
    assert snapshot is not None
    configuration = snapshot.obj("Configuration", required=False)
    agent = configuration.text("Username", required=False) if configuration else None
    if agent is None:
        agent = record.text("AgentARN").rsplit("/", 1)[-1]
    if kind == "LOGOUT":
        state = "offline"
    else:
        status = snapshot.obj("AgentStatus")
        assert status is not None
        state = status.text("Name").strip().lower().replace(" ", "_")
    return agent_state_events(tenant, AGENT_SOURCE, received_at, agent, state, at)


def _check_tags(record: Fields, tenant: str) -> None:
    tags = record.obj("Tags", required=False)
    if tags is not None:
        check_tenant(tags.text("tenant", required=False), tenant, tags, "tenant")


def _attributes(record: Fields) -> Fields:
    attributes = record.obj("Attributes", required=False) or Fields._child({}, record, "Attributes")
    for key, value in attributes.data.items():
        if not isinstance(value, str):
            raise AdapterError(
                "schema", f"{attributes.path(key)} must be a string, got {type(value).__name__}"
            )
    return attributes


def _channel(record: Fields, method: str) -> Channel:
    name = record.text("Channel")
    if name not in CHANNELS:
        raise AdapterError("unknown_channel", f"payload.Channel has unknown value {name!r}")
    segment_attributes = record.obj("SegmentAttributes", required=False)
    subtype_field = segment_attributes.obj("connect:Subtype", required=False) if segment_attributes else None
    if subtype_field is None:
        return Channel.CALLBACK if name == "VOICE" and method == "CALLBACK" else DEFAULT_CHANNEL[name]
    subtype = subtype_field.text("ValueString")
    return choose(SUBTYPES, (name, subtype), "unknown_channel", subtype_field, "ValueString")


def _direction(attributes: Fields, method: str) -> Direction:
    declared = attributes.text("direction", required=False)
    if declared is not None:
        return choose(DIRECTIONS, declared, "schema", attributes, "direction")
    return Direction.OUTBOUND if method in {"OUTBOUND", "EXTERNAL_OUTBOUND"} else Direction.INBOUND


def _customer(record: Fields, attributes: Fields) -> CustomerIds:
    endpoint = record.obj("CustomerEndpoint", required=False)
    by_type: dict[str, str] = {}
    if endpoint is not None:
        by_type[endpoint.text("Type")] = endpoint.text("Address")
    return customer_ids(
        by_type.get("TELEPHONE_NUMBER") or attributes.text("customerPhoneHash", required=False),
        by_type.get("EMAIL_ADDRESS") or attributes.text("customerEmailHash", required=False),
        attributes.text("customerAccountHash", required=False),
        attributes.text("customerCookieHash", required=False),
    )


def _ivr_steps(builder: EventBuilder, attributes: Fields) -> None:
    """``ivrSteps`` is ``node@ISO-time`` entries joined by ``|``, appended to by each flow block."""
    path = attributes.text("ivrSteps", required=False)
    for index, entry in enumerate(path.split(IVR_STEP_SEPARATOR) if path else []):
        node, separator, moment = entry.rpartition(IVR_NODE_TIME_SEPARATOR)
        if not separator or not node:
            raise AdapterError("schema", f"{attributes.path('ivrSteps')} entry {entry!r} is not node@time")
        at = parse_time(moment, f"{attributes.path('ivrSteps')}[{index}]")
        builder.emit(EventType.IVR_STEP, at, (index,), attributes={"node": node})


def _queue(builder: EventBuilder, queue_info: Fields | None, leg_id: str, answered: bool) -> str | None:
    if queue_info is None:
        return None
    queue = queue_info.text("Name", required=False) or queue_info.text("ARN").rsplit("/", 1)[-1]
    enqueued = queue_info.time("EnqueueTimestamp")
    builder.emit(EventType.QUEUED, enqueued, (leg_id,), leg_id=leg_id, queue=queue)
    if not answered:
        dequeued = queue_info.time("DequeueTimestamp")
        check_order(enqueued, dequeued, queue_info)
        builder.emit(EventType.ABANDONED, dequeued, (leg_id,), leg_id=leg_id, queue=queue)
    return queue


def _agent(builder: EventBuilder, agent_info: Fields, leg_id: str, queue: str | None) -> str:
    agent = agent_info.text("Username", required=False) or agent_info.text("ARN").rsplit("/", 1)[-1]
    connected = agent_info.time("ConnectedToAgentTimestamp")
    builder.emit(EventType.ANSWERED, connected, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
    holds = agent_info.integer("NumberOfHolds", required=False) or 0
    hold_seconds = agent_info.integer("CustomerHoldDuration", required=False) or 0
    if holds < 0 or hold_seconds < 0:
        raise AdapterError("schema", f"{agent_info.where}: hold count and duration must not be negative")
    if holds or hold_seconds:
        builder.emit(
            EventType.HOLD,
            connected,
            (leg_id,),
            leg_id=leg_id,
            queue=queue,
            agent=agent,
            attributes={"duration_ms": hold_seconds * 1000, "count": holds},
        )
    acw_start = agent_info.time("AfterContactWorkStartTimestamp", required=False)
    acw_end = agent_info.time("AfterContactWorkEndTimestamp", required=False)
    if acw_start is not None:
        check_order(acw_start, acw_end, f"{agent_info.where} after-contact work")
        builder.emit(EventType.ACW_START, acw_start, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
        if acw_end is not None:
            builder.emit(EventType.ACW_END, acw_end, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
    return agent


def _wrapup_and_qa(
    builder: EventBuilder, attributes: Fields, record: Fields, leg_id: str, queue: str | None, agent: str
) -> None:
    code = attributes.text("wrapupCode", required=False)
    if code is not None:
        at = attributes.time("wrapupSetAt", required=False) or record.time("LastUpdateTimestamp")
        builder.wrapup(leg_id, code, at, queue=queue, agent=agent)
    score_text = attributes.text("qaScore", required=False)
    if score_text is not None:
        if not score_text.isdigit() or not 0 <= int(score_text) <= 100:
            raise AdapterError("schema", f"{attributes.path('qaScore')} must be an integer 0..100")
        at = attributes.time("qaScoredAt")
        builder.emit(
            EventType.QA_SCORE_SET,
            at,
            (leg_id,),
            leg_id=leg_id,
            queue=queue,
            agent=agent,
            attributes={"score": int(score_text)},
            sequence=millis(at),
        )


def _reopens(builder: EventBuilder, attributes: Fields) -> None:
    reopened = attributes.text("reopenedAt", required=False)
    for index, moment in enumerate(reopened.split(IVR_STEP_SEPARATOR) if reopened else []):
        at = parse_time(moment, f"{attributes.path('reopenedAt')}[{index}]")
        builder.emit(EventType.TICKET_REOPENED, at, (index,))
