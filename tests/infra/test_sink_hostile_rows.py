"""Any batch the flow publishes reaches ClickHouse: inserts spanning many partitions are split, a row
ClickHouse refuses for good is dead-lettered, transient failures are still retried (issue 13, #3)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from stitchboard import tables
from stitchboard.deadletters import INTERNAL_ERROR, DeadLetter
from stitchboard.rows import AgentStateRow, IntervalRow, RestatementRow
from stitchboard.settings import ClickHouseSettings, KafkaSettings
from stitchboard.sinks.clickhouse import REJECTED_REASON, ClickHouseWriter, row_bytes, to_columns
from stitchboard.sinks.clickhouse_sink import ClickHouseSink
from stitchboard.sinks.dead_letter_topic import decode
from stitchboard.testing.broker import Kafka

T0 = datetime(2026, 3, 29, 0, 45, tzinfo=UTC)
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def months(count: int) -> list[datetime]:
    """The first instant of ``count`` consecutive months from January 2016: one partition each."""
    return [datetime(2016 + index // 12, index % 12 + 1, 1, tzinfo=UTC) for index in range(count)]


def rejected_letter(at: datetime, index: int) -> DeadLetter:
    return DeadLetter("unknown_source", "source 'fax'", b'{"source":"fax","n":%d}' % index, at, "acme", "fax")


def restatement(seq: int, published: int = 4) -> RestatementRow:
    return RestatementRow(
        tenant="acme",
        queue="sales",
        channel="voice",
        interval_minutes=15,
        interval_start=T0,
        time_zone="Europe/London",
        metric="hold_ms",
        published=published,
        previous=published,
        corrected=published + 1,
        delta=1,
        reason="late_event",
        restatement_seq=seq,
        watermark=T0,
        restated_at=T0 + timedelta(hours=1),
    )


class CountingClient:
    """Delegates to a real client; records every INSERT's table and row count; the first
    ``failures`` inserts raise a transient error."""

    def __init__(self, client: Client, failures: int = 0) -> None:
        self.client = client
        self.failures = failures
        self.inserts: list[tuple[str, int]] = []

    def insert(self, table: str, data: list[Any], *args: Any, **kwargs: Any) -> Any:
        self.inserts.append((table, len(data)))
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("connection reset by peer")
        return self.client.insert(table, data, *args, **kwargs)


def count(client: Client, database: str, table: str) -> int:
    return int(client.query(f"SELECT count() FROM `{database}`.`{table}` FINAL").result_rows[0][0])


def letters(client: Client, database: str, reason: str) -> list[dict[str, Any]]:
    return list(
        client.query(
            f"SELECT * FROM `{database}`.dead_letters FINAL WHERE reason = {{reason:String}} ORDER BY raw",
            parameters={"reason": reason},
            column_formats={"raw": "bytes"},
        ).named_results()
    )


def test_rows_spanning_more_partitions_than_one_insert_may_touch_are_split(
    chdb_client: Client, fresh_database: str
) -> None:
    """120 months of dead letters and agent states: ClickHouse refuses more than 100 partitions in
    one INSERT block ("Too many partitions for single INSERT block"); the writer never sends them."""
    client = CountingClient(chdb_client)
    writer = ClickHouseWriter(client, fresh_database, max_retries=0, sleep=lambda _: None)  # type: ignore[arg-type]
    instants = months(120)
    writer.add("dead_letters", [rejected_letter(at, index) for index, at in enumerate(instants)])
    writer.add(
        "agent_states",
        [AgentStateRow("acme", "a1", "available", at, f"e{i}") for i, at in enumerate(instants)],
    )
    writer.close()
    assert count(chdb_client, fresh_database, "dead_letters") == 120
    assert count(chdb_client, fresh_database, "agent_states") == 120
    one_insert_per_100_months = [("agent_states", 20), ("agent_states", 100)]
    one_insert_per_100_months += [("dead_letters", 20), ("dead_letters", 100)]
    assert sorted(client.inserts) == one_insert_per_100_months
    assert (writer.retries, writer.rejected, writer.rows) == (0, 0, 240)


def test_the_partition_limit_is_a_setting(chdb_client: Client, fresh_database: str) -> None:
    client = CountingClient(chdb_client)
    writer = ClickHouseWriter(client, fresh_database, max_partitions_per_insert=7)  # type: ignore[arg-type]
    writer.write(
        "agent_states",
        [to_columns("agent_states", AgentStateRow("acme", "a", "s", at, "e")) for at in months(20)],
    )
    assert client.inserts == [("agent_states", 7), ("agent_states", 7), ("agent_states", 6)]
    one_partition = [AgentStateRow("acme", "a", "s", T0 + timedelta(seconds=s), f"e{s}") for s in range(50)]
    writer.add("agent_states", one_partition)
    writer.flush()
    assert client.inserts[3:] == [("agent_states", 50)]  # no split below the limit


def test_a_row_clickhouse_refuses_is_dead_lettered_and_its_batch_still_lands(
    chdb_client: Client, fresh_database: str
) -> None:
    """A restatement of 2^63 ms overflows Int64: that row alone becomes a dead letter holding the
    row's values; the transient failures before it are retried as always."""
    client = CountingClient(chdb_client, failures=2)
    sleeps: list[float] = []
    kept: list[DeadLetter] = []
    writer = ClickHouseWriter(
        client,  # type: ignore[arg-type]
        fresh_database,
        max_retries=3,
        sleep=sleeps.append,
        on_rejected=lambda table, error, letter: kept.append(letter),
        now=lambda: NOW,
    )
    rows = [restatement(seq) for seq in range(1, 9)]
    rows[5] = restatement(6, published=2**63)
    writer.add("interval_restatements", rows)
    writer.close()

    assert len(sleeps) == 2 and writer.retries == 2
    stored = client.client.query(
        f"SELECT restatement_seq FROM `{fresh_database}`.interval_restatements FINAL ORDER BY restatement_seq"
    ).result_rows
    assert [seq for (seq,) in stored] == [1, 2, 3, 4, 5, 7, 8]
    (letter,) = letters(chdb_client, fresh_database, REJECTED_REASON)
    assert (letter["tenant"], letter["origin"], letter["received_at"]) == (
        "acme",
        "clickhouse/interval_restatements",
        NOW,
    )
    assert "interval_restatements" in letter["detail"] and "published" in letter["detail"]
    document = orjson.loads(letter["raw"])
    assert document["table"] == "interval_restatements"
    assert document["row"]["published"] == 2**63
    assert document["row"]["restatement_seq"] == 6
    assert document["row"]["interval_start"] == T0.isoformat()
    assert [(k.reason, k.raw) for k in kept] == [(REJECTED_REASON, letter["raw"])]
    assert writer.rejected == 1


