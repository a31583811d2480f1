import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError, ProgrammingError
from support.rows import conversation_row

from stitchboard.deadletters import DeadLetter
from stitchboard.metrics import METRIC_NAMES
from stitchboard.rows import ConversationRow, IntervalRow, RestatementRow
from stitchboard.sinks.clickhouse import BackgroundWriter, ClickHouseWriter, to_columns

T0 = datetime(2026, 3, 29, 0, 45, tzinfo=UTC)


def conversation(conversation_id: str = "c1", version: int = 1, **changes: Any) -> ConversationRow:
    defaults = {"customer_keys": ("ani:+441234",), "updated_at": T0 + timedelta(seconds=1)}
    return conversation_row(
        conversation_id=conversation_id, version=version, started_at=T0, **(defaults | changes)
    )


def interval(status: str = "provisional", version: int = 1, **metrics: int) -> IntervalRow:
    return IntervalRow(
        tenant="acme",
        queue="sales",
        channel="voice",
        interval_minutes=15,
        interval_start=T0,
        interval_end=T0 + timedelta(minutes=15),
        local_start="2026-03-29T00:45:00+00:00",
        local_date=date(2026, 3, 29),
        time_zone="Europe/London",
        status=status,  # type: ignore[arg-type]
        version=version,
        metrics=metrics,
    )


def restatement(seq: int, corrected: int) -> RestatementRow:
    return RestatementRow(
        tenant="acme",
        queue="sales",
        channel="voice",
        interval_minutes=15,
        interval_start=T0,
        time_zone="Europe/London",
        metric="answered",
        published=4,
        previous=4 if seq == 1 else 5,
        corrected=corrected,
        delta=corrected - (4 if seq == 1 else 5),
        reason="late answer",
        restatement_seq=seq,
        watermark=T0 + timedelta(minutes=30),
        restated_at=datetime(2026, 3, 29, 2, 0, seq, tzinfo=UTC),
    )


def letter(raw: bytes, reason: str = "invalid_json", origin: str = "raw/0/7") -> DeadLetter:
    return DeadLetter(reason, "line 1: expected value", raw, T0, "acme", "genesys", origin)


def select_final(client: Client, database: str, table: str) -> list[tuple[Any, ...]]:
    """Rows read back with arrays as tuples, as the row dataclasses hold them."""
    rows = client.query(
        f"SELECT * FROM `{database}`.`{table}` FINAL ORDER BY ALL", column_formats={"raw": "bytes"}
    ).result_rows
    return [tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in rows]


class FlakyClient:
    """Delegates to a real client; its first ``failures`` inserts raise ``error``."""

    def __init__(self, client: Client, failures: int, error: Exception | None = None) -> None:
        self.client = client
        self.failures = failures
        self.error = error or OperationalError("connection reset")
        self.attempts = 0

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        return self.client.insert(*args, **kwargs)


def test_conversations_keep_the_highest_version(chdb_client: Client, fresh_database: str) -> None:
    ended = conversation(
        version=2,
        status="ended",
        ended_at=T0 + timedelta(minutes=5),
        agents=("a1",),
        answered=True,
        talk_ms=240_000,
        qa_score=88,
    )
    writer = ClickHouseWriter(chdb_client, fresh_database)
    writer.add("conversations", [conversation(), ended, conversation("c2")])
    writer.add("conversations", [ended])
    writer.close()
    rows = select_final(chdb_client, fresh_database, "conversations")
    assert rows == [to_columns("conversations", ended), to_columns("conversations", conversation("c2"))]
    assert (writer.batches, writer.rows) == (1, 4)


def test_interval_rows_round_trip_and_replays_do_not_change_figures(
    chdb_client: Client, fresh_database: str
) -> None:
    final = interval("final", 2, offered=5, answered=4, answer_wait_ms=61_500)
    writer = ClickHouseWriter(chdb_client, fresh_database)
    writer.add("interval_metrics", [interval("provisional", 1, offered=3), final])
    writer.add("interval_published", [final])
    writer.flush()
    before = select_final(chdb_client, fresh_database, "interval_metrics")
    writer.add("interval_metrics", [interval("provisional", 1, offered=3), final])
    writer.add("interval_published", [final, final])
    writer.flush()
    assert select_final(chdb_client, fresh_database, "interval_metrics") == before
    published = select_final(chdb_client, fresh_database, "interval_published")
    assert published == before == [to_columns("interval_metrics", final)]
    figures = dict(zip(METRIC_NAMES, before[0][-len(METRIC_NAMES) :], strict=True))
    assert figures == {name: final.metrics.get(name, 0) for name in METRIC_NAMES}
    assert before[0][4] == T0


