"""The complete record wins: provisional (live-stream) events, their scope, supersession and state size."""

from __future__ import annotations

import gc
import itertools
import pickle
import tracemalloc
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from support.events import event

from stitchboard.contributions import ContributionKey, Delta
from stitchboard.events import CanonicalEvent, EventType
from stitchboard.metrics import contributions
from stitchboard.settings import TenantSettings
from stitchboard.stitching.row import conversation_row
from stitchboard.stitching.stitch import GroupOutcome, stitch_group
from stitchboard.stitching.store import AddResult, ConversationState

TENANT = TenantSettings()
E = EventType
NOW = datetime(2026, 3, 29, 9, 0, tzinfo=UTC)


def live(item: CanonicalEvent, scope: str = "c1") -> CanonicalEvent:
    """``item`` as a live stream reports it: provisional, scoped, its own id."""
    return item.model_copy(update={"provisional": True, "scope": scope, "event_id": "live:" + item.event_id})


def complete(item: CanonicalEvent, scope: str = "c1") -> CanonicalEvent:
    return item.model_copy(update={"scope": scope})


def record() -> list[CanonicalEvent]:
    """The complete record of a queued, answered, held and wrapped-up call (scope ``c1``)."""
    return [
        complete(event(E.ARRIVED, 0)),
        complete(event(E.QUEUED, 10, leg="l1", queue="sales")),
        complete(event(E.ANSWERED, 25, leg="l1", queue="sales", agent="ann")),
        complete(event(E.HOLD, 60, leg="l1", duration_ms=20_000, count=1)),
        complete(event(E.DISCONNECTED, 300, leg="l1", queue="sales", agent="ann")),
        complete(event(E.ACW_START, 300, leg="l1", queue="sales", agent="ann")),
        complete(event(E.ACW_END, 330, leg="l1", queue="sales", agent="ann")),
    ]


def stream() -> list[CanonicalEvent]:
    """What the live stream said about the same call: slightly different times, no holds, no leg
    on the agent's own events (a Genesys user/acw event names the agent, not the queue visit)."""
    return [
        live(event(E.ARRIVED, 0)),
        live(event(E.QUEUED, 10, leg="l1", queue="sales")),
        live(event(E.ANSWERED, 24, leg="l1", queue="sales", agent="ann")),
        live(event(E.DISCONNECTED, 299)),
        live(event(E.ACW_START, 299, queue="sales", agent="ann")),
        live(event(E.ACW_END, 331, queue="sales", agent="ann")),
    ]


def deliver(groups: list[list[CanonicalEvent]]) -> tuple[ConversationState, list[GroupOutcome]]:
    state: ConversationState | None = None
    outcomes = []
    for group in groups:
        outcome = stitch_group(state, group, TENANT)
        state = outcome.state
        outcomes.append(outcome)
    assert state is not None
    return state, outcomes


def net(outcomes: list[GroupOutcome]) -> Counter[ContributionKey]:
    total: Counter[ContributionKey] = Counter()
    for delta in (d for outcome in outcomes for d in outcome.deltas):
        total[delta.key] += delta.value
    return Counter({key: value for key, value in total.items() if value})


def figures(deltas: list[Delta] | Counter[ContributionKey]) -> dict[str, int]:
    items = deltas.items() if isinstance(deltas, Counter) else ((d.key, d.value) for d in deltas)
    total: Counter[str] = Counter()
    for key, value in items:
        total[key.metric] += value
    return {metric: value for metric, value in total.items() if value}


def test_stream_only_figures_move_provisionally() -> None:
    events = stream()
    state, outcomes = deliver([[item] for item in events[:2]])
    assert figures(net(outcomes)) == {"offered": 1, "contacts": 1}  # waiting in queue
    state, more = deliver([[item] for item in events])
    assert figures(net(more))["answered"] == 1
    assert figures(net(more))["answer_wait_ms"] == 14_000
    assert state.awaiting_record
    conversation = state.conversation()
    assert conversation.ended_at is not None and conversation.legs[0].acw_ms == 32_000
    abandoned = [
        live(event(E.QUEUED, 10, leg="l1", queue="sales")),
        live(event(E.ABANDONED, 40, leg="l1", queue="sales")),
        live(event(E.DISCONNECTED, 40)),
    ]
    _, outcomes = deliver([[item] for item in abandoned])
    assert figures(net(outcomes)) == {
        "offered": 1,
        "abandoned": 1,
        "abandon_wait_ms": 30_000,
        "contacts": 1,
        "contacts_abandoned": 1,
    }


