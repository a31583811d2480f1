"""ClickHouse DDL: the one place tables are defined (interval metric columns come from the catalogue),
and which table each published row goes to.

Every table is a ReplacingMergeTree keyed with ``tenant`` first, so at-least-once writes (replays
after a crash) de-duplicate and per-tenant reads touch one primary-key range. Read with ``FINAL``.
Regenerate ``schemas/clickhouse.sql`` with ``python -m stitchboard.tables > schemas/clickhouse.sql``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from stitchboard.deadletters import DeadLetter
from stitchboard.metrics import CATALOGUE
from stitchboard.rows import (
    AgentStateRow,
    ConversationPathRow,
    ConversationRow,
    CustomerLinkRow,
    EngagementRestatementRow,
    EngagementRow,
    IntervalRow,
    PublishedRow,
    RestatementRow,
)

DEFAULT_DATABASE = "stitchboard"

TIME = "DateTime64(3, 'UTC')"
LOW = "LowCardinality(String)"
METRIC_TYPE = "Int64"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    comment: str = ""
    default: str = ""

    def sql(self) -> str:
        default = f" DEFAULT {self.default}" if self.default else ""
        comment = f" COMMENT {quote(self.comment)}" if self.comment else ""
        return f"`{self.name}` {self.type}{default}{comment}"


@dataclass(frozen=True, slots=True)
class Projection:
    """A projection kept by ClickHouse in every part, e.g. a per-tenant aggregate for alert queries."""

    name: str
    query: str  # ``SELECT ... [GROUP BY ...]`` over the table's columns, without FROM

    def sql(self) -> str:
        """``name (query)``: after ``PROJECTION`` in CREATE TABLE, after ``ADD PROJECTION`` in ALTER TABLE."""
        return f"`{self.name}` ({self.query})"


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    comment: str
    columns: tuple[Column, ...]
    engine: str
    order_by: tuple[str, ...]
    partition_by: str
    projections: tuple[Projection, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()  # (MergeTree setting, SQL value)

    def create(self, database: str) -> str:
        body = ",\n".join(
            [f"    {column.sql()}" for column in self.columns]
            + [f"    PROJECTION {projection.sql()}" for projection in self.projections]
        )
        settings = f"SETTINGS {', '.join(f'{name} = {value}' for name, value in self.settings)}\n"
        return (
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{self.name}`\n(\n{body}\n)\n"
            f"ENGINE = {self.engine}\n"
            f"PARTITION BY {self.partition_by}\n"
            f"ORDER BY ({', '.join(self.order_by)})\n"
            + (settings if self.settings else "")
            + f"COMMENT {quote(self.comment)}"
        )


def quote(text: str) -> str:
    """A ClickHouse single-quoted string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def metric_columns() -> tuple[Column, ...]:
    """One Int64 column per catalogue metric, in catalogue order (0 when the metric has no figure)."""
    return tuple(
        Column(metric.name, METRIC_TYPE, f"{metric.description} [{metric.unit}]", default="0")
        for metric in CATALOGUE
    )


_INTERVAL_KEY = ("tenant", "interval_minutes", "interval_start", "queue", "channel")

_INTERVAL_COLUMNS = (
    Column("tenant", LOW),
    Column("queue", LOW, "queue; '' for conversation-scope figures of contacts that never queued"),
    Column("channel", LOW),
    Column("interval_minutes", "UInt16", "15, 30, 60 or 1440 (the tenant's local calendar day)"),
    Column("interval_start", TIME, "UTC instant the interval starts"),
    Column("interval_end", TIME, "UTC instant the interval ends (23/25 h for a daily interval on a DST day)"),
    Column("local_start", "String", "ISO wall time with offset in the tenant's zone"),
    Column("local_date", "Date", "the tenant's local calendar date of interval_start"),
    Column("time_zone", LOW, "IANA zone the interval was cut in"),
    Column("status", LOW, "provisional | final | restated"),
    Column("version", "UInt64", "strictly increasing per interval; replays reproduce it"),
)


