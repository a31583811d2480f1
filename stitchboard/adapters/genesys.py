"""Genesys Cloud analytics conversation detail records (and user presence notifications).

A detail record describes a whole conversation as participants (customer, ivr, acd, agent, user…),
each with sessions of timed segments. Genesys documents every field of the record as optional, and
real records differ by age: 2016 responses carry no ``originatingDirection`` nor
``conversationEnd``; ``disconnectType`` sits on a session's final segment (a hold, an alert, a
wrap-up), not on a particular segment type; an agent's connect and the queue segment's end differ
by milliseconds either way. So the adapter reads what is there and derives what is absent, and
rejects a record only for a missing key (``conversationId``, ``conversationStart``,
``participants``), a malformed value, or a value outside Genesys's documented vocabularies.

One record is re-delivered whenever it changes (a wrap-up entered after the call, an evaluation),
so every event id is derived from what the event is about — the conversation, a participant, a
leg, a segment position — never from the delivery; mutable facts (wrap-up code, evaluation score)
carry the time they were last set as ``sequence``. Mapping table and linking rules:
docs/adapters.md.

Why one module of over 500 lines: one vendor grammar (participants, sessions, segments) and the
real-world deviations it must accept (#11) read together; split, a rule and the exception to it
would sit in different files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stitchboard.adapters.event_builder import NO_CUSTOMER_IDS, EventBuilder, agent_state_events, customer_ids
from stitchboard.adapters.fields import Fields, check_order, check_tenant, choose, millis
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
# Documented media types Stitchboard does not report on: a session of one of these never decides the
# conversation's channel (a cobrowse or screen-share session rides along a voice or chat conversation).
UNREPORTED_MEDIA_TYPES = frozenset(
    {"cobrowse", "screenshare", "screenmonitoring", "video", "internalmessage", "unknown"}
)
DIRECTIONS: dict[str, Direction] = {
    "inbound": Direction.INBOUND,
    "outbound": Direction.OUTBOUND,
    "internal": Direction.INTERNAL,
}
CUSTOMER_PURPOSES = frozenset({"customer", "external"})
AGENT_PURPOSES = frozenset({"agent"})  # ACD-routed (or on-behalf-of-queue) handling
USER_PURPOSES = frozenset({"user"})  # an internal user not routed by ACD: no agent leg
SELF_SERVICE_PURPOSES = frozenset({"ivr", "botflow"})
QUEUE_PURPOSES = frozenset({"acd"})
IGNORED_PURPOSES = frozenset(
    {
        "api",
        "campaign",
        "dialer",
        "fax",
        "group",
        "inbound",
        "manual",
        "outbound",
        "station",
        "voicemail",
        "voicesurveyflow",
        "workflow",
    }
)
KNOWN_PURPOSES = (
    CUSTOMER_PURPOSES
    | AGENT_PURPOSES
    | USER_PURPOSES
    | SELF_SERVICE_PURPOSES
    | QUEUE_PURPOSES
    | IGNORED_PURPOSES
)
SEGMENT_TYPES = frozenset(
    {
        "alert",
        "barging",
        "callback",
        "coaching",
        "contacting",
        "converting",
        "delay",
        "dialing",
        "hold",
        "interact",
        "ivr",
        "monitoring",
        "parked",
        "scheduled",
        "screenmonitoring",
        "sharing",
        "system",
        "transmitting",
        "unknown",
        "uploading",
        "voicemail",
        "wrapup",
    }
)
TALK_SEGMENTS = frozenset({"interact", "dialing", "contacting"})  # the agent is connected from the first
OFF_TALK_SEGMENTS = frozenset({"alert", "wrapup"})  # neither starts nor ends an agent's talk
# Analytics spells these in camelCase; the Conversations API (and older renderings) with dots.
TRANSFER_DISCONNECTS: dict[str, EventType] = {
    "transfer": EventType.TRANSFER_BLIND,
    "forwardTransfer": EventType.TRANSFER_BLIND,
    "noAnswerTransfer": EventType.TRANSFER_BLIND,
    "notAvailableTransfer": EventType.TRANSFER_BLIND,
    "dndTransfer": EventType.TRANSFER_BLIND,
    "takeover": EventType.TRANSFER_BLIND,
    "transfer.forward": EventType.TRANSFER_BLIND,
    "transfer.noanswer": EventType.TRANSFER_BLIND,
    "transfer.notavailable": EventType.TRANSFER_BLIND,
    "consultTransfer": EventType.TRANSFER_CONSULT,
    "conferenceTransfer": EventType.TRANSFER_CONSULT,
    "transfer.consult": EventType.TRANSFER_CONSULT,
    "transfer.conference": EventType.TRANSFER_CONSULT,
}
ENDING_DISCONNECTS = frozenset(
    {
        "endpoint",
        "client",
        "peer",
        "system",
        "timeout",
        "error",
        "other",
        "spam",
        "uncallable",
        "dndEndpoint",
        "inactivity",
        "sessionExpired",
        "transportFailure",
        "transport.failure",
    }
)
FLOW_ENDED = frozenset({"endpoint", "system"})  # the IVR/bot flow itself disconnected: contained
TICKET_CHANNELS = frozenset({Channel.EMAIL, Channel.MESSAGING, Channel.WEB_FORM})
# How far an agent's alert (or connect, without an alert) may fall outside an acd segment and still
# be that queue visit's offer: real records show gaps of a few milliseconds either way.
LINK_TOLERANCE = timedelta(seconds=5)
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


@dataclass(frozen=True, slots=True)
class _Segment:
    fields: Fields
    kind: str
    start: datetime
    end: datetime | None

    @property
    def how(self) -> str | None:
        """The segment's ``disconnectType`` (absent on most segments)."""
        value: str | None = self.fields.text("disconnectType", required=False)
        return value


