"""Scenario objects → the envelope records a real platform would deliver, with their delivery times.

Each shape is rendered the way its platform reports: a Genesys detail record when the conversation
ends and again whenever it changes (after-call work ends, wrap-up entered or corrected, evaluation
done, customer writes back); one Connect contact record per leg when the leg's work is done, re-sent
when its attributes are updated; a webhook per concern (contact, queue visit, missed call, agent
handling) at the moment that concern completes. A record rendered "as of" a delivery time contains
only what was known then, so re-deliveries exercise the mutation rules of docs/architecture.md.
Vocabularies are the adapters' own tables reversed, so renderer and adapter cannot drift apart.

Why one module of over 500 lines: each platform's record shape is rendered from the same scenario
objects with the adapters' vocabularies reversed; keeping the three renderers together keeps those
shared rules in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from stitchboard.adapters import connect, genesys, webhook
from stitchboard.adapters.event_builder import stable_id
from stitchboard.events import Channel, Direction
from stitchboard.synthetic.scenario import SimAgentState, SimConversation, SimLeg
from stitchboard.synthetic.streams import ConnectContact, render_stream

Delivery = tuple[datetime, bytes]

GENESYS_MEDIA = {channel: name for name, channel in genesys.MEDIA_TYPES.items()}
GENESYS_PRESENCE = {state: name for name, state in genesys.PRESENCES.items()}
CONNECT_CHANNEL = {channel: key for key, channel in connect.SUBTYPES.items() if key[1] != "connect:WebRTC"}
WEBHOOK_MEDIA = {channel: name for name, channel in webhook.MEDIA.items()}
CONNECT_ACCOUNT = "111122223333"
CONNECT_INSTANCE_ARN = f"arn:aws:connect:eu-west-2:{CONNECT_ACCOUNT}:instance/5f0c2a44-stitchboard"
SYSTEM_NUMBER = "+15550100001"  # the contact centre's number (fictional: 555-01xx)
EXTERNAL_NUMBER = "+15550100099"  # where external transfers go (fictional)


def render_conversation(conv: SimConversation) -> list[Delivery]:
    """All deliveries for one conversation in its shape (its stream events too, when it is
    ``streamed``), in delivery-time order."""
    renderers: dict[str, Callable[[SimConversation], list[Delivery]]] = {
        "genesys": _render_genesys,
        "connect": _render_connect,
        "webhook": _render_webhook,
    }
    deliveries = renderers[conv.shape](conv)
    if conv.streamed:
        contacts = connect_contacts(conv) if conv.shape == "connect" else []
        deliveries += render_stream(conv, contacts, CONNECT_INSTANCE_ARN)
    return sorted(deliveries, key=lambda delivery: delivery[0])


def render_agent_state(s: SimAgentState) -> list[Delivery]:
    """One presence change in its shape (Genesys notification, Connect agent event, webhook)."""
    if s.shape == "genesys":
        payload: dict[str, Any] = {
            "topicName": f"v2.users.{s.agent}.presence",
            "version": "2",
            "eventBody": {
                "source": "PURECLOUD",
                "presenceDefinition": {
                    "id": stable_id("presence", s.state),
                    "systemPresence": _presence(s.state),
                },
                "modifiedDate": _genesys_time(s.at),
            },
            "metadata": {"CorrelationId": stable_id(s.tenant, s.agent, s.at.isoformat())},
        }
        return [_envelope(s.tenant, "genesys", s.at, payload)]
    if s.shape == "connect":
        agent_arn = f"{CONNECT_INSTANCE_ARN}/agent/{s.agent}"
        payload = {
            "AWSAccountId": CONNECT_ACCOUNT,
            "AgentARN": agent_arn,
            "EventId": stable_id(s.tenant, s.agent, s.at.isoformat(), s.state),
            "EventTimestamp": _plain_time(s.at),
            "EventType": "STATE_CHANGE",
            "InstanceARN": CONNECT_INSTANCE_ARN,
            "Version": "2019-05-25",
            "Tags": {"tenant": s.tenant},
            "CurrentAgentSnapshot": {
                "AgentStatus": {
                    "ARN": f"{CONNECT_INSTANCE_ARN}/agent-state/{s.state}",
                    "Name": s.state.replace("_", " ").title(),
                    "StartTimestamp": _plain_time(s.at),
                },
                "Configuration": {
                    "Username": _connect_username(s.agent),
                    "RoutingProfile": {"Name": "Default"},
                },
                "Contacts": [],
            },
        }
        return [_envelope(s.tenant, "connect_agent", s.at, payload)]
    payload = {
        "event": "agent.status",
        "id": stable_id(s.tenant, "agent.status", s.agent, s.at.isoformat()),
        "tenant": s.tenant,
        "agent": s.agent,
        "status": s.state,
        "changed_at": _plain_time(s.at),
    }
    return [_envelope(s.tenant, "webhook", s.at, payload)]


def _envelope(tenant: str, source: str, at: datetime, payload: dict[str, Any]) -> Delivery:
    document = {"tenant": tenant, "source": source, "received_at": _plain_time(at), "payload": payload}
    return at, orjson.dumps(document)


def _genesys_time(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return f"{utc.strftime('%Y-%m-%dT%H:%M:%S')}.{utc.microsecond // 1000:03d}Z"


def _plain_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _presence(state: str) -> str:
    try:
        return GENESYS_PRESENCE[state]
    except KeyError:
        raise ValueError(f"agent state {state!r} has no Genesys system presence") from None


def _deliveries(first: datetime, later: Iterable[datetime | None]) -> list[datetime]:
    """The first delivery plus every later moment at which the record changes."""
    return sorted({first} | {moment for moment in later if moment is not None and moment > first})


def _known(moment: datetime | None, at: datetime) -> bool:
    return moment is not None and moment <= at


def _wrapup_as_of(leg: SimLeg, at: datetime) -> tuple[str, datetime] | None:
    if _known(leg.wrapup_changed_at, at) and leg.wrapup_changed_to is not None:
        assert leg.wrapup_changed_at is not None
        return leg.wrapup_changed_to, leg.wrapup_changed_at
    if _known(leg.wrapup_set_at, at) and leg.wrapup_code is not None:
        assert leg.wrapup_set_at is not None
        return leg.wrapup_code, leg.wrapup_set_at
    return None


def _qa_as_of(leg: SimLeg, at: datetime) -> tuple[int, datetime] | None:
    if leg.qa_score is not None and _known(leg.qa_scored_at, at):
        assert leg.qa_scored_at is not None
        return leg.qa_score, leg.qa_scored_at
    return None


def _leg_updates(leg: SimLeg) -> list[datetime | None]:
    return [leg.acw_end, leg.wrapup_set_at, leg.wrapup_changed_at, leg.qa_scored_at]


def _hold_ms(leg: SimLeg) -> int:
    return sum(int((hold.end - hold.start).total_seconds() * 1000) for hold in leg.holds)


def _seconds(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds())


# --- Genesys ---------------------------------------------------------------------------------------


def _render_genesys(conv: SimConversation) -> list[Delivery]:
    updates = [moment for leg in conv.legs for moment in _leg_updates(leg)] + list(conv.reopened_at)
    return [
        _envelope(conv.tenant, "genesys", at, _genesys_record(conv, at))
        for at in _deliveries(conv.ended_at, updates)
    ]


def _genesys_record(conv: SimConversation, at: datetime) -> dict[str, Any]:
    media = GENESYS_MEDIA[conv.channel]
    participants = [_genesys_customer(conv, media, at)]
    if conv.ivr_steps or conv.ivr_outcome is not None:
        participants.append(_genesys_ivr(conv, media))
    for leg in conv.legs:
        participants.append(_genesys_acd(leg, media))
    for leg in conv.legs:
        participants.extend(_genesys_missed(leg, index, media) for index in range(len(leg.missed)))
        if leg.outcome == "answered":
            participants.append(_genesys_agent(conv, leg, media, at))
            participants.extend(_genesys_user(leg, index, media) for index in range(len(leg.consults)))
    evaluations = [
        {
            "evaluationId": f"{leg.leg_id}-evaluation",
            "evaluatorId": "qa-team",
            "userId": leg.agent,
            "queueId": leg.queue,
            "contextId": leg.leg_id,
            "formName": "Standard QA",
            "eventTime": _genesys_time(qa[1]),
            "oTotalScore": qa[0],
            "rescored": False,
            "deleted": False,
        }
        for leg in conv.legs
        if (qa := _qa_as_of(leg, at)) is not None
    ]
    record: dict[str, Any] = {
        "conversationId": conv.conversation_id,
        "conversationStart": _genesys_time(conv.started_at),
        "conversationEnd": _genesys_time(conv.ended_at),
        "originatingDirection": conv.direction.value,
        "organizationId": conv.tenant,
        "divisionIds": ["00000000-0000-0000-0000-000000000000"],
        "participants": participants,
    }
    if evaluations:
        record["evaluations"] = evaluations
    if conv.sparse:  # older API versions and some media: no originatingDirection, names or divisions
        del record["originatingDirection"], record["divisionIds"]
        for participant in participants:
            participant.pop("participantName", None)
    return record


def _genesys_customer(conv: SimConversation, media: str, at: datetime) -> dict[str, Any]:
    session: dict[str, Any] = {
        "sessionId": f"{conv.conversation_id}-customer-0",
        "mediaType": media,
        "direction": conv.direction.value,
        "segments": [
            {
                "segmentType": "interact",
                "segmentStart": _genesys_time(conv.started_at),
                "segmentEnd": _genesys_time(conv.ended_at),
                "disconnectType": "endpoint",
            }
        ],
    }
    if conv.customer.phone_hash is not None:
        session["ani"] = conv.customer.phone_hash
    if conv.customer.email_hash is not None:
        session["addressFrom"] = conv.customer.email_hash
    reopens = [
        {
            "sessionId": f"{conv.conversation_id}-customer-{index}",
            "mediaType": media,
            "direction": "inbound",
            "segments": [
                {
                    "segmentType": "interact",
                    "segmentStart": _genesys_time(moment),
                    "segmentEnd": _genesys_time(moment),
                    "disconnectType": "endpoint",
                }
            ],
        }
        for index, moment in enumerate(sorted(conv.reopened_at), start=1)
        if moment <= at
    ]
    participant: dict[str, Any] = {
        "participantId": f"{conv.conversation_id}-customer",
        "purpose": "external" if conv.direction is Direction.OUTBOUND else "customer",
        "participantName": "Customer",
        "sessions": [session, *reopens],
    }
    if conv.customer.account_hash is not None:
        participant["externalContactId"] = conv.customer.account_hash
    attributes = {
        key: value
        for key, value in (("intent", conv.intent), ("cookieHash", conv.customer.cookie_hash))
        if value is not None
    }
    if attributes:
        participant["attributes"] = attributes
    return participant


def _genesys_ivr(conv: SimConversation, media: str) -> dict[str, Any]:
    ended = conv.legs[0].entered_at if conv.legs else conv.ended_at
    how = "transfer" if conv.legs else "endpoint" if conv.ivr_outcome == "contained" else "peer"
    outcomes = [
        {
            "flowOutcome": node,
            "flowOutcomeId": stable_id("outcome", node),
            "flowOutcomeValue": "SUCCESS",
            "flowOutcomeStartTimestamp": _genesys_time(moment),
            "flowOutcomeEndTimestamp": _genesys_time(moment),
        }
        for node, moment in conv.ivr_steps
    ]
    return {
        "participantId": f"{conv.conversation_id}-ivr",
        "purpose": "ivr",
        "participantName": "Main IVR",
        "sessions": [
            {
                "sessionId": f"{conv.conversation_id}-ivr-0",
                "mediaType": media,
                "flow": {
                    "flowId": stable_id("flow", "main"),
                    "flowName": "Main IVR",
                    "flowType": "inboundcall",
                    "exitReason": "TRANSFER" if conv.legs else "DISCONNECT",
                    "outcomes": outcomes,
                },
                "segments": [
                    {
                        "segmentType": "ivr",
                        "segmentStart": _genesys_time(conv.started_at),
                        "segmentEnd": _genesys_time(ended),
                        "disconnectType": how,
                    }
                ],
            }
        ],
    }


def _genesys_acd(leg: SimLeg, media: str) -> dict[str, Any]:
    """The queue visit; an answered one ends near, not exactly at, the agent's interact start."""
    left = leg.left_at
    if leg.outcome == "answered":
        left = max(leg.entered_at, left + timedelta(milliseconds=leg.boundary_gap_ms))
    return {
        "participantId": leg.leg_id,
        "purpose": "acd",
        "participantName": leg.queue,
        "sessions": [
            {
                "sessionId": f"{leg.leg_id}-acd-0",
                "mediaType": media,
                "segments": [
                    {
                        "segmentType": "interact",
                        "queueId": leg.queue,
                        "segmentStart": _genesys_time(leg.entered_at),
                        "segmentEnd": _genesys_time(left),
                        "disconnectType": "transfer" if leg.outcome == "answered" else "peer",
                    }
                ],
            }
        ],
    }


