"""The Stitchboard dataflow: raw records → canonical events → conversations → intervals → ClickHouse.

This module only wires operators; every rule lives in ``stitchboard`` (pure, unit-tested) and the
Bytewax hosting of stateful rules in ``flows.steps``.
"""

from __future__ import annotations

from collections.abc import Callable

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import Sink

from flows import steps
from flows.journeys import wire_journeys
from flows.sources import RawRecord
from stitchboard.deadletters import DeadLetter
from stitchboard.settings import Settings

RecordInput = Callable[[Dataflow], Stream[RawRecord | DeadLetter]]


def build_flow(
    records: RecordInput,
    settings: Settings,
    rows_sink: Sink,
    dead_letter_sinks: list[Sink] | None = None,
    *,
    drain_at_eof: bool = False,
    flow_id: str = "stitchboard",
) -> Dataflow:
    """Wire the flow. ``drain_at_eof`` finalises every interval when a bounded replay ends."""
    flow = Dataflow(flow_id)
    received = records(flow)
    normalised = op.map("normalise", received, steps.normalise)
    accepted = op.branch("accepted", normalised, steps.is_event_batch)
    events = op.flatten("events", accepted.trues)

    presence = op.branch("agent_presence", events, steps.is_agent_state)
    agent_rows = op.map("agent_state_row", presence.trues, steps.agent_state_row)

    by_tenant_arrival = op.key_on("by_tenant_arrival", presence.falses, steps.event_tenant)
    numbered = op.key_rm("numbered", op.stateful_map("arrival_number", by_tenant_arrival, steps.number))
    by_conversation = op.key_on("by_conversation", numbered, steps.numbered_conversation_key)
    stitched = op.stateful_batch("stitch", by_conversation, lambda resume: steps.StitchStep(settings, resume))
    stitched_items = op.key_rm("stitched_unkeyed", stitched)
    feeds = op.branch("tenant_feed", stitched_items, steps.is_tenant_feed)
    conversation_out = op.branch("stitch_rejects", feeds.falses, steps.is_dead_letter)

    by_tenant = op.key_on("by_tenant", feeds.trues, steps.feed_tenant)
    intervals = op.stateful_batch(
        "intervals", by_tenant, lambda resume: steps.IntervalStep(settings, resume, drain_at_eof)
    )
    interval_rows = op.flatten("interval_rows", op.key_rm("intervals_unkeyed", intervals))

    dead_letters = op.merge("dead_letters", accepted.falses, conversation_out.trues)
    journey_rows = wire_journeys(conversation_out.falses, settings)
    rows = op.merge("rows", conversation_out.falses, interval_rows, agent_rows, dead_letters, journey_rows)
    op.output("clickhouse", op.key_on("to_clickhouse", rows, steps.sink_key), rows_sink)
    for index, sink in enumerate(dead_letter_sinks or []):
        op.output(f"dead_letter_out_{index}", dead_letters, sink)
    return flow