@dataclass(frozen=True, slots=True)
class _Participant:
    fields: Fields
    index: int  # position in the record's participants
    purpose: str
    sessions: tuple[tuple[Fields, tuple[_Segment, ...]], ...]

    @property
    def segments(self) -> list[_Segment]:
        return sorted((s for _, segments in self.sessions for s in segments), key=lambda s: s.start)


@dataclass(slots=True)
class _Visit:
    """One acd participant: one visit to one queue, i.e. one leg."""

    leg_id: str
    queue: str | None
    opened_at: datetime  # first segment (a ``delay`` may precede the offer)
    queued_at: datetime  # first ``interact`` segment: the offer (Genesys emits nOffered there)
    left_at: datetime | None
    how: str | None
    answered: bool = False


@dataclass(slots=True, eq=False)
class _Handling:
    """An agent's part in one offer: one session, or sessions of one participant that overlap in time."""

    key: str
    participant: Fields
    agent: str | None
    queue: str | None
    segments: list[_Segment]
    alerted_at: datetime | None
    answered_at: datetime | None
    visit: _Visit | None = None

    @property
    def anchor(self) -> datetime:
        moment = self.alerted_at or self.answered_at
        assert moment is not None
        return moment

    @property
    def leg_id(self) -> str:
        return self.visit.leg_id if self.visit is not None else self.key

    @property
    def leg_queue(self) -> str | None:
        """The queue of the visit it answered; a handling no queue offered counts in no queue."""
        return self.visit.queue if self.visit is not None else None


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
    participants = _participants(record)
    customers = [p for p in participants if p.purpose in CUSTOMER_PURPOSES]
    users = [p for p in participants if p.purpose in USER_PURPOSES]
    channel = _channel([*customers, *users, *participants])
    direction = _direction(record, customers, participants)
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
    self_service = [p for p in participants if p.purpose in SELF_SERVICE_PURPOSES]
    flow_ended = _self_service(builder, self_service)
    visits = _visits([p for p in participants if p.purpose in QUEUE_PURPOSES])
    handlings = [h for p in participants if p.purpose in AGENT_PURPOSES for h in _handlings(p)]
    _link(handlings, visits)
    for visit in visits:
        _visit_events(builder, visit)
    coded = _wrapup_objects(builder, handlings)
    agent_ends = [
        moment
        for handling in handlings
        if (moment := _handling_events(builder, handling, visits, coded_elsewhere=handling in coded))
    ]
    answered = [h for h in handlings if h.answered_at is not None]
    _evaluations(builder, record.objects("evaluations", required=False), answered)
    reopened: tuple[Fields, ...] = ()
    if channel in TICKET_CHANNELS and customers:
        reopened = _reopens(builder, customers[0])
    stop = _conversation_end(end, participants)
    others = _last_end([p for p in participants if p.purpose not in AGENT_PURPOSES], skip=reopened)
    agent_ended_it = bool(agent_ends) and (others is None or others <= max(agent_ends) + LINK_TOLERANCE)
    if stop is not None and not agent_ended_it:
        in_self_service = bool(self_service) and not visits and not answered
        attributes: dict[str, Any] = {"self_served": flow_ended in FLOW_ENDED} if in_self_service else {}
        builder.emit(EventType.DISCONNECTED, stop, (), attributes=attributes)
    return builder.events