GENESYS_TALK_ENDS: dict[str | None, str] = {
    "blind": "transfer",
    "consult": "transfer.consult",
    "external": "transfer",
    None: "peer",
}


def _genesys_agent(conv: SimConversation, leg: SimLeg, media: str, at: datetime) -> dict[str, Any]:
    """Alert, talk and holds (a hold may be last: the call ended on hold), then wrap-up.

    ``disconnectType`` sits on the segment the talk ended in and on the wrap-up once it ended, or,
    when the conversation reports it only there, on the session's last ended segment alone.
    """
    assert leg.ended_at is not None
    segments: list[dict[str, Any]] = []
    if leg.alerted_at is not None:
        segments.append(_genesys_segment("alert", leg.alerted_at, leg.left_at, leg.queue))
    talk_from = leg.left_at
    for hold in sorted(leg.holds, key=lambda h: h.start):
        segments.append(_genesys_segment("interact", talk_from, hold.start, leg.queue))
        segments.append(_genesys_segment("hold", hold.start, hold.end, leg.queue))
        talk_from = hold.end
    if talk_from < leg.ended_at or not leg.holds:
        segments.append(_genesys_segment("interact", talk_from, leg.ended_at, leg.queue))
    how = GENESYS_TALK_ENDS[leg.transfer]
    talk_end = segments[-1]
    wrapup = _wrapup_as_of(leg, at)
    acw: dict[str, Any] | None = None
    if leg.acw_end is not None:
        acw = _genesys_segment("wrapup", leg.ended_at, leg.acw_end if leg.acw_end <= at else None, leg.queue)
        if wrapup is not None:
            acw["wrapUpCode"] = wrapup[0]
        segments.append(acw)
    ended_acw = acw if acw is not None and "segmentEnd" in acw else None
    if ended_acw is not None:
        ended_acw["disconnectType"] = how
    if ended_acw is None or not conv.disconnect_on_final_segment:
        talk_end["disconnectType"] = how
    participant: dict[str, Any] = {
        "participantId": f"{leg.leg_id}-agent",
        "purpose": "agent",
        "userId": leg.agent,
        "participantName": leg.agent,
        "sessions": [{"sessionId": f"{leg.leg_id}-agent-0", "mediaType": media, "segments": segments}],
    }
    if wrapup is not None:
        participant["wrapup"] = {"code": wrapup[0], "endTime": _genesys_time(wrapup[1])}
    return participant


