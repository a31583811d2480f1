"""Assemble and execute the flow for a run: inputs, sinks, workers, recovery, health endpoint.

A run ends when its input does (a replay, ``--until-eof``), on SIGTERM, or when a dependency
stays unreachable for ``health.unreachable_exit_seconds`` (``stitchboard.app.health``: one error
line, exit status 1). SIGTERM ends every input partition at its next poll
(``stitchboard.flows.sources.StopFlag``), so the flow finishes its epoch as at the end of a bounded
input: positions and state are snapshotted, the epoch is committed and the sink writes its staged
rows; a restart resumes there. A stopped run never drains (finalises) intervals: it is not the end
of the data.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from clickhouse_connect.driver.exceptions import ClickHouseError

from stitchboard import telemetry
from stitchboard.app.errors import UserError, detail, error_line
from stitchboard.app.health import HealthMonitor, HealthServer, probes_for
from stitchboard.flows.contact_centre import RecordInput, build_flow
from stitchboard.flows.sources import (
    BrokerUnreachable,
    Progress,
    ReplayFileSource,
    StopFlag,
    StoppableSource,
    kafka_input,
)
from stitchboard.redaction import redact
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
    settings: Settings,
    replay: Path | None,
    progress: Progress | None,
    until_eof: bool,
    stop: StopFlag | None,
) -> RecordInput:
    if replay is not None:
        file = ReplayFileSource(replay, progress=progress)
        return lambda flow: op.input("replay", flow, file if stop is None else StoppableSource(file, stop))
    bound = settings.health.unreachable_exit_seconds
    return lambda flow: kafka_input(
        flow, settings.kafka, tail=not until_eof, stop=stop, metadata_timeout=bound
    )


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
    drain_at_eof: bool | Callable[[], bool] = False,
    until_eof: bool = False,
    progress: Progress | None = None,
    sink: ClickHouseSink | None = None,
    stop: StopFlag | None = None,
) -> Dataflow:
    """The production flow: Kafka (or a replay file) in; ClickHouse and the dead-letter topic out.

    ``until_eof`` reads Kafka up to the end of every partition and stops (a bounded catch-up).
    With ``stop``, the input ends when the flag is set (pass ``drain_at_eof`` as a function that
    asks the flag, so a stopped run does not finalise intervals).
    """
    dead_letter_sinks = [] if replay is not None else [KafkaDeadLetterSink(settings.kafka)]
    return build_flow(
        _inputs(settings, replay, progress, until_eof, stop),
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


@contextmanager
def _stop_on_sigterm(stop: StopFlag) -> Iterator[None]:
    """SIGTERM (Kubernetes stopping the pod) sets ``stop`` instead of killing the process.

    Python runs the handler in the main thread; Bytewax's main thread checks for signals every
    millisecond while the workers run, so the flag is set at once. The handler only sets the flag
    (the health monitor's thread logs it). Outside the main thread (a test calling ``run``) signals
    cannot be handled and are left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.set(f"{signal.Signals(signum).name} received")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _served(port: int | None, monitor: HealthMonitor) -> Iterator[None]:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``port`` for the run (none without a port)."""
    if port is None:
        yield
        return
    try:
        server = HealthServer(port, monitor)
    except OSError as exc:
        raise UserError(
            f"cannot serve metrics on port {port} ({exc.strerror}): stop the process "
            "using it or set metrics_port (STITCHBOARD_METRICS_PORT) to a free port"
        ) from exc
    try:
        yield
    finally:
        server.close()


def _failed(exc: Exception, settings: Settings, monitor: HealthMonitor) -> Exception:
    """The one error a failed flow ends with: the monitor's verdict when it stopped the run, else
    a dependency failure told as such, else the exception itself (a bug: the CLI says so)."""
    if monitor.failure is not None:
        return monitor.failure
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for cause in chain:
        if isinstance(cause, BrokerUnreachable):
            return UserError(
                f"{cause}: check kafka.brokers (and kafka.extra_config for TLS or SASL) and that the brokers are up"
            )
        if isinstance(cause, ClickHouseError):
            return UserError(
                f"writing to ClickHouse at {redact(settings.clickhouse.dsn)} failed ({detail(cause)}; "
                "retried clickhouse.max_retries times if transient): check that the server is up and "
                "accepts inserts; a restart resumes from the last snapshot and loses nothing"
            )
    return exc


def _exit_at_once(failure: UserError) -> None:
    """End the process with the failure's line, as the CLI prints it (``HealthMonitor``'s
    docstring says why not cleanly); the monitor's thread calls it while the flow runs."""
    print(redact(error_line("run", str(failure))), file=sys.stderr, flush=True)
    os._exit(failure.exit_status)


