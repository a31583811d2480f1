"""Batched, retrying ClickHouse writer for the rows the flow publishes (chDB or a ClickHouse server).

Writes are at-least-once: a retried or replayed batch may land twice, which the
ReplacingMergeTree tables absorb. Rows are never dropped:

- an INSERT touches at most ``max_partitions_per_insert`` partitions (ClickHouse refuses more, and
  rows of many months, e.g. dead letters of a replayed archive, would otherwise never be written);
- a failure that says nothing about the rows (network, server busy) is retried with backoff; a
  batch that still fails after the last retry stays buffered and the error propagates, so the flow
  stops and recovery replays;
- a failure caused by the rows themselves (a value the column cannot hold) is narrowed down by
  halving the batch: every other row is written, and each row ClickHouse refuses on its own becomes
  a dead letter (``REJECTED_REASON``) holding the row, instead of stopping the flow on every replay.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import importlib.util
import re
import struct
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, DataError, ProgrammingError

from stitchboard import tables, tenant_access
from stitchboard.deadletters import DeadLetter, internal_error

Row = tuple[Any, ...]

REJECTED_REASON = "sink_rejected"
"""Dead-letter reason of a row ClickHouse refused on its own (see ``ClickHouseWriter``)."""

SINK_STEP = "clickhouse_sink"
"""Names the step in the dead letter of a row the sink could not convert (``unconvertible_letter``)."""

MAX_PARTITIONS_PER_INSERT = 100
"""ClickHouse's default ``max_partitions_per_insert_block``."""


def connect(dsn: str) -> Client:
    """A client for ``chdb:///path`` (in-process engine) or ``http(s)://user:pass@host:port``.

    ``tz_mode='aware'`` makes DateTime64('UTC') values come back as UTC-aware datetimes.
    """
    if dsn.startswith("chdb:") and importlib.util.find_spec("chdb") is None:
        raise RuntimeError(
            "a chdb:// DSN needs the embedded engine, which this installation leaves out: install "
            "stitchboard[embedded], or set clickhouse.dsn (STITCHBOARD_CLICKHOUSE__DSN) to http(s)://..."
        )
    return clickhouse_connect.get_client(dsn=dsn, tz_mode="aware")


class AccessManagementRefused(RuntimeError):
    """The server refused a tenant-access statement: the user may not manage access, or the engine
    (chDB) keeps no writable access storage. The message names the statement by its kind, never
    by its text (a CREATE USER carries a password hash)."""


# ACCESS_DENIED, UNKNOWN_ROLE, ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND, ACCESS_STORAGE_READONLY,
# SUPPORT_IS_DISABLED: what a server says when this user or this engine cannot manage access.
_ACCESS_REFUSALS = frozenset({497, 511, 514, 495, 344})


def init_db(
    client: Client,
    database: str = tables.DEFAULT_DATABASE,
    tenant_readers: Sequence[tenant_access.TenantReader] = (),
) -> None:
    """Create the database and tables, add what older tables lack, then give each tenant reader
    its role, row policies, grants and user (``stitchboard.tenant_access``). Every statement is
    idempotent: re-running changes nothing, a new tenant or table adds only its own entities."""
    for statement in tables.ddl(database) + tables.migrations(database):
        client.command(statement)
    for statement in tenant_access.statements(database, tenant_readers):
        try:
            client.command(statement)
        except DatabaseError as exc:
            code = _CODE.search(str(exc))
            if code is None or int(code.group(1)) not in _ACCESS_REFUSALS:
                raise
            raise AccessManagementRefused(f"ClickHouse refused {_statement_kind(statement)}: {exc}") from exc


def _statement_kind(statement: str) -> str:
    """``CREATE ROW POLICY`` of ``CREATE ROW POLICY IF NOT EXISTS `name` ...``: no name, no hash."""
    words = []
    for word in statement.split(" "):
        if word.startswith(("`", "'")) or word == "IF":
            break
        words.append(word)
    return " ".join(words)


def to_columns(table: str, row: object) -> Row:
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


Failure = Literal["transient", "rows", "fatal"]