def test_a_dead_letter_clickhouse_refuses_is_kept_with_its_original_bytes(
    chdb_client: Client, fresh_database: str
) -> None:
    """A tenant string that cannot be encoded (a lone surrogate) fails the dead letter's own insert:
    it is re-lettered with a clean tenant, and its original bytes are untouched."""
    raw = b"\x00\xff not even json"
    bad = DeadLetter("invalid_json", "not JSON", raw, T0, "acme\ud800", "genesys", "raw/0/9")
    writer = ClickHouseWriter(chdb_client, fresh_database, now=lambda: NOW)
    writer.add("dead_letters", [bad, rejected_letter(T0, 1)])
    writer.close()
    (letter,) = letters(chdb_client, fresh_database, REJECTED_REASON)
    assert letter["raw"] == raw
    assert letter["tenant"] == "acme\\ud800"
    assert (letter["source"], letter["origin"]) == ("genesys", "raw/0/9")
    assert "invalid_json: not JSON" in letter["detail"]
    assert len(letters(chdb_client, fresh_database, "unknown_source")) == 1


def test_transient_failures_that_outlast_the_retries_still_stop_the_writer_and_keep_the_rows(
    chdb_client: Client, fresh_database: str
) -> None:
    client = CountingClient(chdb_client, failures=10**9)
    writer = ClickHouseWriter(client, fresh_database, max_retries=2, sleep=lambda _: None)  # type: ignore[arg-type]
    writer.add("interval_restatements", [restatement(1), restatement(2, published=2**63)])
    with pytest.raises(OperationalError):
        writer.flush()
    assert (writer.buffered_rows, writer.rejected) == (2, 0)  # nothing dead-lettered, nothing dropped
    client.failures = 0
    writer.flush()
    assert (writer.buffered_rows, writer.rejected) == (0, 1)