def _genesys_missed(leg: SimLeg, index: int, media: str) -> dict[str, Any]:
    """An agent alerted for the queue visit who did not respond: a participant with one alert."""
    alert = leg.missed[index]
    segment = _genesys_segment("alert", alert.start, alert.end, leg.queue)
    segment["disconnectType"] = "peer" if alert.end == leg.left_at else "client"  # the caller hung up
    return {
        "participantId": f"{leg.leg_id}-missed-{index}",
        "purpose": "agent",
        "userId": alert.agent,
        "participantName": alert.agent,
        "sessions": [
            {"sessionId": f"{leg.leg_id}-missed-{index}-0", "mediaType": media, "segments": [segment]}
        ],
    }


def _genesys_user(leg: SimLeg, index: int, media: str) -> dict[str, Any]:
    """An internal user the agent consulted while the customer held: rung, talked, hung up."""
    consult = leg.consults[index]
    answered = min(consult.start + timedelta(seconds=2), consult.end)
    talk = _genesys_segment("interact", answered, consult.end, None)
    talk["disconnectType"] = "peer"
    return {
        "participantId": f"{leg.leg_id}-consult-{index}",
        "purpose": "user",
        "userId": consult.user,
        "participantName": consult.user,
        "sessions": [
            {
                "sessionId": f"{leg.leg_id}-consult-{index}-0",
                "mediaType": media,
                "direction": "outbound",
                "segments": [_genesys_segment("alert", consult.start, answered, None), talk],
            }
        ],
    }


