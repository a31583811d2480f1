"""Stitching: de-duplication, ordering, mutations, exact deltas, rows, eviction and state size."""

from __future__ import annotations

import pickle
import random
import uuid
from collections import Counter
from datetime import datetime, timedelta

import pytest
from support.events import T0, event

from stitchboard.contributions import ContributionKey, Delta
from stitchboard.deliveries import Delivery
from stitchboard.events import CanonicalEvent, CustomerIds, EventType
from stitchboard.metrics import contributions
from stitchboard.settings import TenantSettings
from stitchboard.shards import ConversationShard
from stitchboard.stitching.row import conversation_row
from stitchboard.stitching.stitch import CONFLICT_REASON, StitchOutcome, stitch
from stitchboard.stitching.store import AddResult, ConversationState

TENANT = TenantSettings()
E = EventType


def transferred_call() -> list[CanonicalEvent]:
    return [
        event(E.ARRIVED, 0, customer=CustomerIds(phone_hash="p1")),
        event(E.IVR_STEP, 3, node="menu", intent="billing"),
        event(E.QUEUED, 10, leg="l1", queue="sales"),
        event(E.ANSWERED, 25, leg="l1", queue="sales", agent="ann"),
        event(E.HOLD, 60, leg="l1"),
        event(E.RESUME, 80, leg="l1"),
        event(E.TRANSFER_BLIND, 200, leg="l1", target_queue="support"),
        event(E.QUEUED, 200, leg="l2", queue="support"),
        event(
            E.ANSWERED, 215, leg="l2", queue="support", agent="bob", customer=CustomerIds(account_hash="a9")
        ),
        event(E.DISCONNECTED, 500),
        event(E.ACW_START, 500, leg="l2"),
        event(E.ACW_END, 530, leg="l2"),
        event(E.WRAPUP_SET, 540, leg="l2", code="resolved", intent="refund"),
        event(E.QA_SCORE_SET, 7200, leg="l2", score=90),
    ]


def run(events: list[CanonicalEvent], tenant: TenantSettings = TENANT) -> list[StitchOutcome]:
    state: ConversationState | None = None
    outcomes = []
    for item in events:
        outcome = stitch(state, item, tenant)
        state = outcome.state
        outcomes.append(outcome)
    return outcomes


def summed(deltas: list[Delta]) -> Counter[ContributionKey]:
    total: Counter[ContributionKey] = Counter()
    for delta in deltas:
        total[delta.key] += delta.value
    return Counter({key: value for key, value in total.items() if value})


def all_deltas(outcomes: list[StitchOutcome]) -> list[Delta]:
    return [delta for outcome in outcomes for delta in outcome.deltas]


def test_conversation_summary_of_a_transferred_call() -> None:
    conversation = run(transferred_call())[-1].state.conversation()
    assert conversation.started_at == T0
    assert conversation.ended_at == T0 + timedelta(seconds=530)
    assert conversation.disconnected_at == T0 + timedelta(seconds=500)
    assert conversation.customer_keys == ("account:a9", "phone:p1")
    assert conversation.intent == "billing"
    assert [(leg.leg_id, leg.queue, leg.agent) for leg in conversation.legs] == [
        ("l1", "sales", "ann"),
        ("l2", "support", "bob"),
    ]
    first, second = conversation.legs
    assert (first.hold_ms, first.holds, first.talk_end) == (20_000, 1, T0 + timedelta(seconds=200))
    assert (first.transfer_kind, first.transfer_at) == ("blind", T0 + timedelta(seconds=200))
    assert (second.wrapup_code, second.qa_score, second.acw_ms) == ("resolved", 90, 30_000)
    assert conversation.version == len(transferred_call())


