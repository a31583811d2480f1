"""Batched, retrying ClickHouse writer for the rows the flow publishes (chDB or a ClickHouse server).

Writes are at-least-once: a retried or replayed batch may land twice, which the
ReplacingMergeTree tables absorb. Rows are never dropped: a batch that still fails after the
last retry stays buffered and the error propagates, so the flow stops and recovery replays.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DataError, ProgrammingError

from stitchboard import tables

Row = tuple[Any, ...]


def connect(dsn: str) -> Client:
    """A client for ``chdb:///path`` (in-process engine) or ``http(s)://user:pass@host:port``.

    ``tz_mode='aware'`` makes DateTime64('UTC') values come back as UTC-aware datetimes.
    """
    return clickhouse_connect.get_client(dsn=dsn, tz_mode="aware")


def init_db(client: Client, database: str = tables.DEFAULT_DATABASE) -> None:
    """Create the database and tables, then add catalogue metrics missing from older tables."""
    for statement in tables.ddl(database) + tables.migrations(database):
        client.command(statement)


def to_row(table: str, row: object) -> Row:
    """Column tuple of one row in ``tables.columns(table)`` order.

    Dataclass fields map by name; an ``IntervalRow.metrics`` dict fills the metric columns
    (absent metrics are 0). A metric without a column is an error rather than a silent drop.
    """
    if isinstance(row, tuple):
        width = len(tables.columns(table))
        if len(row) != width:
            raise ValueError(f"{table}: expected {width} values, got {len(row)}")
        return row
    if not dataclasses.is_dataclass(row) or isinstance(row, type):
        raise TypeError(f"{table}: cannot insert {type(row).__name__}")
    plan, metric_names = _plan(table, type(row))
    metrics: dict[str, int] = getattr(row, "metrics", None) or {}
    if not metric_names.issuperset(metrics):
        raise ValueError(f"{table}: metrics without a column: {sorted(set(metrics) - metric_names)}")
    return tuple(getattr(row, name) if is_field else metrics.get(name, 0) for name, is_field in plan)


@functools.cache
def _plan(table: str, row_type: type) -> tuple[tuple[tuple[str, bool], ...], frozenset[str]]:
    """Per (table, dataclass): each column read from a field (True) or from ``metrics`` (False)."""
    fields = {field.name for field in dataclasses.fields(row_type)}
    names = tables.columns(table)
    metric_names = frozenset(tables.metric_column_names(table)) if "metrics" in fields else frozenset()
    missing = [name for name in names if name not in fields and name not in metric_names]
    if missing:
        raise ValueError(f"{table}: {row_type.__name__} has no value for columns {missing}")
    return tuple((name, name in fields) for name in names), metric_names


@functools.cache
def _replacing_key(table: str) -> tuple[tuple[int, ...], int] | None:
    """(key column positions, version position) of a ReplacingMergeTree(version) table, else None."""
    definition = tables.table(table)
    if not definition.engine.startswith("ReplacingMergeTree(version"):
        return None
    names = tables.columns(table)
    return tuple(names.index(column) for column in definition.order_by), names.index("version")


def latest_versions(table: str, rows: Sequence[Row]) -> list[Row]:
    """Only the rows a ReplacingMergeTree(version) table would keep: the highest version per key
    (the later row on a tie). Other tables keep every row. Order of first appearance is kept.
    """
    plan = _replacing_key(table)
    if plan is None:
        return list(rows)
    key_at, version_at = plan
    kept: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        key = tuple(row[i] for i in key_at)
        known = kept.get(key)
        if known is None or row[version_at] >= known[version_at]:
            kept[key] = row
    return list(kept.values())


def _retryable(exc: BaseException) -> bool:
    """Server and transport failures are retried; client-side programming and data errors are not."""
    if isinstance(exc, ProgrammingError | DataError):
        return False
    return isinstance(exc, ClickHouseError | OSError)


class ClickHouseWriter:
    """Buffers rows per table and inserts them in batches.

    ``add`` inserts when a table holds ``batch_rows`` rows, when ``flush_seconds`` passed since the
    last flush, or (back-pressure) when all tables together buffer ``max_buffered_rows``.
    """

    def __init__(
        self,
        client: Client,
        database: str = tables.DEFAULT_DATABASE,
        *,
        batch_rows: int = 20_000,
        flush_seconds: float = 1.0,
        max_retries: int = 8,
        max_buffered_rows: int = 500_000,
        backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_insert: Callable[[str, int, float], None] | None = None,
        on_retry: Callable[[str, int, BaseException], None] | None = None,
    ) -> None:
        self.client = client
        self.database = database
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.max_retries = max_retries
        self.max_buffered_rows = max_buffered_rows
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep
        self._clock = clock
        self._on_insert = on_insert  # (table, rows, seconds) after each successful insert
        self._on_retry = on_retry  # (table, attempt, error) before each backoff
        self._buffers: dict[str, list[Row]] = {}
        self._last_flush = clock()
        self.batches = 0
        self.rows = 0
        self.retries = 0
        self.backpressure_flushes = 0

    @property
    def buffered_rows(self) -> int:
        return sum(len(buffer) for buffer in self._buffers.values())

    def add(self, table: str, rows: Sequence[object]) -> None:
        """Buffer rows (dataclasses or column tuples) for ``table``; may insert synchronously."""
        converted = [to_row(table, row) for row in rows]
        buffer = self._buffers.setdefault(table, [])
        buffer.extend(converted)
        if self.buffered_rows >= self.max_buffered_rows:
            self.backpressure_flushes += 1
            self.flush()
        elif len(buffer) >= self.batch_rows:
            self._flush_table(table, full_batches_only=True)
        else:
            self.flush_if_due()

    def flush_if_due(self) -> bool:
        """Flush everything when ``flush_seconds`` passed since the last flush; call it on idle ticks."""
        if self._clock() - self._last_flush < self.flush_seconds:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """Insert every buffered row; raises (keeping the rows) when a batch exhausts its retries."""
        for table in list(self._buffers):
            self._flush_table(table)
        self._last_flush = self._clock()

    def close(self) -> None:
        """Flush what is left; the client stays open (its owner closes it)."""
        self.flush()

    def write(self, table: str, rows: Sequence[Row]) -> None:
        """Insert column tuples now, in ``batch_rows`` batches, bypassing the buffer (with retries)."""
        for start in range(0, len(rows), self.batch_rows):
            batch = list(rows[start : start + self.batch_rows])
            self._insert(table, batch)
            self.batches += 1
            self.rows += len(batch)

    def _flush_table(self, table: str, *, full_batches_only: bool = False) -> None:
        buffer = self._buffers.get(table, [])
        while len(buffer) >= (self.batch_rows if full_batches_only else 1):
            batch = buffer[: self.batch_rows]
            self._insert(table, batch)
            del buffer[: len(batch)]
            self.batches += 1
            self.rows += len(batch)

    def _insert(self, table: str, batch: list[Row]) -> None:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                self.client.insert(
                    table,
                    batch,
                    column_names=tables.columns(table),
                    database=self.database,
                    column_type_names=tables.column_types(table),
                )
            except Exception as exc:
                if attempt >= self.max_retries or not _retryable(exc):
                    raise
                if self._on_retry is not None:
                    self._on_retry(table, attempt + 1, exc)
                self._sleep(min(self.backoff_seconds * 2**attempt, self.max_backoff_seconds))
                attempt += 1
                self.retries += 1
                continue
            if self._on_insert is not None:
                self._on_insert(table, len(batch), time.perf_counter() - started)
            return