def test_the_record_wins_in_either_order_and_nets_to_the_record_alone() -> None:
    alone_state, alone = deliver([record()])
    stream_first_state, stream_first = deliver([[item] for item in stream()] + [record()])
    record_first_state, record_first = deliver([record()] + [[item] for item in stream()])
    assert (
        net(stream_first)
        == net(record_first)
        == net(alone)
        == contributions(alone_state.conversation(), TENANT)
    )
    for state in (stream_first_state, record_first_state):
        assert _summary(state) == _summary(alone_state)
        assert not state.awaiting_record
        assert len(state) == len(record())
    assert all(result is AddResult.SUPERSEDED for outcome in record_first[1:] for result in outcome.results)
    assert all(outcome.deltas == [] and outcome.dead_letters == [] for outcome in record_first[1:])
    # the record retracted exactly what the stream had published: every stream-only key nets to zero
    assert sum(d.value for d in stream_first[-1].deltas if d.key.metric == "talk_ms") == (
        (300 - 25) * 1000 - 20_000 - (299 - 24) * 1000
    )


def _summary(state: ConversationState) -> tuple[object, ...]:
    """The stitched summary and the conversation row, without the version counter."""
    conversation = replace(state.conversation(), version=0)
    return conversation, replace(conversation_row(conversation, NOW, TENANT), version=0)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_any_interleaving_gives_the_record_alone(order: tuple[int, ...]) -> None:
    parts = [[[item] for item in stream()[:3]], [record()], [[item] for item in stream()[3:]]]
    groups = [group for index in order for group in parts[index]]
    state, outcomes = deliver(groups)
    alone_state, alone = deliver([record()])
    assert net(outcomes) == net(alone)
    assert _summary(state) == _summary(alone_state)


def test_replaying_everything_twice_changes_nothing() -> None:
    groups = [[item] for item in stream()] + [record()]
    state, first = deliver(groups)
    version = state.version
    again = [stitch_group(state, group, TENANT) for group in groups]
    assert all(outcome.deltas == [] and outcome.dead_letters == [] for outcome in again)
    assert {result for outcome in again for result in outcome.results} <= {
        AddResult.DUPLICATE,
        AddResult.SUPERSEDED,
    }
    assert state.version == version
    assert net(first) == net(deliver([record()])[1])


def test_a_connect_transfer_chain_supersedes_contact_by_contact() -> None:
    """Contact 1's record replaces contact 1's live events only; contact 2 stays live."""
    first_live = [
        live(event(E.ARRIVED, 0), "k1"),
        live(event(E.QUEUED, 10, leg="k1", queue="sales"), "k1"),
        live(event(E.ANSWERED, 20, leg="k1", queue="sales", agent="ann"), "k1"),
        live(event(E.DISCONNECTED, 200, leg="k1", queue="sales", agent="ann"), "k1"),
    ]
    second_live = [
        live(event(E.QUEUED, 201, leg="k2", queue="support"), "k2"),
        live(event(E.ANSWERED, 230, leg="k2", queue="support", agent="bob"), "k2"),
    ]
    first_record = [
        complete(event(E.ARRIVED, 0), "k1"),
        complete(event(E.QUEUED, 10, leg="k1", queue="Sales"), "k1"),
        complete(event(E.ANSWERED, 20, leg="k1", queue="Sales", agent="ann.lee"), "k1"),
        complete(event(E.TRANSFER_BLIND, 200, leg="k1", queue="Sales", agent="ann.lee"), "k1"),
    ]
    state, outcomes = deliver([first_live, second_live[:1], first_record, second_live[1:]])
    conversation = state.conversation()
    assert [(leg.leg_id, leg.queue, leg.agent) for leg in conversation.legs] == [
        ("k1", "Sales", "ann.lee"),
        ("k2", "support", "bob"),
    ]
    assert conversation.ended_at is None and conversation.legs[0].transfer_kind == "blind"
    assert state.awaiting_record  # contact 2's record is still due
    by_queue: Counter[tuple[str, str]] = Counter()
    for key, value in net(outcomes).items():
        by_queue[(key.queue, key.metric)] += value
    assert by_queue[("sales", "offered")] == 0 and by_queue[("Sales", "offered")] == 1
    assert by_queue[("Sales", "transferred_out")] == 1
    assert (by_queue[("support", "offered")], by_queue[("support", "answer_wait_ms")]) == (1, 29_000)
    late_first = live(event(E.ACW_END, 230, leg="k1", queue="sales", agent="ann"), "k1")
    assert stitch_group(state, [late_first], TENANT).results == [AddResult.SUPERSEDED]
    late_second = live(event(E.DISCONNECTED, 400, leg="k2", queue="support", agent="bob"), "k2")
    assert stitch_group(state, [late_second], TENANT).results == [AddResult.APPLIED]