def test_row_of_a_transferred_call() -> None:
    tenant = TenantSettings(intent_by_wrapup_code={"resolved": "general"})
    row = conversation_row(run(transferred_call())[-1].state.conversation(), T0, tenant)
    assert (row.status, row.first_queue, row.last_queue, row.queues) == (
        "ended",
        "sales",
        "support",
        ("sales", "support"),
    )
    assert (row.agents, row.legs, row.transfers, row.answered, row.abandoned) == (
        ("ann", "bob"),
        2,
        1,
        True,
        False,
    )
    assert (row.wait_ms, row.talk_ms, row.hold_ms, row.acw_ms) == (30_000, 155_000 + 285_000, 20_000, 30_000)
    assert row.handle_ms == row.talk_ms + row.hold_ms + row.acw_ms
    assert (row.wrapup_code, row.qa_score, row.intent, row.ivr_outcome) == (
        "resolved",
        90,
        "billing",
        "queued",
    )
    assert row.version == len(transferred_call())


def test_row_intent_falls_back_to_the_wrapup_mapping() -> None:
    events = [item.model_copy(update={"intent": None}) for item in transferred_call()]
    tenant = TenantSettings(intent_by_wrapup_code={"resolved": "general"})
    row = conversation_row(run(events)[-1].state.conversation(), T0, tenant)
    assert row.intent == "general"


def test_open_conversation_row() -> None:
    outcomes = run(transferred_call()[:4])
    row = outcomes[-1].row
    assert row is not None
    assert (row.status, row.ended_at, row.answered, row.version) == ("open", None, True, 4)
    assert row.updated_at == T0 + timedelta(seconds=26)  # the event's ingest time: replays reproduce it


@pytest.mark.parametrize("seed", range(5))
def test_out_of_order_delivery_gives_identical_results(seed: int) -> None:
    events = transferred_call()
    shuffled = random.Random(seed).sample(events, len(events))
    in_order, out_of_order = run(events), run(shuffled)
    assert in_order[-1].state.conversation() == out_of_order[-1].state.conversation()
    final = contributions(in_order[-1].state.conversation(), TENANT)
    assert summed(all_deltas(in_order)) == final
    assert summed(all_deltas(out_of_order)) == final


def test_ties_are_broken_by_event_type_then_id() -> None:
    """Queued and answered at the same instant: the queue entry still comes first, in any order."""
    events = [event(E.ANSWERED, 5, leg="l1", queue="q", agent="a"), event(E.QUEUED, 5, leg="l1", queue="q")]
    for order in (events, events[::-1]):
        leg = run(order)[-1].state.conversation().legs[0]
        assert (leg.queued_at, leg.answer_wait_ms) == (T0 + timedelta(seconds=5), 0)


def test_duplicates_are_ignored_even_when_received_later() -> None:
    original = event(E.QUEUED, 10, leg="l1", queue="sales")
    redelivered = event(E.QUEUED, 10, leg="l1", queue="sales", received=999)
    outcomes = run([original, redelivered])
    assert outcomes[1].result is AddResult.DUPLICATE
    assert (outcomes[1].row, outcomes[1].deltas, outcomes[1].dead_letter) == (None, [], None)
    assert outcomes[1].state.version == 1


def test_conflicting_resend_is_dead_lettered() -> None:
    original = event(E.WRAPUP_SET, 300, leg="l1", code="resolved", event_id="w1")
    conflicting = event(E.WRAPUP_SET, 300, leg="l1", code="sale", event_id="w1")
    outcomes = run([event(E.ARRIVED, 0), original, conflicting])
    letter = outcomes[2].dead_letter
    assert outcomes[2].result is AddResult.CONFLICT
    assert letter is not None and letter.reason == CONFLICT_REASON
    assert b'"sale"' in letter.raw and "w1" in letter.detail
    assert (letter.tenant, letter.source) == ("acme", "genesys")
    assert outcomes[2].state.conversation().legs[0].wrapup_code == "resolved"
    assert outcomes[2].deltas == []


def test_lower_sequence_is_stale() -> None:
    newer = event(E.WRAPUP_SET, 300, leg="l1", code="sale", event_id="w1", sequence=2)
    older = event(E.WRAPUP_SET, 300, leg="l1", code="resolved", event_id="w1", sequence=1)
    outcomes = run([newer, older])
    assert outcomes[1].result is AddResult.STALE
    assert outcomes[1].state.conversation().legs[0].wrapup_code == "sale"


