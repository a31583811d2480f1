"""Round trip: scenario → rendered platform records → normalise → the scenario's facts, exactly.

Over 500 lines because it walks every shape of every platform (and each real-world variation)
through the same round trip; one file keeps those cases comparable side by side.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from stitchboard.adapters import normalise
from stitchboard.conversation import Conversation
from stitchboard.deadletters import DeadLetter
from stitchboard.events import CanonicalEvent, Channel, CustomerIds, Direction, EventType
from stitchboard.metrics import contribution_values
from stitchboard.settings import TenantSettings
from stitchboard.stitching.stitch import stitch_group
from stitchboard.synthetic.render import render_agent_state, render_conversation
from stitchboard.synthetic.scenario import (
    Shape,
    SimAgentState,
    SimAlert,
    SimConsult,
    SimConversation,
    SimHold,
    SimLeg,
    StreamTiming,
)
from stitchboard.synthetic.streams import streamable

T0 = datetime(2026, 3, 29, 8, 0, 0, tzinfo=UTC)
SHAPES: tuple[Shape, ...] = ("genesys", "connect", "webhook")


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def voice_transfers(shape: Shape) -> SimConversation:
    """IVR → billing (2 holds, blind transfer) → tech (consult transfer) → sales; ACW, wrap-up change, QA."""
    first = SimLeg("leg-1", "billing", at(40), "answered", at(55), agent="ann")
    first.holds = [SimHold(at(70), at(100)), SimHold(at(130), at(145))]
    first.transfer, first.ended_at, first.acw_end = "blind", at(200), at(230)
    first.wrapup_code, first.wrapup_set_at = "transferred", at(215)
    second = SimLeg("leg-2", "tech", at(200), "answered", at(212), agent="bob")
    second.holds = [SimHold(at(260), at(300))]
    second.transfer, second.ended_at = "consult", at(400)
    second.wrapup_code, second.wrapup_set_at = "transferred", at(500)
    second.wrapup_changed_to, second.wrapup_changed_at = "escalated", at(4000)
    second.qa_score, second.qa_scored_at = 83, at(9000)
    third = SimLeg("leg-3", "sales", at(400), "answered", at(420), agent="cat")
    third.ended_at, third.acw_end = at(700), at(760)
    third.wrapup_code, third.wrapup_set_at = "sale", at(740)
    third.wrapup_changed_to, third.wrapup_changed_at = "resolved", at(3600)
    third.qa_score, third.qa_scored_at = 91, at(7200)
    return SimConversation(
        tenant="acme",
        conversation_id="conv-voice",
        shape=shape,
        channel=Channel.VOICE,
        direction=Direction.INBOUND,
        started_at=at(0),
        ended_at=at(700),
        customer=CustomerIds(phone_hash="ph-1", account_hash="acct-9"),
        intent="billing",
        ivr_steps=[("welcome", at(0)), ("main_menu", at(12)), ("authenticate", at(30))],
        ivr_outcome="queued",
        legs=[first, second, third],
    )


def chat_abandoned_short(shape: Shape) -> SimConversation:
    leg = SimLeg("leg-c", "support", at(0), "abandoned", at(6))
    return SimConversation(
        tenant="acme",
        conversation_id="conv-chat",
        shape=shape,
        channel=Channel.CHAT,
        direction=Direction.INBOUND,
        started_at=at(0),
        ended_at=at(6),
        customer=CustomerIds(cookie_hash="ck-7"),
        intent=None,
        legs=[leg],
    )


def email_reopened(shape: Shape) -> SimConversation:
    leg = SimLeg("leg-e", "claims", at(0), "answered", at(5400), agent="dee")
    leg.ended_at, leg.acw_end = at(6000), at(6120)
    leg.wrapup_code, leg.wrapup_set_at = "info_given", at(6100)
    return SimConversation(
        tenant="acme",
        conversation_id="conv-email",
        shape=shape,
        channel=Channel.EMAIL,
        direction=Direction.INBOUND,
        started_at=at(0),
        ended_at=at(6000),
        customer=CustomerIds(email_hash="em-3", cookie_hash="ck-3"),
        intent="claims",
        legs=[leg],
        reopened_at=[at(20000), at(40000)],
    )


def ivr_contained(shape: Shape) -> SimConversation:
    return SimConversation(
        tenant="acme",
        conversation_id="conv-ivr",
        shape=shape,
        channel=Channel.VOICE,
        direction=Direction.INBOUND,
        started_at=at(0),
        ended_at=at(95),
        customer=CustomerIds(phone_hash="ph-2"),
        intent="balance",
        ivr_steps=[("welcome", at(0)), ("main_menu", at(10)), ("self_service", at(40))],
        ivr_outcome="contained",
    )


def bot_abandoned(shape: Shape) -> SimConversation:
    return SimConversation(
        tenant="acme",
        conversation_id="conv-bot",
        shape=shape,
        channel=Channel.BOT,
        direction=Direction.INBOUND,
        started_at=at(0),
        ended_at=at(33),
        customer=CustomerIds(cookie_hash="ck-1"),
        intent=None,
        ivr_steps=[("bot_greeting", at(0)), ("bot_intent", at(20))],
        ivr_outcome="abandoned",
    )


def outbound_callback(shape: Shape) -> SimConversation:
    leg = SimLeg("leg-o", "retention", at(0), "answered", at(3), agent="eve")
    leg.ended_at = at(300)
    return SimConversation(
        tenant="acme",
        conversation_id="conv-callback",
        shape=shape,
        channel=Channel.CALLBACK,
        direction=Direction.OUTBOUND,
        started_at=at(0),
        ended_at=at(300),
        customer=CustomerIds(phone_hash="ph-5"),
        intent="retention",
        legs=[leg],
    )


def voice_external_transfer(shape: Shape) -> SimConversation:
    """Answered, held, then sent to a number outside the platform; the customer talks on there."""
    leg = SimLeg("leg-x", "billing", at(10), "answered", at(25), agent="fay")
    leg.holds = [SimHold(at(100), at(160))]
    leg.transfer, leg.ended_at, leg.acw_end = "external", at(170), at(200)
    leg.wrapup_code, leg.wrapup_set_at = "info_given", at(190)
    return SimConversation(
        tenant="acme",
        conversation_id="conv-external",
        shape=shape,
        channel=Channel.VOICE,
        direction=Direction.INBOUND,
        started_at=at(0),
        ended_at=at(900),
        customer=CustomerIds(phone_hash="ph-8"),
        intent="billing",
        legs=[leg],
    )


def voice_as_vendors_send_it(shape: Shape) -> SimConversation:
    """What real records carry besides the facts: an agent alerted who did not respond, the answering
    agent's alert, milliseconds between the queue's end and the answer (either way), a consult with
    an internal user while the customer holds, and a call that ends on hold."""
    first = SimLeg("leg-1", "billing", at(40), "answered", at(70), agent="ann")
    first.alerted_at, first.boundary_gap_ms = at(62), -43
    first.missed = [SimAlert("zed", at(45), at(53))]
    first.holds = [SimHold(at(100), at(160))]
    first.consults = [SimConsult("expert-001", at(103), at(157))]
    first.transfer, first.ended_at, first.acw_end = "consult", at(200), at(230)
    first.wrapup_code, first.wrapup_set_at = "transferred", at(231)
    second = SimLeg("leg-2", "tech", at(200), "answered", at(215), agent="bob")
    second.alerted_at, second.boundary_gap_ms = at(211), 350
    second.holds = [SimHold(at(300), at(420))]
    second.ended_at, second.acw_end = at(420), at(480)
    second.wrapup_code, second.wrapup_set_at = "resolved", at(470)
    return SimConversation(
        tenant="acme",
        conversation_id="conv-vendor",
        shape=shape,
        channel=Channel.VOICE,
        direction=Direction.INBOUND,
        started_at=at(0),
        ended_at=at(420),
        customer=CustomerIds(phone_hash="ph-4"),
        intent="billing",
        ivr_steps=[("welcome", at(0))],
        ivr_outcome="queued",
        legs=[first, second],
    )


def chat_abandoned_while_alerting(shape: Shape) -> SimConversation:
    leg = SimLeg("leg-w", "support", at(0), "abandoned", at(30))
    leg.missed = [SimAlert("zed", at(21), at(30))]
    return SimConversation(
        tenant="acme",
        conversation_id="conv-ringing",
        shape=shape,
        channel=Channel.CHAT,
        direction=Direction.INBOUND,
        started_at=at(0),
        ended_at=at(30),
        customer=CustomerIds(cookie_hash="ck-2"),
        intent=None,
        legs=[leg],
    )


SCENARIOS = [
    voice_transfers,
    chat_abandoned_short,
    email_reopened,
    ivr_contained,
    bot_abandoned,
    outbound_callback,
    voice_as_vendors_send_it,
    chat_abandoned_while_alerting,
]


def normalise_all(deliveries: list[tuple[datetime, bytes]]) -> list[CanonicalEvent]:
    events: list[CanonicalEvent] = []
    for delivered_at, raw in deliveries:
        result = normalise(raw, "test", delivered_at)
        assert not isinstance(result, DeadLetter), result
        events.extend(result)
    return events


def latest_versions(events: list[CanonicalEvent]) -> list[CanonicalEvent]:
    """What a de-duplicating consumer keeps: per event id, the highest sequence."""
    latest: dict[str, CanonicalEvent] = {}
    for event in events:
        if event.event_id not in latest or event.sequence > latest[event.event_id].sequence:
            latest[event.event_id] = event
    return sorted(latest.values(), key=lambda e: (e.event_time, e.event_type.value))


def expected_facts(conv: SimConversation) -> dict[str, Any]:
    legs = []
    for index, leg in enumerate(conv.legs):
        target = conv.legs[index + 1].queue if leg.transfer and index + 1 < len(conv.legs) else None
        wrapups = [(leg.wrapup_set_at, leg.wrapup_code)] if leg.wrapup_code else []
        if leg.wrapup_changed_to:
            wrapups.append((leg.wrapup_changed_at, leg.wrapup_changed_to))
        legs.append(
            {
                "queue": leg.queue,
                "entered_at": leg.entered_at,
                "outcome": leg.outcome,
                "left_at": leg.left_at,
                "agent": leg.agent,
                "hold_ms": sum(int((h.end - h.start).total_seconds()) * 1000 for h in leg.holds),
                "holds": len(leg.holds),
                # an external transfer is the agent's blind transfer, to no queue
                "transfer": (
                    (("blind" if leg.transfer == "external" else leg.transfer), leg.ended_at, target)
                    if leg.transfer
                    else None
                ),
                "talk_end": leg.ended_at,
                "acw_end": leg.acw_end,
                "wrapups": wrapups,
                "qa": (leg.qa_score, leg.qa_scored_at) if leg.qa_score is not None else None,
            }
        )
    self_served = (
        {"contained": True, "abandoned": False}.get(conv.ivr_outcome or "") if not conv.legs else None
    )
    return {
        "conversation_id": {conv.conversation_id},
        "channel": {conv.channel},
        "direction": {conv.direction},
        "customer": conv.customer,
        "intent": {conv.intent} if conv.intent else set(),
        "started_at": conv.started_at,
        "ivr_steps": conv.ivr_steps,
        "ended_at": conv.ended_at,
        "self_served": self_served,
        "reopened_at": sorted(conv.reopened_at),
        "legs": legs,
    }


def recovered_facts(events: list[CanonicalEvent]) -> dict[str, Any]:
    """The facts a stitcher can read off the events (a minimal stitcher, for this test only)."""
    wrapup_versions: dict[str, set[tuple[datetime, str]]] = defaultdict(set)
    for event in events:
        if event.event_type is EventType.WRAPUP_SET:
            wrapup_versions[event.leg_id or ""].add((event.event_time, str(event.attributes["code"])))
    latest = latest_versions(events)
    of = defaultdict(list)
    for event in latest:
        of[event.event_type].append(event)
    by_leg: dict[str, list[CanonicalEvent]] = defaultdict(list)
    for event in latest:
        if event.leg_id is not None:
            by_leg[event.leg_id].append(event)
    legs = []
    for queued in sorted(of[EventType.QUEUED], key=lambda e: e.event_time):
        leg_events = by_leg[queued.leg_id or ""]
        kinds = {e.event_type: e for e in leg_events}
        answered, abandoned = kinds.get(EventType.ANSWERED), kinds.get(EventType.ABANDONED)
        holds = [e for e in leg_events if e.event_type is EventType.HOLD]
        resumes = sorted(e.event_time for e in leg_events if e.event_type is EventType.RESUME)
        if holds and "duration_ms" in holds[0].attributes:
            hold_ms, hold_count = holds[0].attributes["duration_ms"], holds[0].attributes["count"]
        else:
            starts = sorted(e.event_time for e in holds)
            hold_ms = sum(int((r - s).total_seconds() * 1000) for s, r in zip(starts, resumes, strict=True))
            hold_count = len(holds)
        transfer = kinds.get(EventType.TRANSFER_BLIND) or kinds.get(EventType.TRANSFER_CONSULT)
        disconnect = kinds.get(EventType.DISCONNECTED)
        qa = kinds.get(EventType.QA_SCORE_SET)
        acw_end = kinds.get(EventType.ACW_END)
        legs.append(
            {
                "queue": queued.queue,
                "entered_at": queued.event_time,
                "outcome": "answered" if answered else "abandoned",
                "left_at": (answered or abandoned).event_time,  # type: ignore[union-attr]
                "agent": answered.agent if answered else None,
                "hold_ms": hold_ms,
                "holds": hold_count,
                "transfer": (
                    transfer.event_type.value.removeprefix("transfer_"),
                    transfer.event_time,
                    transfer.attributes.get("target_queue"),
                )
                if transfer
                else None,
                "talk_end": (transfer or disconnect).event_time if (transfer or disconnect) else None,
                "acw_end": acw_end.event_time if acw_end else None,
                "wrapups": sorted(wrapup_versions[queued.leg_id or ""]),
                "qa": (qa.attributes["score"], qa.event_time) if qa else None,
            }
        )
    (arrived,) = of[EventType.ARRIVED]
    (disconnected,) = of[EventType.DISCONNECTED]
    ids: dict[str, str] = {}
    for event in latest:
        ids.update({k: v for k, v in event.customer.model_dump().items() if v is not None})
    return {
        "conversation_id": {e.conversation_id for e in latest},
        "channel": {e.channel for e in latest},
        "direction": {e.direction for e in latest},
        "customer": CustomerIds(**ids),
        "intent": {e.intent for e in latest if e.intent},
        "started_at": arrived.event_time,
        "ivr_steps": [(str(e.attributes["node"]), e.event_time) for e in of[EventType.IVR_STEP]],
        "ended_at": disconnected.event_time,
        "self_served": disconnected.attributes.get("self_served"),
        "reopened_at": sorted(e.event_time for e in of[EventType.TICKET_REOPENED]),
        "legs": legs,
    }


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_round_trip_recovers_every_fact(shape: Shape, scenario: Any) -> None:
    conv = scenario(shape)
    events = normalise_all(render_conversation(conv))
    assert recovered_facts(events) == expected_facts(conv)


@pytest.mark.parametrize("sparse", [False, True])
def test_an_external_transfer_ends_the_conversation_when_the_outside_call_ends(sparse: bool) -> None:
    conv = voice_external_transfer("connect")
    conv.sparse = sparse
    (delivery,) = [raw for _, raw in render_conversation(conv)][:1]
    record = orjson.loads(delivery)["payload"]
    assert (record["TransferCompletedTimestamp"], record.get("NextContactId")) == (
        "2026-03-29T08:02:50Z",
        None,
    )
    events = normalise_all(render_conversation(conv))
    assert recovered_facts(events) == expected_facts(conv)


@pytest.mark.parametrize("shape", ["genesys", "connect"])
@pytest.mark.parametrize("scenario", [*SCENARIOS, voice_external_transfer], ids=lambda f: f.__name__)
def test_sparse_records_recover_every_fact(shape: Shape, scenario: Any) -> None:
    """Records with only the vendor's required fields (older format versions) say the same."""
    conv = scenario(shape)
    conv.sparse = True
    deliveries = render_conversation(conv)
    events = normalise_all(deliveries)
    assert recovered_facts(events) == expected_facts(conv)
    full = render_conversation(scenario(shape))
    assert all(len(sparse) < len(whole) for (_, sparse), (_, whole) in zip(deliveries, full, strict=True))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_genesys_disconnect_type_on_the_final_segment_only(scenario: Any) -> None:
    """Where a Genesys session carries ``disconnectType`` (also on the talk's end, or only on the
    session's last ended segment) changes nothing, in every re-delivery."""
    conv = scenario("genesys")
    conv.disconnect_on_final_segment = True
    deliveries = render_conversation(conv)
    assert recovered_facts(normalise_all(deliveries)) == expected_facts(conv)
    for _, raw in deliveries:
        for participant in orjson.loads(raw)["payload"]["participants"]:
            for session in participant["sessions"]:
                ended = [segment for segment in session["segments"] if "segmentEnd" in segment]
                assert all("disconnectType" not in segment for segment in ended[:-1])


