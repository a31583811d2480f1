"""The Bytewax sink around ``ClickHouseWriter``: each published row to its table(s) (``tables_for``).

Without recovery, a background writer inserts rows (on size, time, or at once for interval rows)
while the flow goes on. With recovery, rows are written only once Bytewax has committed the epoch
that produced them (``_StagedPartition`` explains why), so a crash never leaves rows of an
execution that recovery then abandoned.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from clickhouse_connect.driver.client import Client

from stitchboard import telemetry
from stitchboard.deadletters import DeadLetter
from stitchboard.rows import IntervalRow, PublishedRow
from stitchboard.settings import ClickHouseSettings, KafkaSettings
from stitchboard.sinks.clickhouse import (
    BackgroundWriter,
    ClickHouseWriter,
    Row,
    latest_versions,
    to_columns,
    unconvertible_letter,
)
from stitchboard.sinks.dead_letter_topic import KafkaDeadLetterProducer
from stitchboard.sinks.recovery_store import CommittedSnapshot, RecoveryStore, StoreUnreadable
from stitchboard.state_version import StateSchema, Versioned, is_tuple_of, unchanged
from stitchboard.tables import current_row, tables_for

PART = "clickhouse"
URGENT_TABLES = ("interval_metrics", "interval_published")  # what wallboards wait for (see BackgroundWriter)
_log = logging.getLogger("stitchboard.sink")


def _is_provisional(row: PublishedRow) -> bool:
    return isinstance(row, IntervalRow) and row.status == "provisional"


LetterOut = Callable[[DeadLetter], None]


def _by_table(values: list[PublishedRow], letter_out: LetterOut) -> dict[str, list[Row]]:
    """Each row as column tuples of its table(s). A row that cannot be converted (a bug, a value no
    rule foresaw) becomes an ``internal_error`` dead letter (``unconvertible_letter``), handed to
    ``letter_out`` and written to ``dead_letters`` in its place; the other rows go on."""
    by_table: dict[str, list[Row]] = {}
    for row in values:
        try:
            converted = [(table, to_columns(table, row)) for table in tables_for(row)]
        except Exception as exc:
            letter = unconvertible_letter(row, exc, datetime.now(UTC))
            letter_out(letter)
            converted = [("dead_letters", to_columns("dead_letters", letter))]
        for table, columns in converted:
            by_table.setdefault(table, []).append(columns)
    return by_table


class _WriterPartition(StatefulSinkPartition[PublishedRow, None]):
    """Without recovery: rows go to a background writer, which inserts them on size or time.

    Nothing is ever replayed without recovery, so rows need not wait for an epoch: the flow hands
    them over and goes on. Interval rows are inserted at once (they are throttled upstream by
    ``timing.provisional_every_seconds``), other tables' rows once a table holds
    ``clickhouse.batch_rows`` or waited ``clickhouse.flush_seconds`` (``BackgroundWriter``). Epoch ends do not flush (that would make
    the flow wait for ClickHouse); the end of input does.
    """

    def __init__(self, writer: ClickHouseWriter, letter_out: LetterOut) -> None:
        self._writer = BackgroundWriter(writer, urgent=URGENT_TABLES)
        self._letter_out = letter_out

    def write_batch(self, values: list[PublishedRow]) -> None:
        for table, rows in _by_table(values, self._letter_out).items():
            self._writer.add(table, rows)

    def snapshot(self) -> None:
        error = self._writer.error
        if error is not None:
            raise RuntimeError("writing rows to ClickHouse failed") from error

    def close(self) -> None:
        self._writer.close()


Staged = dict[int, dict[str, list[Row]]]  # sink epoch → table → column tuples
SinkState = tuple[int, str, bytes]  # (sink epochs closed, execution token, pickled ``Staged`` not written)
# Version 0: the bare ``SinkState`` written before snapshots were versioned (``state_version``).
SINK_STATE = StateSchema[SinkState](
    "clickhouse", 1, {0: unchanged}, lambda s: is_tuple_of(s, int, str, bytes)
)


def _staged(pickled: bytes) -> Staged:
    """Staged rows from a snapshot, in today's columns (a release may have added columns since)."""
    staged: Staged = pickle.loads(pickled)
    return {
        epoch: {table: [current_row(table, row) for row in rows] for table, rows in by_table.items()}
        for epoch, by_table in staged.items()
    }


