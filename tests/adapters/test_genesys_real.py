"""Real Genesys Cloud detail records (issue #11, classes 1-6): accepted, and counted as they happened.

The payloads are the corpus files under tests/fixtures/corpus/genesys_records (provenance and the
hand arithmetic of every figure: that directory's manifest.json and notes). Each test parses a
record, stitches its events, and checks the figures a real record must give.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from stitchboard.adapters import genesys
from stitchboard.conversation import Leg
from stitchboard.deadletters import AdapterError
from stitchboard.events import CanonicalEvent, Direction, EventType
from stitchboard.rows import ConversationRow
from stitchboard.settings import TenantSettings
from stitchboard.stitching.row import conversation_row
from stitchboard.stitching.stitch import stitch_group
from stitchboard.stitching.store import ConversationState

CORPUS = Path(__file__).parents[1] / "fixtures" / "corpus" / "genesys_records"
TENANT = "acme"
RECEIVED = datetime.fromisoformat("2026-11-30T00:00:00+00:00")
SETTINGS = TenantSettings()
QUEUE = "ec348d15-eb70-4374-957a-303361224b13"  # the queue of the 2025 voice records


def record(name: str) -> dict[str, Any]:
    return orjson.loads((CORPUS / name).read_bytes())


def parse(payload: dict[str, Any]) -> list[CanonicalEvent]:
    return genesys.parse(payload, TENANT, RECEIVED)


def stitched(*payloads: dict[str, Any]) -> tuple[ConversationRow, tuple[Leg, ...]]:
    """Every delivery's events into one conversation state; its row and legs."""
    state: ConversationState | None = None
    for payload in payloads:
        state = stitch_group(state, parse(payload), SETTINGS).state
    assert state is not None
    conversation = state.conversation()
    return conversation_row(conversation, RECEIVED, SETTINGS), conversation.legs


def figures(row: ConversationRow) -> tuple[Any, ...]:
    return (
        row.status,
        row.answered,
        row.abandoned,
        row.legs,
        row.transfers,
        row.wait_ms,
        row.talk_ms,
        row.hold_ms,
        row.acw_ms,
        row.handle_ms,
    )


def of_type(events: list[CanonicalEvent], kind: EventType) -> list[CanonicalEvent]:
    return [event for event in events if event.event_type is kind]


# class 1: optional fields -------------------------------------------------------------------------


def test_a_record_without_originating_direction_takes_the_customer_session_direction() -> None:
    events = parse(record("sp2025_voice_no_originating_direction.json"))
    assert {event.direction for event in events} == {Direction.INBOUND}


def test_old_records_without_direction_end_or_metrics_are_accepted() -> None:
    """2016 responses carry neither originatingDirection nor conversationEnd nor any direction."""
    row, legs = stitched(record("dt2016_callback_preview.json"))
    assert (row.direction, row.channel, row.status) == ("inbound", "callback", "ended")
    assert [leg.queue for leg in legs] == ["db3ceec4-eb54-48f7-bf52-373b86dd4ebc"]


def test_an_internal_caller_sets_the_direction_when_the_record_has_none() -> None:
    events = parse(record("dt2016_voice_user_caller_answered.json"))
    assert {event.direction for event in events} == {Direction.OUTBOUND}


# class 2: disconnectType on the session's final segment ---------------------------------------


@pytest.mark.parametrize(
    ("name", "at"),
    [
        ("bp2021_chat_trailing_hold.json", "2021-04-01T12:43:23.306+00:00"),
        ("dt2016_callback_trailing_hold.json", "2016-09-06T12:46:56.166+00:00"),
    ],
)
def test_the_disconnect_type_is_read_from_the_final_segment(name: str, at: str) -> None:
    (talk_end,) = [event for event in of_type(parse(record(name)), EventType.DISCONNECTED) if event.leg_id]
    assert talk_end.event_time == datetime.fromisoformat(at)


# class 3: agents alerted who never answered ---------------------------------------------------


def test_an_agent_who_did_not_respond_is_an_alert_not_a_leg() -> None:
    payload = record("sp2025_voice_not_responding_then_answered.json")
    events = parse(payload)
    missed = payload["participants"][3]["userId"]
    alerts = [event for event in of_type(events, EventType.ALERTING) if event.agent == missed]
    assert [(event.attributes, event.queue) for event in alerts] == [({"responded": False}, QUEUE)]
    assert {event.agent for event in of_type(events, EventType.ANSWERED)} == {
        payload["participants"][4]["userId"]
    }
    row, _ = stitched(payload)
    assert figures(row) == ("ended", True, False, 1, 0, 11629, 16981, 0, 0, 16981)