def answered_and_disconnected() -> list[CanonicalEvent]:
    return [
        event(E.QUEUED, 0, leg="l1", queue="sales"),
        event(E.ANSWERED, 10, leg="l1", queue="sales", agent="ann"),
        event(E.DISCONNECTED, 100),
    ]


def resolved_deltas(outcome: StitchOutcome) -> list[tuple[str, datetime, int, str]]:
    return [
        (d.key.queue, d.key.at, d.value, d.reason)
        for d in outcome.deltas
        if d.key.metric == "contacts_resolved"
    ]


def test_wrapup_change_retracts_and_restores_resolution() -> None:
    disconnect = T0 + timedelta(seconds=100)
    outcomes = run(
        [
            *answered_and_disconnected(),
            event(E.WRAPUP_SET, 130, leg="l1", code="resolved", event_id="w1"),
            event(E.WRAPUP_SET, 900, leg="l1", code="callback", event_id="w1", sequence=1),
            event(E.WRAPUP_SET, 1800, leg="l1", code="sale", event_id="w1", sequence=2),
        ]
    )
    assert resolved_deltas(outcomes[3]) == [("sales", disconnect, 1, "wrapup_set")]  # 0 → +1
    assert resolved_deltas(outcomes[4]) == [("sales", disconnect, -1, "wrapup_set")]  # +1 → 0
    assert resolved_deltas(outcomes[5]) == [("sales", disconnect, 1, "wrapup_set")]
    assert all(d.key.metric == "contacts_resolved" for o in outcomes[3:] for d in o.deltas)
    assert outcomes[5].state.version == 6


def test_wrapup_change_between_resolved_codes_changes_nothing() -> None:
    outcomes = run(
        [
            *answered_and_disconnected(),
            event(E.WRAPUP_SET, 130, leg="l1", code="resolved", event_id="w1"),
            event(E.WRAPUP_SET, 900, leg="l1", code="sale", event_id="w1", sequence=1),
        ]
    )
    assert outcomes[4].result is AddResult.APPLIED
    assert outcomes[4].deltas == []
    assert outcomes[4].row is not None and outcomes[4].row.wrapup_code == "sale"


def test_late_qa_score_lands_at_handling_end() -> None:
    outcomes = run([*answered_and_disconnected(), event(E.QA_SCORE_SET, 86_400, leg="l1", score=72)])
    handling_end = T0 + timedelta(seconds=100)
    assert [(d.key.metric, d.key.at, d.value, d.reason) for d in outcomes[-1].deltas] == [
        ("qa_score_sum", handling_end, 72, "qa_score_set"),
        ("qa_scored", handling_end, 1, "qa_score_set"),
    ]


def test_provisional_contributions_converge_to_the_final_ones() -> None:
    events = transferred_call()
    outcomes = run(events)
    for n in range(1, len(events) + 1):
        prefix = run(events[:n])[-1].state.conversation()
        assert summed(all_deltas(outcomes[:n])) == contributions(prefix, TENANT)
    reasons = {d.reason for d in all_deltas(outcomes)}
    assert {"queued", "answered", "transfer_blind", "acw_end", "wrapup_set", "qa_score_set"} <= reasons


def test_deltas_retract_what_was_emitted_even_after_a_settings_change() -> None:
    """A restart with a new threshold must retract the figure published under the old one."""
    first = run(answered_and_disconnected()[:2], TenantSettings(service_level_seconds=20))
    state = first[-1].state
    later = stitch(state, answered_and_disconnected()[2], TenantSettings(service_level_seconds=5))
    moved = [(d.key.metric, d.value) for d in later.deltas if d.key.metric == "answered_in_sl"]
    assert moved == [("answered_in_sl", -1)]


def test_a_state_refuses_events_of_another_conversation() -> None:
    state = ConversationState("acme", "c1")
    with pytest.raises(ValueError, match="c2"):
        state.add(event(E.ARRIVED, 0, conversation="c2"))


