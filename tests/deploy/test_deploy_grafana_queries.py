"""Every dashboard and alert query runs against chDB on known rows and returns hand-computed figures."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from clickhouse_connect.driver.client import Client
from support.rows import conversation_row

from stitchboard.deadletters import DeadLetter
from stitchboard.intervals import interval_of
from stitchboard.rows import ConversationRow, IntervalRow, RestatementRow
from stitchboard.sinks.clickhouse import ClickHouseWriter
from stitchboard.testing.grafana import (
    REPO,
    All,
    Choice,
    Query,
    TimeRange,
    Value,
    alert_queries,
    build_module,
    expand,
    fires,
    load_dashboards,
    option_value,
    options_from_rows,
    panel_queries,
    resolve,
    variable_queries,
)

NOW = datetime(2026, 3, 30, 9, 7, tzinfo=UTC)  # a Monday; London is on BST since 29 March
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
RANGE = TimeRange(NOW - timedelta(days=2), NOW, interval_seconds=3600)

# The 15-minute interval that ended last (08:45-09:00 UTC = 09:45 BST) and its figures per queue.
SALES_NOW = {
    "offered": 20,
    "answered": 12,
    "answered_in_sl": 10,
    "answer_wait_ms": 12 * 40_000,
    "abandoned": 8,
    "abandoned_in_sl": 2,
}
SUPPORT_NOW = {"offered": 12, "answered": 12, "answered_in_sl": 12, "answer_wait_ms": 12 * 8_000}
# Same local slot (Monday 09:45) in the four previous weeks, on GMT: 09:45 UTC.
SALES_BASELINE = [
    {
        "offered": 20,
        "answered": 18,
        "answered_in_sl": in_sl,
        "answer_wait_ms": 18 * 10_000,
        "abandoned": abandoned,
    }
    for in_sl, abandoned in ((18, 1), (17, 2), (19, 1), (16, 2))
]
TODAY_SALES = {
    "offered": 40,
    "answered": 34,
    "answered_in_sl": 27,
    "answer_wait_ms": 408_000,
    "abandoned": 6,
    "abandoned_short": 2,
    "abandoned_in_sl": 3,
}
TODAY_SUPPORT = {"offered": 10, "answered": 10, "answered_in_sl": 9, "answer_wait_ms": 50_000}


def interval_row(
    tenant: str,
    queue: str,
    channel: str,
    at: datetime,
    minutes: int,
    status: str,
    version: int,
    zone: ZoneInfo = LONDON,
    **metrics: int,
) -> IntervalRow:
    interval = interval_of(at, zone, minutes)
    return IntervalRow(
        tenant=tenant,
        queue=queue,
        channel=channel,
        interval_minutes=minutes,
        interval_start=interval.start,
        interval_end=interval.end,
        local_start=interval.local_start_iso,
        local_date=interval.local_date,
        time_zone=interval.time_zone,
        status=status,  # type: ignore[arg-type]
        version=version,
        metrics=metrics,
    )


def conversation(
    tenant: str, conversation_id: str, queue: str, updated_at: datetime, **changes: Any
) -> ConversationRow:
    fields = {"started_at": NOW - timedelta(hours=1)} | changes
    return conversation_row(
        tenant=tenant, conversation_id=conversation_id, queue=queue, updated_at=updated_at, **fields
    )


def interval_rows() -> list[IntervalRow]:
    slot = datetime(2026, 3, 30, 8, 45, tzinfo=UTC)
    rows = [
        # Today (local 30 March): a stale version, then the current provisional day figures.
        interval_row("acme", "sales", "voice", NOW, 1440, "provisional", 1, offered=99, answered=1),
        interval_row("acme", "sales", "voice", NOW, 1440, "provisional", 5, **TODAY_SALES),
        interval_row("acme", "support", "chat", NOW, 1440, "provisional", 5, **TODAY_SUPPORT),
        interval_row("acme", "", "voice", NOW, 1440, "provisional", 5, contacts=5),
        interval_row(
            "globex", "sales", "voice", NOW, 1440, "provisional", 5, NEW_YORK, offered=500, answered=1
        ),
        # Yesterday, final then restated; the published row keeps the first final figures.
        interval_row(
            "acme", "sales", "voice", NOW - timedelta(days=1), 1440, "final", 2, offered=30, answered=26
        ),
        interval_row(
            "acme", "sales", "voice", NOW - timedelta(days=1), 1440, "restated", 3, offered=32, answered=28
        ),
        # 15-minute intervals: two final, the one that ended last and the current one provisional.
        interval_row("acme", "sales", "voice", slot - timedelta(minutes=30), 15, "final", 2, offered=3),
        interval_row("acme", "sales", "voice", slot - timedelta(minutes=15), 15, "final", 2, offered=4),
        interval_row("acme", "sales", "voice", slot, 15, "provisional", 1, **SALES_NOW),
        interval_row("acme", "support", "chat", slot, 15, "provisional", 1, **SUPPORT_NOW),
        interval_row("acme", "sales", "voice", NOW, 15, "provisional", 1, offered=2),
        # globex has a 15-minute interval stuck in provisional since yesterday evening.
        interval_row(
            "globex",
            "sales",
            "voice",
            datetime(2026, 3, 29, 19, 45, tzinfo=UTC),
            15,
            "provisional",
            1,
            NEW_YORK,
        ),
    ]
    for weeks, figures in enumerate(SALES_BASELINE, start=1):
        same_slot = datetime(2026, 3, 30 - 7 * weeks, 9, 45, tzinfo=UTC)  # Monday 09:45 GMT
        rows.append(interval_row("acme", "sales", "voice", same_slot, 15, "final", 2, **figures))
        rows.append(interval_row("acme", "support", "chat", same_slot, 15, "final", 2, **SUPPORT_NOW))
        # Same UTC time but another local slot (08:45 GMT), and the same slot on a Tuesday: not baseline.
        rows.append(
            interval_row("acme", "sales", "voice", same_slot - timedelta(hours=1), 15, "final", 2, offered=20)
        )
        rows.append(
            interval_row("acme", "sales", "voice", same_slot + timedelta(days=1), 15, "final", 2, offered=20)
        )
    for days in range(1, 8):  # usual traffic at 09:00 UTC on the previous seven days
        at = datetime(2026, 3, 30, 9, 0, tzinfo=UTC) - timedelta(days=days)
        rows.append(interval_row("acme", "sales", "voice", at, 60, "final", 2, contacts=30))
        rows.append(interval_row("globex", "sales", "voice", at, 60, "final", 2, NEW_YORK, contacts=30))
    return rows


def published_rows() -> list[IntervalRow]:
    return [
        interval_row(
            "acme", "sales", "voice", NOW - timedelta(days=1), 1440, "final", 2, offered=30, answered=26
        )
    ]


def conversation_rows() -> list[ConversationRow]:
    c4 = conversation("acme", "c4", "sales", NOW - timedelta(minutes=20))
    return [
        conversation("acme", "c1", "sales", NOW - timedelta(seconds=90)),
        conversation("acme", "c2", "sales", NOW - timedelta(minutes=3)),
        conversation("acme", "c3", "support", NOW - timedelta(minutes=4)),
        c4,
        replace(c4, version=2, status="ended", ended_at=NOW - timedelta(minutes=10), answered=True),
        conversation("globex", "g1", "sales", NOW - timedelta(hours=1)),
    ]


def restatement_rows() -> list[RestatementRow]:
    daily = interval_of(NOW - timedelta(days=1), LONDON, 1440)

    def restated(
        metric: str, seq: int, published: int, previous: int, corrected: int, reason: str, hours: int
    ) -> RestatementRow:
        return RestatementRow(
            tenant="acme",
            queue="sales",
            channel="voice",
            interval_minutes=1440,
            interval_start=daily.start,
            time_zone="Europe/London",
            metric=metric,
            published=published,
            previous=previous,
            corrected=corrected,
            delta=corrected - previous,
            reason=reason,
            restatement_seq=seq,
            watermark=NOW - timedelta(hours=hours, minutes=10),
            restated_at=NOW - timedelta(hours=hours),
        )

    return [
        restated("offered", 1, 30, 30, 31, "late_event", 5),
        restated("offered", 2, 30, 31, 32, "late_event", 4),
        restated("answered", 1, 26, 26, 28, "wrapup_set", 3),
    ]


def dead_letter_rows() -> list[DeadLetter]:
    def letter(tenant: str, reason: str, n: int, at: datetime) -> DeadLetter:
        return DeadLetter(
            reason, "bad", f"{tenant}-{reason}-{n}-{at}".encode(), at, tenant, "genesys", f"raw/0/{n}"
        )

    recent = NOW - timedelta(minutes=5)
    return (
        [letter("acme", "invalid_json", n, recent) for n in range(20)]
        + [letter("acme", "schema", n, recent) for n in range(5)]
        + [letter("acme", "schema", n, NOW - timedelta(days=3, hours=n)) for n in range(7)]
        + [letter("globex", "schema", n, recent) for n in range(3)]
        + [letter("", "invalid_envelope", n, recent) for n in range(2)]
    )


def populate(client: Client, database: str) -> None:
    writer = ClickHouseWriter(client, database)
    writer.add("interval_metrics", interval_rows())
    writer.add("interval_published", published_rows())
    writer.add("conversations", conversation_rows())
    writer.add("interval_restatements", restatement_rows())
    writer.add("dead_letters", dead_letter_rows())
    writer.close()


def run(client: Client, query: Query, variables: dict[str, Any]) -> list[dict[str, Any]]:
    sql = expand(query.sql, RANGE, variables)
    try:
        return list(client.query(sql).named_results())
    except Exception as exc:
        raise AssertionError(f"{query.where} failed:\n{sql}") from exc


def panel(dashboard_uid: str, title: str) -> Query:
    (query,) = (
        query for query in panel_queries(load_dashboards()[dashboard_uid]) if f"/ {title} /" in query.where
    )
    return query


def choose(client: Client, database: str, dashboard_uid: str, **choices: Choice) -> dict[str, Value]:
    """The variables of the dashboard as Grafana holds them once ``choices`` (option texts) are
    selected: options come from running the variable queries."""
    return resolve(
        load_dashboards()[dashboard_uid],
        choices,
        lambda sql: client.query(sql).result_rows,
        RANGE,
        {"database": database},
    )


def test_every_dashboard_query_runs_for_each_choice_of_variables(
    chdb_client: Client, fresh_database: str
) -> None:
    populate(chdb_client, fresh_database)
    executed = 0
    for uid, dashboard in load_dashboards().items():
        custom = [v for v in dashboard["templating"]["list"] if v["type"] == "custom"]
        choices: list[dict[str, Choice]] = [{}]
        for variable in custom:
            choices = [
                choice | {variable["name"]: option["text"]}
                for choice in choices
                for option in variable["options"]
            ]
        multi = {v["name"] for v in dashboard["templating"]["list"] if v.get("multi")}
        for choice in choices:
            every = {name: All() for name in multi - {"tenant"}}
            variables = choose(
                chdb_client,
                fresh_database,
                uid,
                **(choice | every | {"tenant": ["acme"] if "tenant" in multi else "acme"}),
            )
            for query in panel_queries(dashboard):
                run(chdb_client, query, variables)
                executed += 1
    assert executed >= 60


def test_variables_list_the_tenants_queues_and_channels(chdb_client: Client, fresh_database: str) -> None:
    """Options show the names; their values are the names' ``option_value`` (``x`` + hex)."""
    populate(chdb_client, fresh_database)
    report = load_dashboards()["stitchboard-interval-report"]
    quality = load_dashboards()["stitchboard-data-quality"]
    variables = choose(chdb_client, fresh_database, "stitchboard-interval-report", tenant="acme")

    def options(query: Query) -> list[str]:
        found = options_from_rows(chdb_client.query(expand(query.sql, RANGE, variables)).result_rows)
        assert all(option.value == "x" + option.text.encode().hex().upper() for option in found)
        return [option.text for option in found]

    found = {query.where: options(query) for query in variable_queries(report)}
    assert found == {
        "stitchboard-interval-report / $tenant": ["acme", "globex"],
        "stitchboard-interval-report / $queue": ["sales", "support"],
        "stitchboard-interval-report / $channel": ["chat", "voice"],
    }
    (tenants,) = variable_queries(quality)
    assert options(tenants) == ["", "acme", "globex"]