def test_events_without_a_scope_are_never_superseded_and_supersede_nothing() -> None:
    state, _ = deliver(
        [
            [live(event(E.QUEUED, 10, leg="l1", queue="sales"))],
            [event(E.ANSWERED, 20, leg="l1", queue="sales", agent="ann")],
        ]
    )
    assert len(state) == 2 and state.awaiting_record
    other_scope = complete(event(E.ABANDONED, 30, leg="l9", queue="sales"), "another-record")
    stitch_group(state, [other_scope], TENANT)
    assert len(state) == 3 and state.awaiting_record


def test_an_agents_handling_without_a_leg_goes_to_that_agents_answered_leg() -> None:
    events = [
        live(event(E.QUEUED, 0, leg="l1", queue="sales")),
        live(event(E.ANSWERED, 10, leg="l1", queue="sales", agent="ann")),
        live(event(E.QUEUED, 100, leg="l2", queue="support")),
        live(event(E.ANSWERED, 110, leg="l2", queue="support", agent="bob")),
        live(event(E.TRANSFER_CONSULT, 120, queue="sales", agent="ann")),  # ann's leg, though bob's is later
        live(event(E.HOLD, 120, agent="carl", duration_ms=5_000, count=0)),  # never answered: counts nothing
    ]
    state, outcomes = deliver([[item] for item in events])
    legs = {leg.leg_id: leg for leg in state.conversation().legs}
    assert legs["l1"].transfer_kind == "consult" and legs["l2"].transfer_kind is None
    # never answered, so no talk to hold within (issue #13, seen 8): no hold time either
    assert legs["agent:carl"].hold_ms == 0 and legs["agent:carl"].answered_at is None
    assert figures(net(outcomes)).get("hold_ms", 0) == 0
    assert conversation_row(state.conversation(), NOW, TENANT).legs == 2


def test_the_provisional_flag_and_scope_survive_a_snapshot() -> None:
    state, _ = deliver([[item] for item in stream()])
    restored = pickle.loads(pickle.dumps(state))
    assert restored.awaiting_record
    restored_outcome = stitch_group(restored, record(), TENANT)
    assert not restored.awaiting_record and restored_outcome.deltas


def _opened(number: int) -> list[list[CanonicalEvent]]:
    """The memory benchmark's open conversation (bench/live.py): a webhook call that went through
    two IVR steps and waits in a queue, delivered as its two records (4 events)."""
    c = f"m{number:09d}"
    return [
        [
            event(E.ARRIVED, 0, conversation=c, source="webhook", event_id=f"{c}:a"),
            event(E.IVR_STEP, 0, conversation=c, node="welcome", source="webhook", event_id=f"{c}:i0"),
            event(E.IVR_STEP, 10, conversation=c, node="main_menu", source="webhook", event_id=f"{c}:i1"),
        ],
        [
            event(
                E.QUEUED, 20, conversation=c, leg=f"{c}-1", queue="sales", source="webhook", event_id=f"{c}:q"
            )
        ],
    ]


# Bytes per conversation of `_opened`, measured the same way before provisional events and scopes
# existed (commit 3bfc83f): 460-463 bytes over three runs.
STATE_BYTES_BEFORE = 463
STATE_BYTES_ALLOWANCE = 12  # 2 bytes per entry for the scope's table position, and allocator rounding


def test_per_conversation_state_stays_within_a_few_bytes_of_before() -> None:
    conversations = 2000
    batches = [_opened(number) for number in range(conversations)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        states = []
        for groups in batches:
            state = None
            for group in groups:
                state = stitch_group(state, group, TENANT).state
            states.append(state)
        gc.collect()
        per_conversation = (tracemalloc.get_traced_memory()[0] - before) / conversations
    finally:
        tracemalloc.stop()
    assert per_conversation <= STATE_BYTES_BEFORE + STATE_BYTES_ALLOWANCE, per_conversation
    assert all(state is not None and len(state._numbers) == 42 * len(state) for state in states)
    assert not any(state is not None and state.awaiting_record for state in states)
