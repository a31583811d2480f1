"""Large conversations: CPU time per event of one huge record at n and 4n events, and through the flow.

Issue #13 (seen 5): one webhook ``agent.call`` with 16,000 holds took 144 s to stitch (2,000: 3.6 s;
8,000: 36.5 s), quadratic in the conversation's length. The records and the timing are those of
``tests/domain/test_stitching_linear.py`` (``stitchboard.testing.large_records``): adapter, stitcher,
conversation row and journeys step, CPU time of this process, best of three. Linear cost gives a
ratio of time per event at 4n to that at n of about 100%, quadratic 400%. Then the issue's
20,000-event record and its 16,000-hold record (32,002 events, past the default conversation
limits, so dead-lettered whole) through the whole flow into a null sink.
"""

from __future__ import annotations

import time
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from bench.common import NullSink, Result, main, say
from stitchboard.deadletters import DeadLetter
from stitchboard.flows.contact_centre import build_flow
from stitchboard.flows.sources import RawRecord
from stitchboard.settings import Settings
from stitchboard.testing.large_records import (
    agent_call_with_holds,
    contact_call_with_ivr_steps,
    cpu_seconds_per_event,
    normalised,
)

RATIO_TARGET = 2.0  # the linear-time test's bound


class _Collect(DynamicSink[DeadLetter]):
    """Keeps the flow's dead letters (one worker, in this process)."""

    def __init__(self, letters: list[DeadLetter]) -> None:
        self._letters = letters

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CollectPartition:
        return _CollectPartition(self._letters)


class _CollectPartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, letters: list[DeadLetter]) -> None:
        self._letters = letters

    def write_batch(self, items: list[DeadLetter]) -> None:
        self._letters.extend(items)


def _flow_seconds(raw: bytes, settings: Settings) -> tuple[float, int]:
    """Wall time of the whole flow (null sinks) over one record, and the dead letters it produced."""
    letters: list[DeadLetter] = []

    def records(flow: Dataflow) -> Stream[RawRecord]:
        return op.input("large", flow, TestingSource([RawRecord(raw, "bench:0")]))

    flow = build_flow(
        records, settings, NullSink(), [_Collect(letters)], drain_at_eof=True, flow_id="bench_large"
    )
    started = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - started, len(letters)


def run(quick: bool, workdir: Path) -> Result:
    result = Result("large_conversation", "6. Large conversations: cost per event at n and 4n events")
    settings = Settings(metrics_port=None)
    limits = settings.conversation_limits
    cases = (
        ("webhook agent.call, holds in any order", agent_call_with_holds, 1_000 if quick else 5_000),
        ("webhook contact.call, IVR path", contact_call_with_ivr_steps, 1_000 if quick else 2_500),
    )
    for label, build, n in cases:
        say(f"large_conversation: {label}, {n:,} and {4 * n:,} events")
        small, large = normalised(build(n)), normalised(build(4 * n))
        per_small, per_large = cpu_seconds_per_event(small, settings), cpu_seconds_per_event(large, settings)
        result.add(f"{label}: {len(small):,} events", per_small * 1e6, "µs per event")
        result.add(f"{label}: {len(large):,} events", per_large * 1e6, "µs per event")
        result.ratio(
            f"{label}: time per event at {len(large):,} ÷ at {len(small):,} events",
            per_large / per_small,
            target=f"≤ {RATIO_TARGET:.0%} (linear ≈ 100%, quadratic 400%)",
            met=per_large / per_small <= RATIO_TARGET,
        )
    events = 2_000 if quick else limits.max_events
    seconds, letters = _flow_seconds(agent_call_with_holds(events), settings)
    result.add(f"flow → null sink, one record of {events:,} events (holds)", seconds, "s")
    if letters:
        raise RuntimeError(f"the {events:,}-event record was dead-lettered")
    refused = 32_002  # the 16,000 holds
    seconds, letters = _flow_seconds(agent_call_with_holds(refused), settings)
    result.add(f"flow → null sink, the issue's record of {refused:,} events (dead-lettered)", seconds, "s")
    result.add("dead letters of that record", letters, "letters")
    result.note(
        f"default conversation limits: {limits.max_events:,} events, {limits.max_holds:,} holds, "
        f"{limits.max_ivr_steps:,} IVR steps, {limits.max_distinct_values:,} distinct values"
    )
    return result


if __name__ == "__main__":
    main(run)