def _genesys_segment(kind: str, start: datetime, end: datetime | None, queue: str | None) -> dict[str, Any]:
    segment: dict[str, Any] = {"segmentType": kind, "segmentStart": _genesys_time(start)}
    if queue is not None:
        segment["queueId"] = queue
    if end is not None:
        segment["segmentEnd"] = _genesys_time(end)
    return segment


# --- Amazon Connect --------------------------------------------------------------------------------


def _render_connect(conv: SimConversation) -> list[Delivery]:
    if not conv.legs:
        payload = _connect_record(conv, None, 0, conv.ended_at)
        return [_envelope(conv.tenant, "connect", conv.ended_at, payload)]
    deliveries = []
    for index, leg in enumerate(conv.legs):
        last = index == len(conv.legs) - 1
        done = max(m for m in (_connect_disconnect(conv, index), leg.acw_end) if m is not None)
        updates = _leg_updates(leg) + (list(conv.reopened_at) if last else [])
        for at in _deliveries(done, updates):
            deliveries.append(_envelope(conv.tenant, "connect", at, _connect_record(conv, leg, index, at)))
    return deliveries


def _connect_contact_id(conv: SimConversation, index: int) -> str:
    return conv.conversation_id if index == 0 else conv.legs[index].leg_id


def _connect_disconnect(conv: SimConversation, index: int) -> datetime:
    """When the contact ended: at an internal transfer, else when the customer hung up (after an
    external transfer, when the call with the outside party ended)."""
    leg = conv.legs[index]
    if leg.transfer in ("blind", "consult") and leg.ended_at is not None:
        return leg.ended_at
    if index == len(conv.legs) - 1:
        return conv.ended_at
    return leg.ended_at or leg.left_at