def _participants(record: Fields) -> list[_Participant]:
    """Every participant with a purpose, its sessions and their segments parsed and checked once."""
    participants = record.objects("participants")
    if not participants:
        raise AdapterError("missing_field", "payload.participants is empty")
    result = []
    for index, participant in enumerate(participants):
        purpose = participant.text("purpose", required=False)
        if purpose is None:
            continue  # nothing says what it is: it contributes nothing
        if purpose not in KNOWN_PURPOSES:
            raise AdapterError("schema", f"{participant.path('purpose')} has unknown value {purpose!r}")
        sessions = tuple(
            (session, _segments(session)) for session in participant.objects("sessions", required=False)
        )
        result.append(_Participant(participant, index, purpose, sessions))
    return result


def _segments(session: Fields) -> tuple[_Segment, ...]:
    """The session's segments with a type and a start, checked, in the order given."""
    result = []
    for segment in session.objects("segments", required=False):
        kind = segment.text("segmentType", required=False)
        if kind is None:
            continue
        if kind not in SEGMENT_TYPES:
            raise AdapterError(
                "unknown_event_type", f"{segment.path('segmentType')} has unknown value {kind!r}"
            )
        start = segment.time("segmentStart", required=False)
        if start is None:
            continue  # cannot be placed in time
        end = segment.time("segmentEnd", required=False)
        check_order(start, end, segment)
        result.append(_Segment(segment, kind, start, end))
    return tuple(result)


def _channel(candidates: list[_Participant]) -> Channel:
    """The media of the first session that names a reported one: customer first, then users, then anyone."""
    for participant in candidates:
        for session, _ in participant.sessions:
            media = session.text("mediaType", required=False)
            if media is None or media in UNREPORTED_MEDIA_TYPES:
                continue
            channel: Channel = choose(MEDIA_TYPES, media, "unknown_channel", session, "mediaType")
            return channel
    raise AdapterError("unknown_channel", "payload.participants: no session has a reported mediaType")


def _direction(record: Fields, customers: list[_Participant], participants: list[_Participant]) -> Direction:
    """``originatingDirection``; else the customer's session direction, its purpose, or the initiator's."""
    value = record.text("originatingDirection", required=False)
    if value is not None:
        direction: Direction = choose(DIRECTIONS, value, "schema", record, "originatingDirection")
        return direction
    for participant in customers:
        for session, _ in participant.sessions:
            stated = session.text("direction", required=False)
            if stated is not None:
                direction = choose(DIRECTIONS, stated, "schema", session, "direction")
                return direction
    if customers:
        return Direction.OUTBOUND if customers[0].purpose == "external" else Direction.INBOUND
    started = [(p.segments[0].start, index, p) for index, p in enumerate(participants) if p.segments]
    if started:
        _, _, initiator = min(started, key=lambda item: (item[0], item[1]))
        for session, _ in initiator.sessions:
            stated = session.text("direction", required=False)
            if stated is not None:
                direction = choose(DIRECTIONS, stated, "schema", session, "direction")
                return direction
    return Direction.INBOUND


def _customer(participant: _Participant) -> tuple[CustomerIds, str | None]:
    fields = participant.fields
    first = participant.sessions[0][0] if participant.sessions else None
    attributes = fields.obj("attributes", required=False)
    customer = customer_ids(
        first.text("ani", required=False) if first else None,
        first.text("addressFrom", required=False) if first else None,
        fields.text("externalContactId", required=False),
        attributes.text("cookieHash", required=False) if attributes else None,
    )
    return customer, attributes.text("intent", required=False) if attributes else None


def _final_how(segments: list[_Segment] | tuple[_Segment, ...]) -> str | None:
    """How a session ended: ``disconnectType`` of its final segment, else of the latest that has one."""
    for segment in reversed(segments):
        how = segment.how
        if how is not None:
            return how
    return None


