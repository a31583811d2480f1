"""Issue #13, seen 8: records for one conversation that disagree with each other.

Adapters check times within a record; across records nothing did, so conversations ended before
they started and a hold sum reached 9 * 10^18 ms. The summary clamps instead (docs/architecture.md,
"Records that disagree"): it starts at the earliest live event, ends no earlier than anything that
happened to its legs, keeps each leg's holds within its talk and its after-call work after its
start, so every measured duration is between 0 and the conversation's span, in any delivery order.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import permutations

import pytest
from support.events import T0
from support.events import unchecked_event as event
from support.source_records import load

from stitchboard.adapters import webhook
from stitchboard.conversation import Conversation, ms_between
from stitchboard.conversation_paths import FrustrationThresholds, path_row
from stitchboard.events import CanonicalEvent, EventType
from stitchboard.metrics import contribution_values
from stitchboard.settings import TenantSettings
from stitchboard.stitching.row import conversation_row
from stitchboard.stitching.stitch import stitch_group
from stitchboard.stitching.store import ConversationState

TENANT = TenantSettings()
E = EventType
RECEIVED = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
CONVERSATION = "b7b7b7b7-0000-4000-8000-000000000001"


def stitched(*deliveries: list[CanonicalEvent]) -> Conversation:
    state: ConversationState | None = None
    conversation = None
    for delivery in deliveries:
        outcome = stitch_group(state, delivery, TENANT)
        assert not outcome.dead_letters
        state, conversation = outcome.state, outcome.conversation or conversation
    assert conversation is not None
    return conversation


def contact_started(clock: str) -> list[CanonicalEvent]:
    """A webhook contact.call for the missed call's conversation that says it started at ``clock``."""
    payload = load("webhook/contact_call_ivr_queued.json")
    payload.update(conversation_id=CONVERSATION, started_at=f"2026-03-29T{clock}Z")
    del payload["ended_at"]
    payload["ivr"]["steps"] = []
    return webhook.parse(payload, "acme", RECEIVED)


def test_the_issues_conversation_no_longer_ends_before_it_starts() -> None:
    """missed.call: queued 08:10:00, missed 08:11:05; contact.call of the same conversation: started
    09:00:00. Each record is consistent; together the conversation ended (the abandon) 49 minutes
    before it started. It starts at its earliest live event instead, in either delivery order."""
    missed = webhook.parse(load("webhook/missed_call.json"), "acme", RECEIVED)
    for order in permutations([missed, contact_started("09:00:00")]):
        conversation = stitched(*order)
        assert conversation.started_at == datetime(2026, 3, 29, 8, 10, tzinfo=UTC)
        assert conversation.ended_at == datetime(2026, 3, 29, 8, 11, 5, tzinfo=UTC)
        path = path_row(conversation_row(conversation, RECEIVED, TENANT), FrustrationThresholds())
        assert path.duration_ms == 65_000


def test_records_that_agree_keep_their_start() -> None:
    """The contact.call's start (before the queue) is the start, as before."""
    missed = webhook.parse(load("webhook/missed_call.json"), "acme", RECEIVED)
    conversation = stitched(missed, contact_started("08:09:30"))
    assert conversation.started_at == datetime(2026, 3, 29, 8, 9, 30, tzinfo=UTC)


def test_after_call_work_reported_before_the_conversation_started_counts_from_its_start() -> None:
    """Record A: answered at 25 s, the customer left at 100 s. Record B: ACW from an hour before the
    call to 130 s. ACW counts from the conversation's start: 130 s, not 3,730 s in a conversation of
    130 s; the talk is 75 s and the handle 205 s. (Aftermath events do not move the start.)"""
    first = [
        event(E.ARRIVED, 0),
        event(E.QUEUED, 10, leg="l1", queue="sales"),
        event(E.ANSWERED, 25, leg="l1", queue="sales", agent="ann"),
        event(E.DISCONNECTED, 100),
    ]
    second = [event(E.ACW_START, -3600, leg="l1"), event(E.ACW_END, 130, leg="l1")]
    for order in permutations([first, second]):
        conversation = stitched(*order)
        [leg] = conversation.legs
        assert (leg.talk_ms, leg.hold_ms, leg.acw_ms, leg.handle_ms) == (75_000, 0, 130_000, 205_000)
        assert conversation.started_at == T0 and conversation.ended_at == T0 + timedelta(seconds=130)


def test_a_transfer_reported_after_the_customer_left_extends_the_conversation() -> None:
    """The customer left at 60 s (talk ended then); another record has the agent transfer at 90 s."""
    conversation = stitched(
        [
            event(E.ARRIVED, 0),
            event(E.ANSWERED, 5, leg="l1", queue="sales", agent="ann"),
            event(E.DISCONNECTED, 60),
        ],
        [event(E.TRANSFER_CONSULT, 90, leg="l1")],
    )
    [leg] = conversation.legs
    assert leg.talk_ms == 55_000 and leg.transfer_at == T0 + timedelta(seconds=90)
    assert conversation.ended_at == T0 + timedelta(seconds=90)


