from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from stitchboard import queries
from stitchboard.deadletters import DeadLetter
from stitchboard.rows import IntervalRow, RestatementRow
from stitchboard.sinks.clickhouse import ClickHouseWriter

T0 = datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)


def bucket(k: int, status: str, version: int, queue: str = "sales", **metrics: int) -> IntervalRow:
    start = T0 + k * QUARTER
    return IntervalRow(
        tenant="acme",
        queue=queue,
        channel="voice",
        interval_minutes=15,
        interval_start=start,
        interval_end=start + QUARTER,
        local_start=(start + timedelta(hours=1)).replace(tzinfo=None).isoformat() + "+01:00",
        local_date=date(2026, 3, 29),
        time_zone="Europe/London",
        status=status,  # type: ignore[arg-type]
        version=version,
        metrics=metrics,
    )


def window(database: str, **extra: Any) -> dict[str, Any]:
    return {
        "db": database,
        "tenant": "acme",
        "interval_minutes": 15,
        "start": T0,
        "end": T0 + 4 * QUARTER,
    } | extra


def figures(client: Client, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    result = client.query(sql, parameters=params)
    rows = result.named_results()
    return [(row["interval_start"], row["status"], row["version"], row["answered"]) for row in rows]


def test_live_corrected_and_published_views(chdb_client: Client, fresh_database: str) -> None:
    final = bucket(0, "final", 2, answered=4)
    writer = ClickHouseWriter(chdb_client, fresh_database)
    writer.add(
        "interval_metrics",
        [
            bucket(0, "provisional", 1, answered=3),
            final,
            replace(final, status="restated", version=3, metrics={"answered": 5}),
            bucket(1, "provisional", 1, answered=7),
            bucket(2, "final", 1, answered=2),
            bucket(9, "final", 1, answered=1),
            replace(bucket(0, "final", 2, answered=9), tenant="other"),
        ],
    )
    writer.add("interval_published", [final, bucket(2, "final", 1, answered=2)])
    writer.close()
    live = figures(chdb_client, queries.LIVE, window(fresh_database))
    corrected = figures(chdb_client, queries.AS_CORRECTED, window(fresh_database))
    published = figures(chdb_client, queries.AS_PUBLISHED, window(fresh_database))
    assert live == [
        (T0, "restated", 3, 5),
        (T0 + QUARTER, "provisional", 1, 7),
        (T0 + 2 * QUARTER, "final", 1, 2),
    ]
    assert corrected == [(T0, "restated", 3, 5), (T0 + 2 * QUARTER, "final", 1, 2)]
    assert published == [(T0, "final", 2, 4), (T0 + 2 * QUARTER, "final", 1, 2)]


def test_queue_kpis(chdb_client: Client, fresh_database: str) -> None:
    sales = bucket(
        0,
        "final",
        1,
        offered=10,
        answered=6,
        answered_in_sl=3,
        answer_wait_ms=60_000,
        abandoned=4,
        abandoned_short=2,
        handled=5,
        handle_ms=1_500_000,
    )
    contacts_only = bucket(0, "final", 1, queue="", contacts=3)
    writer = ClickHouseWriter(chdb_client, fresh_database)
    writer.add("interval_metrics", [sales, contacts_only, bucket(1, "final", 1, offered=1)])
    writer.close()
    rows = chdb_client.query(queries.QUEUE_KPIS, parameters=window(fresh_database)).result_rows
    assert rows == [
        (T0, "sales", 10, 3 / 8, 4 / 10, 10_000.0, 300_000.0),  # SL = in SL / (offered - short)
        (T0 + QUARTER, "sales", 1, 0.0, 0.0, None, None),
    ]


def test_restatements_since_and_dead_letters_by_reason(chdb_client: Client, fresh_database: str) -> None:
    def restatement(seq: int, restated_at: datetime) -> RestatementRow:
        return RestatementRow(
            "acme",
            "sales",
            "voice",
            15,
            T0,
            "Europe/London",
            "answered",
            4,
            3 + seq,
            4 + seq,
            1,
            "late answer",
            seq,
            T0,
            restated_at,
        )

    def letter(reason: str, origin: str, tenant: str = "acme") -> DeadLetter:
        return DeadLetter(reason, "", origin.encode(), T0 + timedelta(days=2), tenant, "genesys", origin)

    writer = ClickHouseWriter(chdb_client, fresh_database)
    writer.add(
        "interval_restatements",
        [restatement(1, T0 + timedelta(days=1)), restatement(2, T0 + timedelta(days=9))],
    )
    writer.add(
        "dead_letters",
        [
            letter("schema", "r/0/1"),
            letter("schema", "r/0/2"),
            letter("schema", "r/0/2"),
            letter("invalid_json", "r/0/3"),
            letter("schema", "r/0/4", tenant="other"),
        ],
    )
    writer.close()
    since = {"db": fresh_database, "tenant": "acme", "since": T0 + timedelta(days=2)}
    restated = chdb_client.query(queries.RESTATEMENTS_SINCE, parameters=since).named_results()
    assert [(r["restatement_seq"], r["corrected"], r["restated_at"]) for r in restated] == [
        (2, 6, T0 + timedelta(days=9))
    ]
    by_reason = chdb_client.query(queries.DEAD_LETTERS_BY_REASON, parameters=since).result_rows
    assert by_reason == [("acme", "schema", 2), ("acme", "invalid_json", 1), ("other", "schema", 1)]