@cache
def tables() -> tuple[Table, ...]:
    """Every table, built from the metric catalogue."""
    metrics = metric_columns()
    return (
        Table(
            name="conversations",
            comment="Current state of each stitched conversation; highest version wins",
            columns=(
                Column("tenant", LOW),
                Column("conversation_id", "String"),
                Column("version", "UInt64"),
                Column("status", LOW, "open | ended"),
                Column("channel", LOW),
                Column("direction", LOW),
                Column("started_at", TIME),
                Column("ended_at", f"Nullable({TIME})"),
                Column("first_queue", LOW),
                Column("last_queue", LOW),
                Column("queues", f"Array({LOW})"),
                Column("agents", "Array(String)"),
                Column("legs", "UInt32"),
                Column("transfers", "UInt32"),
                Column("answered", "Bool"),
                Column("abandoned", "Bool"),
                Column("ivr_outcome", LOW),
                Column("wait_ms", "Int64"),
                Column("talk_ms", "Int64"),
                Column("hold_ms", "Int64"),
                Column("acw_ms", "Int64"),
                Column("handle_ms", "Int64"),
                Column("wrapup_code", LOW),
                Column("qa_score", "Nullable(Int32)"),
                Column("reopened", "UInt32"),
                Column("intent", LOW),
                Column("customer_keys", "Array(String)"),
                Column("updated_at", TIME),
                Column("path", "Array(String)", "ordered steps (see stitchboard.conversation_paths)"),
            ),
            engine="ReplacingMergeTree(version)",
            order_by=("tenant", "conversation_id"),
            # Not by started_at: a late earlier event moves it, and versions only replace within a partition.
            partition_by="tuple()",
            # The stale-pipeline alert's max(updated_at) per tenant, without reading every conversation.
            # A ReplacingMergeTree projection must say what merges that drop old versions do to it.
            projections=(Projection("latest_update", "SELECT tenant, max(updated_at) GROUP BY tenant"),),
            settings=(("deduplicate_merge_projection_mode", "'rebuild'"),),
        ),
        Table(
            name="interval_metrics",
            comment="Current figures per interval (provisional, final or restated); highest version wins",
            columns=_INTERVAL_COLUMNS + metrics,
            engine="ReplacingMergeTree(version)",
            order_by=_INTERVAL_KEY,
            partition_by="toYYYYMM(interval_start)",
        ),
        Table(
            name="interval_published",
            comment="Immutable as-published final figures; a replayed final row de-duplicates",
            columns=_INTERVAL_COLUMNS + metrics,
            engine="ReplacingMergeTree",
            order_by=_INTERVAL_KEY,
            partition_by="toYYYYMM(interval_start)",
        ),
        Table(
            name="interval_restatements",
            comment="Dated log of changes to final figures: published, previous, corrected, delta, reason",
            columns=(
                Column("tenant", LOW),
                Column("queue", LOW),
                Column("channel", LOW),
                Column("interval_minutes", "UInt16"),
                Column("interval_start", TIME),
                Column("time_zone", LOW),
                Column("metric", LOW),
                Column("published", "Int64", "the figure in the final row"),
                Column("previous", "Int64", "the figure before this restatement"),
                Column("corrected", "Int64"),
                Column("delta", "Int64", "corrected - previous"),
                Column("reason", "String"),
                Column("restatement_seq", "UInt32", "1, 2, ... per interval; replays reproduce it"),
                Column("watermark", TIME, "event-time watermark when restated"),
                Column("restated_at", TIME, "wall-clock time when restated"),
            ),
            engine="ReplacingMergeTree",
            order_by=(*_INTERVAL_KEY, "metric", "restatement_seq"),
            partition_by="toYYYYMM(interval_start)",
        ),
        *_journey_tables(),
        Table(
            name="dead_letters",
            comment="Rejected input with its reason and original bytes",
            columns=(
                Column("reason", LOW, "machine-readable class, e.g. invalid_json, schema"),
                Column("detail", "String"),
                Column("raw", "String", "the original bytes, untouched"),
                Column("tenant", LOW),
                Column("source", LOW),
                Column("origin", "String", "topic/partition/offset or file@offset"),
                Column("part", "String", "the part of the record the letter is about; '' for all of it"),
                Column("received_at", TIME),
            ),
            engine="ReplacingMergeTree",
            # One record can yield several letters (conflicting events, corrections beyond the
            # horizon, failed items): ``part`` keeps them apart; a replayed letter replaces itself.
            order_by=("tenant", "reason", "origin", "cityHash64(raw)", "part"),
            partition_by="toYYYYMM(received_at)",
        ),
        Table(
            name="agent_states",
            comment="Agent state changes, for occupancy",
            columns=(
                Column("tenant", LOW),
                Column("agent", "String"),
                Column("state", LOW),
                Column("at", TIME),
                Column("event_id", "String"),
            ),
            engine="ReplacingMergeTree",
            order_by=("tenant", "agent", "at", "event_id"),
            partition_by="toYYYYMM(at)",
        ),
    )