def test_eviction_waits_for_the_end_and_the_retention() -> None:
    retention, stale = 6 * 3600, 2 * 86400
    events = answered_and_disconnected()
    opened = [(0, Delivery("acme", "c1", tuple(events[:2])))]
    kept = ConversationShard(retention, 30 * 86400)
    kept.apply(opened, TENANT, now=0.0)
    assert (
        kept.evict(3 * 86400) == 0 and kept.get("c1") is not None
    )  # open: the retention alone is not enough
    going_stale = ConversationShard(retention, stale)
    going_stale.apply(opened, TENANT, now=0.0)
    assert going_stale.evict(3 * 86400) == 1  # silent past the stale period: forgotten though open
    kept.apply([(1, Delivery("acme", "c1", (events[2],)))], TENANT, now=100.0)  # it ends
    assert kept.evict(100 + retention - 0.001) == 0
    assert kept.evict(100 + retention) == 1


def test_pending_acw_keeps_the_conversation_open() -> None:
    outcomes = run([*answered_and_disconnected(), event(E.ACW_START, 100, leg="l1")])
    assert not outcomes[-1].state.conversation().ended
    ended = stitch(outcomes[-1].state, event(E.ACW_END, 160, leg="l1"), TENANT)
    assert ended.state.conversation().ended_at == T0 + timedelta(seconds=160)


def test_state_is_small_and_survives_pickling() -> None:
    """Snapshot size with realistic UUID ids: well under 1 KB for a ten-event conversation."""
    conversation, first, second = (str(uuid.uuid4()) for _ in range(3))
    events = [
        event(E.ARRIVED, 0, conversation=conversation, event_id=f"{conversation}:arrived"),
        *(
            event(
                kind,
                seconds,
                conversation=conversation,
                leg=first,
                queue="sales",
                agent=f"agent-{first}",
                event_id=f"{conversation}:{first}:{kind.value}:{seconds}",
                **attributes,
            )
            for kind, seconds, attributes in [
                (E.QUEUED, 10, {}),
                (E.ANSWERED, 20, {}),
                (E.HOLD, 40, {}),
                (E.RESUME, 60, {}),
                (E.TRANSFER_BLIND, 100, {"target_queue": "support"}),
            ]
        ),
        event(
            E.QUEUED,
            100,
            conversation=conversation,
            leg=second,
            queue="support",
            event_id=f"{conversation}:{second}:queued",
        ),
        event(
            E.ANSWERED,
            110,
            conversation=conversation,
            leg=second,
            queue="support",
            agent="agent-b",
            event_id=f"{conversation}:{second}:answered",
        ),
        event(E.DISCONNECTED, 300, conversation=conversation, event_id=f"{conversation}:disconnected"),
        event(
            E.WRAPUP_SET,
            320,
            conversation=conversation,
            leg=second,
            code="resolved",
            event_id=f"{conversation}:{second}:wrapup",
        ),
    ]
    state = run(events)[-1].state
    blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(blob) < 1200, len(blob)  # packed entries: fewer bytes in memory, a few more pickled
    restored = pickle.loads(blob)
    assert restored.conversation() == state.conversation()
    assert restored.emitted() == state.emitted() == contributions(state.conversation(), TENANT)
    late = event(E.QA_SCORE_SET, 900, conversation=conversation, leg=second, score=60, event_id="qa")
    assert [d.value for d in stitch(restored, late, TENANT).deltas] == [60, 1]


def test_reported_hold_totals_carry_their_count() -> None:
    """Connect-style sources report only totals: one hold event with duration and number of holds."""
    events = [
        event(E.QUEUED, 0, leg="l1", queue="sales"),
        event(E.ANSWERED, 5, leg="l1", queue="sales", agent="ann"),
        event(E.HOLD, 5, leg="l1", duration_ms=45_000, count=3),
        event(E.DISCONNECTED, 200),
    ]
    state: ConversationState | None = None
    for item in events:
        state = stitch(state, item, TENANT).state
    assert state is not None
    leg = state.conversation().legs[0]
    assert (leg.holds, leg.hold_ms) == (3, 45_000)
    figures = contributions(state.conversation(), TENANT)
    assert sum(v for k, v in figures.items() if k.metric == "holds") == 3
    assert sum(v for k, v in figures.items() if k.metric == "talk_ms") == 195_000 - 45_000
