"""Assemble and execute the flow for a run: inputs, sinks, workers, recovery, metrics endpoint."""

from __future__ import annotations

import gc
import logging
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from prometheus_client import start_http_server

from stitchboard.app.errors import UserError
from stitchboard.flows.contact_centre import RecordInput, build_flow
from stitchboard.flows.sources import Progress, ReplayFileSource, kafka_input
from stitchboard.settings import Settings
from stitchboard.sinks.clickhouse import connect, init_db
from stitchboard.sinks.clickhouse_sink import ClickHouseSink
from stitchboard.sinks.dead_letter_topic import KafkaDeadLetterSink

_log = logging.getLogger("stitchboard.runner")


# Collect the young generation every 50k net allocations instead of Python's default 700.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Fit the garbage collector to a long-running flow with a large live heap.

    The flow keeps many long-lived objects (conversations, identity graphs, interval buckets), and
    every event allocates short-lived ones; with Python's defaults, frequent collections rescan
    survivors, costing ~20% of the flow's CPU (measured on the throughput benchmark). Objects alive
    at startup (modules, settings) are frozen out of collection altogether.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _inputs(
    settings: Settings, replay: Path | None, progress: Progress | None, until_eof: bool
) -> RecordInput:
    if replay is not None:
        return lambda flow: op.input("replay", flow, ReplayFileSource(replay, progress=progress))
    return lambda flow: kafka_input(flow, settings.kafka, tail=not until_eof)


def clickhouse_sink(settings: Settings, *, dead_letter_topic: bool = True) -> ClickHouseSink:
    """The rows sink; with ``recovery_dir`` it writes only rows of committed epochs. Rows ClickHouse
    refuses are dead-lettered in the table and, with ``dead_letter_topic``, on the Kafka topic."""
    dsn = settings.clickhouse.dsn
    return ClickHouseSink(
        lambda: connect(dsn),
        settings.clickhouse,
        recovery_dir=settings.recovery_dir,
        dead_letter_topic=settings.kafka if dead_letter_topic else None,
    )


def make_flow(
    settings: Settings,
    *,
    replay: Path | None = None,
    drain_at_eof: bool = False,
    until_eof: bool = False,
    progress: Progress | None = None,
    sink: ClickHouseSink | None = None,
) -> Dataflow:
    """The production flow: Kafka (or a replay file) in; ClickHouse and the dead-letter topic out.

    ``until_eof`` reads Kafka up to the end of every partition and stops (a bounded catch-up).
    """
    dead_letter_sinks = [] if replay is not None else [KafkaDeadLetterSink(settings.kafka)]
    return build_flow(
        _inputs(settings, replay, progress, until_eof),
        settings,
        sink if sink is not None else clickhouse_sink(settings, dead_letter_topic=replay is None),
        dead_letter_sinks,
        drain_at_eof=drain_at_eof,
    )


def recovery_config(settings: Settings) -> RecoveryConfig | None:
    """Bytewax recovery in ``settings.recovery_dir``, created (one partition) on first use."""
    directory = settings.recovery_dir
    if directory is None:
        return None
    if not directory.exists() or not any(directory.glob("part-*.sqlite3")):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, 1)
    return RecoveryConfig(directory)


def run(
    settings: Settings,
    *,
    replay: Path | None = None,
    workers: int = 1,
    drain_at_eof: bool = False,
    until_eof: bool = False,
    progress: Progress | None = None,
) -> None:
    """Create tables if needed, then run the flow until its input ends (a replay, ``until_eof``) or
    forever (Kafka). Serves Prometheus metrics on ``settings.metrics_port`` when it is set.
    """
    if settings.metrics_port is not None:
        try:
            start_http_server(settings.metrics_port)
        except OSError as exc:
            raise UserError(
                f"cannot serve metrics on port {settings.metrics_port} ({exc.strerror}): stop the process "
                "using it or set metrics_port (STITCHBOARD_METRICS_PORT) to a free port"
            ) from exc
    tune_gc()
    init_db(connect(settings.clickhouse.dsn), settings.clickhouse.database)
    sink = clickhouse_sink(settings, dead_letter_topic=replay is None)
    drain = drain_at_eof or until_eof
    flow = make_flow(
        settings, replay=replay, drain_at_eof=drain, until_eof=until_eof, progress=progress, sink=sink
    )
    recovery = recovery_config(settings)
    _log.info(
        "flow starting",
        extra={
            "input": str(replay) if replay is not None else ",".join(settings.kafka.topics),
            "until_eof": until_eof or replay is not None,
            "recovery_dir": str(settings.recovery_dir) if settings.recovery_dir else None,
            "snapshot_seconds": settings.snapshot_seconds,
            "workers": workers,
            "metrics_port": settings.metrics_port,
        },
    )
    cli_main(
        flow,
        workers_per_process=workers,
        epoch_interval=timedelta(seconds=settings.snapshot_seconds),
        recovery_config=recovery,
    )
    written = sink.finish()
    _log.info("flow finished", extra={"final_epoch_rows": written})