def test_a_real_not_responding_agent_with_a_wrapup_segment_adds_no_leg_and_no_acw() -> None:
    """2024: alert (disconnectType client), then a 61 s wrap-up; Genesys reports tAcw 57000 for it."""
    events = parse(record("mc2024_voice_not_responding_agent.json"))
    missed = "8dd0819f-9903-4913-85dd-22b10c388859"
    assert [e.event_type for e in events if e.agent == missed] == [EventType.ALERTING]
    row, legs = stitched(record("mc2024_voice_not_responding_agent.json"))
    assert figures(row) == ("ended", True, False, 1, 0, 12428, 374894, 0, 3000, 377894)
    assert [leg.agent for leg in legs] == ["2eb54224-120e-47b0-aab1-8c2daeac20d9"]


def test_an_old_record_with_an_alert_only_agent_is_answered_once_by_the_next_one() -> None:
    row, legs = stitched(record("dt2016_callback_alert_only_agent.json"))
    assert figures(row) == ("ended", True, False, 1, 0, 17502, 11647, 0, 0, 11647)
    assert [leg.agent for leg in legs] == ["cd707b2b-4dc8-4d88-9750-b1f412ef67e6"]


def test_the_caller_hanging_up_while_an_agent_is_alerted_is_a_queue_abandon() -> None:
    row, legs = stitched(record("sp2025_voice_queue_abandon_while_alerting.json"))
    assert figures(row) == ("ended", False, True, 1, 0, 12981, 0, 0, 0, 0)
    assert [(leg.queue, leg.answered_at) for leg in legs] == [(QUEUE, None)]


# class 4: a hold still open when the call ends --------------------------------------------------


def test_a_trailing_hold_counts_in_hold_and_handle_time() -> None:
    row, _ = stitched(record("sp2025_voice_trailing_hold.json"))
    assert figures(row) == ("ended", True, False, 1, 0, 1786, 16193, 10631, 5000, 31824)


def test_a_chat_left_on_hold_matches_the_vendor_talk_and_held_metrics() -> None:
    """The record's own tTalk 374561, tHeld 544176 and tHandle 918737 (agent session metrics)."""
    row, _ = stitched(record("bp2021_chat_trailing_hold.json"))
    assert (row.talk_ms, row.hold_ms, row.handle_ms) == (374561, 544176, 918737)


# class 5: queue leg and agent leg linked across millisecond gaps --------------------------------


@pytest.mark.parametrize(
    ("name", "wait_ms"),
    [
        ("sp2025_voice_ivr_queue_answered.json", 1786),  # agent connected 43 ms before the acd segment end
        ("dt2016_voice_user_caller_alert_only.json", 13699),  # 4 ms before
        ("bp2021_chat_trailing_hold.json", 11181),  # 2 ms after
        ("mc2024_voice_not_responding_agent.json", 12428),  # 17 ms after, a delay segment before the offer
    ],
)
def test_the_agent_answers_the_queue_visit_across_a_millisecond_gap(name: str, wait_ms: int) -> None:
    row, legs = stitched(record(name))
    assert (row.legs, row.answered, row.wait_ms) == (1, True, wait_ms)
    (leg,) = legs
    assert leg.queue and leg.agent and leg.answer_wait_ms == wait_ms


def test_an_agent_with_two_sessions_answers_two_queue_visits() -> None:
    row, legs = stitched(record("bp2021_message_agent_two_sessions.json"))
    assert [(leg.answer_wait_ms, leg.transfer_kind) for leg in legs] == [(11181, "blind"), (5634, None)]
    assert figures(row) == ("ended", True, False, 2, 1, 16815, 712266, 200806, 60000, 973072)


# class 6: internal users ------------------------------------------------------------------------


def test_an_internal_user_is_not_an_agent_leg() -> None:
    payload = record("sp2025_voice_transfer_to_internal_user.json")
    user = payload["participants"][4]["userId"]
    assert not [event for event in parse(payload) if event.agent == user]
    row, legs = stitched(payload)
    assert figures(row) == ("ended", True, False, 1, 1, 1786, 16193, 0, 3000, 19193)
    assert row.ended_at == datetime.fromisoformat("2025-03-10T05:09:20+00:00")
    assert [leg.transfer_kind for leg in legs] == ["blind"]


def test_an_internal_caller_is_neither_customer_nor_agent() -> None:
    payload = record("dt2016_voice_user_caller_answered.json")
    caller = payload["participants"][0]["userId"]
    events = parse(payload)
    assert not [event for event in events if event.agent == caller]
    assert not [event for event in events if event.customer.keys()]


# re-delivery ------------------------------------------------------------------------------------


def test_a_record_redelivered_with_its_wrapup_keeps_every_earlier_event_id() -> None:
    first, final = record("sp2025_voice_acw_in_progress.json"), record("sp2025_voice_acw_done.json")
    earlier = {event.event_id: event for event in parse(first)}
    later = {event.event_id: event for event in parse(final)}
    assert earlier.keys() < later.keys()
    assert {later[key].event_type for key in later.keys() - earlier.keys()} == {
        EventType.ACW_END,
        EventType.WRAPUP_SET,
    }
    assert all(earlier[key] == later[key] for key in earlier)
    row, _ = stitched(first, final, copy.deepcopy(final))
    assert figures(row) == ("ended", True, False, 1, 0, 1786, 26824, 0, 10000, 36824)