def test_wallboard_shows_todays_live_figures_of_the_tenant_only(
    chdb_client: Client, fresh_database: str
) -> None:
    populate(chdb_client, fresh_database)
    uid = "stitchboard-wallboard"
    variables = choose(chdb_client, fresh_database, uid, tenant="acme")

    def single(title: str) -> float:
        (row,) = run(chdb_client, panel(uid, title), variables)
        (value,) = row.values()
        return value

    assert single("Offered") == 40 + 10
    assert single("Answered") == 34 + 10
    assert single("Abandoned") == 6
    assert single("Service level") == pytest.approx((27 + 9) / ((40 - 2) + 10))
    assert single("ASA") == pytest.approx((408_000 + 50_000) / (34 + 10) / 1000)
    assert single("Abandon rate") == pytest.approx(6 / 50)
    by_queue = run(chdb_client, panel(uid, "Today by queue"), variables)
    assert [(row["queue"], row["offered_today"], row["service_level_today"]) for row in by_queue] == [
        ("sales", 40, pytest.approx(27 / 38)),
        ("support", 10, pytest.approx(0.9)),
    ]
    open_now = run(chdb_client, panel(uid, "Open conversations by queue"), variables)
    assert [(row["current_queue"], row["open_conversations"]) for row in open_now] == [
        ("sales", 2),
        ("support", 1),
    ]


