"""Assemble and execute the flow for a run: inputs, sinks, workers, recovery."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from flows.contact_centre import RecordInput, build_flow
from flows.sources import Progress, ReplayFileSource, kafka_input
from sinks.clickhouse import connect, init_db
from sinks.dataflow import ClickHouseSink, KafkaDeadLetterSink
from stitchboard.settings import Settings


def _inputs(settings: Settings, replay: Path | None, progress: Progress | None) -> RecordInput:
    if replay is not None:
        return lambda flow: op.input("replay", flow, ReplayFileSource(replay, progress=progress))
    return lambda flow: kafka_input(flow, settings.kafka)


def make_flow(
    settings: Settings,
    *,
    replay: Path | None = None,
    drain_at_eof: bool = False,
    progress: Progress | None = None,
) -> Dataflow:
    """The production flow: Kafka (or a replay file) in; ClickHouse and the dead-letter topic out."""
    dsn = settings.clickhouse.dsn
    dead_letter_sinks = [] if replay is not None else [KafkaDeadLetterSink(settings.kafka)]
    return build_flow(
        _inputs(settings, replay, progress),
        settings,
        ClickHouseSink(lambda: connect(dsn), settings.clickhouse),
        dead_letter_sinks,
        drain_at_eof=drain_at_eof,
    )


def recovery_config(settings: Settings) -> RecoveryConfig | None:
    """Bytewax recovery in ``settings.recovery_dir``, created (one partition) on first use."""
    directory = settings.recovery_dir
    if directory is None:
        return None
    if not directory.exists() or not any(directory.iterdir()):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, 1)
    return RecoveryConfig(directory)


def run(
    settings: Settings,
    *,
    replay: Path | None = None,
    workers: int = 1,
    drain_at_eof: bool = False,
    progress: Progress | None = None,
) -> None:
    """Create tables if needed, then run the flow until its input ends (a replay) or forever (Kafka)."""
    init_db(connect(settings.clickhouse.dsn), settings.clickhouse.database)
    flow = make_flow(settings, replay=replay, drain_at_eof=drain_at_eof, progress=progress)
    cli_main(
        flow,
        workers_per_process=workers,
        epoch_interval=timedelta(seconds=settings.snapshot_seconds),
        recovery_config=recovery_config(settings),
    )