def test_the_open_record_alone_leaves_the_conversation_open_in_after_call_work() -> None:
    row, legs = stitched(record("sp2025_voice_acw_in_progress.json"))
    assert (row.status, row.ended_at, legs[0].acw_start is not None) == ("open", None, True)


# the rules behind the classes, on variations of a real record ---------------------------------


def base() -> dict[str, Any]:
    return record("sp2025_voice_ivr_queue_answered.json")


def agent_segments(payload: dict[str, Any]) -> list[dict[str, Any]]:
    agent = next(p for p in payload["participants"] if p["purpose"] == "agent")
    segments: list[dict[str, Any]] = agent["sessions"][0]["segments"]
    return segments


@pytest.mark.parametrize(("offset", "linked"), [("4.900", True), ("6.000", False)])
def test_an_offer_links_to_a_queue_visit_within_five_seconds_of_it(offset: str, linked: bool) -> None:
    """The acd segment ends 05:08:33.850; the agent is alerted (and connects) ``offset`` s later."""
    payload = base()
    alert, interact = agent_segments(payload)
    at = (
        datetime.fromisoformat("2025-03-10T05:08:33.850+00:00") + timedelta(seconds=float(offset))
    ).isoformat()
    alert["segmentStart"], alert["segmentEnd"], interact["segmentStart"] = at, at, at
    (answered,) = of_type(parse(payload), EventType.ANSWERED)
    acd = next(p for p in payload["participants"] if p["purpose"] == "acd")
    assert (answered.leg_id == acd["participantId"], answered.queue) == (
        (True, QUEUE) if linked else (False, None)
    )


def test_sessions_of_one_agent_that_overlap_are_one_handling() -> None:
    """A callback session and the voice call it places, connected at the same time: one answer."""
    payload = base()
    agent = next(p for p in payload["participants"] if p["purpose"] == "agent")
    call = copy.deepcopy(agent["sessions"][0])
    call["sessionId"] = "second-session"
    call["segments"] = [
        {
            "segmentType": "dialing",
            "segmentStart": "2025-03-10T05:08:35.000Z",
            "segmentEnd": "2025-03-10T05:08:36.000Z",
        },
        {
            "segmentType": "interact",
            "segmentStart": "2025-03-10T05:08:36.000Z",
            "segmentEnd": "2025-03-10T05:09:00.500Z",
        },
    ]
    agent["sessions"].append(call)
    events = parse(payload)
    assert len(of_type(events, EventType.ANSWERED)) == 1
    (talk_end,) = [event for event in of_type(events, EventType.DISCONNECTED) if event.leg_id]
    assert talk_end.event_time == datetime.fromisoformat("2025-03-10T05:09:00.631+00:00")


@pytest.mark.parametrize(("how", "kind"), [("consultTransfer", "consult"), ("transfer.forward", "blind")])
def test_transfers_in_the_analytics_and_the_conversations_spelling(how: str, kind: str) -> None:
    payload = base()
    agent_segments(payload)[-1]["disconnectType"] = how
    (transfer,) = [e for e in parse(payload) if e.event_type.value.startswith("transfer_")]
    assert transfer.event_type.value == f"transfer_{kind}"


def test_what_the_record_leaves_out_never_rejects_it() -> None:
    """A participant without purpose, a segment without start or type, an evaluation of nobody."""
    payload = base()
    payload["participants"].append({"participantId": "no-purpose", "sessions": [{"mediaType": "voice"}]})
    agent_segments(payload).append({"segmentType": "wrapup", "segmentEnd": "2025-03-10T05:09:01.000Z"})
    agent_segments(payload).append({"segmentStart": "2025-03-10T05:09:01.000Z"})
    payload["evaluations"] = [
        {
            "evaluationId": "e1",
            "userId": "someone-else",
            "eventTime": "2025-03-10T06:00:00.000Z",
            "oTotalScore": 90,
        },
        {"evaluationId": "e2", "userId": "nobody"},
    ]
    assert [event.event_type for event in parse(payload)] == [event.event_type for event in parse(base())]


@pytest.mark.parametrize(
    ("mutate", "reason", "field"),
    [
        (lambda r: agent_segments(r)[-1].update(disconnectType="vanished"), "unknown_event_type", "vanished"),
        (lambda r: r["participants"][0].update(purpose="robot"), "schema", "participants[0].purpose"),
        (lambda r: r.update(originatingDirection="sideways"), "schema", "originatingDirection"),
        (lambda r: r["participants"][0]["sessions"][0].update(mediaType="telex"), "unknown_channel", "telex"),
    ],
)
def test_values_outside_the_documented_vocabularies_are_still_rejected(
    mutate: Any, reason: str, field: str
) -> None:
    payload = base()
    mutate(payload)
    with pytest.raises(AdapterError) as caught:
        parse(payload)
    assert (caught.value.reason, field in caught.value.detail) == (reason, True)