# Server errors caused by the inserted values, the same on every retry (names from ClickHouse's
# ``errorCodeToName``): CANNOT_PARSE_TEXT, CANNOT_PARSE_INPUT_ASSERTION_FAILED, CANNOT_PARSE_DATE,
# CANNOT_PARSE_DATETIME, TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, INCORRECT_DATA,
# TOO_LARGE_STRING_SIZE, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, CANNOT_PARSE_UUID, DECIMAL_OVERFLOW.
_ROW_ERROR_CODES = frozenset({6, 27, 38, 41, 53, 69, 70, 117, 131, 321, 376, 407})
# Code 252 (TOO_MANY_PARTS) is also "too many parts, merges are slower than inserts": transient.
_TOO_MANY_PARTITIONS = "Too many partitions for single INSERT block"
_CODE = re.compile(r"Code: (\d+)\.")


def classify(exc: BaseException) -> Failure:
    """What an insert failure says about the batch.

    ``transient``: the server or the transport failed (retry the same batch). ``rows``: the values
    caused it, so smaller batches isolate the rows at fault: client-side serialisation errors
    (``DataError``, or the ``ValueError``/``TypeError``/``struct.error`` family the driver lets
    through), server-side data errors, and too many partitions for one block. ``fatal``: a
    programming error (unknown column, wrong statement) that no retry or split can fix.
    """
    if isinstance(exc, ProgrammingError):
        return "fatal"
    if isinstance(exc, DataError | ValueError | TypeError | AttributeError | OverflowError | struct.error):
        return "rows"
    if isinstance(exc, DatabaseError):
        message = str(exc)
        code = _CODE.search(message)
        if _TOO_MANY_PARTITIONS in message or (code is not None and int(code.group(1)) in _ROW_ERROR_CODES):
            return "rows"
    if isinstance(exc, ClickHouseError | OSError):
        return "transient"
    return "fatal"