def test_restatements_deduplicate_by_interval_metric_and_sequence(
    chdb_client: Client, fresh_database: str
) -> None:
    writer = ClickHouseWriter(chdb_client, fresh_database)
    writer.add("interval_restatements", [restatement(1, 5), restatement(2, 6)])
    writer.add("interval_restatements", [restatement(1, 5)])
    writer.flush()
    rows = select_final(chdb_client, fresh_database, "interval_restatements")
    assert rows == [to_columns("interval_restatements", restatement(s, c)) for s, c in ((1, 5), (2, 6))]


def test_dead_letters_keep_raw_bytes_and_deduplicate(chdb_client: Client, fresh_database: str) -> None:
    raw = b"\x00\xff{not json"
    writer = ClickHouseWriter(chdb_client, fresh_database)
    writer.add("dead_letters", [letter(raw), letter(raw), letter(b"[]", "schema", "raw/0/8")])
    writer.close()
    rows = chdb_client.query(
        f"SELECT reason, raw, received_at FROM `{fresh_database}`.dead_letters FINAL ORDER BY origin",
        column_formats={"raw": "bytes"},
    ).result_rows
    assert rows == [("invalid_json", raw, T0), ("schema", b"[]", T0)]


def test_agent_states_accept_column_tuples(chdb_client: Client, fresh_database: str) -> None:
    state = ("acme", "a1", "available", T0, "e1")
    writer = ClickHouseWriter(chdb_client, fresh_database)
    writer.add("agent_states", [state, state])
    writer.close()
    assert select_final(chdb_client, fresh_database, "agent_states") == [state]


def test_rows_that_do_not_fit_the_table_are_rejected_at_add() -> None:
    with pytest.raises(ValueError, match="no_such_metric"):
        to_columns("interval_metrics", interval(no_such_metric=1))
    with pytest.raises(ValueError, match="expected 5 values"):
        to_columns("agent_states", ("acme", "a1"))
    with pytest.raises(ValueError, match="has no value"):
        to_columns("conversations", interval())


def test_transient_failures_are_retried_with_backoff(chdb_client: Client, fresh_database: str) -> None:
    sleeps: list[float] = []
    flaky = FlakyClient(chdb_client, failures=3)
    writer = ClickHouseWriter(flaky, fresh_database, max_retries=3, backoff_seconds=0.5, sleep=sleeps.append)  # type: ignore[arg-type]
    writer.add("conversations", [conversation("c1"), conversation("c2")])
    writer.flush()
    assert sleeps == [0.5, 1.0, 2.0]
    assert (flaky.attempts, writer.retries, writer.batches, writer.rows) == (4, 3, 1, 2)
    assert len(select_final(chdb_client, fresh_database, "conversations")) == 2


def test_exhausted_retries_raise_and_keep_the_rows(chdb_client: Client, fresh_database: str) -> None:
    flaky = FlakyClient(chdb_client, failures=4)
    writer = ClickHouseWriter(flaky, fresh_database, max_retries=2, sleep=lambda _: None)  # type: ignore[arg-type]
    writer.add("conversations", [conversation("c1"), conversation("c2")])
    with pytest.raises(OperationalError):
        writer.flush()
    assert (writer.buffered_rows, writer.rows) == (2, 0)
    writer.flush()
    assert (writer.buffered_rows, writer.rows, flaky.attempts) == (0, 2, 5)
    assert len(select_final(chdb_client, fresh_database, "conversations")) == 2


def test_programming_errors_are_not_retried(chdb_client: Client, fresh_database: str) -> None:
    sleeps: list[float] = []
    flaky = FlakyClient(chdb_client, failures=1, error=ProgrammingError("bad column"))
    writer = ClickHouseWriter(flaky, fresh_database, sleep=sleeps.append)  # type: ignore[arg-type]
    writer.add("conversations", [conversation()])
    with pytest.raises(ProgrammingError):
        writer.flush()
    assert (sleeps, writer.buffered_rows) == ([], 1)


def test_full_tables_insert_in_batches(chdb_client: Client, fresh_database: str) -> None:
    writer = ClickHouseWriter(chdb_client, fresh_database, batch_rows=2, flush_seconds=3600)
    writer.add("conversations", [conversation(f"c{i}") for i in range(5)])
    assert (writer.batches, writer.rows, writer.buffered_rows) == (2, 4, 1)
    writer.close()
    assert (writer.batches, writer.rows, writer.buffered_rows) == (3, 5, 0)
    assert len(select_final(chdb_client, fresh_database, "conversations")) == 5


def test_back_pressure_flushes_every_table_when_the_buffer_is_full(
    chdb_client: Client, fresh_database: str
) -> None:
    writer = ClickHouseWriter(
        chdb_client, fresh_database, batch_rows=100, flush_seconds=3600, max_buffered_rows=5
    )
    writer.add("conversations", [conversation("c1"), conversation("c2"), conversation("c3")])
    writer.add("dead_letters", [letter(b"x", origin="o1")])
    assert (writer.buffered_rows, writer.backpressure_flushes) == (4, 0)
    writer.add("dead_letters", [letter(b"y", origin="o2")])
    assert (writer.buffered_rows, writer.backpressure_flushes, writer.rows) == (0, 1, 5)
    assert len(select_final(chdb_client, fresh_database, "dead_letters")) == 2


