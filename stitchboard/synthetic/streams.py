"""Scenario objects → the live stream events a platform sends while a contact is in progress.

Genesys Cloud publishes conversation detail events (``v2.detail.events.conversation.{id}.*``), here
through the Amazon EventBridge integration; Amazon Connect publishes contact events ("Amazon
Connect Contact Event"), each carrying the contact's state so far. Both name participants and
contacts by the ids their complete records use, so the flow can let the record replace what the
stream said. Each event is delivered within the second it happened; for a conversation streamed
``around`` its record, the events from the customer's end on arrive minutes late, after the record.
Nothing here moves a final figure: the records (``render``) do, and the complete record wins.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from stitchboard.adapters.event_builder import stable_id
from stitchboard.events import Channel, Direction
from stitchboard.synthetic.scenario import SimConversation, SimLeg

Delivery = tuple[datetime, bytes]


@dataclass(frozen=True, slots=True)
class ConnectContact:
    """What a Connect contact's record and its contact events agree on (from the record renderer)."""

    contact_id: str
    channel: str  # VOICE, CHAT, TASK, EMAIL
    subtype: str  # the connect:Subtype segment attribute
    method: str  # InitiationMethod
    initiated: datetime
    disconnected: datetime


GENESYS_MEDIA: dict[Channel, str] = {
    Channel.VOICE: "VOICE",
    Channel.CALLBACK: "CALLBACK",
    Channel.CHAT: "CHAT",
    Channel.MESSAGING: "MESSAGE",
    Channel.EMAIL: "EMAIL",
}  # the detail events' media types: bot and web-form conversations are not streamed
GENESYS_ORGANIZATION = "6a1f3c2e-0b4d-4e8a-9f71-2c5d8e3b1a90"
GENESYS_EVENT_SOURCE = f"aws.partner/genesys.com/cloud/{GENESYS_ORGANIZATION}/stitchboard"
GENESYS_TALK_ENDS: dict[str | None, str] = {
    "blind": "TRANSFER",
    "consult": "CONSULT_TRANSFER",
    "external": "TRANSFER",
    None: "PEER",
}
AWS_ACCOUNT = "111122223333"
AWS_REGION = "eu-west-2"
LATE_SECONDS = (30, 300)  # how late the tail of a conversation streamed ``around`` its record is


def streamable(conv: SimConversation) -> bool:
    """Whether the platform streams this conversation's kind (Genesys has no bot or web-form media)."""
    return conv.shape == "connect" or (conv.shape == "genesys" and conv.channel in GENESYS_MEDIA)


def render_stream(
    conv: SimConversation, contacts: Sequence[ConnectContact] = (), instance_arn: str = ""
) -> list[Delivery]:
    """The conversation's stream events, each delivered within its second (the tail late when
    ``around``); none unless the conversation is ``streamed``. A Connect conversation needs its
    ``contacts`` (one per leg, or one when it never queued) and its instance's ARN."""
    if not conv.streamed or not streamable(conv):
        return []
    if conv.shape == "genesys":
        events = list(_genesys_events(conv))
    else:
        events = list(_connect_events(conv, contacts, instance_arn))
    late = (
        timedelta(seconds=_stable(conv.conversation_id, *LATE_SECONDS)) if conv.streamed == "around" else None
    )
    deliveries = []
    for at, tail, payload in events:
        delivered = _next_second(at) + (late if late is not None and tail else timedelta(0))
        document = {
            "tenant": conv.tenant,
            "source": conv.shape,
            "received_at": delivered.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "payload": payload,
        }
        deliveries.append((delivered, orjson.dumps(document)))
    return deliveries