def test_interval_report_switches_between_as_corrected_and_as_published(
    chdb_client: Client, fresh_database: str
) -> None:
    populate(chdb_client, fresh_database)

    def chosen(length: str, view: str) -> dict[str, Value]:
        return choose(
            chdb_client,
            fresh_database,
            "stitchboard-interval-report",
            tenant="acme",
            interval_length=length,
            view=view,
            queue=["sales", "support"],
            channel=["chat", "voice"],
        )

    totals = panel("stitchboard-interval-report", "Totals by queue")
    corrected = run(chdb_client, totals, chosen("day", "as corrected"))
    published = run(chdb_client, totals, chosen("day", "as published"))
    assert [(row["queue"], row["offered_legs"], row["answered_legs"]) for row in corrected] == [
        ("sales", 32, 28)
    ]
    assert [(row["queue"], row["offered_legs"], row["answered_legs"]) for row in published] == [
        ("sales", 30, 26)
    ]
    quarter = run(chdb_client, totals, chosen("15 min", "as corrected"))
    # Only the two final 15-minute intervals: the provisional ones are not reported yet.
    assert [(row["queue"], row["offered_legs"]) for row in quarter] == [("sales", 3 + 4)]


def test_restatements_audit_counts_reasons_and_nets_changes(chdb_client: Client, fresh_database: str) -> None:
    populate(chdb_client, fresh_database)
    uid = "stitchboard-restatements"
    variables = choose(chdb_client, fresh_database, uid, tenant="acme")
    by_reason = run(chdb_client, panel(uid, "By reason"), variables)
    assert [(row["reason"], row["restatements"], row["absolute_change"]) for row in by_reason] == [
        ("late_event", 2, 2),
        ("wrapup_set", 1, 2),
    ]
    changes = run(chdb_client, panel(uid, "Published vs corrected per interval and metric"), variables)
    assert sorted(
        (row["metric"], row["published_figure"], row["corrected_figure"], row["net_change"])
        for row in changes
    ) == [
        ("answered", 26, 28, 2),
        ("offered", 30, 32, 2),
    ]
    (daily,) = run(
        chdb_client, panel(uid, "Daily offered and service level: as published vs as corrected"), variables
    )
    assert (daily["offered_published"], daily["offered_corrected"]) == (30, 32)


