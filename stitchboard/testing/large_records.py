"""Very large single records and their CPU cost per event through adapter, stitcher, row and journeys.

Issue #13 (seen 5) found stitching quadratic in a conversation's length: one webhook ``agent.call``
with 16,000 holds took 144 s. ``tests/domain/test_stitching_linear.py`` and
``bench/large_conversation.py`` build the same records here and time them the same way, so the
test's bound and the benchmark's figure measure one thing.
"""

from __future__ import annotations

import gc
import random
import time
from datetime import UTC, datetime, timedelta

import orjson

from stitchboard import adapters
from stitchboard.deliveries import Delivery, split_record
from stitchboard.events import CanonicalEvent
from stitchboard.journeys import TenantJourneys
from stitchboard.settings import Settings
from stitchboard.stitching.row import conversation_row
from stitchboard.stitching.stitch import stitch_group

TENANT = "acme"
T0 = datetime(2026, 3, 29, 8, 0, tzinfo=UTC)


def _z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _envelope(payload: dict[str, object]) -> bytes:
    received = _z(T0 + timedelta(days=1))
    return orjson.dumps({"tenant": TENANT, "source": "webhook", "received_at": received, "payload": payload})


def agent_call_with_holds(events: int) -> bytes:
    """The issue's record: one webhook agent.call whose holds (a hold and a resume event each, plus
    the answer and the disconnect: ``events`` in all) are listed in no particular order."""
    holds = [
        {"start": _z(T0 + timedelta(seconds=3 * index + 1)), "end": _z(T0 + timedelta(seconds=3 * index + 2))}
        for index in range((events - 2) // 2)
    ]
    random.Random(events).shuffle(holds)
    return _envelope(
        {
            "event": "agent.call",
            "tenant": TENANT,
            "conversation_id": "large-holds",
            "direction": "inbound",
            "leg_id": "l1",
            "queue": "sales",
            "agent": "ann",
            "answered_at": _z(T0),
            "holds": holds,
            "ended_at": _z(T0 + timedelta(seconds=3 * len(holds) + 5)),
            "end_reason": "customer_disconnect",
        }
    )


def contact_call_with_ivr_steps(events: int) -> bytes:
    """A webhook contact.call whose IVR path has ``events - 2`` steps: the path rows and journeys
    build, compare and digest."""
    steps = [
        {"node": f"node-{index % 97}", "at": _z(T0 + timedelta(seconds=index))} for index in range(events - 2)
    ]
    return _envelope(
        {
            "event": "contact.call",
            "tenant": TENANT,
            "conversation_id": "large-ivr",
            "direction": "inbound",
            "started_at": _z(T0),
            "ended_at": _z(T0 + timedelta(seconds=events)),
            "ended_in": "ivr",
            "customer": {"phone_hash": "p1"},
            "intent": "billing",
            "ivr": {"steps": steps, "outcome": "contained"},
        }
    )


def normalised(raw: bytes) -> list[CanonicalEvent]:
    events = adapters.normalise(raw)
    if not isinstance(events, list):
        raise ValueError(f"the record was dead-lettered: {events.reason}: {events.detail}")
    return events


def cpu_seconds_per_event(events: list[CanonicalEvent], settings: Settings, repeats: int = 3) -> float:
    """CPU time of this process per event to stitch one record's events as a new conversation, build
    its row and run the journeys step on it; the best of ``repeats`` runs (other processes on a busy
    machine slow a run down, never speed it up)."""
    tenant = settings.tenant(TENANT)
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.process_time()
        [delivery] = split_record(events)
        if not isinstance(delivery, Delivery):
            raise TypeError("the events must be one conversation's")
        outcome = stitch_group(None, delivery.events, tenant, settings.conversation_limits)
        if outcome.dead_letters or outcome.conversation is None:
            raise ValueError(
                f"the delivery was refused: {[letter.detail for letter in outcome.dead_letters]}"
            )
        row = conversation_row(outcome.conversation, T0, tenant)
        TenantJourneys(TENANT, tenant, settings.timing, settings.journeys).apply(row, T0)
        best = min(best, time.process_time() - started)
    return best / len(events)