def connect_contacts(conv: SimConversation) -> list[ConnectContact]:
    """The conversation's Connect contacts: one per leg, or one when it never reached a queue."""
    return [_connect_contact(conv, index) for index in range(max(1, len(conv.legs)))]


def _connect_contact(conv: SimConversation, index: int) -> ConnectContact:
    channel, subtype = CONNECT_CHANNEL[conv.channel]
    if index > 0:
        method = "TRANSFER"
    elif conv.channel is Channel.CALLBACK:
        method = "CALLBACK"
    elif conv.direction is Direction.OUTBOUND:
        method = "OUTBOUND"
    elif conv.channel is Channel.WEB_FORM:
        method = "API"
    else:
        method = "INBOUND"
    initiated = conv.started_at
    if index > 0:
        initiated = conv.legs[index - 1].ended_at or conv.legs[index].entered_at
    disconnected = _connect_disconnect(conv, index) if conv.legs else conv.ended_at
    contact_id = _connect_contact_id(conv, index)
    return ConnectContact(contact_id, channel, subtype, method, initiated, disconnected)


def _connect_record(conv: SimConversation, leg: SimLeg | None, index: int, at: datetime) -> dict[str, Any]:
    """The contact record with Connect's full field set (fields that do not apply are null); a
    sparse one leaves those out, and the purely informational ones too (older format versions)."""
    contact = _connect_contact(conv, index)
    channel, initiated, disconnected = contact.channel, contact.initiated, contact.disconnected
    following = leg is not None and leg.transfer in ("blind", "consult") and index + 1 < len(conv.legs)
    record: dict[str, Any] = {
        "AWSAccountId": CONNECT_ACCOUNT,
        "AWSContactTraceRecordFormatVersion": "2017-03-10",
        "Agent": None,
        "AgentConnectionAttempts": 0,
        "AnsweringMachineDetectionStatus": None,
        "Attributes": _connect_attributes(conv, leg, index, at),
        "Campaign": {"CampaignId": None},
        "Channel": channel,
        "ConnectedToSystemTimestamp": _plain_time(initiated),
        "ContactDetails": {},
        "ContactId": contact.contact_id,
        "CustomerEndpoint": _connect_endpoint(conv),
        "DisconnectReason": _connect_disconnect_reason(conv, leg),
        "DisconnectTimestamp": _plain_time(disconnected),
        "InitialContactId": conv.conversation_id if index > 0 else None,
        "InitiationMethod": contact.method,
        "InitiationTimestamp": _plain_time(initiated),
        "InstanceARN": CONNECT_INSTANCE_ARN,
        "LastUpdateTimestamp": _plain_time(at),
        "MediaStreams": [{"Type": "AUDIO" if channel == "VOICE" else channel}],
        "NextContactId": _connect_contact_id(conv, index + 1) if following else None,
        "PreviousContactId": _connect_contact_id(conv, index - 1) if index > 0 else None,
        "Queue": None,
        "Recording": None,
        "Recordings": None,
        "References": [],
        "ScheduledTimestamp": None,
        "SegmentAttributes": {"connect:Subtype": {"ValueString": contact.subtype}},
        "SystemEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": SYSTEM_NUMBER}
        if channel == "VOICE"
        else None,
        "Tags": {"tenant": conv.tenant},
        "TransferCompletedTimestamp": None,
        "TransferredToEndpoint": None,
        "VoiceIdResult": None,
    }
    if leg is not None:
        _connect_leg(record, leg)
    return _sparse_connect(record) if conv.sparse else record