def _self_service(builder: EventBuilder, participants: list[_Participant]) -> str | None:
    """IVR/bot steps: each flow outcome, or the flow's entry when it reports none.

    Returns how the last self-service session ended (None while it goes on or when unknown).
    """
    ended: str | None = None
    step = 0
    for participant in participants:
        for session, segments in participant.sessions:
            flow = session.obj("flow", required=False)
            outcomes = flow.objects("outcomes", required=False) if flow else []
            reported = False
            for outcome in outcomes:
                node = outcome.text("flowOutcome", required=False) or outcome.text(
                    "flowOutcomeId", required=False
                )
                at = outcome.time("flowOutcomeStartTimestamp", required=False)
                if node is None or at is None:
                    continue
                builder.emit(EventType.IVR_STEP, at, (step,), attributes={"node": node})
                step += 1
                reported = True
            if not segments:
                continue
            if not reported:
                entry = next((s for s in segments if s.kind == "ivr"), segments[0])
                node = (
                    (
                        flow.text("flowName", required=False) or flow.text("flowId", required=False)
                        if flow
                        else None
                    )
                    or participant.fields.text("participantName", required=False)
                    or participant.purpose
                )
                builder.emit(EventType.IVR_STEP, entry.start, (step,), attributes={"node": node})
                step += 1
            ended = _final_how(segments) if segments[-1].end is not None else None
    return ended


def _participant_key(participant: Fields, fallback: str) -> str:
    key: str | None = participant.text("participantId", required=False)
    return key if key is not None else fallback


def _visits(participants: list[_Participant]) -> list[_Visit]:
    """Each acd participant is one queue visit; offered at its first ``interact`` segment."""
    visits = []
    for participant in participants:
        segments = participant.segments
        if not segments:
            continue
        offer = next((s for s in segments if s.kind == "interact"), segments[0])
        queued = [s.fields.text("queueId", required=False) for s in (offer, *segments)]
        queue = next((q for q in queued if q is not None), None)
        ends = [s.end for s in segments]
        left_at = None if None in ends else max(e for e in ends if e is not None)
        leg_id = _participant_key(participant.fields, f"acd#{participant.index}")
        visits.append(_Visit(leg_id, queue, segments[0].start, offer.start, left_at, _final_how(segments)))
    visits.sort(key=lambda visit: visit.queued_at)
    return visits


def _handlings(participant: _Participant) -> list[_Handling]:
    """An agent participant's sessions; one that starts while the previous one is still connected
    (a callback and the call it places) is the same handling, later ones (a messaging conversation
    transferred back to the agent through another queue) are handlings of their own."""
    groups: list[list[_Segment]] = []
    talk_end: datetime | None = None
    talking = False
    ordered = sorted((segments for _, segments in participant.sessions if segments), key=lambda s: s[0].start)
    for segments in ordered:
        first = min(s.start for s in segments)
        if groups and (talking or (talk_end is not None and first < talk_end)):
            groups[-1].extend(segments)
        else:
            groups.append(list(segments))
            talk_end, talking = None, False
        connected = [s for s in segments if s.kind not in OFF_TALK_SEGMENTS]
        talking = talking or any(s.end is None for s in connected)
        ends = [s.end for s in connected if s.end is not None]
        if ends:
            talk_end = max([talk_end, *ends]) if talk_end is not None else max(ends)
    fields = participant.fields
    base = _participant_key(fields, f"agent#{participant.index}")
    agent = fields.text("userId", required=False)
    handlings = []
    for number, group in enumerate(groups):
        group.sort(key=lambda s: s.start)
        queues = [s.fields.text("queueId", required=False) for s in group]
        talks = [s.start for s in group if s.kind in TALK_SEGMENTS]
        alerts = [s.start for s in group if s.kind == "alert"]
        if not talks and not alerts:
            continue  # monitoring, coaching, a bare wrap-up: no offer to this agent
        handlings.append(
            _Handling(
                key=base if number == 0 else f"{base}#{number}",
                participant=fields,
                agent=agent,
                queue=next((q for q in queues if q is not None), None),
                segments=group,
                alerted_at=min(alerts) if alerts else None,
                answered_at=min(talks) if talks else None,
            )
        )
    return handlings


def _gap(at: datetime, visit: _Visit) -> timedelta:
    """How far ``at`` lies outside the visit's time in queue (zero inside it)."""
    if at < visit.opened_at:
        return visit.opened_at - at
    if visit.left_at is not None and at > visit.left_at:
        return at - visit.left_at
    return timedelta(0)