def test_a_reported_hold_longer_than_the_talk_is_the_whole_talk() -> None:
    """Seen 8's stored hold_ms of 9 * 10^18: a source's hold total cannot exceed the talk it was in."""
    conversation = stitched(
        [
            event(E.ARRIVED, 0),
            event(E.ANSWERED, 10, leg="l1", queue="sales", agent="ann"),
            event(E.DISCONNECTED, 70, leg="l1"),
        ],
        [event(E.HOLD, 10, leg="l1", duration_ms=9 * 10**18, count=1)],
        [event(E.HOLD, 40, leg="l1", duration_ms=9 * 10**18, count=1, event_id="second")],
    )
    [leg] = conversation.legs
    assert (leg.hold_ms, leg.talk_ms, leg.handle_ms, leg.holds) == (60_000, 0, 60_000, 2)


def test_holds_of_an_open_leg_stay_within_what_is_known() -> None:
    """Still talking: a hold total is bounded by the time from the answer to the latest event."""
    conversation = stitched(
        [event(E.ARRIVED, 0), event(E.ANSWERED, 10, leg="l1", queue="sales", agent="ann")],
        [event(E.HOLD, 30, leg="l1", duration_ms=9 * 10**18, count=1)],
    )
    assert conversation.ended_at is None and conversation.legs[0].hold_ms == 20_000


def test_a_hold_on_a_leg_never_answered_counts_no_time() -> None:
    conversation = stitched([event(E.ARRIVED, 0), event(E.HOLD, 30, leg="l1", duration_ms=5_000, count=1)])
    assert conversation.legs[0].hold_ms == 0


KINDS = (
    E.ARRIVED,
    E.IVR_STEP,
    E.QUEUED,
    E.ANSWERED,
    E.HOLD,
    E.RESUME,
    E.TRANSFER_BLIND,
    E.TRANSFER_CONSULT,
    E.ABANDONED,
    E.DISCONNECTED,
    E.ACW_START,
    E.ACW_END,
    E.WRAPUP_SET,
)


def random_records(rng: random.Random) -> list[list[CanonicalEvent]]:
    """Two to four records, each internally plausible at most, that disagree on when things happened."""
    records = []
    for number in range(rng.randint(2, 4)):
        items = []
        for index in range(rng.randint(1, 8)):
            kind = rng.choice(KINDS)
            leg = rng.choice(["l1", "l2", None]) if kind not in (E.ARRIVED, E.IVR_STEP) else None
            attributes: dict[str, str | int | bool] = {}
            if kind is E.HOLD and rng.random() < 0.5:
                attributes = {"duration_ms": rng.choice([1, 10**6, 9 * 10**18]), "count": 1}
            elif kind is E.IVR_STEP:
                attributes = {"node": "menu"}
            elif kind is E.WRAPUP_SET:
                attributes = {"code": "resolved"}
            items.append(
                event(
                    kind,
                    rng.randint(0, 3600),
                    leg=leg,
                    queue=rng.choice(["sales", "tech"]) if leg else None,
                    agent=rng.choice(["ann", "bob", None]) if leg else None,
                    event_id=f"r{number}-{index}",
                    **attributes,
                )
            )
        records.append(items)
    return records


def span_ms(conversation: Conversation, latest: datetime) -> int:
    return ms_between(conversation.started_at, conversation.ended_at or latest)


@pytest.mark.parametrize("seed", range(300))
def test_disagreeing_records_never_give_a_negative_or_impossible_figure(seed: int) -> None:
    records = random_records(random.Random(seed))
    latest = max(item.event_time for record in records for item in record)
    conversation = stitched(*records)
    span = span_ms(conversation, latest)
    assert span >= 0
    for leg in conversation.legs:
        talk_span = ms_between(leg.answered_at, leg.talk_end or latest) if leg.answered_at else 0
        assert 0 <= leg.hold_ms <= max(0, talk_span)
        figures = (leg.answer_wait_ms or 0, leg.abandon_wait_ms or 0, leg.talk_ms + leg.hold_ms, leg.acw_ms)
        assert all(0 <= figure <= span for figure in figures), (figures, span)
        assert leg.handle_ms == leg.talk_ms + leg.hold_ms + leg.acw_ms  # ACW may overlap the talk's end
    row = conversation_row(conversation, RECEIVED, TENANT)
    assert min(row.wait_ms, row.talk_ms, row.hold_ms, row.acw_ms, row.handle_ms) >= 0
    assert all(value >= 0 for value in contribution_values(conversation, TENANT).values())
    shuffled = stitched(*reversed(records))
    assert shuffled == conversation
