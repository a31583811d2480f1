"""Issue #13, seen 5 / deliver 5: a large conversation costs the same per event as a small one.

One webhook ``agent.call`` with 16,000 holds took 144 s to stitch (2,000: 3.6 s; 8,000: 36.5 s):
the packed store inserted, searched and copied per event, and the summary looked through every leg
per event. Each record here goes through the adapter, the stitcher, the conversation row and the
journeys step (``stitchboard.testing.large_records``); the time per event at 4n must stay well
under the 4x a quadratic cost gives (main gave 2.6x to over 4x at these sizes). The issue's record
goes from 5,000 to 20,000 events (the default events limit); the others from 2,500 to 10,000 (the
IVR one to its default steps limit; the one with a queue and an agent per leg to 15,000 distinct
values). CPU time of this process, best of three runs, so other
processes on a busy two-core machine disturb it little.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from support.events import event

from stitchboard.events import CanonicalEvent, EventType
from stitchboard.settings import Settings
from stitchboard.testing.large_records import (
    agent_call_with_holds,
    contact_call_with_ivr_steps,
    cpu_seconds_per_event,
    normalised,
)

SETTINGS = Settings(metrics_port=None)
E = EventType
MAX_RATIO = 2.0  # linear gives about 1, quadratic 4


def webhook_holds(events: int) -> list[CanonicalEvent]:
    return normalised(agent_call_with_holds(events))


def webhook_ivr(events: int) -> list[CanonicalEvent]:
    return normalised(contact_call_with_ivr_steps(events))


def queue_churn(events: int) -> list[CanonicalEvent]:
    """Legs without leg ids, each queued then abandoned (a leg per two events), in shuffled order."""
    items = [event(E.ARRIVED, 0, conversation="large-churn")]
    for index in range((events - 1) // 2):
        items.append(
            event(E.QUEUED, 1 + 2 * index, queue="sales", conversation="large-churn", event_id=f"q{index}")
        )
        items.append(
            event(E.ABANDONED, 2 + 2 * index, queue="sales", conversation="large-churn", event_id=f"a{index}")
        )
    random.Random(events).shuffle(items)
    return items


def answered_legs(events: int) -> list[CanonicalEvent]:
    """Legs answered by agents whose holds name the agent but not the leg, and disconnects naming none."""
    conversation = "large-legs"
    items = [event(E.ARRIVED, 0, conversation=conversation)]
    for index in range((events - 1) // 4):
        agent, leg = f"agent-{index % 50}", f"l{index}"
        items += [
            event(E.QUEUED, 1 + 3 * index, leg=leg, queue="sales", conversation=conversation),
            event(E.ANSWERED, 2 + 3 * index, leg=leg, queue="sales", agent=agent, conversation=conversation),
            event(
                E.HOLD,
                2 + 3 * index,
                agent=agent,
                duration_ms=500,
                count=1,
                conversation=conversation,
                event_id=f"h{index}",
            ),
            event(E.DISCONNECTED, 3 + 3 * index, conversation=conversation, event_id=f"d{index}"),
        ]
    return items


def distinct_legs(events: int) -> list[CanonicalEvent]:
    """A leg per two events, each with its own queue and agent: many distinct values, and
    contributions in as many queues."""
    conversation = "large-values"
    items = [event(E.ARRIVED, 0, conversation=conversation)]
    for index in range((events - 1) // 2):
        leg, queue, agent = f"l{index}", f"queue-{index}", f"agent-{index}"
        items += [
            event(E.QUEUED, 1 + index, leg=leg, queue=queue, conversation=conversation),
            event(E.ANSWERED, 1 + index, leg=leg, queue=queue, agent=agent, conversation=conversation),
        ]
    return items


@pytest.mark.parametrize(
    ("build", "n"),
    [
        (webhook_holds, 5_000),
        (webhook_ivr, 2_500),
        (queue_churn, 2_500),
        (answered_legs, 2_500),
        (distinct_legs, 2_500),
    ],
)
def test_a_20000_event_conversation_stitches_in_linear_time(
    build: Callable[[int], list[CanonicalEvent]], n: int
) -> None:
    small, large = build(n), build(4 * n)
    assert len(large) >= 4 * len(small) - 4 and len(large) <= SETTINGS.conversation_limits.max_events
    ratio = cpu_seconds_per_event(large, SETTINGS) / cpu_seconds_per_event(small, SETTINGS)
    assert ratio < MAX_RATIO, (
        f"{build.__name__}: time per event grew {ratio:.2f}x from {len(small)} to {len(large)} events"
    )