def _connect_leg(record: dict[str, Any], leg: SimLeg) -> None:
    record["Queue"] = {
        "ARN": f"{CONNECT_INSTANCE_ARN}/queue/{leg.queue}",
        "DequeueTimestamp": _plain_time(leg.left_at),
        "Duration": _seconds(leg.entered_at, leg.left_at),
        "EnqueueTimestamp": _plain_time(leg.entered_at),
        "Name": _connect_queue_name(leg.queue),
    }
    record["AgentConnectionAttempts"] = len(leg.missed) + int(leg.outcome == "answered")
    if leg.outcome == "answered" and leg.ended_at is not None and leg.agent is not None:
        hold_ms = _hold_ms(leg)
        acw = leg.acw_end is not None
        record["Agent"] = {
            "ARN": f"{CONNECT_INSTANCE_ARN}/agent/{leg.agent}",
            "AfterContactWorkDuration": _seconds(leg.ended_at, leg.acw_end) if leg.acw_end else None,
            "AfterContactWorkEndTimestamp": _plain_time(leg.acw_end) if leg.acw_end else None,
            "AfterContactWorkStartTimestamp": _plain_time(leg.ended_at) if acw else None,
            "AgentInteractionDuration": _seconds(leg.left_at, leg.ended_at) - hold_ms // 1000,
            "ConnectedToAgentTimestamp": _plain_time(leg.left_at),
            "CustomerHoldDuration": hold_ms // 1000,
            "HierarchyGroups": None,
            "LongestHoldDuration": max((_seconds(h.start, h.end) for h in leg.holds), default=0),
            "NumberOfHolds": len(leg.holds),
            "RoutingProfile": {"ARN": f"{CONNECT_INSTANCE_ARN}/routing-profile/default", "Name": "Default"},
            "Username": _connect_username(leg.agent),
        }
    if leg.transfer is not None and leg.ended_at is not None:
        record["TransferCompletedTimestamp"] = _plain_time(leg.ended_at)
    if leg.transfer == "external":
        record["TransferredToEndpoint"] = {"Type": "TELEPHONE_NUMBER", "Address": EXTERNAL_NUMBER}


def _connect_queue_name(queue: str) -> str:
    """A display name unlike the queue's key, which is the id ending its ARN: Stitchboard keys by
    the id, so a name must never reach the figures (the truth is keyed by the scenario's queue)."""
    return f"{queue.replace('_', ' ').title()} Queue"