def test_genesys_records_show_what_vendors_send() -> None:
    record = orjson.loads(render_conversation(voice_as_vendors_send_it("genesys"))[-1][1])["payload"]
    by_purpose: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for participant in record["participants"]:
        by_purpose[participant["purpose"]].append(participant)
    acd_ends = [p["sessions"][0]["segments"][-1]["segmentEnd"] for p in by_purpose["acd"]]
    assert acd_ends == ["2026-03-29T08:01:09.957Z", "2026-03-29T08:03:35.350Z"]
    kinds = [[s["segmentType"] for s in p["sessions"][0]["segments"]] for p in by_purpose["agent"]]
    assert kinds == [
        ["alert"],
        ["alert", "interact", "hold", "interact", "wrapup"],
        ["alert", "interact", "hold", "wrapup"],
    ]
    (user,) = by_purpose["user"]
    assert [s["segmentType"] for s in user["sessions"][0]["segments"]] == ["alert", "interact"]


def stitched_figures(deliveries: list[tuple[datetime, bytes]]) -> tuple[Conversation, dict[Any, int]]:
    """Every delivery through the real stitcher, one group per delivery, in the order given."""
    state = None
    for delivered_at, raw in deliveries:
        events = normalise(raw, "test", delivered_at)
        assert not isinstance(events, DeadLetter), events
        if events:
            outcome = stitch_group(state, events, TenantSettings())
            assert not outcome.dead_letters
            state = outcome.state
    assert state is not None
    conversation = state.conversation()
    figures = contribution_values(conversation, TenantSettings())
    return replace(conversation, version=0), figures  # the version counts applied events


