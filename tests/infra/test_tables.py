import dataclasses
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from stitchboard import tables
from stitchboard.deadletters import DeadLetter
from stitchboard.metrics import CATALOGUE
from stitchboard.rows import ConversationRow, IntervalRow, RestatementRow
from stitchboard.sinks.clickhouse import init_db

REPO = Path(__file__).resolve().parents[2]
METRICS = [metric.name for metric in CATALOGUE]


def _field_names(row_type: type) -> list[str]:
    return [field.name for field in dataclasses.fields(row_type)]


def test_ddl_applies_twice_and_matches_columns(chdb_client: Client, fresh_database: str) -> None:
    init_db(chdb_client, fresh_database)
    init_db(chdb_client, fresh_database)
    created = chdb_client.query(
        "SELECT table, groupArray(name) FROM (SELECT table, name FROM system.columns"
        " WHERE database = {db:String} ORDER BY table, position) GROUP BY table ORDER BY table",
        parameters={"db": fresh_database},
    ).result_rows
    assert dict(created) == {t.name: tables.columns(t.name) for t in tables.tables()}


def test_schema_file_is_in_sync() -> None:
    assert (REPO / "schemas" / "clickhouse.sql").read_text(encoding="utf-8") == tables.script()


def test_module_main_prints_the_script() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "stitchboard.tables"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert printed == tables.script()


def test_columns_mirror_row_types_and_catalogue() -> None:
    assert tables.columns("conversations") == _field_names(ConversationRow)
    interval_fields = [name for name in _field_names(IntervalRow) if name != "metrics"]
    assert tables.columns("interval_metrics") == interval_fields + METRICS
    assert tables.columns("interval_published") == interval_fields + METRICS
    assert tables.columns("interval_restatements") == _field_names(RestatementRow)
    assert sorted(tables.columns("dead_letters")) == sorted(_field_names(DeadLetter))


def test_every_table_is_keyed_by_tenant_first() -> None:
    assert {t.name: t.order_by[0] for t in tables.tables()} == {t.name: "tenant" for t in tables.tables()}


def test_migration_adds_a_metric_column_missing_from_an_older_table(
    chdb_client: Client, fresh_database: str
) -> None:
    newest = METRICS[-1]
    chdb_client.command(f"ALTER TABLE `{fresh_database}`.interval_metrics DROP COLUMN `{newest}`")
    assert newest not in _table_columns(chdb_client, fresh_database, "interval_metrics")
    init_db(chdb_client, fresh_database)
    assert _table_columns(chdb_client, fresh_database, "interval_metrics")[-1] == newest


_LETTER_COLUMNS = "reason, detail, raw, tenant, source, origin, part, received_at"
_BEFORE_PART = """CREATE TABLE `{db}`.dead_letters (
    reason LowCardinality(String), detail String, raw String, tenant LowCardinality(String),
    source LowCardinality(String), origin String, received_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(received_at)
ORDER BY (tenant, reason, origin, cityHash64(raw))"""


def _letters(client: Client, database: str, parts: list[str]) -> int:
    """Insert one letter per part (same tenant, reason, origin and bytes); the rows FINAL keeps."""
    at = datetime(2026, 3, 29, tzinfo=UTC)
    rows = [("event_conflict", "d", b"{}", "acme", "webhook", "raw/0/7", part, at) for part in parts]
    client.insert("dead_letters", rows, column_names=_LETTER_COLUMNS.split(", "), database=database)
    return int(client.query(f"SELECT count() FROM `{database}`.dead_letters FINAL").result_rows[0][0])


def test_distinct_letters_of_one_record_never_merge(chdb_client: Client, fresh_database: str) -> None:
    """Issue #13 seen #7: two conflicting events of one record are two rows; a replay is one."""
    assert (
        _letters(chdb_client, fresh_database, ["conversation c event 0 e0", "conversation c event 1 e1"]) == 2
    )
    assert _letters(chdb_client, fresh_database, ["conversation c event 0 e0"]) == 2