class PartitionLimitClient(CountingClient):
    """A server configured with a lower ``max_partitions_per_insert_block`` than the writer's limit."""

    def __init__(self, client: Client, limit: int) -> None:
        super().__init__(client)
        self.limit = limit

    def insert(self, table: str, data: list[Any], *args: Any, **kwargs: Any) -> Any:
        key = tables.partition_key(table)
        if key is not None and len({key(row) for row in data}) > self.limit:
            self.inserts.append((table, len(data)))
            raise DatabaseError(
                f"Code: 252. DB::Exception: Too many partitions for single INSERT block (more than {self.limit})."
            )
        return super().insert(table, data, *args, **kwargs)


def test_a_server_with_a_lower_partition_limit_gets_smaller_inserts(
    chdb_client: Client, fresh_database: str
) -> None:
    client = PartitionLimitClient(chdb_client, limit=30)
    writer = ClickHouseWriter(client, fresh_database, max_retries=5, sleep=lambda _: None)  # type: ignore[arg-type]
    writer.add("dead_letters", [rejected_letter(at, index) for index, at in enumerate(months(100))])
    writer.close()
    assert (count(chdb_client, fresh_database, "dead_letters"), writer.rejected, writer.retries) == (
        100,
        0,
        0,
    )
    assert max(rows for _, rows in client.inserts[1:]) <= 50


def test_a_rejected_row_is_encoded_as_json_whatever_its_values() -> None:
    document = orjson.loads(row_bytes("agent_states", ("acme", b"\xff", "s\ud800", T0, 2**70)))
    assert document == {
        "table": "agent_states",
        "row": {
            "tenant": "acme",
            "agent": {"base64": base64.b64encode(b"\xff").decode()},
            "state": "s\\ud800",
            "at": T0.isoformat(),
            "event_id": str(2**70),
        },
    }


def test_a_refused_row_also_reaches_the_dead_letter_topic(
    kafka: Kafka, chdb_client: Client, fresh_database: str
) -> None:
    topic = kafka.create_topic()
    sink = ClickHouseSink(
        lambda: chdb_client,
        ClickHouseSettings(dsn="chdb://unused", database=fresh_database),
        dead_letter_topic=KafkaSettings(brokers=[kafka.bootstrap], dead_letter_topic=topic),
    )
    part = sink.build_part("clickhouse_out", "clickhouse", None)
    part.write_batch([restatement(1), restatement(2, published=2**63)])
    part.close()
    sink.finish()
    (message,) = kafka.consume(topic, expected=1)
    letter = decode(message.value())
    (stored,) = letters(chdb_client, fresh_database, REJECTED_REASON)
    assert (letter.reason, letter.raw, letter.tenant) == (REJECTED_REASON, stored["raw"], "acme")
    assert count(chdb_client, fresh_database, "interval_restatements") == 1


def test_a_row_the_sink_cannot_convert_is_dead_lettered_and_the_batch_goes_on(
    kafka: Kafka, chdb_client: Client, fresh_database: str
) -> None:
    """Issue #13 deliver 1: an interval row with a metric the table has no column for cannot become
    columns. It is an ``internal_error`` letter (table and topic) holding the row; the rest lands."""
    topic = kafka.create_topic()
    sink = ClickHouseSink(
        lambda: chdb_client,
        ClickHouseSettings(dsn="chdb://unused", database=fresh_database),
        dead_letter_topic=KafkaSettings(brokers=[kafka.bootstrap], dead_letter_topic=topic),
    )
    unconvertible = IntervalRow(
        tenant="acme",
        queue="sales",
        channel="voice",
        interval_minutes=15,
        interval_start=T0,
        interval_end=T0 + timedelta(minutes=15),
        local_start="2026-03-29T00:45:00+00:00",
        local_date=T0.date(),
        time_zone="Europe/London",
        status="final",
        version=1 << 32,
        metrics={"no_such_metric": 1},
    )
    part = sink.build_part("clickhouse_out", "clickhouse", None)
    part.write_batch([restatement(1), unconvertible, restatement(2)])
    part.close()
    sink.finish()
    assert count(chdb_client, fresh_database, "interval_restatements") == 2
    (stored,) = letters(chdb_client, fresh_database, INTERNAL_ERROR)
    assert (
        stored["detail"]
        == "clickhouse_sink: ValueError: interval_metrics: metrics without a column: ['no_such_metric']"
    )
    assert (stored["tenant"], stored["origin"]) == ("acme", "clickhouse/IntervalRow")
    document = orjson.loads(stored["raw"])
    assert (document["type"], document["row"]["metrics"]) == ("IntervalRow", {"no_such_metric": 1})
    (message,) = kafka.consume(topic, expected=1)
    assert decode(message.value()).raw == stored["raw"]
