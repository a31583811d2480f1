"""Throughput: a file replay of a generated day through the whole flow, against orjson parsing it.

Side by side in one process: the raw ``orjson.loads`` rate of the very same records (the floor any
Python consumer pays), each stage of the flow on its own (adapters, stitcher, interval book,
conversation rows: where the time goes), the flow into a null sink, and the production flow into
chDB. "Events" are canonical events (one raw record yields several); rates are per worker (one).
"""

from __future__ import annotations

import gc
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow, Stream
from bytewax.testing import run_main

from bench.common import NullSink, Result, best_of, check_stitched, main, say
from stitchboard import adapters
from stitchboard.app.runner import make_flow
from stitchboard.deliveries import deliveries
from stitchboard.events import CanonicalEvent, EventType
from stitchboard.flows.contact_centre import build_flow
from stitchboard.flows.sources import RawRecord, ReplayFileSource
from stitchboard.interval_book import IntervalBook
from stitchboard.journeys import TenantJourneys
from stitchboard.metrics import METRIC_NAMES
from stitchboard.settings import ClickHouseSettings, Settings
from stitchboard.sinks.clickhouse import connect, init_db
from stitchboard.stitching.row import conversation_row
from stitchboard.stitching.stitch import GroupOutcome, stitch_group
from stitchboard.stitching.store import ConversationState
from stitchboard.synthetic.dataset import DEMO_TENANTS, build_dataset, write_dataset

DAY = date(2026, 3, 10)
SEED = 7
TARGET_EVENTS_PER_SECOND = 100_000
TARGET_PARSE_SHARE = 0.30


def _parse_all(raws: list[bytes]) -> int:
    parsed = 0
    for raw in raws:
        try:
            orjson.loads(raw)
            parsed += 1
        except orjson.JSONDecodeError:
            pass
    return parsed


def _normalise_all(raws: list[bytes]) -> list[list[CanonicalEvent]]:
    """Each accepted record's canonical events."""
    records: list[list[CanonicalEvent]] = []
    for raw in raws:
        result = adapters.normalise(raw)
        if isinstance(result, list):
            records.append(result)
    return records


def _validate_all(fields: list[dict[str, object]]) -> None:
    validate = CanonicalEvent.__pydantic_validator__.validate_python
    for one in fields:
        validate(one)


def _validation_seconds(fields: list[dict[str, object]]) -> float:
    return best_of(2, lambda: _validate_all(fields))


def _stages(result: Result, raws: list[bytes], settings: Settings) -> tuple[int, float, float]:
    """Each stage alone, in flow order, per canonical event; returns (events, seconds of all stages,
    seconds of the strict pydantic validation alone of the same events)."""
    normalise_s = best_of(2, lambda: _normalise_all(raws))
    records = _normalise_all(raws)
    count = sum(len(events) for events in records)
    validate_s = _validation_seconds([event.model_dump() for events in records for event in events])
    conversational = [
        delivery
        for events in records
        for delivery in deliveries([e for e in events if e.event_type is not EventType.AGENT_STATE_CHANGED])
    ]
    now = datetime.now(UTC)
    outcomes: list[GroupOutcome] = []

    def stitch_all() -> None:
        outcomes.clear()
        states: dict[tuple[str, str], ConversationState] = {}
        for delivery in conversational:
            key = (delivery.tenant, delivery.conversation_id)
            outcome = stitch_group(states.get(key), delivery.events, settings.tenant(delivery.tenant))
            states[key] = outcome.state
            outcomes.append(outcome)

    stitch_s = best_of(2, stitch_all)
    applied = [o.conversation for o in outcomes if o.conversation is not None]
    rows_s = best_of(2, lambda: [conversation_row(c, now, settings.tenant(c.tenant)) for c in applied])
    rows = [conversation_row(c, now, settings.tenant(c.tenant)) for c in applied]

    def journeys_all() -> None:
        tenants: dict[str, TenantJourneys] = {}
        for row in rows:
            journeys = tenants.get(row.tenant)
            if journeys is None:
                journeys = tenants[row.tenant] = TenantJourneys(
                    row.tenant, settings.tenant(row.tenant), settings.timing, settings.journeys
                )
            journeys.apply(row, now)

    journeys_s = best_of(2, journeys_all)

    def book_all() -> None:
        books: dict[str, IntervalBook] = {}
        for delivery, outcome in zip(conversational, outcomes, strict=True):
            book = books.get(delivery.tenant)
            if book is None:
                tenant = settings.tenant(delivery.tenant)
                book = books[delivery.tenant] = IntervalBook(
                    delivery.tenant, tenant, settings.timing, METRIC_NAMES
                )
            book.observe(max(e.event_time for e in delivery.events), now)
            book.apply_all(outcome.deltas)
            if book.due(now):
                book.flush(now)

    book_s = best_of(2, book_all)
    for label, seconds in (
        ("adapters (envelope, JSON, validation)", normalise_s),
        ("stitcher (dedupe, summary per delivery, deltas)", stitch_s),
        ("conversation rows (at most one per delivery)", rows_s),
        ("interval book (watermark, buckets, flush)", book_s),
        ("journeys (identity, engagements, paths)", journeys_s),
    ):
        result.add(f"stage: {label}", seconds / count * 1e6, "µs per event")
    result.add(
        "stage: deliveries (a record's events for one conversation)", len(conversational), "deliveries"
    )
    result.add("stage: applied deliveries (changed a conversation)", len(applied), "deliveries")
    result.add(
        "floor: strict pydantic validation alone of the same events (from dicts)", validate_s / count * 1e6,
        "µs per event",
    )  # fmt: skip
    return count, normalise_s + stitch_s + rows_s + book_s + journeys_s, validate_s