def _plain(value: Any) -> Any:
    """``value`` as JSON orjson can always write: text with lone surrogates escaped, integers beyond
    64 bits and unknown types as text, bytes as ``{"base64": ...}``."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(_plain(key)): _plain(item) for key, item in value.items()}
    return repr(value)


def row_bytes(table: str, row: Row) -> bytes:
    """A refused row as the bytes of its dead letter: ``{"table": ..., "row": {column: value}}``."""
    names = tables.columns(table)
    values = dict(zip(names, row, strict=False)) if len(row) == len(names) else {"values": row}
    return orjson.dumps({"table": table, "row": {name: _plain(value) for name, value in values.items()}})


def _text(value: Any, limit: int = 2000) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def rejected_letter(table: str, row: Row, error: BaseException, received_at: datetime) -> DeadLetter:
    """The dead letter of a row ClickHouse refused on its own.

    A dead letter keeps its original bytes, tenant, source and origin (only text that cannot be
    encoded is escaped) and says what it was; any other row keeps its values as JSON, its tenant,
    and ``clickhouse/<table>`` as origin.
    """
    problem = f"{table}: {type(error).__name__}: {_text(error, 1000)}"
    named = dict(zip(tables.columns(table), row, strict=False))
    if table == "dead_letters":
        raw = named.get("raw")
        return DeadLetter(
            REJECTED_REASON,
            f"{problem}; the letter was {_text(named.get('reason'))}: {_text(named.get('detail'))}",
            bytes(raw) if isinstance(raw, bytes | bytearray) else row_bytes(table, row),
            received_at,
            _text(named.get("tenant")),
            _text(named.get("source")),
            _text(named.get("origin")),
            _text(named.get("part")),
        )
    return DeadLetter(
        REJECTED_REASON,
        problem,
        row_bytes(table, row),
        received_at,
        _text(named.get("tenant")),
        "",
        f"clickhouse/{table}",
    )


def unconvertible_letter(row: object, error: BaseException, received_at: datetime) -> DeadLetter:
    """The ``internal_error`` letter of a row the sink could not turn into columns.

    A dead letter keeps its own bytes, tenant, source and origin; any other row becomes its fields
    as JSON (``{"type": ..., "row": {field: value}}``, as for a refused row) with its tenant and
    ``clickhouse/<type>`` as origin.
    """
    if isinstance(row, DeadLetter):
        return internal_error(
            error,
            SINK_STEP,
            row.raw,
            received_at,
            tenant=row.tenant,
            source=row.source,
            origin=row.origin,
            part=f"{row.reason} {row.part}".rstrip(),
        )
    fields = (
        {field.name: _plain(getattr(row, field.name)) for field in dataclasses.fields(row)}
        if dataclasses.is_dataclass(row)
        else {"repr": _text(repr(row))}
    )
    kind = type(row).__name__
    raw = orjson.dumps({"type": kind, "row": fields})
    tenant = _text(getattr(row, "tenant", ""))
    return internal_error(error, SINK_STEP, raw, received_at, tenant=tenant, origin=f"clickhouse/{kind}")


def partition_blocks(table: str, rows: list[Row], max_partitions: int) -> list[list[Row]]:
    """``rows`` in blocks of at most ``max_partitions`` partitions each (ClickHouse's limit per
    INSERT block), partitions in ascending order, rows of a partition in their order; one block
    when the rows span few enough partitions (the common case: no copy, no reorder)."""
    key = tables.partition_key(table)
    if key is None or len(rows) <= max_partitions:
        return [rows]
    by_partition: dict[Hashable, list[Row]] = {}
    for row in rows:
        by_partition.setdefault(key(row), []).append(row)
    if len(by_partition) <= max_partitions:
        return [rows]
    ordered = sorted(by_partition.items(), key=lambda item: (str(type(item[0])), item[0]))
    return [
        [row for _, partition in ordered[start : start + max_partitions] for row in partition]
        for start in range(0, len(ordered), max_partitions)
    ]


class ClickHouseWriter:
    """Buffers rows per table and inserts them in batches.

    ``add`` inserts when a table holds ``batch_rows`` rows, when ``flush_seconds`` passed since the
    last flush, or (back-pressure) when all tables together buffer ``max_buffered_rows``. A batch
    is sent in INSERTs of at most ``max_partitions_per_insert`` partitions; rows ClickHouse refuses
    go to ``dead_letters`` (and to ``on_rejected``, e.g. the dead-letter topic) as the module says.
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
        on_rejected: Callable[[str, BaseException, DeadLetter], None] | None = None,
        max_partitions_per_insert: int = MAX_PARTITIONS_PER_INSERT,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
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
        self._on_rejected = on_rejected  # (table, error, dead letter) once a refused row's letter is stored
        self.max_partitions_per_insert = max_partitions_per_insert
        self._now = now  # received_at of the dead letter of a refused row
        self._buffers: dict[str, list[Row]] = {}
        self._last_flush = clock()
        self.batches = 0
        self.rows = 0
        self.retries = 0
        self.backpressure_flushes = 0
        self.rejected = 0

    @property
    def buffered_rows(self) -> int:
        return sum(len(buffer) for buffer in self._buffers.values())

    def add(self, table: str, rows: Sequence[object]) -> None:
        """Buffer rows (dataclasses or column tuples) for ``table``; may insert synchronously."""
        converted = [to_columns(table, row) for row in rows]
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
        """Insert ``batch`` in blocks ClickHouse accepts; see the module docstring."""
        for block in partition_blocks(table, batch, self.max_partitions_per_insert):
            self._insert_isolating(table, block)

    def _insert_isolating(self, table: str, rows: list[Row], *, rejectable: bool = True) -> None:
        """Insert ``rows``; when the rows are at fault, halve until each refused row stands alone,
        then dead-letter it (``rejectable``) or raise (a rejected row's own letter was refused)."""
        try:
            self._insert_retrying(table, rows)
        except Exception as exc:
            if classify(exc) != "rows":
                raise
            if len(rows) > 1:
                middle = len(rows) // 2
                self._insert_isolating(table, rows[:middle], rejectable=rejectable)
                self._insert_isolating(table, rows[middle:], rejectable=rejectable)
                return
            if not rejectable:
                raise
            letter = rejected_letter(table, rows[0], exc, self._now())
            self._insert_isolating("dead_letters", [to_columns("dead_letters", letter)], rejectable=False)
            self.rejected += 1
            if self._on_rejected is not None:
                self._on_rejected(table, exc, letter)

    def _insert_retrying(self, table: str, batch: list[Row]) -> None:
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
                if attempt >= self.max_retries or classify(exc) != "transient":
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