def _nearest(handling: _Handling, visits: list[_Visit]) -> _Visit | None:
    """The visit (same queue, when the handling names one) its offer falls in, within the tolerance."""
    best: tuple[timedelta, datetime, _Visit] | None = None
    for visit in visits:
        if handling.queue is not None and visit.queue != handling.queue:
            continue
        gap = _gap(handling.anchor, visit)
        if gap > LINK_TOLERANCE:
            continue
        if best is None or gap < best[0] or (gap == best[0] and visit.queued_at > best[1]):
            best = (gap, visit.queued_at, visit)
    return best[2] if best is not None else None


def _link(handlings: list[_Handling], visits: list[_Visit]) -> None:
    """Answers first, in time order, each to a visit not yet answered; then the unanswered offers."""
    for handling in sorted((h for h in handlings if h.answered_at is not None), key=lambda h: h.anchor):
        handling.visit = _nearest(handling, [v for v in visits if not v.answered])
        if handling.visit is not None:
            handling.visit.answered = True
    for handling in handlings:
        if handling.answered_at is None:
            handling.visit = _nearest(handling, visits)


def _visit_events(builder: EventBuilder, visit: _Visit) -> None:
    """``queued`` at the offer; ``abandoned`` when it ended unanswered by anything but a transfer."""
    builder.emit(EventType.QUEUED, visit.queued_at, (visit.leg_id,), leg_id=visit.leg_id, queue=visit.queue)
    if visit.answered or visit.left_at is None or visit.how is None or visit.how in TRANSFER_DISCONNECTS:
        return
    if visit.how not in ENDING_DISCONNECTS:
        raise AdapterError(
            "unknown_event_type", f"acd participant {visit.leg_id}: disconnectType {visit.how!r}"
        )
    builder.emit(EventType.ABANDONED, visit.left_at, (visit.leg_id,), leg_id=visit.leg_id, queue=visit.queue)