@pytest.mark.parametrize("timing", ["before", "around"])
@pytest.mark.parametrize("shape", ["genesys", "connect"])
@pytest.mark.parametrize("scenario", [*SCENARIOS, voice_external_transfer], ids=lambda f: f.__name__)
def test_stream_events_leave_the_record_figures(scenario: Any, shape: Shape, timing: StreamTiming) -> None:
    """Stream events before (and partly after) the records: the complete records' figures, exactly."""
    conv = scenario(shape)
    records = render_conversation(conv)
    conv.streamed = timing
    deliveries = render_conversation(conv)
    if not streamable(conv):
        assert deliveries == records
        return
    stream = [delivery for delivery in deliveries if delivery not in records]
    assert stream and all(moment.microsecond == 0 for moment, _ in stream)
    ended = min(moment for moment, _ in records if moment >= conv.ended_at)  # the record with the end
    last_fact = max([conv.ended_at, *(leg.acw_end for leg in conv.legs if leg.acw_end)])
    if timing == "around":  # the tail arrives after the record that already carries it
        assert max(moment for moment, _ in stream) > max(ended, last_fact)
    else:  # each event within the second it happened
        assert max(moment for moment, _ in stream) <= last_fact
    expected, figures = stitched_figures(records)
    assert stitched_figures(deliveries) == (expected, figures)
    assert stitched_figures(sorted(deliveries, key=lambda d: d[0], reverse=True))[1] == figures


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_redeliveries_repeat_ids_and_only_mutations_raise_sequence(shape: Shape, scenario: Any) -> None:
    events = normalise_all(render_conversation(scenario(shape)))
    versions: dict[tuple[str, int], set[str]] = defaultdict(set)
    for event in events:
        content = event.model_dump_json(exclude={"ingest_time"})
        versions[(event.event_id, event.sequence)].add(content)
    assert all(len(contents) == 1 for contents in versions.values())
    sequences: dict[str, set[int]] = defaultdict(set)
    for event_id, sequence in versions:
        sequences[event_id].add(sequence)
    mutated = {event.event_type for event in events if len(sequences[event.event_id]) > 1}
    assert mutated <= {EventType.WRAPUP_SET, EventType.QA_SCORE_SET}


