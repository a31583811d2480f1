"""Issue #13, seen 2 (stitcher side): no value the model accepts can break a conversation's state.

A delivery that would exceed a conversation limit (events, holds, IVR steps, distinct values) or put
a value beyond the state's 64-bit fields is dead-lettered as ``conversation_limit``; the conversation
keeps its earlier state, nothing raises, and the same holds after a restore from recovery.
"""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime

import orjson
import pytest
from support.events import T0
from support.events import unchecked_event as event
from support.source_records import load

from stitchboard.adapters import connect
from stitchboard.deliveries import Delivery
from stitchboard.events import CanonicalEvent, EventType
from stitchboard.metrics import contribution_values
from stitchboard.settings import ConversationLimits, Settings, TenantSettings
from stitchboard.shards import ConversationShard
from stitchboard.stitching.emitted import pack
from stitchboard.stitching.row import conversation_row
from stitchboard.stitching.stitch import LIMIT_REASON, stitch_group
from stitchboard.stitching.store import AddResult, ConversationState

TENANT = TenantSettings()
E = EventType
RECEIVED = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)


def answered_call() -> list[CanonicalEvent]:
    return [
        event(E.ARRIVED, 0),
        event(E.QUEUED, 10, leg="l1", queue="sales"),
        event(E.ANSWERED, 25, leg="l1", queue="sales", agent="ann"),
    ]


def ended_call() -> list[CanonicalEvent]:
    return [*answered_call(), event(E.DISCONNECTED, 325, leg="l1")]


def stitched(events: list[CanonicalEvent], limits: ConversationLimits | None = None) -> ConversationState:
    outcome = stitch_group(None, events, TENANT, limits or ConversationLimits())
    assert not outcome.dead_letters
    return outcome.state


def rejects(
    state: ConversationState,
    events: list[CanonicalEvent],
    words: str,
    limits: ConversationLimits | None = None,
) -> None:
    """The delivery is dead-lettered whole, naming its events, and the state is what it was before."""
    before = snapshot(state)
    outcome = stitch_group(state, events, TENANT, limits or ConversationLimits())
    assert outcome.results == [AddResult.REJECTED] * len(events)
    assert outcome.deltas == [] and outcome.conversation is None
    [letter] = outcome.dead_letters
    assert letter.reason == LIMIT_REASON and words in letter.detail, letter.detail
    assert letter.tenant == "acme" and "c1" in letter.detail
    assert [item["event_id"] for item in orjson.loads(letter.raw)] == [item.event_id for item in events]
    assert snapshot(outcome.state) == before


def snapshot(state: ConversationState) -> tuple[object, ...]:
    """Everything the state would pickle, and its summary when it has events."""
    summary = state.conversation() if len(state) else None
    return (pickle.dumps(state), state.version, len(state), summary)


def test_a_hold_count_beyond_64_bits_is_dead_lettered_and_the_conversation_keeps_its_state() -> None:
    hold = event(E.HOLD, 30, leg="l1", duration_ms=10**19, count=10**19)
    rejects(stitched(ended_call()), [hold], "holds")


def test_a_hold_duration_beyond_64_bits_is_held_within_the_talk_and_packs() -> None:
    """A reported total cannot exceed the talk it happened in (issue #13 seen 8: holds within talk)."""
    state = stitched(ended_call())
    outcome = stitch_group(state, [event(E.HOLD, 30, leg="l1", duration_ms=10**19, count=1)], TENANT)
    assert outcome.results == [AddResult.APPLIED] and not outcome.dead_letters
    assert outcome.conversation is not None
    [leg] = outcome.conversation.legs
    assert (leg.hold_ms, leg.talk_ms, leg.handle_ms) == (300_000, 0, 300_000)


def test_a_sequence_beyond_64_bits_is_dead_lettered() -> None:
    wrapup = event(E.WRAPUP_SET, 330, leg="l1", code="resolved", sequence=2**63)
    rejects(stitched(ended_call()), [wrapup], "64-bit")


def test_an_attribute_beyond_64_bits_is_dead_lettered() -> None:
    """No JSON source can send one (orjson reads it as a float), but a canonical event can hold it."""
    rejects(stitched(ended_call()), [event(E.IVR_STEP, 5, node=2**64)], "64 bits")


def test_a_qa_score_beyond_its_column_is_dead_lettered() -> None:
    score = event(E.QA_SCORE_SET, 400, leg="l1", score=2**63, sequence=1)
    rejects(stitched(ended_call()), [score], "QA score")


def test_a_figure_beyond_int64_is_dead_lettered_before_it_reaches_a_column() -> None:
    """With the holds limit raised out of the way, the count itself cannot be a 64-bit figure."""
    limits = ConversationLimits(max_holds=2**70)
    hold = event(E.HOLD, 30, leg="l1", duration_ms=10, count=10**19)
    rejects(stitched(ended_call(), limits), [hold], "holds of 10000000000000000000", limits)