def _connect_username(agent: str) -> str:
    """A login unlike the agent's key (the id ending its ARN), for the same reason."""
    return f"{agent}@stitchboard.example"


CONNECT_INFORMATIONAL = frozenset(
    {
        "AgentConnectionAttempts",
        "AnsweringMachineDetectionStatus",
        "Campaign",
        "ConnectedToSystemTimestamp",
        "ContactDetails",
        "MediaStreams",
        "Recording",
        "Recordings",
        "References",
        "ScheduledTimestamp",
        "SystemEndpoint",
        "VoiceIdResult",
        "AgentInteractionDuration",
        "AfterContactWorkDuration",
        "HierarchyGroups",
        "LongestHoldDuration",
        "RoutingProfile",
        "Duration",
        "Name",
        "Username",
    }
)


def _sparse_connect(record: dict[str, Any]) -> dict[str, Any]:
    """Only what carries a fact: fields that do not apply and informational ones left out
    (queue and agent are then known by their ARNs, hold figures default to none)."""
    sparse: dict[str, Any] = {}
    for key, value in record.items():
        if value is None or key in CONNECT_INFORMATIONAL:
            continue
        if key in ("Agent", "Queue"):
            value = {k: v for k, v in value.items() if v is not None and k not in CONNECT_INFORMATIONAL}
            if key == "Agent" and not value.get("NumberOfHolds"):
                value.pop("NumberOfHolds", None)
                value.pop("CustomerHoldDuration", None)
        sparse[key] = value
    return sparse


def _connect_disconnect_reason(conv: SimConversation, leg: SimLeg | None) -> str:
    if leg is None:
        return "CONTACT_FLOW_DISCONNECT" if conv.ivr_outcome == "contained" else "CUSTOMER_DISCONNECT"
    return "AGENT_DISCONNECT" if leg.transfer in ("blind", "consult") else "CUSTOMER_DISCONNECT"


def _connect_endpoint(conv: SimConversation) -> dict[str, str] | None:
    if conv.customer.phone_hash is not None:
        return {"Type": "TELEPHONE_NUMBER", "Address": conv.customer.phone_hash}
    if conv.customer.email_hash is not None:
        return {"Type": "EMAIL_ADDRESS", "Address": conv.customer.email_hash}
    return None


def _connect_attributes(
    conv: SimConversation, leg: SimLeg | None, index: int, at: datetime
) -> dict[str, str]:
    """Flow- and agent-app-set attributes; Connect copies them onto transferred contacts."""
    values: dict[str, str | None] = {
        "direction": conv.direction.value,
        "intent": conv.intent,
        "customerEmailHash": conv.customer.email_hash if conv.customer.phone_hash is not None else None,
        "customerAccountHash": conv.customer.account_hash,
        "customerCookieHash": conv.customer.cookie_hash,
        "ivrSteps": "|".join(f"{node}@{_plain_time(moment)}" for node, moment in conv.ivr_steps) or None,
    }
    if leg is not None:
        if leg.transfer in ("blind", "consult"):
            values["transferType"] = leg.transfer
            if index + 1 < len(conv.legs):
                values["transferQueue"] = conv.legs[index + 1].queue
        wrapup = _wrapup_as_of(leg, at)
        if wrapup is not None:
            values["wrapupCode"], values["wrapupSetAt"] = wrapup[0], _plain_time(wrapup[1])
        qa = _qa_as_of(leg, at)
        if qa is not None:
            values["qaScore"], values["qaScoredAt"] = str(qa[0]), _plain_time(qa[1])
    if leg is None or index == len(conv.legs) - 1:
        reopened = [_plain_time(moment) for moment in sorted(conv.reopened_at) if moment <= at]
        values["reopenedAt"] = "|".join(reopened) or None
    return {key: value for key, value in values.items() if value is not None}


# --- Webhooks --------------------------------------------------------------------------------------