def test_flush_when_due(chdb_client: Client, fresh_database: str) -> None:
    now = [0.0]
    writer = ClickHouseWriter(chdb_client, fresh_database, flush_seconds=1.0, clock=lambda: now[0])
    writer.add("conversations", [conversation()])
    assert (writer.flush_if_due(), writer.buffered_rows) == (False, 1)
    now[0] = 1.5
    assert (writer.flush_if_due(), writer.buffered_rows) == (True, 0)


class RecordingClient(FlakyClient):
    """A ``FlakyClient`` that also records the table of every insert attempt, in order."""

    def __init__(self, client: Client, failures: int = 0) -> None:
        super().__init__(client, failures)
        self.tables: list[str] = []

    def insert(self, table: str, *args: Any, **kwargs: Any) -> Any:
        self.tables.append(table)
        return super().insert(table, *args, **kwargs)


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_background_writer_inserts_on_time_while_the_caller_goes_on(
    chdb_client: Client, fresh_database: str
) -> None:
    client = RecordingClient(chdb_client)
    writer = BackgroundWriter(ClickHouseWriter(client, fresh_database, flush_seconds=0.5))  # type: ignore[arg-type]
    writer.add("conversations", [conversation("c1"), conversation("c2")])
    assert (client.tables, writer.pending_rows) == ([], 2)  # add only buffers
    assert eventually(lambda: writer.pending_rows == 0)  # no further call needed: the timer fires
    assert client.tables == ["conversations"]
    assert len(select_final(chdb_client, fresh_database, "conversations")) == 2
    writer.close()


def test_urgent_rows_are_inserted_at_once_other_tables_on_their_own_time(
    chdb_client: Client, fresh_database: str
) -> None:
    client = RecordingClient(chdb_client)
    writer = BackgroundWriter(
        ClickHouseWriter(client, fresh_database, flush_seconds=3600),  # type: ignore[arg-type]
        urgent=("interval_metrics",),
    )
    writer.add("conversations", [conversation()])
    writer.add("interval_metrics", [interval(offered=3)])
    assert eventually(lambda: writer.pending_rows == 1)
    time.sleep(0.1)
    assert (client.tables, writer.pending_rows) == (["interval_metrics"], 1)  # conversations: an hour to go
    writer.close()  # the end of input flushes every table
    assert client.tables == ["interval_metrics", "conversations"]
    assert len(select_final(chdb_client, fresh_database, "conversations")) == 1


def test_a_full_batch_is_inserted_without_waiting(chdb_client: Client, fresh_database: str) -> None:
    client = RecordingClient(chdb_client)
    writer = BackgroundWriter(ClickHouseWriter(client, fresh_database, batch_rows=2, flush_seconds=3600))  # type: ignore[arg-type]
    writer.add("conversations", [conversation(f"c{i}") for i in range(3)])
    assert eventually(lambda: writer.pending_rows == 0)
    assert (client.tables, writer.writer.batches) == (["conversations", "conversations"], 2)
    writer.close()


def test_back_pressure_waits_for_the_writer(chdb_client: Client, fresh_database: str) -> None:
    writer = BackgroundWriter(
        ClickHouseWriter(chdb_client, fresh_database, flush_seconds=3600, max_buffered_rows=2)
    )
    writer.add("conversations", [conversation("c1"), conversation("c2")])
    writer.add("conversations", [conversation("c3")])  # 2 buffered: waits until they are written
    assert (writer.writer.backpressure_flushes, writer.writer.rows) == (1, 2)
    writer.close()
    assert len(select_final(chdb_client, fresh_database, "conversations")) == 3


def test_background_failure_keeps_the_rows_and_raises_in_the_caller(
    chdb_client: Client, fresh_database: str
) -> None:
    client = RecordingClient(chdb_client, failures=10**9)
    writer = BackgroundWriter(
        ClickHouseWriter(client, fresh_database, flush_seconds=0.01, max_retries=1, sleep=lambda _: None),  # type: ignore[arg-type]
        urgent=("interval_metrics",),
    )
    writer.add("interval_metrics", [interval(offered=1)])
    assert eventually(lambda: writer.error is not None)
    assert (len(client.tables), writer.pending_rows) == (2, 1)  # tried twice, nothing dropped
    with pytest.raises(RuntimeError, match="ClickHouse"):
        writer.add("conversations", [conversation()])
    with pytest.raises(RuntimeError, match="ClickHouse"):
        writer.close()
    assert select_final(chdb_client, fresh_database, "interval_metrics") == []