def test_more_than_65535_distinct_values_are_dead_lettered_not_raised() -> None:
    """Seen 2: 65,536 distinct values raised an uncaught ValueError."""
    limits = ConversationLimits(max_events=100_000, max_ivr_steps=100_000, max_distinct_values=65_535)
    state = stitched(answered_call(), limits)
    steps = [event(E.IVR_STEP, 1 + index / 10_000, node=f"node-{index}") for index in range(66_000)]
    rejects(state, steps, "distinct values", limits)
    rejects(state, steps, "events")  # the default limits stop it earlier


@pytest.mark.parametrize(
    ("limits", "extra", "words"),
    [
        (ConversationLimits(max_events=5), [event(E.CONFERENCE, 40), event(E.CONFERENCE, 41)], "events"),
        (
            ConversationLimits(max_holds=2),
            [event(E.HOLD if step % 2 == 0 else E.RESUME, 30 + step, leg="l1") for step in range(5)],
            "holds",
        ),
        (ConversationLimits(max_holds=2), [event(E.HOLD, 30, leg="l1", duration_ms=10, count=3)], "holds"),
        (
            ConversationLimits(max_ivr_steps=2),
            [event(E.IVR_STEP, 1 + step, node="menu") for step in range(3)],
            "IVR steps",
        ),
        (
            ConversationLimits(max_distinct_values=6),
            [event(E.WRAPUP_SET, 30, leg="l1", code=f"code-{n}", sequence=n) for n in range(1, 5)],
            "distinct values",
        ),
    ],
)
def test_each_limit_dead_letters_the_delivery_that_would_cross_it(
    limits: ConversationLimits, extra: list[CanonicalEvent], words: str
) -> None:
    state = stitched(ended_call(), limits)
    rejects(state, extra, words, limits)
    later = stitch_group(state, [event(E.CONFERENCE, 50)], TENANT, limits)
    assert later.results == [AddResult.APPLIED]  # the conversation goes on


def test_a_delivery_within_the_limits_applies() -> None:
    limits = ConversationLimits(max_events=6, max_holds=1, max_ivr_steps=1, max_distinct_values=8)
    state = stitched(ended_call(), limits)
    outcome = stitch_group(
        state, [event(E.HOLD, 30, leg="l1"), event(E.RESUME, 40, leg="l1")], TENANT, limits
    )
    assert outcome.results == [AddResult.APPLIED, AddResult.APPLIED] and not outcome.dead_letters


def test_limits_are_settings_with_documented_defaults() -> None:
    limits = Settings(metrics_port=None).conversation_limits
    assert (limits.max_events, limits.max_holds, limits.max_ivr_steps, limits.max_distinct_values) == (
        20_000,
        10_000,
        10_000,
        20_000,
    )
    with pytest.raises(ValueError, match="65535"):
        ConversationLimits(max_distinct_values=70_000)


def connect_record(name: str, hold_seconds: int, holds: int = 1) -> list[CanonicalEvent]:
    """The record's events with its hold total set to ``hold_seconds`` after parsing: the adapter
    now refuses such totals (``out_of_range``), and the stitcher must hold its own line anyway."""
    payload = load(name)
    payload["Agent"]["NumberOfHolds"] = holds
    events = connect.parse(payload, "acme", RECEIVED)
    return [
        e.model_copy(update={"attributes": {**e.attributes, "duration_ms": hold_seconds * 1000}})
        if e.event_type is EventType.HOLD
        else e
        for e in events
    ]


def test_the_issues_connect_hold_of_10_16_seconds_stitches_within_the_talk() -> None:
    """Seen 2: a Connect CustomerHoldDuration of 10^16 raised struct.error while packing state."""
    events = connect_record("connect/voice_leg2_answered.json", 10**16)
    outcome = stitch_group(None, events, TENANT)
    assert not outcome.dead_letters and outcome.conversation is not None
    [leg] = outcome.conversation.legs
    assert (leg.hold_ms, leg.talk_ms) == (288_000, 0)  # the whole talk, 08:03:32 to 08:08:20
    pickle.loads(pickle.dumps(outcome.state)).conversation()  # and it restores


def test_two_holds_of_5e15_seconds_sum_within_int64() -> None:
    """Seen 2: two holds of 5 * 10^15 s overflowed Int64 at the ClickHouse insert."""
    first = connect_record("connect/voice_leg1_transferred.json", 5 * 10**15)
    second = connect_record("connect/voice_leg2_answered.json", 5 * 10**15)
    state = stitch_group(None, first, TENANT).state
    outcome = stitch_group(state, second, TENANT)
    assert not outcome.dead_letters and outcome.conversation is not None
    conversation = outcome.conversation
    row = conversation_row(conversation, RECEIVED, TENANT)
    # each hold fills its leg's talk: 08:00:55-08:03:20 (145 s) and 08:03:32-08:08:20 (288 s); ACW
    # 30 s and 60 s; the conversation spans 08:00:00-08:09:20 (560 s)
    assert (row.hold_ms, row.talk_ms, row.acw_ms, row.handle_ms) == (433_000, 0, 90_000, 523_000)
    values = contribution_values(conversation, TENANT)
    assert max(values.values()) <= 560_000
    pack(conversation.channel.value, values, lambda queue: 1)