def run(
    settings: Settings,
    *,
    replay: Path | None = None,
    workers: int = 1,
    drain_at_eof: bool = False,
    until_eof: bool = False,
    progress: Progress | None = None,
) -> None:
    """Run the flow until its input ends (a replay, ``until_eof``), forever (Kafka), or SIGTERM
    (returns once the stop is complete). Serves ``/metrics``, ``/healthz`` and ``/readyz`` on
    ``settings.metrics_port`` when it is set. Waits (not ready) for Kafka and ClickHouse before
    creating the tables and starting the flow; one unreachable for
    ``health.unreachable_exit_seconds`` raises ``UserError`` naming it before the flow starts,
    and ends the process with that line (exit status 1) once it runs.
    """
    stop = StopFlag()
    bounds = settings.health
    kafka = settings.kafka if replay is None else None
    probes = probes_for(kafka, settings.clickhouse.dsn, bounds.check_seconds)
    with (
        _stop_on_sigterm(stop),
        HealthMonitor(bounds, stop, probes, on_failure=_exit_at_once) as monitor,
        _served(settings.metrics_port, monitor),
    ):
        if not monitor.wait_for_dependencies():
            if monitor.failure is not None:
                raise monitor.failure
            _log.info("stopped before the flow started", extra={"reason": stop.reason})
            return
        _run_flow(settings, monitor, stop, replay, workers, drain_at_eof or until_eof, until_eof, progress)
    if monitor.failure is not None:
        raise monitor.failure


def _run_flow(
    settings: Settings,
    monitor: HealthMonitor,
    stop: StopFlag,
    replay: Path | None,
    workers: int,
    drain: bool,
    until_eof: bool,
    progress: Progress | None,
) -> None:
    tune_gc()
    dsn = settings.clickhouse.dsn
    try:
        init_db(connect(dsn), settings.clickhouse.database)
    except (ClickHouseError, OSError) as exc:
        raise UserError(
            f"cannot create the tables in ClickHouse at {redact(dsn)} ({detail(exc)}): check that the "
            "server is up and that the user may create tables (`stitchboard init-db` shows the same)"
        ) from exc
    sink = clickhouse_sink(settings, dead_letter_topic=replay is None)
    flow = make_flow(
        settings,
        replay=replay,
        drain_at_eof=lambda: drain and not stop.is_set(),
        until_eof=until_eof,
        progress=progress,
        sink=sink,
        stop=stop,
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
    monitor.mark_running()
    read_before = telemetry.counter_total(telemetry.RECORDS_IN)
    try:
        cli_main(
            flow,
            workers_per_process=workers,
            epoch_interval=timedelta(seconds=settings.snapshot_seconds),
            recovery_config=recovery,
        )
        written = sink.finish()
    except Exception as exc:
        raise _failed(exc, settings, monitor) from exc
    records_in = telemetry.counter_total(telemetry.RECORDS_IN) - read_before  # by this run
    if stop.is_set():
        _log.info(
            "flow stopped",
            extra={"reason": stop.reason, "final_epoch_rows": written, "records_in": int(records_in)},
        )
    else:
        _log.info("flow finished", extra={"final_epoch_rows": written, "records_in": int(records_in)})