class _EpochRows:
    """The rows of the open epoch, as column tuples; versioned tables keep only each key's latest."""

    def __init__(self, letter_out: LetterOut) -> None:
        self._rows: dict[str, list[Row]] = {}
        self._letter_out = letter_out

    def add(self, values: list[PublishedRow]) -> None:
        for table, rows in _by_table(values, self._letter_out).items():
            self._rows.setdefault(table, []).extend(rows)

    def close(self) -> dict[str, list[Row]]:
        return {table: latest_versions(table, rows) for table, rows in self._rows.items() if rows}


class _StagedPartition(StatefulSinkPartition[PublishedRow, Versioned]):
    """With recovery: rows reach ClickHouse only once Bytewax has committed the epoch producing them.

    After a crash Bytewax resumes from the last committed epoch and processes the rest of the input
    again, possibly interleaving Kafka partitions differently, so the rows of an uncommitted epoch
    may never be produced again (other restatement groupings, other provisional figures). Had they
    been written, a later version of such a row, or a row of a bucket the resumed run never
    touches, could outlive the resumed run's rows. So every epoch's rows are staged in this
    partition's snapshot (durable with the epoch, in Bytewax's recovery store) and a background
    thread writes each epoch as soon as the store shows it committed (a snapshot of this execution,
    told apart by a random token, below the committed frontier). On resume the snapshot's
    staged epochs are committed by definition and are written first (again, if they already were:
    the same rows, which the ReplacingMergeTree tables absorb). ClickHouse thus holds exactly the
    rows of one execution in which every record was processed once.

    Provisional interval rows are the exception: they are written at the thread's next poll,
    without waiting for their epoch, so wallboards stay seconds fresh with recovery on. They are
    not part of any audit: a provisional row of an abandoned execution can at worst show until the
    resumed run publishes a newer version or the interval's final row (version 2^32), which every
    touched interval gets, and which is staged like everything else.

    While ClickHouse is slow or down the thread retries with backoff holding the lock, so the
    flow blocks in ``write_batch`` (back-pressure) with at most the uncommitted epochs buffered; when
    retries are exhausted the error is raised in the flow, which stops, and recovery resumes it.
    """

    def __init__(
        self,
        writer: ClickHouseWriter,
        commits: Callable[[], int | None],
        resume_state: SinkState | None,
        poll_seconds: float,
        token: str,
        letter_out: LetterOut,
    ) -> None:
        self._writer = writer
        self._letter_out = letter_out
        self._commits = commits
        self._token = token
        self._lock = threading.Lock()
        self._epoch, _, staged = resume_state if resume_state is not None else (0, "", pickle.dumps({}))
        self._staged: Staged = _staged(staged)
        self._current = _EpochRows(letter_out)
        self._live = _EpochRows(letter_out)  # provisional interval rows, written at the next poll
        self._error: BaseException | None = None
        self._write_epochs_up_to(self._epoch)  # a resumed snapshot's staged epochs are committed
        self._stop = threading.Event()
        self._poll_seconds = poll_seconds
        self._thread = threading.Thread(target=self._promote_loop, name="clickhouse-promoter", daemon=True)
        self._thread.start()

    def _write_epochs_up_to(self, committed: int) -> None:
        with self._lock:
            for epoch in sorted(e for e in self._staged if e <= committed):
                for table, rows in self._staged[epoch].items():
                    self._writer.write(table, rows)
                del self._staged[epoch]
            telemetry.SINK_STAGED_ROWS.set(self._staged_rows())

    def _staged_rows(self) -> int:
        return sum(len(rows) for tables in self._staged.values() for rows in tables.values())

    def _write_live(self) -> None:
        with self._lock:
            live, self._live = self._live.close(), _EpochRows(self._letter_out)
            for table, rows in live.items():
                self._writer.write(table, rows)

    def _promote_loop(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self._write_live()
                if not self._staged:
                    continue
                committed = self._commits()
                if committed is not None:
                    self._write_epochs_up_to(committed)
            except StoreUnreadable:
                continue  # not known yet: ask again at the next poll
            except Exception as exc:  # surfaced in the flow by the next write_batch/snapshot
                _log.exception("writing committed rows failed")
                self._error = exc
                return

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise RuntimeError("writing committed rows to ClickHouse failed") from self._error

    def write_batch(self, values: list[PublishedRow]) -> None:
        self._raise_pending()
        live = [row for row in values if _is_provisional(row)]
        if live:
            values = [row for row in values if not _is_provisional(row)]
        with self._lock:
            self._current.add(values)
            self._live.add(live)

    def snapshot(self) -> Versioned:
        self._raise_pending()
        with self._lock:
            self._epoch += 1
            self._staged[self._epoch] = self._current.close()
            self._current = _EpochRows(self._letter_out)
            telemetry.SINK_STAGED_ROWS.set(self._staged_rows())
            staged = pickle.dumps(self._staged, protocol=pickle.HIGHEST_PROTOCOL)
            return SINK_STATE.wrap((self._epoch, self._token, staged))

    def stop(self) -> None:
        """Stop the background writer (idempotent); staged rows stay staged."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def close(self) -> None:
        """End of input (Bytewax also calls this while unwinding, where raising would abort the
        process): write what is committed; the last epoch commits after this, and
        ``ClickHouseSink.finish`` writes it or raises the error kept here.
        """
        self.stop()
        if self._error is not None:
            return
        try:
            self._write_live()
            committed = self._commits()
            if committed is not None:
                self._write_epochs_up_to(committed)
        except StoreUnreadable:
            pass  # ``finish`` writes them from the committed snapshot
        except Exception as exc:
            _log.exception("writing committed rows at close failed")
            self._error = exc

    @property
    def error(self) -> BaseException | None:
        return self._error


class _RejectedRows:
    """Where a row ClickHouse refused goes besides the ``dead_letters`` table: the rejection
    counter, and the dead-letter topic when the flow has one (a producer made on first use, shared
    by the sink's writer threads, each letter acknowledged before the writer goes on)."""

    def __init__(self, kafka: KafkaSettings | None) -> None:
        self._kafka = kafka
        self._producer: KafkaDeadLetterProducer | None = None
        self._lock = threading.Lock()

    def __call__(self, table: str, error: BaseException, letter: DeadLetter) -> None:
        telemetry.record_rejected(table, error)
        self._send(letter)

    def unconvertible(self, letter: DeadLetter) -> None:
        """A row the sink could not convert, dead-lettered: counted, and sent to the topic too."""
        telemetry.DEAD_LETTERS_AFTER_ACCEPTANCE.labels(letter.reason).inc()
        _log.error(
            "a row could not be converted for ClickHouse, dead-lettered it", extra={"detail": letter.detail}
        )
        self._send(letter)

    def _send(self, letter: DeadLetter) -> None:
        if self._kafka is None:
            return
        with self._lock:
            if self._producer is None:
                k = self._kafka
                self._producer = KafkaDeadLetterProducer(
                    k.brokers, k.dead_letter_topic, k.extra_config, max_message_bytes=k.dead_letter_max_bytes
                )
            self._producer.produce(letter)
            self._producer.flush()

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None


class ClickHouseSink(FixedPartitionedSink[PublishedRow, Any]):
    """One partition: all rows of a worker set reach ClickHouse through one batching writer.

    With ``recovery_dir`` (the flow runs with Bytewax recovery) rows are staged per epoch and
    written once committed (see ``_StagedPartition``); call ``finish()`` after the flow ended to
    write the last epoch, which Bytewax commits only after the sink is closed. A row ClickHouse
    refuses becomes a dead letter in the table and, given ``dead_letter_topic``, on that topic.
    """

    def __init__(
        self,
        client_factory: Callable[[], Client],
        settings: ClickHouseSettings,
        *,
        recovery_dir: Path | None = None,
        backoff_seconds: float = 0.2,
        poll_seconds: float = 0.2,
        dead_letter_topic: KafkaSettings | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._settings = settings
        self._rejected = _RejectedRows(dead_letter_topic)
        self._recovery = RecoveryStore(recovery_dir) if recovery_dir is not None else None
        self._backoff_seconds = backoff_seconds
        self._poll_seconds = poll_seconds
        self._step_id: str | None = None
        self._token = uuid.uuid4().hex  # tells this execution's snapshots from abandoned ones
        self._partitions: list[_StagedPartition] = []

    def list_parts(self) -> list[str]:
        return [PART]

    def _writer(self) -> ClickHouseWriter:
        s = self._settings
        return ClickHouseWriter(
            self._client_factory(),
            s.database,
            batch_rows=s.batch_rows,
            flush_seconds=s.flush_seconds,
            max_retries=s.max_retries,
            max_buffered_rows=s.max_buffered_rows,
            backoff_seconds=self._backoff_seconds,
            on_insert=telemetry.record_insert,
            on_retry=telemetry.record_retry,
            on_rejected=self._rejected,
            max_partitions_per_insert=s.max_partitions_per_insert,
        )

    def _committed_sink_epoch(self, step_id: str) -> int | None:
        """The sink epoch of this execution's newest committed snapshot, if one is committed yet."""
        assert self._recovery is not None
        snapshot = self._recovery.committed_snapshot(step_id, PART)
        if snapshot is None or snapshot.head is None or snapshot.head[1] != self._token:
            return None
        return int(snapshot.head[0])

    def build_part(
        self, step_id: str, for_part: str, snapshot: object | None
    ) -> _WriterPartition | _StagedPartition:
        self._step_id = step_id
        if self._recovery is None:
            return _WriterPartition(self._writer(), self._rejected.unconvertible)
        resume_state = SINK_STATE.restore(snapshot)
        if resume_state is not None:
            _log.info("sink resumed", extra={"sink_epoch": resume_state[0], "step_id": step_id})
        partition = _StagedPartition(
            self._writer(),
            lambda: self._committed_sink_epoch(step_id),
            resume_state,
            self._poll_seconds,
            self._token,
            self._rejected.unconvertible,
        )
        self._partitions.append(partition)
        return partition

    def stop(self) -> None:
        """Stop background writers and the store reader (after the flow ended or aborted)."""
        for partition in self._partitions:
            partition.stop()
        if self._recovery is not None:
            self._recovery.close()
        self._rejected.close()

    def _read_committed(self, step_id: str, attempts: int = 20) -> CommittedSnapshot | None:
        assert self._recovery is not None
        for attempt in range(attempts):
            try:
                return self._recovery.committed_snapshot(step_id, PART, full=True)
            except StoreUnreadable:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.25)
        return None

    def finish(self) -> int:
        """After the flow ended: write the staged rows of the committed snapshot; returns rows written."""
        try:
            return self._finish()
        finally:
            self._rejected.close()

    def _finish(self) -> int:
        if self._recovery is None or self._step_id is None:
            return 0
        for partition in self._partitions:
            partition.stop()
            if partition.error is not None:
                raise RuntimeError("writing committed rows to ClickHouse failed") from partition.error
        snapshot = self._read_committed(self._step_id)
        self._recovery.close()
        if snapshot is None:
            return 0
        _, token, pickled = SINK_STATE.unwrap(snapshot.state)
        if token != self._token:
            return 0
        staged = _staged(pickled)
        writer = self._writer()
        written = 0
        try:
            for epoch in sorted(staged):
                for table, rows in staged[epoch].items():
                    writer.write(table, rows)
                    written += len(rows)
        except Exception as exc:  # the rows stay in the committed snapshot: the next start writes them
            raise RuntimeError("writing the last epoch to ClickHouse failed") from exc
        return written