def _render_webhook(conv: SimConversation) -> list[Delivery]:
    media = WEBHOOK_MEDIA[conv.channel]
    deliveries = [
        _webhook(conv, f"contact.{media}", at, _webhook_contact(conv, at))
        for at in _deliveries(conv.ended_at, conv.reopened_at)
    ]
    for index, leg in enumerate(conv.legs):
        deliveries.append(_webhook(conv, f"queue.{media}", leg.left_at, _webhook_queue(leg)))
        if leg.outcome == "abandoned" and conv.channel is Channel.VOICE:
            missed = {
                "leg_id": leg.leg_id,
                "queue": leg.queue,
                "queued_at": _plain_time(leg.entered_at),
                "missed_at": _plain_time(leg.left_at),
            }
            deliveries.append(_webhook(conv, f"missed.{media}", leg.left_at, missed))
        if leg.outcome == "answered" and leg.ended_at is not None:
            done = leg.acw_end or leg.ended_at
            for at in _deliveries(done, _leg_updates(leg)):
                deliveries.append(_webhook(conv, f"agent.{media}", at, _webhook_agent(conv, leg, index, at)))
    return deliveries


def _webhook(conv: SimConversation, event: str, at: datetime, body: dict[str, Any]) -> Delivery:
    payload = {
        "event": event,
        "id": stable_id(conv.tenant, event, conv.conversation_id, str(body.get("leg_id")), at.isoformat()),
        "tenant": conv.tenant,
        "conversation_id": conv.conversation_id,
        "direction": conv.direction.value,
        **body,
    }
    return _envelope(conv.tenant, "webhook", at, payload)


def _webhook_contact(conv: SimConversation, at: datetime) -> dict[str, Any]:
    if not conv.legs:
        ended_in = "ivr"
    elif conv.legs[-1].outcome == "abandoned":
        ended_in = "queue"
    else:
        ended_in = "agent"
    customer = {
        key: value
        for key, value in (
            ("phone_hash", conv.customer.phone_hash),
            ("email_hash", conv.customer.email_hash),
            ("account_hash", conv.customer.account_hash),
            ("cookie_hash", conv.customer.cookie_hash),
        )
        if value is not None
    }
    body: dict[str, Any] = {
        "started_at": _plain_time(conv.started_at),
        "ended_at": _plain_time(conv.ended_at),
        "ended_in": ended_in,
        "customer": customer,
        "intent": conv.intent,
        "reopened_at": [_plain_time(moment) for moment in sorted(conv.reopened_at) if moment <= at],
    }
    if conv.ivr_steps or conv.ivr_outcome is not None:
        body["ivr"] = {
            "steps": [{"node": node, "at": _plain_time(moment)} for node, moment in conv.ivr_steps],
            "outcome": conv.ivr_outcome,
        }
    return body


def _webhook_queue(leg: SimLeg) -> dict[str, Any]:
    return {
        "leg_id": leg.leg_id,
        "queue": leg.queue,
        "queued_at": _plain_time(leg.entered_at),
        "outcome": leg.outcome,
        "left_at": _plain_time(leg.left_at),
        "agent": leg.agent if leg.outcome == "answered" else None,
    }


def _webhook_agent(conv: SimConversation, leg: SimLeg, index: int, at: datetime) -> dict[str, Any]:
    assert leg.ended_at is not None
    body: dict[str, Any] = {
        "leg_id": leg.leg_id,
        "queue": leg.queue,
        "agent": leg.agent,
        "answered_at": _plain_time(leg.left_at),
        "holds": [{"start": _plain_time(h.start), "end": _plain_time(h.end)} for h in leg.holds],
        "ended_at": _plain_time(leg.ended_at),
        "end_reason": f"transfer_{leg.transfer}" if leg.transfer else "customer_disconnect",
    }
    if leg.transfer and index + 1 < len(conv.legs):
        body["transfer_queue"] = conv.legs[index + 1].queue
    if leg.acw_end is not None:
        body["acw_started_at"] = _plain_time(leg.ended_at)
        body["acw_ended_at"] = _plain_time(leg.acw_end)
    wrapup = _wrapup_as_of(leg, at)
    if wrapup is not None:
        body["wrapup"] = {"code": wrapup[0], "set_at": _plain_time(wrapup[1])}
    qa = _qa_as_of(leg, at)
    if qa is not None:
        body["qa"] = {"score": qa[0], "scored_at": _plain_time(qa[1])}
    return body