def _flow_seconds(settings: Settings, events_path: Path, null_sink: bool) -> float:
    if null_sink:
        flow = build_flow(
            lambda f: _replay(f, events_path),
            settings,
            NullSink(),
            [],
            drain_at_eof=True,
            flow_id="bench_null",
        )
    else:
        flow = make_flow(settings, replay=events_path, drain_at_eof=True)
    started = datetime.now(UTC)
    run_main(flow)
    return (datetime.now(UTC) - started).total_seconds()


def _replay(flow: Dataflow, path: Path) -> Stream[RawRecord]:
    return op.input("replay", flow, ReplayFileSource(path))


def run(quick: bool, workdir: Path) -> Result:
    result = Result("throughput", "1. Throughput: file replay through the flow vs. orjson parsing")
    scale = 0.3 if quick else 5.0
    say(f"throughput: generating {DAY} for {len(DEMO_TENANTS)} tenants at scale {scale}")
    dataset = build_dataset(DEMO_TENANTS, DAY, SEED, scale=scale)
    events_path, _ = write_dataset(dataset, workdir)
    raws = [record.raw for record in dataset.delivery.records]
    gc.collect()
    gc.freeze()  # the benchmark's own copy of the dataset is not part of the flow's heap
    chdb_path = workdir / "chdb"
    shutil.rmtree(chdb_path, ignore_errors=True)
    settings = dataset.settings.model_copy(
        update={"clickhouse": ClickHouseSettings(dsn=f"chdb://{chdb_path}"), "metrics_port": None}
    )
    records = len(raws)
    conversations = sum(len(day.conversations) for day in dataset.days)
    size = sum(len(raw) for raw in raws)
    result.add("input records (hostile delivery: duplicates, late, malformed)", records, "records")
    result.add("input size", size / records, "bytes per record")

    parse_s = best_of(3, lambda: _parse_all(raws))
    events, stages_s, validate_s = _stages(result, raws, settings)
    per_record = events / records
    result.add("canonical events", events, "events")
    result.add("events per record", per_record, "")
    parse_rate = records / parse_s * per_record
    result.add("orjson.loads of the same records (event-equivalents)", parse_rate, "events/s")
    result.add("orjson.loads of the same records", records / parse_s, "records/s")
    result.add("sum of the stages alone (no Bytewax, no sink)", events / stages_s, "events/s")
    result.ratio(
        "pydantic validation alone ÷ orjson parse rate (the ceiling of any flow validating every event)",
        events / validate_s / parse_rate,
    )

    null_s = _flow_seconds(settings, events_path, null_sink=True)
    result.add("flow → null sink, 1 worker", events / null_s, "events/s")

    init_db(connect(settings.clickhouse.dsn), settings.clickhouse.database)
    flow_s = _flow_seconds(settings, events_path, null_sink=False)
    flow_rate = events / flow_s
    result.add(
        "flow → chDB, 1 worker",
        flow_rate,
        "events/s",
        target=f"≥ {TARGET_EVENTS_PER_SECOND:,} events/s per worker",
        met=flow_rate >= TARGET_EVENTS_PER_SECOND,
    )
    result.add("flow → chDB, 1 worker (records)", records / flow_s, "records/s")
    result.ratio(
        "flow → chDB ÷ orjson parse rate",
        flow_rate / parse_rate,
        target=f"≥ {TARGET_PARSE_SHARE:.0%}",
        met=flow_rate / parse_rate >= TARGET_PARSE_SHARE,
    )
    result.ratio("flow → null sink ÷ orjson parse rate", events / null_s / parse_rate)
    result.ratio("stages alone ÷ flow → null sink (the rest is Bytewax hosting)", stages_s / null_s)
    result.ratio("flow → chDB ÷ flow → null sink (ClickHouse writing cost)", null_s / flow_s)
    check_stitched(result, settings.clickhouse.dsn, settings.clickhouse.database, conversations)
    return result


if __name__ == "__main__":
    main(run)