def test_data_quality_and_pipeline_panels(chdb_client: Client, fresh_database: str) -> None:
    populate(chdb_client, fresh_database)
    everyone = choose(chdb_client, fresh_database, "stitchboard-data-quality", tenant=All())
    acme = choose(chdb_client, fresh_database, "stitchboard-pipeline", tenant=["acme"])
    letters = run(
        chdb_client, panel("stitchboard-data-quality", "Dead letters by tenant, reason and source"), everyone
    )
    assert [(row["tenant"], row["reason"], row["dead_letters"]) for row in letters] == [
        ("acme", "invalid_json", 20),
        ("acme", "schema", 5),  # the seven older ones fall before the time range
        ("globex", "schema", 3),
        ("", "invalid_envelope", 2),
    ]
    freshness = run(chdb_client, panel("stitchboard-pipeline", "Freshness"), everyone)
    assert [(row["tenant"], row["freshness_seconds"]) for row in freshness] == [
        ("acme", 90),
        ("globex", 3600),
    ]
    (lag,) = run(chdb_client, panel("stitchboard-pipeline", "Finalisation lag"), acme)
    assert lag["finalisation_lag_seconds"] == (NOW - datetime(2026, 3, 30, 8, 45, tzinfo=UTC)).total_seconds()
    (overdue,) = run(
        chdb_client, panel("stitchboard-pipeline", "Oldest provisional interval past its end"), acme
    )
    assert overdue["provisional_overdue_seconds"] == 7 * 60


