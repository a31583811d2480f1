"""Genesys Cloud analytics conversation detail records (and user presence notifications).

A detail record describes a whole conversation as participants (customer, ivr, acd, agent), each
with sessions of timed segments. One record is re-delivered whenever it changes (a wrap-up entered
after the call, an evaluation), so every event id is derived from what the event is about — the
conversation, participant, segment position — never from the delivery; mutable facts (wrap-up
code, evaluation score) carry the time they were last set as ``sequence``. Mapping table:
docs/adapters.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stitchboard.adapters.envelope import (
    NO_CUSTOMER_IDS,
    EventBuilder,
    Fields,
    agent_state_events,
    check_order,
    check_tenant,
    choose,
    customer_ids,
    millis,
)
from stitchboard.deadletters import AdapterError
from stitchboard.events import CanonicalEvent, Channel, CustomerIds, Direction, EventType

SOURCE = "genesys"

MEDIA_TYPES: dict[str, Channel] = {
    "voice": Channel.VOICE,
    "callback": Channel.CALLBACK,
    "chat": Channel.CHAT,
    "message": Channel.MESSAGING,
    "email": Channel.EMAIL,
    "bot": Channel.BOT,  # Stitchboard extension: bot-only contacts reported in this shape
    "webform": Channel.WEB_FORM,  # Stitchboard extension: web-form contacts reported in this shape
}
DIRECTIONS: dict[str, Direction] = {
    "inbound": Direction.INBOUND,
    "outbound": Direction.OUTBOUND,
    "internal": Direction.INTERNAL,
}
CUSTOMER_PURPOSES = frozenset({"customer", "external"})
AGENT_PURPOSES = frozenset({"agent", "user"})
IGNORED_PURPOSES = frozenset({"workflow", "voicemail", "fax", "station", "api", "dialer"})
KNOWN_PURPOSES = CUSTOMER_PURPOSES | AGENT_PURPOSES | IGNORED_PURPOSES | {"ivr", "acd"}
SEGMENT_TYPES = frozenset(
    {"ivr", "interact", "alert", "hold", "wrapup", "dialing", "contacting", "system", "delay", "parked"}
)
TALK_SEGMENTS = frozenset({"interact", "dialing", "contacting"})
TRANSFER_DISCONNECTS: dict[str, EventType] = {
    "transfer": EventType.TRANSFER_BLIND,
    "transfer.forward": EventType.TRANSFER_BLIND,
    "transfer.noanswer": EventType.TRANSFER_BLIND,
    "transfer.notavailable": EventType.TRANSFER_BLIND,
    "transfer.consult": EventType.TRANSFER_CONSULT,
    "transfer.conference": EventType.TRANSFER_CONSULT,
}
ENDING_DISCONNECTS = frozenset(
    {"endpoint", "client", "peer", "system", "timeout", "error", "other", "transport.failure", "spam"}
)
FLOW_ENDED = frozenset({"endpoint", "system"})  # the IVR/bot flow itself disconnected: contained
PRESENCES: dict[str, str] = {
    "Available": "available",
    "Away": "away",
    "Busy": "busy",
    "Offline": "offline",
    "Idle": "idle",
    "On Queue": "on_queue",
    "Meal": "meal",
    "Training": "training",
    "Meeting": "meeting",
    "Break": "break",
}
PRESENCE_TOPIC = re.compile(r"^v2\.users\.(?P<user>.+)\.presence$")


@dataclass(slots=True)
class _Leg:
    leg_id: str
    queue: str
    queued_at: datetime
    left_at: datetime | None
    agent: str | None = None


def parse(payload: dict[str, Any], tenant: str, received_at: datetime) -> list[CanonicalEvent]:
    """One delivery (detail record or presence notification) → canonical events."""
    if "topicName" in payload:
        return _parse_presence(Fields(payload, "payload"), tenant, received_at)
    return _parse_record(Fields(payload, "payload"), tenant, received_at)


def _parse_presence(note: Fields, tenant: str, received_at: datetime) -> list[CanonicalEvent]:
    topic = note.text("topicName")
    match = PRESENCE_TOPIC.match(topic)
    if match is None:
        raise AdapterError("unknown_event_type", f"payload.topicName {topic!r} is not a user presence topic")
    body = note.obj("eventBody")
    assert body is not None
    check_tenant(body.text("organizationId", required=False), tenant, body, "organizationId")
    definition = body.obj("presenceDefinition")
    assert definition is not None
    state = choose(
        PRESENCES, definition.text("systemPresence"), "unknown_event_type", definition, "systemPresence"
    )
    at = body.time("modifiedDate")
    return agent_state_events(tenant, SOURCE, received_at, match.group("user"), state, at)


def _parse_record(record: Fields, tenant: str, received_at: datetime) -> list[CanonicalEvent]:
    conversation_id = record.text("conversationId")
    check_tenant(record.text("organizationId", required=False), tenant, record, "organizationId")
    start = record.time("conversationStart")
    end = record.time("conversationEnd", required=False)
    check_order(start, end, "payload.conversation")
    direction = choose(
        DIRECTIONS, record.text("originatingDirection"), "schema", record, "originatingDirection"
    )
    participants = record.objects("participants")
    if not participants:
        raise AdapterError("missing_field", "payload.participants is empty")
    by_purpose: dict[str, list[Fields]] = {}
    for participant in participants:
        purpose = participant.text("purpose")
        if purpose not in KNOWN_PURPOSES:
            raise AdapterError("schema", f"{participant.path('purpose')} has unknown value {purpose!r}")
        group = (
            "customer" if purpose in CUSTOMER_PURPOSES else "agent" if purpose in AGENT_PURPOSES else purpose
        )
        by_purpose.setdefault(group, []).append(participant)
    customers = by_purpose.get("customer", [])
    channel = _channel(customers[0] if customers else participants[0])
    customer, intent = _customer(customers[0]) if customers else (NO_CUSTOMER_IDS, None)
    builder = EventBuilder(
        tenant,
        SOURCE,
        received_at,
        channel,
        direction,
        conversation_id,
        customer,
        intent,
        scope=conversation_id,
    )

    builder.emit(EventType.ARRIVED, start, ())
    ivr_end = _ivr(builder, by_purpose.get("ivr", []))
    legs = _queue_visits(builder, by_purpose.get("acd", []))
    talk_ended_by_disconnect = False
    for participant in by_purpose.get("agent", []):
        talk_ended_by_disconnect |= _agent(builder, participant, legs)
    _evaluations(builder, record.objects("evaluations", required=False), legs)
    _reopens(builder, customers)
    if end is not None and not talk_ended_by_disconnect:
        ended_in_ivr = ivr_end is not None and not legs
        attributes: dict[str, Any] = {"self_served": ivr_end in FLOW_ENDED} if ended_in_ivr else {}
        builder.emit(EventType.DISCONNECTED, end, (), attributes=attributes)
    return builder.events


def _sessions(participant: Fields) -> list[Fields]:
    sessions = participant.objects("sessions")
    if not sessions:
        raise AdapterError("missing_field", f"{participant.path('sessions')} is empty")
    return sessions


def _segments(session: Fields) -> list[tuple[Fields, str, datetime, datetime | None]]:
    """(segment, type, start, end) in order, with types and time order checked."""
    result = []
    for segment in session.objects("segments"):
        kind = segment.text("segmentType")
        if kind not in SEGMENT_TYPES:
            raise AdapterError(
                "unknown_event_type", f"{segment.path('segmentType')} has unknown value {kind!r}"
            )
        start = segment.time("segmentStart")
        end = segment.time("segmentEnd", required=False)
        check_order(start, end, segment)
        result.append((segment, kind, start, end))
    if not result:
        raise AdapterError("missing_field", f"{session.path('segments')} is empty")
    return result


def _channel(participant: Fields) -> Channel:
    session = _sessions(participant)[0]
    return choose(MEDIA_TYPES, session.text("mediaType"), "unknown_channel", session, "mediaType")


def _customer(participant: Fields) -> tuple[CustomerIds, str | None]:
    session = _sessions(participant)[0]
    attributes = participant.obj("attributes", required=False)
    customer = customer_ids(
        session.text("ani", required=False),
        session.text("addressFrom", required=False),
        participant.text("externalContactId", required=False),
        attributes.text("cookieHash", required=False) if attributes else None,
    )
    return customer, attributes.text("intent", required=False) if attributes else None


def _ivr(builder: EventBuilder, participants: list[Fields]) -> str | None:
    """IVR steps from flow outcomes; returns how the last IVR segment ended (None if it goes on)."""
    ended: str | None = None
    step = 0
    for participant in participants:
        for session in _sessions(participant):
            flow = session.obj("flow", required=False)
            for outcome in flow.objects("outcomes", required=False) if flow else []:
                node = outcome.text("flowOutcome")
                at = outcome.time("flowOutcomeStartTimestamp")
                builder.emit(EventType.IVR_STEP, at, (step,), attributes={"node": node})
                step += 1
            segment, _, _, end = _segments(session)[-1]
            ended = segment.text("disconnectType") if end is not None else None
    return ended


def _queue_visits(builder: EventBuilder, participants: list[Fields]) -> list[_Leg]:
    """Each acd participant is one queue visit (a leg): queued at its interact segment start."""
    legs = []
    for participant in participants:
        leg_id = participant.text("participantId")
        segments = [s for session in _sessions(participant) for s in _segments(session)]
        first, _, queued_at, _ = segments[0]
        queue = first.text("queueId")
        last, _, _, left_at = segments[-1]
        legs.append(_Leg(leg_id, queue, queued_at, left_at))
        builder.emit(EventType.QUEUED, queued_at, (leg_id,), leg_id=leg_id, queue=queue)
        last_disconnect = last.text("disconnectType") if left_at is not None else None
        if last_disconnect is not None and last_disconnect not in TRANSFER_DISCONNECTS:
            if last_disconnect not in ENDING_DISCONNECTS:
                raise AdapterError(
                    "unknown_event_type", f"{last.path('disconnectType')}: {last_disconnect!r}"
                )
            assert left_at is not None
            builder.emit(EventType.ABANDONED, left_at, (leg_id,), leg_id=leg_id, queue=queue)
    legs.sort(key=lambda leg: leg.queued_at)
    return legs


def _agent(builder: EventBuilder, participant: Fields, legs: list[_Leg]) -> bool:
    """Answer, holds, talk end, after-call work and wrap-up of one agent; True if talk ended the call."""
    agent = participant.text("userId")
    segments = [s for session in _sessions(participant) for s in _segments(session)]
    talks = [s for s in segments if s[1] in TALK_SEGMENTS]
    if not talks:
        raise AdapterError("missing_field", f"{participant.where} has no interact segment")
    first_talk, _, answered_at, _ = talks[0]
    queue = first_talk.text("queueId", required=False)
    leg = next((leg for leg in legs if leg.queue == queue and leg.left_at == answered_at), None)
    leg_id = leg.leg_id if leg else participant.text("participantId")
    if leg is not None:
        leg.agent = agent
    builder.emit(EventType.ANSWERED, answered_at, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
    for index, (_, kind, start, end) in enumerate(segments):
        if kind == "hold":
            builder.emit(EventType.HOLD, start, (leg_id, index), leg_id=leg_id, queue=queue, agent=agent)
            if end is not None:
                builder.emit(EventType.RESUME, end, (leg_id, index), leg_id=leg_id, queue=queue, agent=agent)
        elif kind == "wrapup":
            builder.emit(EventType.ACW_START, start, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
            if end is not None:
                builder.emit(EventType.ACW_END, end, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
    ended_by_disconnect = False
    last_talk, _, _, talk_end = talks[-1]
    if talk_end is not None:
        how = last_talk.text("disconnectType")
        if how in TRANSFER_DISCONNECTS:
            target = next((other.queue for other in legs if other.queued_at >= talk_end), None)
            attributes = {"target_queue": target} if target else {}
            builder.emit(
                TRANSFER_DISCONNECTS[how],
                talk_end,
                (leg_id,),
                leg_id=leg_id,
                queue=queue,
                agent=agent,
                attributes=attributes,
            )
        elif how in ENDING_DISCONNECTS:
            builder.emit(EventType.DISCONNECTED, talk_end, (), leg_id=leg_id, queue=queue, agent=agent)
            ended_by_disconnect = True
        else:
            raise AdapterError("unknown_event_type", f"{last_talk.path('disconnectType')} has value {how!r}")
    _wrapup(builder, participant, segments, leg_id, queue, agent)
    return ended_by_disconnect


def _wrapup(
    builder: EventBuilder,
    participant: Fields,
    segments: list[tuple[Fields, str, datetime, datetime | None]],
    leg_id: str,
    queue: str | None,
    agent: str,
) -> None:
    """The participant ``wrapup`` object (code + endTime) wins; else the wrapup segment's code."""
    wrapup = participant.obj("wrapup", required=False)
    if wrapup is not None:
        code, at = wrapup.text("code"), wrapup.time("endTime")
    else:
        coded = [
            (s.text("wrapUpCode", required=False), end) for s, kind, _, end in segments if kind == "wrapup"
        ]
        done = [(code, end) for code, end in coded if code is not None and end is not None]
        if not done:
            return
        code, at = done[-1]
    builder.wrapup(leg_id, code, at, queue=queue, agent=agent)


