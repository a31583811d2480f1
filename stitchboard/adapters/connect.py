"""Amazon Connect contact records (one per contact, i.e. per leg) and agent event stream records.

A transfer, a queue-to-queue transfer or a callback creates a new contact whose ``InitialContactId``
names the first contact, so the conversation id is ``InitialContactId`` (else ``PreviousContactId``,
else ``ContactId`` for the first contact) and the leg id is ``ContactId``. Whether the customer
went on in another contact is what ``NextContactId`` says; whether the agent transferred is what
``TransferCompletedTimestamp`` says (AWS admin guide, "Identify conferences and transfers"). A
contact with no next contact ends the conversation at its ``DisconnectTimestamp``, transfer or not.
Connect re-delivers a record whenever it is updated (``LastUpdateTimestamp``); event ids come from
the contact and what the event is about, and mutable facts carry the time they were set as
``sequence``, so re-deliveries dedupe and corrections replace. Facts Connect has no field for (IVR
path, wrap-up code, QA score, reopens) are contact attributes set by the flow or agent application,
per docs/adapters.md. Queues and agents are keyed by the id at the end of their ARN (`resource_id`),
as contact events must (they carry no names), so live and record figures share one key.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from stitchboard.adapters.event_builder import EventBuilder, agent_state_events, customer_ids
from stitchboard.adapters.fields import Fields, check_order, check_tenant, choose, millis, parse_time
from stitchboard.deadletters import AdapterError
from stitchboard.events import (
    MAX_SCORE,
    OUT_OF_RANGE,
    CanonicalEvent,
    Channel,
    CustomerIds,
    Direction,
    EventType,
)

SOURCE = "connect"
AGENT_SOURCE = "connect_agent"

CHANNELS = frozenset({"VOICE", "CHAT", "TASK", "EMAIL"})
SUBTYPES: dict[tuple[str, str], Channel] = {
    ("VOICE", "connect:Telephony"): Channel.VOICE,
    ("VOICE", "connect:WebRTC"): Channel.VOICE,
    ("VOICE", "connect:ExternalAudio"): Channel.VOICE,
    ("VOICE", "connect:Callback"): Channel.CALLBACK,
    ("CHAT", "connect:Chat"): Channel.CHAT,
    ("CHAT", "connect:Guide"): Channel.CHAT,
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
        "MONITOR",
        "EXTERNAL_OUTBOUND",
        "AGENT_REPLY",
        "FLOW",
        "WEBRTC_API",
    }
)
# A supervisor listening to (or barging into) a contact: Connect gives it its own contact record,
# but it is not a customer contact and counts nothing.
NOT_CUSTOMER_CONTACTS = frozenset({"MONITOR"})
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
    """One contact record → the events of that leg (and, for the first contact, of the IVR).

    How the leg ends: answered and transferred (``TransferCompletedTimestamp``) → a transfer; left
    the queue unanswered into a next contact (callback, queue-to-queue transfer) → a transfer of the
    queue leg; otherwise unanswered → an abandon. The contact's ``DisconnectTimestamp`` ends the
    conversation unless a next contact carries on (``NextContactId``) after a transfer; a consult
    or conference that did not transfer (``NextContactId`` without ``TransferCompletedTimestamp``)
    still ends with this contact, the customer's.
    """
    record = Fields(payload, "payload")
    contact_id = record.text("ContactId")
    _check_tags(record, tenant)
    method = record.text("InitiationMethod")
    if method not in INITIATION_METHODS:
        raise AdapterError("unknown_event_type", f"payload.InitiationMethod has unknown value {method!r}")
    if method in NOT_CUSTOMER_CONTACTS:
        return []
    conversation_id = (
        record.text("InitialContactId", required=False)
        or record.text("PreviousContactId", required=False)
        or contact_id
    )
    first = contact_id == conversation_id
    attributes = _attributes(record)
    initiated = record.time("InitiationTimestamp")
    disconnected = record.time("DisconnectTimestamp")
    check_order(initiated, disconnected, "payload.contact (InitiationTimestamp..DisconnectTimestamp)")
    builder = EventBuilder(
        tenant,
        SOURCE,
        received_at,
        _channel(record, method),
        _direction(attributes, method, first),
        conversation_id,
        _customer(record, attributes, method, first),
        attributes.text("intent", required=False),
        scope=contact_id,
    )
    leg_id = contact_id
    if first:
        builder.emit(EventType.ARRIVED, initiated, ())
        _ivr_steps(builder, attributes)
    continued = record.text("NextContactId", required=False) is not None
    transferred_at = record.time("TransferCompletedTimestamp", required=False)
    queue, dequeued = _queue(builder, record.obj("Queue", required=False), leg_id)
    agent_info = record.obj("Agent", required=False)
    connected = agent_info.time("ConnectedToAgentTimestamp", required=False) if agent_info else None
    if agent_info is not None and connected is not None:
        agent = _agent(builder, agent_info, connected, disconnected, leg_id, queue)
        _end_answered(
            builder, attributes, leg_id, queue, agent, connected, transferred_at, continued, disconnected
        )
        _wrapup_and_qa(builder, attributes, record, disconnected, leg_id, queue, agent)
    else:
        left = dequeued or disconnected
        _end_unanswered(
            builder, attributes, record, leg_id, queue, left, transferred_at, continued, disconnected
        )
    _reopens(builder, attributes)
    return builder.events


def _end_answered(
    builder: EventBuilder,
    attributes: Fields,
    leg_id: str,
    queue: str | None,
    agent: str,
    connected: datetime,
    transferred_at: datetime | None,
    continued: bool,
    disconnected: datetime,
) -> None:
    """A transfer ends the agent's talk; the disconnect ends the conversation unless a next contact goes on."""
    if transferred_at is not None:
        check_order(
            connected, transferred_at, "payload (ConnectedToAgentTimestamp..TransferCompletedTimestamp)"
        )
        _transfer(builder, attributes, transferred_at, leg_id, queue, agent)
    if transferred_at is None or not continued:
        builder.emit(EventType.DISCONNECTED, disconnected, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)