def test_alert_rules_fire_on_the_anomalies_in_the_data(chdb_client: Client, fresh_database: str) -> None:
    populate(chdb_client, fresh_database)
    results: dict[str, dict[tuple[str, ...], float]] = {}
    for query in alert_queries(build_module().alert_provisioning(fresh_database)):
        rows = run(chdb_client, query, {})
        numeric = [name for name, value in rows[0].items() if isinstance(value, int | float)] if rows else []
        assert len(numeric) <= 1, f"{query.where}: one number per row, the rest are labels"
        assert all("tenant" in row for row in rows), f"{query.where}: every alert instance names its tenant"
        results[query.where] = {
            tuple(str(value) for name, value in row.items() if name not in numeric): row[numeric[0]]
            for row in rows
        }
    baseline_sl = (0.85 + 0.9) / 2  # median of 0.9, 0.85, 0.95, 0.8
    assert results["stitchboard-sl-drop"] == {
        ("acme", "sales"): pytest.approx((10 / 20) / baseline_sl),
        ("acme", "support"): pytest.approx(1.0),
    }
    assert results["stitchboard-abandon-spike"] == {
        ("acme", "sales"): pytest.approx(8 / 20 - (0.05 + 0.1) / 2),
        ("acme", "support"): pytest.approx(0.0),
    }
    assert results["stitchboard-asa-spike"] == {
        ("acme", "sales"): pytest.approx(40_000 / 10_000),
        ("acme", "support"): pytest.approx(8_000 / 8_000),
    }
    assert results["stitchboard-dead-letter-surge"] == {("acme",): pytest.approx(25.0)}
    assert results["stitchboard-stale-pipeline"] == {("acme",): 90, ("globex",): 3600}
    overdue = results["stitchboard-finalisation-lag"]
    assert overdue == {
        ("acme",): 7 * 60,
        ("globex",): (NOW - datetime(2026, 3, 29, 20, 0, tzinfo=UTC)).total_seconds(),
    }

    evaluators = {
        query.where: query.extra["evaluator"] for query in alert_queries(build_module().alert_provisioning())
    }
    firing = {
        (uid, labels)
        for uid, series in results.items()
        for labels, value in series.items()
        if fires(evaluators[uid], value)
    }
    assert firing == {
        ("stitchboard-sl-drop", ("acme", "sales")),
        ("stitchboard-abandon-spike", ("acme", "sales")),
        ("stitchboard-asa-spike", ("acme", "sales")),
        ("stitchboard-dead-letter-surge", ("acme",)),
        ("stitchboard-stale-pipeline", ("globex",)),
        ("stitchboard-finalisation-lag", ("globex",)),
    }


def documented_panels() -> list[str]:
    """The Grafana examples of docs/queries.md (SQL blocks using dashboard variables)."""
    text = (REPO / "docs" / "queries.md").read_text(encoding="utf-8")
    return [block for block in re.findall(r"```sql\n(.*?)```", text, re.S) if "${" in block]


def test_the_documented_panel_queries_use_only_the_safe_pattern_and_run(
    chdb_client: Client, fresh_database: str
) -> None:
    populate(chdb_client, fresh_database)
    blocks = documented_panels()
    assert len(blocks) >= 4
    variables = {"tenant": option_value("acme"), "queue": [option_value("sales")], "tz": "Europe/London"}
    found = []
    for block in blocks:
        formats = set(re.findall(r"\$\{\w+(?::(\w+))?\}", block))
        assert formats == {"percentencode"}, block
        sql = expand(block.replace("stitchboard.", f"`{fresh_database}`."), RANGE, variables)
        found.append(list(chdb_client.query(sql).named_results()))
    daily = {(row["queue"], row["offered_legs"]) for row in found[1]}
    assert daily == {("sales", 40), ("support", 10), ("", 0), ("sales", 32)}  # today's and yesterday's
    assert {row["reason"] for row in found[3]} == {"invalid_json", "schema"}