def test_migration_extends_the_dead_letter_key_of_an_older_table(chdb_client: Client) -> None:
    database = "migrate_dead_letters"
    chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")
    chdb_client.command(f"CREATE DATABASE `{database}`")
    try:
        chdb_client.command(_BEFORE_PART.format(db=database))
        init_db(chdb_client, database)
        init_db(chdb_client, database)  # idempotent
        key = chdb_client.query(
            "SELECT sorting_key FROM system.tables WHERE database = {db:String} AND name = 'dead_letters'",
            parameters={"db": database},
        ).result_rows
        assert key == [("tenant, reason, origin, cityHash64(raw), part",)]
        assert _letters(chdb_client, database, ["a", "b"]) == 2
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")


def _table_columns(client: Client, database: str, table: str) -> list[str]:
    return list(
        client.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}"
            " ORDER BY position",
            parameters={"db": database, "t": table},
        ).result_columns[0]
    )


def test_partition_keys_come_from_the_ddl_and_agree_with_clickhouse(
    chdb_client: Client, fresh_database: str
) -> None:
    """The sink splits inserts by partition: its key for a row is the table's PARTITION BY
    expression evaluated in Python, checked here against ClickHouse evaluating the same expression."""
    init_db(chdb_client, fresh_database)
    instants = [
        datetime(1999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(2026, 3, 1, 3, 30, tzinfo=timezone(timedelta(hours=5))),  # 28 Feb in UTC
        datetime(2026, 3, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))),  # 1 April in UTC
    ]
    rows = {  # table → (rows in the order of their last column, that column)
        "agent_states": ([("acme", "a1", "away", at, f"e{i}") for i, at in enumerate(instants)], "event_id"),
        "dead_letters": (
            [("r", "d", b"x", "acme", "s", f"o{i}", "", at) for i, at in enumerate(instants)],
            "origin",
        ),
    }
    for table, (values, order) in rows.items():
        chdb_client.insert(
            table,
            values,
            column_names=tables.columns(table),
            database=fresh_database,
            column_type_names=tables.column_types(table),
        )
        computed = chdb_client.query(
            f"SELECT {tables.table(table).partition_by} FROM `{fresh_database}`.`{table}` ORDER BY {order}"
        ).result_rows
        key = tables.partition_key(table)
        assert key is not None
        assert (
            [key(row) for row in values]
            == [value for (value,) in computed]
            == [199912, 200001, 202602, 202604]
        )
    for definition in tables.tables():
        key = tables.partition_key(definition.name)
        assert (key is None) == (definition.partition_by == "tuple()"), definition.name


def test_a_partition_expression_the_sink_cannot_evaluate_is_refused() -> None:
    unknown = dataclasses.replace(tables.table("agent_states"), partition_by="toStartOfWeek(at)")
    with pytest.raises(ValueError, match="toStartOfWeek"):
        tables.partition_function(unknown)


def test_rows_staged_before_columns_were_added_are_brought_to_the_current_columns() -> None:
    """A recovery snapshot written by the previous release stages dead letters without ``part``
    (and conversations without ``path``): resuming from it writes them with those columns empty."""
    at = datetime(2026, 3, 29, tzinfo=UTC)
    staged = ("event_conflict", "d", b"{}", "acme", "webhook", "raw/0/7", at)
    assert tables.current_row("dead_letters", staged) == (*staged[:6], "", at)
    current = (*staged[:6], "conversation c event 0 e0", at)
    assert tables.current_row("dead_letters", current) == current
    with pytest.raises(ValueError, match="fit neither"):
        tables.current_row("dead_letters", staged[:5])
    conversation = tables.columns("conversations")
    older = tuple(range(len(conversation) - 1))
    assert tables.current_row("conversations", older)[conversation.index("path")] == ()