def _evaluations(builder: EventBuilder, evaluations: list[Fields], legs: list[_Leg]) -> None:
    """Quality evaluations: linked to the leg named by ``contextId``, else by agent and queue."""
    for evaluation in evaluations:
        evaluation_id = evaluation.text("evaluationId")
        agent = evaluation.text("userId")
        queue = evaluation.text("queueId", required=False)
        context = evaluation.text("contextId", required=False)
        at = evaluation.time("eventTime")
        score = evaluation.number("oTotalScore")
        if not 0 <= score <= 100:
            raise AdapterError(
                "schema", f"{evaluation.path('oTotalScore')} must be within 0..100, got {score}"
            )
        matches = [leg for leg in legs if leg.leg_id == context] or [
            leg for leg in legs if leg.agent == agent and leg.queue == queue
        ]
        if not matches:
            raise AdapterError("schema", f"{evaluation.where} matches no answered leg (userId {agent!r})")
        leg = matches[-1]
        builder.emit(
            EventType.QA_SCORE_SET,
            at,
            (evaluation_id,),
            leg_id=leg.leg_id,
            queue=leg.queue,
            agent=agent,
            attributes={"score": round(score)},
            sequence=millis(at),
        )


def _reopens(builder: EventBuilder, customers: list[Fields]) -> None:
    """Every customer session after the first is the customer writing back: a ticket reopen."""
    sessions = [session for participant in customers for session in _sessions(participant)]
    for index, session in enumerate(sessions[1:], start=1):
        _, _, start, _ = _segments(session)[0]
        builder.emit(EventType.TICKET_REOPENED, start, (index,))
