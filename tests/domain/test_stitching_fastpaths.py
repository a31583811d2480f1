"""The stitcher's fast paths give exactly what the plain definitions give.

Kept in replay order on insert (no sort per event), deltas built from plain tuples, and rows
skipped on request: each is checked against the slow definition on shuffled deliveries.
"""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest

from stitchboard.contributions import diff
from stitchboard.events import CanonicalEvent, Channel, EventType
from stitchboard.metrics import contribution_values
from stitchboard.settings import TenantSettings
from stitchboard.stitching.stitch import stitch
from stitchboard.stitching.store import ConversationState

T0 = datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
TENANT = TenantSettings()
E = EventType


def event(
    kind: EventType,
    seconds: int,
    *,
    leg: str | None = None,
    channel: Channel = Channel.VOICE,
    **fields: object,
) -> CanonicalEvent:
    return CanonicalEvent(
        tenant="acme",
        source="test",
        event_id=f"{kind.value}:{leg}:{seconds}",
        conversation_id="c1",
        leg_id=leg,
        channel=channel,
        event_type=kind,
        event_time=T0 + timedelta(seconds=seconds),
        ingest_time=T0 + timedelta(seconds=seconds + 1),
        **fields,  # type: ignore[arg-type]
    )


def call() -> list[CanonicalEvent]:
    return [
        event(E.ARRIVED, 0, channel=Channel.CHAT),  # the earliest event names the channel
        event(E.IVR_STEP, 2, attributes={"node": "menu"}),
        event(E.QUEUED, 10, leg="l1", queue="sales"),
        event(E.ANSWERED, 25, leg="l1", queue="sales", agent="ann"),
        event(E.HOLD, 60, leg="l1"),
        event(E.RESUME, 90, leg="l1"),
        event(E.TRANSFER_BLIND, 200, leg="l1", attributes={"target_queue": "tech"}),
        event(E.QUEUED, 200, leg="l2", queue="tech"),
        event(E.ANSWERED, 230, leg="l2", queue="tech", agent="bob"),
        event(E.DISCONNECTED, 400, leg="l2"),
        event(E.ACW_START, 400, leg="l2"),
        event(E.ACW_END, 460, leg="l2"),
        event(E.WRAPUP_SET, 460, leg="l2", attributes={"code": "resolved"}, sequence=1),
    ]


@pytest.mark.parametrize("seed", range(8))
def test_deltas_and_summary_match_the_plain_definitions_in_any_delivery_order(seed: int) -> None:
    events = call()
    random.Random(seed).shuffle(events)
    fast: ConversationState | None = None
    slow: ConversationState | None = None
    for item in events:
        outcome = stitch(fast, item, TENANT, with_row=False)
        fast = outcome.state
        slow = slow or ConversationState.for_event(item)
        slow.add(item)
        conversation = slow.conversation()
        before, after = slow.remember(conversation.channel.value, contribution_values(conversation, TENANT))
        assert outcome.deltas == diff("acme", before, after, item.event_type.value)
        assert outcome.row is None and outcome.conversation == conversation
    assert fast is not None
    ordered = sorted(call(), key=lambda e: (e.event_time, list(E).index(e.event_type)))
    reference = ConversationState.for_event(ordered[0])
    for item in ordered:
        reference.add(item)
    assert fast.conversation() == reference.conversation()


def test_a_restored_state_replays_in_event_time_order() -> None:
    state = ConversationState.for_event(call()[0])
    for item in reversed(call()):
        state.add(item)
    restored = pickle.loads(pickle.dumps(state))
    assert restored.conversation() == state.conversation()
    assert (
        stitch(restored, event(E.CONFERENCE, 300), TENANT).conversation
        == stitch(state, event(E.CONFERENCE, 300), TENANT).conversation
    )


def random_events(rng: random.Random) -> list[CanonicalEvent]:
    """Events of one conversation with re-sent ids (duplicates, newer and older versions, conflicts),
    provisional and complete events of two scopes, and values old and new."""
    items = []
    for _ in range(rng.randint(1, 60)):
        kind = rng.choice([E.ARRIVED, E.QUEUED, E.ANSWERED, E.HOLD, E.WRAPUP_SET, E.DISCONNECTED, E.IVR_STEP])
        provisional = rng.random() < 0.4
        items.append(
            CanonicalEvent(
                tenant="acme",
                source="test",
                event_id=f"e{rng.randint(0, 30)}",
                conversation_id="c1",
                leg_id=rng.choice([None, "l1", "l2"]),
                channel=Channel.VOICE,
                event_type=kind,
                event_time=T0 + timedelta(seconds=rng.randint(0, 40)),
                ingest_time=T0,
                queue=rng.choice([None, "sales", "tech"]),
                attributes={"node": f"n{rng.randint(0, 50)}"} if kind is E.IVR_STEP else {},
                sequence=rng.randint(0, 2),
                provisional=provisional,
                scope=rng.choice([None, "c1", "contact-2"]) if provisional or rng.random() < 0.5 else None,
            )
        )
    return items


@pytest.mark.parametrize("seed", range(200))
def test_a_group_stores_exactly_what_its_events_one_by_one_store(seed: int) -> None:
    """`ConversationState.add_all` stages a group and merges it once; one event at a time must give
    the same entries, values, versions and results, whatever was stored before."""
    rng = random.Random(seed)
    before, group = random_events(rng), random_events(rng)
    grouped = ConversationState.for_event(before[0])
    grouped.add_all(before)
    single = pickle.loads(pickle.dumps(grouped))
    results = grouped.add_all(group)
    assert results == [single.add(item) for item in group]
    assert pickle.dumps(grouped) == pickle.dumps(single)