def _end_unanswered(
    builder: EventBuilder,
    attributes: Fields,
    record: Fields,
    leg_id: str,
    queue: str | None,
    left: datetime,
    transferred_at: datetime | None,
    continued: bool,
    disconnected: datetime,
) -> None:
    """A queue leg left for a next contact or out of Connect is a transfer, else an abandon; without a
    next contact the conversation ends here (after the queue, or in self-service)."""
    if queue is not None:
        if continued or transferred_at is not None:
            _transfer(builder, attributes, left, leg_id, queue, None)
        else:
            builder.emit(EventType.ABANDONED, left, (leg_id,), leg_id=leg_id, queue=queue)
    if not continued:
        reason = record.text("DisconnectReason", required=False)
        served = transferred_at is None and reason in CONTAINED_REASONS
        ending = {} if queue is not None else {"self_served": served}
        builder.emit(EventType.DISCONNECTED, disconnected, (leg_id,), attributes=ending)


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
    arn = record.text("AgentARN", required=False)
    agent = resource_id(arn) if arn is not None else None
    if agent is None:
        agent = configuration.text("Username", required=False) if configuration else None
    if agent is None:
        raise AdapterError("missing_field", f"{record.path('AgentARN')} is missing (and no Username)")
    if kind == "LOGOUT":
        state = "offline"
    else:
        status = snapshot.obj("AgentStatus")
        assert status is not None
        state = status.text("Name").strip().lower().replace(" ", "_")
    return agent_state_events(tenant, AGENT_SOURCE, received_at, agent, state, at)


def resource_id(arn: str) -> str:
    """The key of a Connect queue or agent: the id that ends its ARN (``.../queue/<id>``,
    ``.../agent/<id>``; an agent's own queue, ``.../queue/agent/<agent id>``, by that agent's id).
    Contact records, contact events and agent events all key by it: only records carry names."""
    return arn.rsplit("/", 1)[-1]


def _key(info: Fields, name_key: str) -> str:
    """``info``'s queue or agent key: the id from its ``ARN``; its name only when a record has no ARN
    (the data model lists ``ARN`` in every ``Queue`` and ``Agent``; only hand-built records lack it)."""
    arn = info.text("ARN", required=False)
    if arn is not None:
        return resource_id(arn)
    name = info.text(name_key, required=False)
    if name is None:
        raise AdapterError("missing_field", f"{info.path('ARN')} is missing (and no {name_key})")
    return name


def _check_tags(record: Fields, tenant: str) -> None:
    tags = record.obj("Tags", required=False)
    if tags is not None:
        check_tenant(tags.text("tenant", required=False), tenant, tags, "tenant")


def _attributes(record: Fields) -> Fields:
    """Contact attributes; Connect documents a string map, but only the keys read here must be strings."""
    return record.obj("Attributes", required=False) or Fields._child({}, record, "Attributes")


def _channel(record: Fields, method: str) -> Channel:
    name = record.text("Channel")
    if name not in CHANNELS:
        raise AdapterError("unknown_channel", f"payload.Channel has unknown value {name!r}")
    segment_attributes = record.obj("SegmentAttributes", required=False)
    subtype_field = segment_attributes.obj("connect:Subtype", required=False) if segment_attributes else None
    subtype = subtype_field.text("ValueString", required=False) if subtype_field else None
    if subtype is None:
        return Channel.CALLBACK if name == "VOICE" and method == "CALLBACK" else DEFAULT_CHANNEL[name]
    assert subtype_field is not None
    return choose(SUBTYPES, (name, subtype), "unknown_channel", subtype_field, "ValueString")


def _direction(attributes: Fields, method: str, first: bool) -> Direction:
    """Outbound when the first contact dialled out; later contacts (consult legs) keep the conversation's."""
    declared = attributes.text("direction", required=False)
    if declared is not None:
        return choose(DIRECTIONS, declared, "schema", attributes, "direction")
    if method == "OUTBOUND" or (method == "EXTERNAL_OUTBOUND" and first):
        return Direction.OUTBOUND
    return Direction.INBOUND