def shard_with_call() -> ConversationShard:
    shard = ConversationShard(retention_seconds=60, stale_seconds=600)
    shard.apply([(0, Delivery("acme", "c1", tuple(ended_call())))], TENANT, now=0.0)
    return shard


def test_a_shard_dead_letters_the_delivery_and_keeps_the_conversation_across_a_restore() -> None:
    shard = shard_with_call()
    state = shard.get("c1")
    assert state is not None
    before = state.conversation()
    bad = Delivery("acme", "c1", (event(E.HOLD, 30, leg="l1", duration_ms=1, count=10**19),))
    out = shard.apply([(1, bad)], TENANT, now=1.0)
    assert [letter.reason for letter in out.dead_letters] == [LIMIT_REASON]
    assert out.results[AddResult.REJECTED] == 1 and out.conversations == {}
    assert [(feed.arrival, feed.deltas) for feed in out.feeds] == [(1, [])]
    restored: ConversationShard = pickle.loads(pickle.dumps(shard))
    again = restored.apply([(2, bad)], TENANT, now=2.0)
    assert [letter.reason for letter in again.dead_letters] == [LIMIT_REASON]
    kept = restored.get("c1")
    assert kept is not None and kept.conversation() == before


def test_a_new_conversation_over_a_limit_leaves_nothing_behind() -> None:
    shard = ConversationShard(retention_seconds=60, stale_seconds=600)
    events = tuple(event(E.IVR_STEP, 1 + step, node="menu") for step in range(4))
    out = shard.apply(
        [(0, Delivery("acme", "c1", events))], TENANT, now=0.0, limits=ConversationLimits(max_ivr_steps=3)
    )
    assert [letter.reason for letter in out.dead_letters] == [LIMIT_REASON]
    assert len(shard) == 0 and shard.get("c1") is None
    assert shard.evict(1_000.0) == 0


def test_the_limit_letter_names_the_record() -> None:
    state = stitched(ended_call())
    hold = event(E.HOLD, 30, leg="l1", duration_ms=1, count=10**19, received=3600)
    [letter] = stitch_group(state, [hold], TENANT).dead_letters
    assert (letter.tenant, letter.source) == ("acme", "genesys")
    assert letter.received_at == T0.replace(hour=9)


HOSTILE_NUMBERS = (0, 1, 10**6, 2**31, 2**63 - 1, 2**63, 10**19, 2**64 - 1)


def hostile_delivery(rng: random.Random, number: int) -> Delivery:
    """Events a JSON source could send (integers up to 2^64 - 1), some absurd, for conversation c1."""
    items = []
    for index in range(rng.randint(1, 6)):
        kind = rng.choice(
            [E.ARRIVED, E.ANSWERED, E.HOLD, E.RESUME, E.DISCONNECTED, E.QA_SCORE_SET, E.IVR_STEP]
        )
        attributes: dict[str, str | int | bool] = {}
        if kind is E.HOLD and rng.random() < 0.7:
            attributes = {"duration_ms": rng.choice(HOSTILE_NUMBERS), "count": rng.choice(HOSTILE_NUMBERS)}
        elif kind is E.QA_SCORE_SET:
            attributes = {"score": rng.choice(HOSTILE_NUMBERS)}
        elif kind is E.IVR_STEP:
            attributes = {"node": f"node-{rng.randint(0, 9)}"}
        items.append(
            event(
                kind,
                rng.randint(0, 600),
                leg=rng.choice(["l1", None]),
                queue="sales",
                agent="ann",
                sequence=rng.choice(HOSTILE_NUMBERS[:2] + HOSTILE_NUMBERS[-4:]),
                event_id=f"d{number}-{index}",
                **attributes,
            )
        )
    return Delivery("acme", "c1", tuple(items))


@pytest.mark.parametrize("seed", range(100))
def test_no_accepted_value_raises_or_leaves_an_unpackable_state(seed: int) -> None:
    rng = random.Random(seed)
    limits = ConversationLimits(max_holds=rng.choice([3, 10_000, 2**70]))
    shard = ConversationShard(retention_seconds=60, stale_seconds=600)
    for number in range(8):
        out = shard.apply([(number, hostile_delivery(rng, number))], TENANT, float(number), limits)
        assert {letter.reason for letter in out.dead_letters} <= {LIMIT_REASON, "event_conflict"}
        for conversation in out.conversations.values():
            row = conversation_row(conversation, RECEIVED, TENANT)
            figures = (row.wait_ms, row.talk_ms, row.hold_ms, row.acw_ms, row.handle_ms)
            assert all(0 <= figure < 2**63 for figure in figures)
            assert row.qa_score is None or -(2**31) <= row.qa_score < 2**31
        shard = pickle.loads(pickle.dumps(shard))  # every state restores, and goes on from there
    state = shard.get("c1")
    assert state is None or state.conversation().conversation_id == "c1"
