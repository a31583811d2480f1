"""Memory: flow RSS with 100k concurrently open conversations, and after they end and are evicted.

The flow (null sink: this measures the flow's own state, not chDB's caches) reads a generated
source in waves: open N conversations (IVR, then waiting in a queue: 4 events each), pause, close
them all (answered, talked, wrapped up: 5 events each), pause. Pauses let the flow drain and the
eviction timers fire (``conversation_retention_seconds=1``); RSS is read at the end of each pause.

bytes per open conversation = (RSS with N open - RSS before opening) / N in the first wave (later
waves reuse memory the allocator kept from the previous one, so only the first shows growth).
"Flat after eviction" compares the RSS after each wave's eviction with the first wave's. Waves are
8 days of event time apart, so state bounded by event time (the 7-day journey window) is released.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import run_main

from bench import live
from bench.common import NullSink, Result, main, rss_bytes, say
from stitchboard.flows.contact_centre import build_flow
from stitchboard.flows.sources import RawRecord
from stitchboard.settings import Settings, TenantSettings, TimingSettings

TARGET_BYTES = 1024
# Each wave happens 8 days of event time after the previous one, past the 7-day engagement window of
# customer journeys: a long run in event time, so window-bounded state is bounded here too.
WAVE_EVENT_TIME_STEP = timedelta(days=8)
BATCH = 1000
TENANT = "live"


@dataclass(slots=True)
class _Plan:
    """What the source sends, and the RSS it saw at the end of each pause."""

    conversations: int
    waves: int
    settle_seconds: float
    marks: list[tuple[str, int]] = field(default_factory=list)


class _WavePartition(StatefulSourcePartition[RawRecord, None]):
    def __init__(self, plan: _Plan) -> None:
        self._plan = plan
        self._steps = self._schedule()
        self._pause_until: float | None = None

    def _schedule(self) -> list[tuple[str, int, int, int]]:
        """(phase, wave, first conversation, count): warm-up wave, then ``waves`` measured waves."""
        steps: list[tuple[str, int, int, int]] = []
        warmup = max(BATCH, self._plan.conversations // 10)
        first = 0
        for wave, count in enumerate([warmup] + [self._plan.conversations] * self._plan.waves):
            steps += [(f"open {wave}", wave, first, count), (f"close {wave}", wave, first, count)]
            first += count
        return steps

    def next_batch(self) -> list[RawRecord]:
        if self._pause_until is not None:
            if time.monotonic() < self._pause_until:
                time.sleep(0.05)
                return []
            self._pause_until = None
            gc.collect()
            self._plan.marks.append((self._steps[0][0], rss_bytes()))
            self._steps.pop(0)
        if not self._steps:
            raise StopIteration
        phase, wave, first, count = self._steps[0]
        now = datetime.now(UTC) - WAVE_EVENT_TIME_STEP * (self._plan.waves - wave)
        end = min(first + BATCH, first + count)
        make = live.opened if phase.startswith("open") else live.closed
        batch = [
            RawRecord(raw, f"bench:{number}")
            for number in range(first, end)
            for raw in make(TENANT, f"m{number:09d}", now)
        ]
        if end == first + count:
            self._pause_until = time.monotonic() + self._plan.settle_seconds
        else:
            self._steps[0] = (phase, wave, end, first + count - end)
        return batch

    def snapshot(self) -> None:
        return None


class _WaveSource(FixedPartitionedSource[RawRecord, None]):
    def __init__(self, plan: _Plan) -> None:
        self._plan = plan

    def list_parts(self) -> list[str]:
        return ["waves"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _WavePartition:
        return _WavePartition(self._plan)


def run(quick: bool, workdir: Path) -> Result:
    result = Result("memory", "5. Memory: 100k concurrently open conversations, eviction over a long run")
    plan = _Plan(5_000 if quick else 100_000, waves=2 if quick else 3, settle_seconds=2.0 if quick else 3.0)
    settings = Settings(
        tenants={TENANT: TenantSettings()},
        timing=TimingSettings(conversation_retention_seconds=1),
        metrics_port=None,
    )

    def records(flow: Dataflow) -> Stream[RawRecord]:
        return op.input("waves", flow, _WaveSource(plan))

    say(f"memory: {plan.waves} waves of {plan.conversations:,} conversations opened, then closed and evicted")
    started_rss = rss_bytes()
    started = time.perf_counter()
    run_main(build_flow(records, settings, NullSink(), [], flow_id="bench_memory"))
    elapsed = time.perf_counter() - started
    marks = dict(plan.marks)
    result.add("RSS before the flow", started_rss / 2**20, "MiB")
    result.add("RSS after the warm-up wave was evicted", marks["close 0"] / 2**20, "MiB")
    per_open: list[float] = []
    for wave in range(1, plan.waves + 1):
        before = marks[f"close {wave - 1}"]
        opened, evicted = marks[f"open {wave}"], marks[f"close {wave}"]
        per_open.append((opened - before) / plan.conversations)
        result.add(f"wave {wave}: RSS with {plan.conversations:,} open", opened / 2**20, "MiB")
        result.add(f"wave {wave}: RSS after they ended and were evicted", evicted / 2**20, "MiB")
    result.add(
        "bytes per open conversation (first wave)",
        per_open[0],
        "bytes",
        target=f"≤ {TARGET_BYTES} bytes",
        met=per_open[0] <= TARGET_BYTES,
    )
    peaks = (marks[f"open {plan.waves}"] - marks["open 1"]) / 2**20
    result.add("RSS growth with all open, first → last wave", peaks, "MiB")
    first, last = marks["close 1"], marks[f"close {plan.waves}"]
    growth = (last - first) / 2**20
    result.add(
        "RSS growth after eviction, first → last wave",
        growth,
        "MiB",
        target="flat (≤ 5% of the open-wave increase)",
        met=last - first <= 0.05 * max(1, marks["open 1"] - marks["close 0"]),
    )
    result.ratio("RSS after eviction ÷ RSS with all open (last wave)", last / marks[f"open {plan.waves}"])
    events = (plan.waves * plan.conversations + max(BATCH, plan.conversations // 10)) * 9
    result.add("events replayed", events, "events")
    result.add("run time (including pauses)", elapsed, "s")
    result.note(
        "null sink; conversation_retention_seconds=1, so an ended conversation is forgotten ~1 s later"
    )
    return result


if __name__ == "__main__":
    main(run)