def _journey_tables() -> tuple[Table, ...]:
    """Engagements, identity merges, FCR restatements and conversation paths (see docs/journeys.md)."""
    return (
        Table(
            name="engagements",
            comment="A customer's contacts about one intent within the window; highest version wins, "
            "deleted rows retract engagement ids that no longer exist",
            columns=(
                Column("tenant", LOW),
                Column("engagement_id", "String", "id of its first conversation"),
                Column("customer_key", "String", "'' when unlinked (no identifier)"),
                Column("intent", LOW, "'' when the contact had no intent (an engagement of its own)"),
                Column("first_conversation_id", "String"),
                Column("last_conversation_id", "String"),
                Column("conversation_ids", "Array(String)", "in start order"),
                Column("first_started_at", TIME),
                Column("last_started_at", TIME),
                Column("contacts", "UInt32"),
                Column("repeat_contacts", "UInt32", "contacts - 1"),
                Column("channels", f"Array({LOW})", "channel of each contact, in start order"),
                Column("first_channel", LOW),
                Column("last_channel", LOW),
                Column("channel_switches", "UInt32", "consecutive contacts on different channels"),
                Column("resolved", "Bool", "the last contact's final wrap-up code is a resolved one"),
                Column("fcr", "Bool", "first-contact resolution: one contact, resolved"),
                Column("status", LOW, "provisional | final (the window has closed)"),
                Column("time_to_resolution_ms", "Nullable(Int64)", "first start to end of resolving contact"),
                Column("agents", "Array(String)", "agents involved, in order of first involvement"),
                Column("resolving_agent", "String"),
                Column("last_wrapup_code", LOW, "the solution: final wrap-up code of the last contact"),
                Column("window_end", TIME),
                Column("version", "UInt64", "strictly increasing per tenant; replays reproduce it"),
                Column("deleted", "UInt8", "1 retracts the engagement id"),
                Column("updated_at", TIME),
            ),
            engine="ReplacingMergeTree(version, deleted)",
            order_by=("tenant", "engagement_id"),
            partition_by="tuple()",
        ),
        Table(
            name="customer_links",
            comment="Identity merges: a contact linked two known customers",
            columns=(
                Column("tenant", LOW),
                Column("survivor_customer_key", "String"),
                Column("absorbed_customer_key", "String"),
                Column("via_identifiers", "Array(String)", "typed pseudonymous keys of the linking contact"),
                Column("conversation_id", "String", "the linking contact"),
                Column("at", TIME, "the linking contact's start"),
                Column("link_seq", "UInt64", "1, 2, ... per tenant; replays reproduce it"),
                Column("linked_at", TIME, "wall-clock time"),
            ),
            engine="ReplacingMergeTree",
            order_by=("tenant", "link_seq"),
            partition_by="toYYYYMM(at)",
        ),
        Table(
            name="engagement_restatements",
            comment="Dated changes to published first-contact resolution, with the reason",
            columns=(
                Column("tenant", LOW),
                Column("engagement_id", "String"),
                Column("customer_key", "String"),
                Column("intent", LOW),
                Column("previous_engagement_ids", "Array(String)"),
                Column("previous_fcr", "Int64"),
                Column("corrected_fcr", "Int64"),
                Column("delta", "Int64", "corrected_fcr - previous_fcr"),
                Column("previous_contacts", "Int64"),
                Column("corrected_contacts", "Int64"),
                Column("reason", LOW, "identity_merge | late_change"),
                Column("restatement_seq", "UInt64", "1, 2, ... per tenant; replays reproduce it"),
                Column("watermark", f"Nullable({TIME})"),
                Column("restated_at", TIME),
            ),
            engine="ReplacingMergeTree",
            order_by=("tenant", "restatement_seq"),
            partition_by="tuple()",
        ),
        Table(
            name="conversation_paths",
            comment="Ordered steps of each conversation, opt-out, containment and frustration signals",
            columns=(
                Column("tenant", LOW),
                Column("conversation_id", "String"),
                Column("version", "UInt64"),
                Column("channel", LOW),
                Column("intent", LOW),
                Column("started_at", TIME),
                Column("steps", "Array(String)", "kind:value steps, see stitchboard.conversation_paths"),
                Column("step_count", "UInt32"),
                Column("first_step", "String"),
                Column("last_step", "String"),
                Column("self_service", "Bool", "started with IVR or bot steps"),
                Column("opted_out", "Bool", "left self-service for a queue"),
                Column("last_self_service_step", "String", "node where self-service ended"),
                Column("contained", "Bool"),
                Column("transfers", "UInt32"),
                Column("duration_ms", "Nullable(Int64)"),
                Column("long_duration", "Bool"),
                Column("many_transfers", "Bool"),
                Column("many_steps", "Bool"),
                Column("frustrated", "Bool", "any frustration signal"),
            ),
            engine="ReplacingMergeTree(version)",
            order_by=("tenant", "conversation_id"),
            partition_by="tuple()",
        ),
    )


