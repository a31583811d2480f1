"""Bytewax sink around ``ClickHouseWriter``: routes each published row to its table.

Rows are buffered across batches for throughput but always flushed at ``snapshot()``, which Bytewax
calls at every epoch end before it commits input offsets: a crash can replay rows (the tables
de-duplicate) but can never lose one.
"""

from __future__ import annotations

from collections.abc import Callable

from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition
from clickhouse_connect.driver.client import Client

from sinks.clickhouse import ClickHouseWriter
from sinks.deadletters import KafkaDeadLetterProducer
from stitchboard import telemetry
from stitchboard.deadletters import DeadLetter
from stitchboard.rows import AgentStateRow, ConversationRow, IntervalRow, RestatementRow
from stitchboard.settings import ClickHouseSettings, KafkaSettings

PublishedRow = ConversationRow | IntervalRow | RestatementRow | DeadLetter | AgentStateRow

_TABLE_BY_TYPE: dict[type, str] = {
    ConversationRow: "conversations",
    RestatementRow: "interval_restatements",
    DeadLetter: "dead_letters",
    AgentStateRow: "agent_states",
}


def tables_for(row: PublishedRow) -> tuple[str, ...]:
    """Interval rows go to the current table; final ones also to the immutable published table."""
    if isinstance(row, IntervalRow):
        return ("interval_metrics", "interval_published") if row.status == "final" else ("interval_metrics",)
    return (_TABLE_BY_TYPE[type(row)],)


class _WriterPartition(StatefulSinkPartition[PublishedRow, None]):
    def __init__(self, writer: ClickHouseWriter) -> None:
        self._writer = writer
        self._reported_retries = 0

    def write_batch(self, values: list[PublishedRow]) -> None:
        by_table: dict[str, list[PublishedRow]] = {}
        for row in values:
            for table in tables_for(row):
                by_table.setdefault(table, []).append(row)
        for table, rows in by_table.items():
            self._writer.add(table, rows)
        self._writer.flush_if_due()
        self._report()

    def _report(self) -> None:
        """Export the writer's counters (retries since the last report) to Prometheus."""
        retries = self._writer.retries - self._reported_retries
        if retries:
            telemetry.SINK_RETRIES.inc(retries)
            self._reported_retries = self._writer.retries

    def snapshot(self) -> None:
        with telemetry.SINK_BATCH_SECONDS.time():
            self._writer.flush()
        self._report()

    def close(self) -> None:
        self._writer.close()


class ClickHouseSink(FixedPartitionedSink[PublishedRow, None]):
    """One partition: all rows of a worker set reach ClickHouse through one batching writer."""

    def __init__(self, client_factory: Callable[[], Client], settings: ClickHouseSettings) -> None:
        self._client_factory = client_factory
        self._settings = settings

    def list_parts(self) -> list[str]:
        return ["clickhouse"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _WriterPartition:
        s = self._settings
        writer = ClickHouseWriter(
            self._client_factory(),
            s.database,
            batch_rows=s.batch_rows,
            flush_seconds=s.flush_seconds,
            max_retries=s.max_retries,
            max_buffered_rows=s.max_buffered_rows,
        )
        return _WriterPartition(writer)


class _DeadLetterPartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, producer: KafkaDeadLetterProducer) -> None:
        self._producer = producer

    def write_batch(self, items: list[DeadLetter]) -> None:
        for letter in items:
            self._producer.produce(letter)
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


class KafkaDeadLetterSink(DynamicSink[DeadLetter]):
    """Dead letters to their Kafka topic; each batch is flushed (delivered) before the epoch ends."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        s = self._settings
        return _DeadLetterPartition(KafkaDeadLetterProducer(s.brokers, s.dead_letter_topic, s.extra_config))