class BackgroundWriter:
    """A ``ClickHouseWriter`` on a thread of its own: ``add`` buffers and returns, the thread inserts.

    Each table is inserted when it holds ``batch_rows`` rows or its oldest buffered row has waited
    ``flush_seconds`` (size or time, whichever comes first); ``urgent`` tables are inserted as soon
    as they have rows, and first. The caller never waits for an insert: the ClickHouse work (of
    the order of 10-30 ms per INSERT in chDB, network round trips for a server) overlaps the
    flow's Python work (chDB and the HTTP client release the GIL), and while the thread inserts,
    new rows gather into the next batch, so batches grow with the load.

    ``urgent`` is for the tables readers wait for whose rows are already rate-limited upstream:
    interval rows come in one batch per ``provisional_every_seconds``, so they are inserted about
    that often; every other table at most once per ``flush_seconds``. Back-pressure: ``add``
    blocks while ``max_buffered_rows`` rows wait. A batch that fails after the writer's retries
    stays buffered, the thread stops, and the next ``add``, ``flush`` or ``close`` raises, so the
    flow stops rather than dropping rows.
    """

    def __init__(
        self,
        writer: ClickHouseWriter,
        *,
        urgent: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = writer
        self._urgent = tuple(urgent)
        self._clock = clock
        self._cond = threading.Condition()
        self._buffers: dict[str, list[Row]] = {}
        self._since: dict[str, float] = {}  # table → when its oldest buffered row was added
        self._buffered = 0
        self._in_flight = 0  # rows taken by the thread and not yet inserted
        self._flush_requested = False
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="clickhouse-writer", daemon=True)
        self._thread.start()

    @property
    def writer(self) -> ClickHouseWriter:
        return self._writer

    @property
    def pending_rows(self) -> int:
        """Rows added and not yet inserted (buffered or being inserted)."""
        with self._cond:
            return self._buffered + self._in_flight

    @property
    def error(self) -> BaseException | None:
        return self._error

    def add(self, table: str, rows: Sequence[object]) -> None:
        """Buffer rows (dataclasses or column tuples) for ``table``; blocks only for back-pressure."""
        converted = [to_columns(table, row) for row in rows]
        if not converted:
            return
        with self._cond:
            self._raise_pending()
            if self._buffered >= self._writer.max_buffered_rows:
                self._writer.backpressure_flushes += 1
                while self._buffered >= self._writer.max_buffered_rows and self._error is None:
                    self._flush_requested = True
                    self._cond.notify_all()
                    self._cond.wait()
                self._raise_pending()
            buffer = self._buffers.setdefault(table, [])
            buffer.extend(converted)
            self._buffered += len(converted)
            if table not in self._since:
                self._since[table] = self._clock()
                self._cond.notify_all()  # a new deadline (or an urgent table)
            elif len(buffer) >= self._writer.batch_rows:
                self._cond.notify_all()

    def flush(self) -> None:
        """Insert everything added so far now, and wait until it is in ClickHouse (or raise)."""
        with self._cond:
            if self._buffered:
                self._flush_requested = True
                self._cond.notify_all()
            while (self._buffered or self._in_flight) and self._error is None:
                self._cond.wait()
            self._raise_pending()

    def close(self) -> None:
        """Insert what is left and stop the thread; raises if rows could not be written."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            if self._thread is not threading.current_thread():
                self._thread.join()

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise RuntimeError("writing rows to ClickHouse failed") from self._error

    def _due(self) -> tuple[list[str], float | None]:
        """(tables to insert now, seconds until the next one is due or None). Holds the lock."""
        if self._flush_requested or self._closing:
            return [table for table, rows in self._buffers.items() if rows], None
        now = self._clock()
        due: list[str] = []
        wait: float | None = None
        for table, since in self._since.items():
            left = 0.0 if table in self._urgent else since + self._writer.flush_seconds - now
            if left <= 0 or len(self._buffers[table]) >= self._writer.batch_rows:
                due.append(table)
            elif wait is None or left < wait:
                wait = left
        return due, wait

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    due, wait = self._due()
                    if due:
                        break
                    if self._closing:
                        return
                    self._cond.wait(wait)
                urgent = [table for table in self._urgent if table in due]
                taken = {
                    table: self._buffers.pop(table)
                    for table in [*urgent, *(t for t in due if t not in urgent)]
                }
                for table in taken:
                    self._since.pop(table, None)
                rows = sum(len(batch) for batch in taken.values())
                self._in_flight += rows
                self._buffered -= rows
                if not self._buffered:
                    self._flush_requested = False
            try:
                self._insert(taken)
            except BaseException as exc:  # kept buffered, raised in the caller's thread
                with self._cond:
                    for table, left in taken.items():
                        if left:
                            self._buffers[table] = left + self._buffers.get(table, [])
                            self._since.setdefault(table, self._clock())
                            self._buffered += len(left)
                            self._in_flight -= len(left)
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._cond.notify_all()

    def _insert(self, taken: dict[str, list[Row]]) -> None:
        """Insert ``taken`` table by table in ``batch_rows`` batches, removing what is written."""
        for table, rows in taken.items():
            while rows:
                batch = rows[: self._writer.batch_rows]
                self._writer.write(table, batch)
                del rows[: len(batch)]
                with self._cond:
                    self._in_flight -= len(batch)