def table(name: str) -> Table:
    by_name = {candidate.name: candidate for candidate in tables()}
    if name not in by_name:
        raise KeyError(f"unknown table {name!r}")
    return by_name[name]


def columns(name: str) -> list[str]:
    """Column names of a table in DDL order: the order the sink builds insert tuples in."""
    return [column.name for column in table(name).columns]


def metric_column_names(name: str) -> list[str]:
    """The catalogue metric columns of a table (empty for tables without per-metric columns)."""
    metrics = set(metric_columns())
    return [column.name for column in table(name).columns if column in metrics]


def column_types(name: str) -> list[str]:
    """ClickHouse type names in DDL order, so inserts need no DESCRIBE round trip."""
    return [column.type for column in table(name).columns]


_TABLE_BY_TYPE: dict[type, str] = {
    ConversationRow: "conversations",
    RestatementRow: "interval_restatements",
    DeadLetter: "dead_letters",
    AgentStateRow: "agent_states",
    EngagementRow: "engagements",
    CustomerLinkRow: "customer_links",
    EngagementRestatementRow: "engagement_restatements",
    ConversationPathRow: "conversation_paths",
}


def tables_for(row: PublishedRow) -> tuple[str, ...]:
    """Interval rows go to the current table; final ones also to the immutable published table."""
    if isinstance(row, IntervalRow):
        return ("interval_metrics", "interval_published") if row.status == "final" else ("interval_metrics",)
    return (_TABLE_BY_TYPE[type(row)],)


def ddl(database: str = DEFAULT_DATABASE) -> list[str]:
    """Idempotent statements creating the database and every table."""
    return [f"CREATE DATABASE IF NOT EXISTS `{database}`"] + [t.create(database) for t in tables()]


PartitionKey = Callable[[Sequence[Any]], Hashable]

# ClickHouse functions a PARTITION BY may apply to one date/time column, evaluated as ClickHouse
# does in the column's time zone. Extend this table before using another one in the DDL.
_PARTITION_FUNCTIONS: dict[str, Callable[[date], int]] = {
    "toYYYYMM": lambda day: day.year * 100 + day.month,
    "toYYYYMMDD": lambda day: (day.year * 100 + day.month) * 100 + day.day,
    "toYear": lambda day: day.year,
}
_PARTITION_EXPRESSION = re.compile(r"(\w+)\((\w+)\)")
_TIME_ZONE = re.compile(r"DateTime(?:64)?\((?:\d+,\s*)?'([^']+)'\)")


def partition_function(definition: Table) -> PartitionKey | None:
    """The table's ``PARTITION BY`` as a function of a column tuple (``columns()`` order), so the
    sink can keep each INSERT within ClickHouse's partitions-per-insert limit; None when the table
    has one partition. Read from the DDL itself, so the two cannot drift apart: an expression it
    cannot evaluate is an error, not a guess.
    """
    expression = definition.partition_by.replace(" ", "")
    if expression == "tuple()":
        return None
    match = _PARTITION_EXPRESSION.fullmatch(expression)
    function = _PARTITION_FUNCTIONS.get(match.group(1)) if match else None
    names = [column.name for column in definition.columns]
    if match is None or function is None or match.group(2) not in names:
        raise ValueError(
            f"{definition.name}: cannot evaluate PARTITION BY {definition.partition_by!r} in Python;"
            f" supported: tuple() or one of {sorted(_PARTITION_FUNCTIONS)} of a column"
        )
    position = names.index(match.group(2))
    zone_name = _TIME_ZONE.search(definition.columns[position].type)
    zone = UTC if zone_name is None or zone_name.group(1) == "UTC" else ZoneInfo(zone_name.group(1))

    def key(row: Sequence[Any]) -> Hashable:
        value = row[position]
        if isinstance(value, datetime) and value.tzinfo is not zone:  # rows carry UTC: no conversion
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(zone)
        return function(value) if isinstance(value, date) else value

    return key