def _customer(record: Fields, attributes: Fields, method: str, first: bool) -> CustomerIds:
    """The customer's identifiers; an external consult leg's endpoint is the third party, not the customer."""
    endpoint = record.obj("CustomerEndpoint", required=False)
    by_type: dict[str, str] = {}
    if endpoint is not None and (first or method != "EXTERNAL_OUTBOUND"):
        kind, address = endpoint.text("Type", required=False), endpoint.text("Address", required=False)
        if kind is not None and address is not None:
            by_type[kind] = address
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


def _queue(
    builder: EventBuilder, queue_info: Fields | None, leg_id: str
) -> tuple[str | None, datetime | None]:
    """``queued`` when the contact entered the queue: (queue, when it left it), else (None, None)."""
    enqueued = queue_info.time("EnqueueTimestamp", required=False) if queue_info else None
    if queue_info is None or enqueued is None:
        return None, None
    queue = _key(queue_info, "Name")
    dequeued = queue_info.time("DequeueTimestamp", required=False)
    check_order(enqueued, dequeued, queue_info)
    builder.emit(EventType.QUEUED, enqueued, (leg_id,), leg_id=leg_id, queue=queue)
    return queue, dequeued


def _agent(
    builder: EventBuilder,
    agent_info: Fields,
    connected: datetime,
    disconnected: datetime,
    leg_id: str,
    queue: str | None,
) -> str:
    agent = _key(agent_info, "Username")
    builder.emit(EventType.ANSWERED, connected, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
    holds = agent_info.count("NumberOfHolds") or 0
    hold_ms = agent_info.duration_ms("CustomerHoldDuration", unit_ms=1000) or 0
    # the customer can only be held while connected to the agent (whole seconds: one of rounding)
    connected_ms = (disconnected - connected) // timedelta(milliseconds=1)
    if hold_ms > connected_ms + 1000:
        raise AdapterError(
            OUT_OF_RANGE,
            f"{agent_info.path('CustomerHoldDuration')} {hold_ms // 1000} s is longer than the"
            f" {connected_ms / 1000:g} s connected (ConnectedToAgentTimestamp..DisconnectTimestamp)",
        )
    if holds or hold_ms:
        builder.emit(
            EventType.HOLD,
            connected,
            (leg_id,),
            leg_id=leg_id,
            queue=queue,
            agent=agent,
            attributes={"duration_ms": hold_ms, "count": holds},
        )
    acw_start = agent_info.time("AfterContactWorkStartTimestamp", required=False)
    acw_end = agent_info.time("AfterContactWorkEndTimestamp", required=False)
    if acw_start is not None:
        check_order(acw_start, acw_end, f"{agent_info.where} after-contact work")
        builder.emit(EventType.ACW_START, acw_start, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
        if acw_end is not None:
            builder.emit(EventType.ACW_END, acw_end, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
    return agent


def _transfer(
    builder: EventBuilder, attributes: Fields, at: datetime, leg_id: str, queue: str | None, agent: str | None
) -> None:
    """The leg ended by a transfer: blind unless the flow or agent application says consult."""
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
        at,
        (leg_id,),
        leg_id=leg_id,
        queue=queue,
        agent=agent,
        attributes={"target_queue": target} if target else {},
    )


def _wrapup_and_qa(
    builder: EventBuilder,
    attributes: Fields,
    record: Fields,
    disconnected: datetime,
    leg_id: str,
    queue: str | None,
    agent: str,
) -> None:
    code = attributes.text("wrapupCode", required=False)
    if code is not None:
        at = (
            attributes.time("wrapupSetAt", required=False)
            or record.time("LastUpdateTimestamp", required=False)
            or disconnected
        )
        builder.wrapup(leg_id, code, at, queue=queue, agent=agent)
    score_text = attributes.text("qaScore", required=False)
    if score_text is not None:
        if not (score_text.isascii() and score_text.isdigit()):
            raise AdapterError("schema", f"{attributes.path('qaScore')} must be an integer 0..100")
        digits = score_text.lstrip("0") or "0"  # short before int(): never a conversion of 5,000 digits
        if len(digits) > 3 or int(digits) > MAX_SCORE:
            raise AdapterError(OUT_OF_RANGE, f"{attributes.path('qaScore')} must be within 0..100")
        at = attributes.time("qaScoredAt")
        builder.emit(
            EventType.QA_SCORE_SET,
            at,
            (leg_id,),
            leg_id=leg_id,
            queue=queue,
            agent=agent,
            attributes={"score": int(digits)},
            sequence=millis(at),
        )


def _reopens(builder: EventBuilder, attributes: Fields) -> None:
    reopened = attributes.text("reopenedAt", required=False)
    for index, moment in enumerate(reopened.split(IVR_STEP_SEPARATOR) if reopened else []):
        at = parse_time(moment, f"{attributes.path('reopenedAt')}[{index}]")
        builder.emit(EventType.TICKET_REOPENED, at, (index,))
