"""The Stitchboard dataflow: raw records → canonical events → conversations → intervals → ClickHouse.

This module only wires operators; every rule lives in ``stitchboard`` (pure, unit-tested) and the
Bytewax hosting of stateful rules in ``stitchboard.flows.steps``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import Sink

from stitchboard.deadletters import DeadLetter
from stitchboard.deliveries import Delivery
from stitchboard.flows import steps
from stitchboard.flows.journey_step import wire_journeys
from stitchboard.flows.sources import RawRecord
from stitchboard.rows import AgentStateRow, PublishedRow
from stitchboard.settings import Settings

RecordInput = Callable[[Dataflow], Stream[RawRecord | DeadLetter]]


def build_flow(
    records: RecordInput,
    settings: Settings,
    rows_sink: Sink[tuple[str, PublishedRow]],
    dead_letter_sinks: Sequence[Sink[DeadLetter]] = (),
    *,
    drain_at_eof: bool | Callable[[], bool] = False,
    flow_id: str = "stitchboard",
) -> Dataflow:
    """Wire the flow. ``drain_at_eof`` finalises every interval when a bounded replay ends (a
    function: asked at the end of input, see ``steps.IntervalStep``)."""
    flow = Dataflow(flow_id)
    received = records(flow)
    normalised = op.map("normalise", received, functools.partial(steps.normalise, settings))
    accepted = op.branch("accepted", normalised, steps.is_accepted)
    split = op.branch(
        "split_rejects", op.flat_map("split_records", accepted.trues, steps.split), steps.is_dead_letter
    )
    by_kind = op.branch("deliveries", cast(Stream[AgentStateRow | Delivery], split.falses), steps.is_delivery)

    by_tenant_arrival = op.key_on("by_tenant_arrival", by_kind.trues, steps.delivery_tenant)
    numbering = op.key_rm(
        "numbered", op.stateful_map("arrival_number", by_tenant_arrival, steps.arrival_number)
    )
    numbered = op.branch("number_rejects", numbering, steps.is_numbered)
    by_shard = op.key_on(
        "by_shard", numbered.trues, functools.partial(steps.shard_key, settings.stitch_shards)
    )
    stitched = op.key_rm(
        "stitched", op.stateful_batch("stitch", by_shard, lambda resume: steps.StitchStep(settings, resume))
    )

    feeds = op.filter_map("tenant_feeds", stitched, steps.tenant_feeds)
    intervals = op.stateful_batch(
        "intervals", feeds, lambda resume: steps.IntervalStep(settings, resume, drain_at_eof)
    )
    published = op.branch(
        "interval_rejects",
        op.flatten("interval_rows", op.key_rm("intervals_unkeyed", intervals)),
        steps.is_dead_letter,
    )

    conversation_rows = op.flat_map("conversation_rows", stitched, steps.batch_rows)
    stitch_rejects = op.flat_map("stitch_rejects", stitched, steps.batch_dead_letters)
    journeys = op.branch(
        "journey_rejects",
        wire_journeys(op.filter_map("tenant_rows", stitched, steps.tenant_rows), settings),
        steps.is_dead_letter,
    )
    rejected = cast(Stream[DeadLetter], accepted.falses)  # what the adapters did not accept
    dead_letters: Stream[DeadLetter] = op.merge(
        "dead_letters",
        rejected,
        split.trues,
        cast(Stream[DeadLetter], numbered.falses),
        stitch_rejects,
        published.trues,
        journeys.trues,
    )
    rows: Stream[PublishedRow] = op.merge(
        "rows", conversation_rows, published.falses, by_kind.falses, dead_letters, journeys.falses
    )
    op.output("clickhouse", op.key_on("to_clickhouse", rows, steps.sink_key), rows_sink)
    for index, sink in enumerate(dead_letter_sinks):
        op.output(f"dead_letter_out_{index}", dead_letters, sink)
    return flow