def _handling_events(
    builder: EventBuilder, handling: _Handling, visits: list[_Visit], *, coded_elsewhere: bool
) -> datetime | None:
    """Answer, holds, talk end, after-call work and wrap-up code of one handling; an unanswered offer
    is ``alerting``. Talk (and a hold still open) ends with the last connected segment, whatever its
    type; how it ended is that segment's ``disconnectType``, else the session's final one. Returns
    the talk end when a disconnect (not a transfer) ended it."""
    leg_id, queue, agent = handling.leg_id, handling.leg_queue, handling.agent
    if handling.answered_at is None:
        assert handling.alerted_at is not None
        builder.emit(
            EventType.ALERTING,
            handling.alerted_at,
            (handling.key,),
            leg_id=leg_id,
            queue=queue,
            agent=agent,
            attributes={"responded": False},
        )
        return None
    segments = handling.segments
    builder.emit(EventType.ANSWERED, handling.answered_at, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
    for index, hold in enumerate(s for s in segments if s.kind == "hold"):
        builder.emit(EventType.HOLD, hold.start, (leg_id, index), leg_id=leg_id, queue=queue, agent=agent)
        if hold.end is not None:
            builder.emit(EventType.RESUME, hold.end, (leg_id, index), leg_id=leg_id, queue=queue, agent=agent)
    wrapups = [s for s in segments if s.kind == "wrapup"]
    if wrapups:
        builder.emit(
            EventType.ACW_START, wrapups[0].start, (leg_id,), leg_id=leg_id, queue=queue, agent=agent
        )
        if all(s.end is not None for s in wrapups):
            acw_end = max(s.end for s in wrapups if s.end is not None)
            builder.emit(EventType.ACW_END, acw_end, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
        coded = [(s.fields.text("wrapUpCode", required=False), s.end) for s in wrapups]
        done = [(code, at) for code, at in coded if code is not None and at is not None]
        if done and not coded_elsewhere:
            builder.wrapup(leg_id, done[-1][0], done[-1][1], queue=queue, agent=agent)
    connected = [s for s in segments if s.kind not in OFF_TALK_SEGMENTS]
    last = connected[-1]
    if last.end is None:
        return None
    talk_end = max(s.end for s in connected if s.end is not None)
    how = last.how or _final_how(segments)
    transfer = TRANSFER_DISCONNECTS.get(how) if how is not None else None
    if transfer is not None:
        targets = [
            v
            for v in visits
            if v is not handling.visit and handling.answered_at < v.queued_at <= talk_end + LINK_TOLERANCE
        ]
        attributes = {"target_queue": targets[0].queue} if targets and targets[0].queue else {}
        builder.emit(
            transfer, talk_end, (leg_id,), leg_id=leg_id, queue=queue, agent=agent, attributes=attributes
        )
        return None
    if how is not None and how not in ENDING_DISCONNECTS:
        raise AdapterError("unknown_event_type", f"{last.fields.path('disconnectType')} has value {how!r}")
    builder.emit(EventType.DISCONNECTED, talk_end, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
    return talk_end


def _wrapup_objects(builder: EventBuilder, handlings: list[_Handling]) -> list[_Handling]:
    """A participant ``wrapup`` object (code + endTime; Stitchboard's re-delivery extension) sets the
    code of that participant's last answered handling, over its wrapup segment's code. Returns the
    handlings it coded."""
    last: dict[int, _Handling] = {}
    for handling in handlings:
        if handling.answered_at is not None:
            last[id(handling.participant)] = handling
    coded = []
    for handling in last.values():
        wrapup = handling.participant.obj("wrapup", required=False)
        if wrapup is not None:
            builder.wrapup(
                handling.leg_id,
                wrapup.text("code"),
                wrapup.time("endTime"),
                queue=handling.leg_queue,
                agent=handling.agent,
            )
            coded.append(handling)
    return coded


def _last_end(participants: list[_Participant], skip: tuple[Fields, ...] = ()) -> datetime | None:
    """The latest segment end among ``participants`` (open segments and ``skip`` sessions ignored)."""
    ends = [
        s.end
        for p in participants
        for session, group in p.sessions
        if session not in skip
        for s in group
        if s.end is not None
    ]
    return max(ends) if ends else None


def _conversation_end(end: datetime | None, participants: list[_Participant]) -> datetime | None:
    """``conversationEnd``; for records without one (2016 responses), once every segment of every
    participant has ended, the last segment end (what Genesys sets ``conversationEnd`` to: real
    records end with the last participant's last segment, wrap-ups included); else None."""
    if end is not None:
        return end
    ends = [s.end for p in participants for _, group in p.sessions for s in group]
    if not ends or None in ends:
        return None
    return max(e for e in ends if e is not None)


def _evaluations(builder: EventBuilder, evaluations: list[Fields], answered: list[_Handling]) -> None:
    """Quality evaluations: linked to the leg named by ``contextId``, else to the agent's answered leg
    in the evaluation's queue, else to the agent's last answered leg. One that names no answered leg
    (an agent who never answered, an internal user) or carries no score scores nothing."""
    for evaluation in evaluations:
        evaluation_id = evaluation.text("evaluationId", required=False)
        agent = evaluation.text("userId", required=False)
        at = evaluation.time("eventTime", required=False)
        score = evaluation.number("oTotalScore", required=False)
        if evaluation_id is None or at is None or score is None or evaluation.data.get("deleted") is True:
            continue
        if not 0 <= score <= MAX_SCORE:
            raise AdapterError(
                OUT_OF_RANGE, f"{evaluation.path('oTotalScore')} must be within 0..100, got {score}"
            )
        context = evaluation.text("contextId", required=False)
        queue = evaluation.text("queueId", required=False)
        mine = [h for h in answered if h.agent == agent]
        matches = (
            [h for h in answered if h.leg_id == context] or [h for h in mine if h.leg_queue == queue] or mine
        )
        if not matches:
            continue
        handling = matches[-1]
        builder.emit(
            EventType.QA_SCORE_SET,
            at,
            (evaluation_id,),
            leg_id=handling.leg_id,
            queue=handling.leg_queue,
            agent=agent,
            attributes={"score": round(score)},
            sequence=millis(at),
        )


def _reopens(builder: EventBuilder, customer: _Participant) -> tuple[Fields, ...]:
    """On ticket channels, every customer session after the first is the customer writing back.
    Returns those sessions: they come after the conversation ended."""
    later = customer.sessions[1:]
    for index, (_, segments) in enumerate(later, start=1):
        if segments:
            builder.emit(EventType.TICKET_REOPENED, segments[0].start, (index,))
    return tuple(session for session, _ in later)