def _next_second(moment: datetime) -> datetime:
    """The whole second by which an event that happened at ``moment`` has been delivered."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def _stable(key: str, low: int, high: int) -> int:
    """A number in low..high drawn from ``key`` (the renderers take no random state)."""
    digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return low + digest % (high - low + 1)


def _millis(moment: datetime) -> int:
    return math.floor(moment.timestamp() * 1000)


def _iso(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return f"{utc.strftime('%Y-%m-%dT%H:%M:%S')}.{utc.microsecond // 1000:03d}Z"


def _ms(later: datetime, earlier: datetime) -> int:
    return round((later - earlier).total_seconds() * 1000)


# --- Genesys Cloud conversation detail events --------------------------------------------------------

GenesysEvent = tuple[datetime, bool, dict[str, Any]]  # (event time, in the tail, EventBridge event)


def _genesys_events(conv: SimConversation) -> Iterator[GenesysEvent]:
    """customer.start, per queue visit acd.start, unanswered alerts' user.end, acd.end, the agent's
    user.end and acw, then customer.end: the topics that carry figures while the contact is live."""
    customer = f"{conv.conversation_id}-customer"
    identifiers = {
        "ani": conv.customer.phone_hash,
        "addressFrom": conv.customer.email_hash,
        "externalContactId": conv.customer.account_hash,
    }
    who = {key: value for key, value in identifiers.items() if value is not None}
    yield _genesys(conv, "customer.start", conv.started_at, customer, f"{customer}-0", who)
    for leg in conv.legs:
        yield from _genesys_leg(conv, leg)
    ending = {"disconnectType": "ENDPOINT", "interactingDurationMs": _ms(conv.ended_at, conv.started_at)}
    yield _genesys(conv, "customer.end", conv.ended_at, customer, f"{customer}-0", who | ending, tail=True)


def _genesys_leg(conv: SimConversation, leg: SimLeg) -> Iterator[GenesysEvent]:
    queue: dict[str, str | int] = {"queueId": leg.queue}
    acd = leg.leg_id
    yield _genesys(conv, "acd.start", leg.entered_at, acd, f"{acd}-acd-0", queue)
    for index, missed in enumerate(leg.missed):
        participant = f"{leg.leg_id}-missed-{index}"
        body = queue | {
            "userId": missed.agent,
            "disconnectType": "PEER" if missed.end == leg.left_at else "CLIENT",
            "alertingDurationMs": _ms(missed.end, missed.start),
        }
        yield _genesys(conv, "user.end", missed.end, participant, f"{participant}-0", body)
    if leg.outcome == "abandoned":
        body = queue | {"acdOutcome": "ABANDON", "disconnectType": "PEER"}
        yield _genesys(conv, "acd.end", leg.left_at, acd, f"{acd}-acd-0", body)
        return
    assert leg.ended_at is not None and leg.agent is not None
    left = max(leg.entered_at, leg.left_at + timedelta(milliseconds=leg.boundary_gap_ms))
    answered = queue | {
        "acdOutcome": "ANSWERED",
        "answeredUserId": leg.agent,
        "disconnectType": "TRANSFER",
        "connectedDurationMs": _ms(left, leg.entered_at),
    }
    yield _genesys(conv, "acd.end", left, acd, f"{acd}-acd-0", answered)
    agent = f"{leg.leg_id}-agent"
    held = sum(_ms(hold.end, hold.start) for hold in leg.holds)
    talked = queue | {
        "userId": leg.agent,
        "disconnectType": GENESYS_TALK_ENDS[leg.transfer],
        "interactingDurationMs": _ms(leg.ended_at, leg.left_at) - held,
    }
    if held:
        talked["heldDurationMs"] = held
    if leg.alerted_at is not None:
        talked["alertingDurationMs"] = _ms(leg.left_at, leg.alerted_at)
    yield _genesys(conv, "user.end", leg.ended_at, agent, f"{agent}-0", talked, tail=leg is conv.legs[-1])
    if leg.acw_end is not None:
        wrapped = queue | {"userId": leg.agent, "wrapupDurationMs": _ms(leg.acw_end, leg.ended_at)}
        if leg.wrapup_code is not None and leg.wrapup_set_at is not None and leg.wrapup_set_at <= leg.acw_end:
            wrapped["wrapupCode"] = leg.wrapup_code
        yield _genesys(conv, "acw", leg.acw_end, agent, f"{agent}-0", wrapped, tail=True)


def _genesys(
    conv: SimConversation,
    topic: str,
    at: datetime,
    participant: str,
    session: str,
    fields: dict[str, Any],
    *,
    tail: bool = False,
) -> GenesysEvent:
    body: dict[str, Any] = {
        "eventTime": _millis(at),
        "conversationId": conv.conversation_id,
        "participantId": participant,
        "sessionId": session,
        "mediaType": GENESYS_MEDIA[conv.channel],
        "provider": "Edge" if conv.channel is Channel.VOICE else "PureCloud",
        "direction": "OUTBOUND" if conv.direction is Direction.OUTBOUND else "INBOUND",
        **fields,
    }
    name = f"v2.detail.events.conversation.{conv.conversation_id}.{topic}"
    notification = {
        "topicName": name,
        "version": "2",
        "eventBody": body,
        "metadata": {"CorrelationId": stable_id(name, participant, body["eventTime"])},
        "timestamp": _iso(at),
    }
    event = {
        "version": "0",
        "id": stable_id("eventbridge", name, participant, body["eventTime"]),
        "detail-type": "v2.detail.events.conversation.{id}." + topic,
        "source": GENESYS_EVENT_SOURCE,
        "account": AWS_ACCOUNT,
        "time": _next_second(at).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": AWS_REGION,
        "resources": [],
        "detail": notification,
    }
    return at, tail, event


# --- Amazon Connect contact events -----------------------------------------------------------------

ConnectEvent = tuple[datetime, bool, dict[str, Any]]


def _connect_events(
    conv: SimConversation, contacts: Sequence[ConnectContact], instance_arn: str
) -> Iterator[ConnectEvent]:
    """Per contact INITIATED, QUEUED, CONNECTED_TO_AGENT, DISCONNECTED and, after ACW, COMPLETED,
    each with the contact's state so far; an IVR-only contact is initiated and disconnected."""
    for index, contact in enumerate(contacts):
        detail: dict[str, Any] = {
            "contactId": contact.contact_id,
            "channel": contact.channel,
            "instanceArn": instance_arn,
            "initiationMethod": contact.method,
            "initiationTimestamp": _iso(contact.initiated),
            "segmentAttributes": {"connect:Subtype": {"ValueString": contact.subtype}},
            "tags": {"tenant": conv.tenant, "aws:connect:instanceId": instance_arn.rsplit("/", 1)[-1]},
        }
        if index > 0:
            detail["initialContactId"] = conv.conversation_id
            detail["previousContactId"] = contacts[index - 1].contact_id
        yield _connect(contact.contact_id, instance_arn, "INITIATED", contact.initiated, detail)
        leg = conv.legs[index] if conv.legs else None
        if leg is not None:
            detail["queueInfo"] = {
                "queueArn": f"{instance_arn}/queue/{leg.queue}",
                "queueType": "STANDARD",
                "enqueueTimestamp": _iso(leg.entered_at),
            }
            yield _connect(contact.contact_id, instance_arn, "QUEUED", leg.entered_at, detail)
            if leg.outcome == "answered":
                detail["agentInfo"] = {
                    "agentArn": f"{instance_arn}/agent/{leg.agent}",
                    "connectedToAgentTimestamp": _iso(leg.left_at),
                }
                yield _connect(contact.contact_id, instance_arn, "CONNECTED_TO_AGENT", leg.left_at, detail)
        detail["disconnectTimestamp"] = _iso(contact.disconnected)
        tail = index == len(conv.legs) - 1 or not conv.legs
        yield _connect(contact.contact_id, instance_arn, "DISCONNECTED", contact.disconnected, detail, tail)
        if leg is not None and leg.acw_end is not None and leg.ended_at is not None:
            detail["agentInfo"] |= {
                "afterContactWorkStartTimestamp": _iso(leg.ended_at),
                "afterContactWorkEndTimestamp": _iso(leg.acw_end),
                "afterContactWorkDuration": round((leg.acw_end - leg.ended_at).total_seconds()),
            }
            # completed once both the contact and its after-contact work are over (after an external
            # transfer the agent's work ends while the customer still talks to the outside party)
            done = max(leg.acw_end, contact.disconnected)
            yield _connect(contact.contact_id, instance_arn, "COMPLETED", done, detail, tail)


def _connect(
    contact: str, instance_arn: str, kind: str, at: datetime, detail: dict[str, Any], tail: bool = False
) -> ConnectEvent:
    event = {
        "version": "0",
        "id": stable_id("connect-event", contact, kind),
        "detail-type": "Amazon Connect Contact Event",
        "source": "aws.connect",
        "account": AWS_ACCOUNT,
        "time": _next_second(at).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": AWS_REGION,
        "resources": [instance_arn, f"{instance_arn}/contact/{contact}"],
        "detail": {"eventType": kind, **orjson.loads(orjson.dumps(detail))},
    }
    return at, tail, event
