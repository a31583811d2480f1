"""Operability: Prometheus metrics of the running flow and structured (JSON) logs.

Metrics are served on ``Settings.metrics_port`` by ``stitchboard run``. Counters are process-wide,
so ``records_in == records_accepted + sum(records_dead_lettered)`` can be checked by an SRE on the
dashboard and by the tests on the registry. Records are raw inputs; one accepted record becomes
zero or more canonical events, and an *event* can still be dead-lettered later (a conflicting
re-send, ``stitchboard_events{outcome="conflict"}``; a correction beyond the restatement horizon;
an item a step failed on, ``internal_error``), counted in
``stitchboard_dead_letters_after_acceptance``, one per letter (each a row of its own in the
table; only a letter replayed after a crash is counted again and kept once).

Watermarks are per tenant (one interval book per tenant, fed in per-tenant arrival order), not per
Kafka partition: a tenant's records are spread over partitions, so a per-partition event-time lag
would not say when that tenant's intervals finalise. The lag gauge is therefore labelled by tenant.
"""

from __future__ import annotations

import logging
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import orjson
from prometheus_client import Counter, Gauge, Histogram, Info

from stitchboard import __version__
from stitchboard.redaction import redact

RECORDS_IN = Counter("stitchboard_records_in", "Raw records received", ["input"])
RECORDS_ACCEPTED = Counter("stitchboard_records_accepted", "Raw records normalised into events")
RECORDS_DEAD_LETTERED = Counter("stitchboard_records_dead_lettered", "Raw records rejected", ["reason"])
EVENTS = Counter("stitchboard_events", "Canonical events by outcome of stitching", ["outcome"])
DEAD_LETTERS_AFTER_ACCEPTANCE = Counter(
    "stitchboard_dead_letters_after_acceptance",
    "Dead letters raised after a record was accepted (event conflicts, corrections beyond the "
    "horizon, items a step failed on)",
    ["reason"],
)
LATE_DELIVERIES = Counter(
    "stitchboard_late_deliveries",
    "Deliveries (a record's events for one conversation) with an event already behind the "
    "finalisation point (watermark - allowed lateness)",
    ["tenant"],
)
RESTATED_INTERVALS = Counter(
    "stitchboard_restated_intervals", "Interval rows re-published as restated", ["tenant"]
)
RESTATEMENTS = Counter("stitchboard_restatements", "Restatement rows written (one per changed metric)")
FINAL_ROWS = Counter("stitchboard_final_interval_rows", "Interval rows finalised")
WATERMARK_LAG = Gauge(
    "stitchboard_watermark_lag_seconds", "System time minus the event-time watermark", ["tenant"]
)
SINK_BATCH_SECONDS = Histogram(
    "stitchboard_sink_batch_seconds",
    "ClickHouse insert latency per batch (successful attempts)",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
SINK_ROWS = Counter("stitchboard_sink_rows", "Rows inserted into ClickHouse", ["table"])
SINK_RETRIES = Counter("stitchboard_sink_retries", "ClickHouse insert retries", ["table"])
SINK_LAST_WRITE = Gauge(
    "stitchboard_sink_last_write_timestamp_seconds",
    "Unix time of the last successful ClickHouse insert (alerts compare it with time())",
    ["table"],
)
SINK_REJECTED_ROWS = Counter(
    "stitchboard_sink_rejected_rows",
    "Rows ClickHouse refused on their own (a value the column cannot hold), dead-lettered instead",
    ["table"],
)
SINK_STAGED_ROWS = Gauge(
    "stitchboard_sink_staged_rows", "Rows waiting for their epoch to be committed before insertion"
)
BUILD = Info("stitchboard_build", "The running code: stitchboard, Python and Bytewax versions")
BUILD.info({"version": __version__, "python": platform.python_version(), "bytewax": version("bytewax")})

_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def record_insert(table: str, rows: int, seconds: float) -> None:
    """``ClickHouseWriter`` callback: one successful insert."""
    SINK_BATCH_SECONDS.labels(table).observe(seconds)
    SINK_ROWS.labels(table).inc(rows)
    SINK_LAST_WRITE.labels(table).set_to_current_time()


def record_retry(table: str, attempt: int, error: BaseException) -> None:
    """``ClickHouseWriter`` callback: an insert failed and will be retried after a backoff."""
    SINK_RETRIES.labels(table).inc()
    logging.getLogger("stitchboard.sink").warning(
        "clickhouse insert failed, retrying",
        extra={"table": table, "attempt": attempt, "error": f"{type(error).__name__}: {error}"},
    )


def record_rejected(table: str, error: BaseException) -> None:
    """``ClickHouseWriter`` callback: a row ClickHouse refused became a dead letter."""
    SINK_REJECTED_ROWS.labels(table).inc()
    logging.getLogger("stitchboard.sink").error(
        "clickhouse refused a row, dead-lettered it",
        extra={"table": table, "error": f"{type(error).__name__}: {error}"},
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field, with
    secrets masked (``stitchboard.redaction``): an error quoting a DSN must not log its password."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(entry, default=str).decode("utf-8"))


def configure_logging(level: str = "INFO") -> None:
    """Structured logs on stderr for the ``stitchboard`` loggers (idempotent)."""
    logger = logging.getLogger("stitchboard")
    logger.setLevel(level.upper())
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    logger.propagate = False
