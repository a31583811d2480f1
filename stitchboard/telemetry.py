"""Prometheus metrics of the running flow (served on ``Settings.metrics_port``).

Counters are process-wide, so ``records_in == records_accepted + records_dead_lettered`` can be
checked by an SRE on the dashboard and by the tests on the registry.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_IN = Counter("stitchboard_records_in", "Raw records received", ["input"])
RECORDS_ACCEPTED = Counter("stitchboard_records_accepted", "Raw records normalised into events")
RECORDS_DEAD_LETTERED = Counter("stitchboard_records_dead_lettered", "Raw records rejected", ["reason"])
EVENTS = Counter("stitchboard_events", "Canonical events by outcome of stitching", ["outcome"])
RESTATEMENTS = Counter("stitchboard_restatements", "Restatement rows written (one per changed metric)")
FINAL_ROWS = Counter("stitchboard_final_interval_rows", "Interval rows finalised")
WATERMARK_LAG = Gauge(
    "stitchboard_watermark_lag_seconds", "System time minus the event-time watermark", ["tenant"]
)
SINK_BATCH_SECONDS = Histogram("stitchboard_sink_batch_seconds", "ClickHouse insert latency per batch")
SINK_RETRIES = Counter("stitchboard_sink_retries", "ClickHouse insert retries")
