"""The offline-reporting webhook family (docs/webhook-format.md).

Several webhooks describe overlapping parts of one conversation (``queue.call`` and ``missed.call``
both report an abandon; ``queue.*`` and ``agent.*`` both report an answer). Event ids come from the
conversation, leg and event type — never from the webhook's own ``id`` — so the overlaps collapse
into one event under de-duplication, and each fact has exactly one owner otherwise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stitchboard.adapters.event_builder import EventBuilder, agent_state_events, customer_ids
from stitchboard.adapters.fields import Fields, check_order, check_tenant, choose, millis, parse_time
from stitchboard.deadletters import AdapterError
from stitchboard.events import MAX_SCORE, OUT_OF_RANGE, CanonicalEvent, Channel, Direction, EventType

SOURCE = "webhook"

MEDIA: dict[str, Channel] = {
    "call": Channel.VOICE,
    "callback": Channel.CALLBACK,
    "chat": Channel.CHAT,
    "sms": Channel.MESSAGING,
    "email": Channel.EMAIL,
    "bot": Channel.BOT,
    "webform": Channel.WEB_FORM,
}
FAMILIES = frozenset({"agent", "contact", "queue", "missed"})
DIRECTIONS: dict[str, Direction] = {
    "inbound": Direction.INBOUND,
    "outbound": Direction.OUTBOUND,
    "internal": Direction.INTERNAL,
}
END_REASONS: dict[str, EventType] = {
    "customer_disconnect": EventType.DISCONNECTED,
    "agent_disconnect": EventType.DISCONNECTED,
    "transfer_blind": EventType.TRANSFER_BLIND,
    "transfer_consult": EventType.TRANSFER_CONSULT,
}
ENDED_IN = frozenset({"ivr", "queue", "agent"})
IVR_OUTCOMES: dict[str, bool | None] = {"contained": True, "abandoned": False, "queued": None}
QUEUE_OUTCOMES = frozenset({"answered", "abandoned"})


def parse(payload: dict[str, Any], tenant: str, received_at: datetime) -> list[CanonicalEvent]:
    """One webhook delivery → canonical events, dispatched on ``event`` (``family.media``)."""
    hook = Fields(payload, "payload")
    name = hook.text("event")
    check_tenant(hook.text("tenant"), tenant, hook, "tenant")
    if name == "agent.status":
        return _agent_status(hook, tenant, received_at)
    family, _, media = name.partition(".")
    if family not in FAMILIES:
        raise AdapterError("unknown_event_type", f"payload.event has unknown value {name!r}")
    channel = choose(MEDIA, media, "unknown_channel", f"payload.event ({name!r})")
    direction = choose(DIRECTIONS, hook.text("direction"), "schema", hook, "direction")
    builder = EventBuilder(tenant, SOURCE, received_at, channel, direction, hook.text("conversation_id"))
    if family == "contact":
        _contact(builder, hook)
    elif family == "queue":
        _queue(builder, hook)
    elif family == "missed":
        _missed(builder, hook)
    else:
        _agent(builder, hook)
    return builder.events


def _agent_status(hook: Fields, tenant: str, received_at: datetime) -> list[CanonicalEvent]:
    agent = hook.text("agent")
    state = hook.text("status").strip().lower()
    at = hook.time("changed_at")
    return agent_state_events(tenant, SOURCE, received_at, agent, state, at)


def _contact(builder: EventBuilder, hook: Fields) -> None:
    """Conversation-level facts: start, customer, intent, IVR path, ends outside an agent, reopens."""
    customer = hook.obj("customer", required=False)
    if customer is not None:
        builder.customer = customer_ids(
            customer.text("phone_hash", required=False),
            customer.text("email_hash", required=False),
            customer.text("account_hash", required=False),
            customer.text("cookie_hash", required=False),
        )
    builder.intent = hook.text("intent", required=False)
    started = hook.time("started_at")
    ended = hook.time("ended_at", required=False)
    check_order(started, ended, "payload (started_at..ended_at)")
    builder.emit(EventType.ARRIVED, started, ())
    ivr = hook.obj("ivr", required=False)
    outcome: bool | None = None
    if ivr is not None:
        for index, step in enumerate(ivr.objects("steps")):
            builder.emit(
                EventType.IVR_STEP, step.time("at"), (index,), attributes={"node": step.text("node")}
            )
        declared = ivr.text("outcome", required=False)
        outcome = choose(IVR_OUTCOMES, declared, "schema", ivr, "outcome") if declared else None
    if ended is not None:
        ended_in = hook.text("ended_in")
        if ended_in not in ENDED_IN:
            raise AdapterError("schema", f"payload.ended_in has unknown value {ended_in!r}")
        if ended_in == "ivr":
            if outcome is None:
                raise AdapterError("missing_field", "payload.ivr.outcome must be contained or abandoned")
            builder.emit(EventType.DISCONNECTED, ended, (), attributes={"self_served": outcome})
        elif ended_in == "queue":
            builder.emit(EventType.DISCONNECTED, ended, ())
    reopened = hook.data.get("reopened_at") or []
    if not isinstance(reopened, list):
        raise AdapterError("schema", "payload.reopened_at must be an array of timestamps")
    for index, value in enumerate(reopened):
        builder.emit(EventType.TICKET_REOPENED, parse_time(value, f"payload.reopened_at[{index}]"), (index,))


def _queue(builder: EventBuilder, hook: Fields) -> None:
    leg_id, queue = hook.text("leg_id"), hook.text("queue")
    queued = hook.time("queued_at")
    builder.emit(EventType.QUEUED, queued, (leg_id,), leg_id=leg_id, queue=queue)
    outcome = hook.text("outcome", required=False)
    if outcome is None:
        return
    if outcome not in QUEUE_OUTCOMES:
        raise AdapterError("unknown_event_type", f"payload.outcome has unknown value {outcome!r}")
    left = hook.time("left_at")
    check_order(queued, left, "payload (queued_at..left_at)")
    if outcome == "answered":
        agent = hook.text("agent")
        builder.emit(EventType.ANSWERED, left, (leg_id,), leg_id=leg_id, queue=queue, agent=agent)
    else:
        builder.emit(EventType.ABANDONED, left, (leg_id,), leg_id=leg_id, queue=queue)


def _missed(builder: EventBuilder, hook: Fields) -> None:
    """A contact that left a queue unanswered; overlaps ``queue.*`` by design and dedupes with it."""
    leg_id, queue = hook.text("leg_id"), hook.text("queue")
    queued, missed = hook.time("queued_at"), hook.time("missed_at")
    check_order(queued, missed, "payload (queued_at..missed_at)")
    builder.emit(EventType.QUEUED, queued, (leg_id,), leg_id=leg_id, queue=queue)
    builder.emit(EventType.ABANDONED, missed, (leg_id,), leg_id=leg_id, queue=queue)


def _agent(builder: EventBuilder, hook: Fields) -> None:
    """One agent's handling of one leg: answer, holds, talk end, after-contact work, wrap-up, QA."""
    leg_id, queue, agent = hook.text("leg_id"), hook.text("queue", required=False), hook.text("agent")
    common: dict[str, Any] = {"leg_id": leg_id, "queue": queue, "agent": agent}
    answered = hook.time("answered_at")
    builder.emit(EventType.ANSWERED, answered, (leg_id,), **common)
    for index, hold in enumerate(hook.objects("holds", required=False)):
        start, end = hold.time("start"), hold.time("end", required=False)
        check_order(start, end, hold)
        builder.emit(EventType.HOLD, start, (leg_id, index), **common)
        if end is not None:
            builder.emit(EventType.RESUME, end, (leg_id, index), **common)
    ended = hook.time("ended_at", required=False)
    if ended is not None:
        check_order(answered, ended, "payload (answered_at..ended_at)")
        kind = choose(END_REASONS, hook.text("end_reason"), "unknown_event_type", hook, "end_reason")
        if kind is EventType.DISCONNECTED:
            builder.emit(kind, ended, (), **common)
        else:
            target = hook.text("transfer_queue", required=False)
            builder.emit(
                kind, ended, (leg_id,), attributes={"target_queue": target} if target else {}, **common
            )
    acw_start = hook.time("acw_started_at", required=False)
    if acw_start is not None:
        acw_end = hook.time("acw_ended_at", required=False)
        check_order(acw_start, acw_end, "payload (acw_started_at..acw_ended_at)")
        builder.emit(EventType.ACW_START, acw_start, (leg_id,), **common)
        if acw_end is not None:
            builder.emit(EventType.ACW_END, acw_end, (leg_id,), **common)
    wrapup = hook.obj("wrapup", required=False)
    if wrapup is not None:
        builder.wrapup(leg_id, wrapup.text("code"), wrapup.time("set_at"), queue=queue, agent=agent)
    qa = hook.obj("qa", required=False)
    if qa is not None:
        score, at = qa.integer("score"), qa.time("scored_at")
        if not 0 <= score <= MAX_SCORE:
            raise AdapterError(OUT_OF_RANGE, f"{qa.path('score')} must be within 0..100, got {score}")
        builder.emit(
            EventType.QA_SCORE_SET, at, (leg_id,), attributes={"score": score}, sequence=millis(at), **common
        )