@pytest.mark.parametrize("shape", SHAPES)
def test_wrapup_change_is_same_event_with_higher_sequence(shape: Shape) -> None:
    events = normalise_all(render_conversation(voice_transfers(shape)))
    wrapups = [e for e in events if e.event_type is EventType.WRAPUP_SET and e.agent == "cat"]
    assert len({e.event_id for e in wrapups}) == 1
    by_sequence = {e.sequence: e.attributes["code"] for e in wrapups}
    assert [by_sequence[s] for s in sorted(by_sequence)] == ["sale", "resolved"]


@pytest.mark.parametrize("shape", SHAPES)
def test_deliveries_are_ordered_whole_second_envelopes(shape: Shape) -> None:
    deliveries = render_conversation(voice_transfers(shape))
    times = [moment for moment, _ in deliveries]
    assert times == sorted(times)
    assert all(moment.microsecond == 0 for moment in times)
    assert times[-1] == at(9000)  # the last update: the QA evaluation
    for _, raw in deliveries:
        envelope = orjson.loads(raw)
        assert envelope["tenant"] == "acme"
        assert envelope["source"] == shape


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("state", ["available", "away", "busy", "offline"])
def test_agent_state_round_trip(shape: Shape, state: str) -> None:
    change = SimAgentState("acme", "ann", state, at(42), shape)
    (delivery,) = render_agent_state(change)
    (event,) = normalise_all([delivery])
    assert (event.event_type, event.agent, event.attributes, event.event_time) == (
        EventType.AGENT_STATE_CHANGED,
        "ann",
        {"state": state},
        at(42),
    )
    assert event.conversation_id is None