@cache
def partition_key(name: str) -> PartitionKey | None:
    """``partition_function`` of the named table (cached: the sink asks per batch)."""
    return partition_function(table(name))


# Non-metric columns added to a table after it first shipped: (table, column name).
ADDED_COLUMNS: frozenset[tuple[str, str]] = frozenset({("conversations", "path")})
# Columns added to a table's sorting key after it first shipped: (table, column name). ClickHouse
# extends a sorting key only with columns added in the same ALTER, so they are added with it, and
# the ALTER is idempotent (ADD COLUMN IF NOT EXISTS; the same ORDER BY again changes nothing).
ADDED_KEY_COLUMNS: frozenset[tuple[str, str]] = frozenset({("dead_letters", "part")})


def _empty(column_type: str) -> Any:
    """The value ClickHouse gives an added column in existing rows (its type's default)."""
    if column_type.startswith("Array("):
        return ()
    if column_type.startswith("Nullable("):
        return None
    if "String" in column_type:
        return ""
    raise ValueError(f"no empty value known for an added column of type {column_type}")


def current_row(name: str, row: Sequence[Any]) -> tuple[Any, ...]:
    """A column tuple made before columns were added to table ``name`` (``ADDED_COLUMNS``,
    ``ADDED_KEY_COLUMNS``), e.g. staged in a recovery snapshot, in today's ``columns`` order with
    the added columns empty; a current one unchanged."""
    definition = table(name).columns
    if len(row) == len(definition):
        return tuple(row)
    added = ADDED_COLUMNS | ADDED_KEY_COLUMNS
    older = [column for column in definition if (name, column.name) not in added]
    if len(row) != len(older):
        raise ValueError(f"{name}: {len(row)} values fit neither {len(definition)} nor {len(older)} columns")
    values = iter(row)
    return tuple(
        _empty(column.type) if (name, column.name) in added else next(values) for column in definition
    )


def migrations(database: str = DEFAULT_DATABASE) -> list[str]:
    """Idempotent ALTERs adding what older tables lack: columns (catalogue metrics, ``ADDED_COLUMNS``,
    ``ADDED_KEY_COLUMNS`` with the sorting key they extend), then settings and projections.

    A projection added to an existing table covers parts written or merged from then on; queries
    read older parts in full until ``ALTER TABLE ... MATERIALIZE PROJECTION`` (a one-off mutation,
    so not run here) has rebuilt them.
    """
    metrics = set(metric_columns())
    statements = []
    for candidate in tables():
        added = [
            column
            for column in candidate.columns
            if column in metrics or (candidate.name, column.name) in ADDED_COLUMNS
        ]
        if added:
            clauses = ",\n".join(f"    ADD COLUMN IF NOT EXISTS {column.sql()}" for column in added)
            statements.append(f"ALTER TABLE `{database}`.`{candidate.name}`\n{clauses}")
        keyed = [column for column in candidate.columns if (candidate.name, column.name) in ADDED_KEY_COLUMNS]
        if keyed:
            clauses = ",\n".join(f"    ADD COLUMN IF NOT EXISTS {column.sql()}" for column in keyed)
            statements.append(
                f"ALTER TABLE `{database}`.`{candidate.name}`\n{clauses},\n"
                f"    MODIFY ORDER BY ({', '.join(candidate.order_by)})"
            )
        if candidate.settings:
            assigned = ", ".join(f"{name} = {value}" for name, value in candidate.settings)
            statements.append(f"ALTER TABLE `{database}`.`{candidate.name}` MODIFY SETTING {assigned}")
        statements.extend(
            f"ALTER TABLE `{database}`.`{candidate.name}` ADD PROJECTION IF NOT EXISTS {projection.sql()}"
            for projection in candidate.projections
        )
    return statements


def script(database: str = DEFAULT_DATABASE) -> str:
    """The DDL as one SQL script (the content of ``schemas/clickhouse.sql``)."""
    header = "-- Generated by `python -m stitchboard.tables > schemas/clickhouse.sql`; do not edit.\n\n"
    return header + "".join(f"{statement};\n\n" for statement in ddl(database)).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(script(), end="")
