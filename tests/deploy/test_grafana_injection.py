"""Dashboards are safe by construction (issue 13, #6): whatever a tenant, queue or channel is called
(names come from the data, even from rejected records) and whatever a URL sets a variable to, every
query keeps its structure: it returns the selected tenant's rows or nothing, never another's.

Variables are expanded exactly as Grafana does (``stitchboard.testing.grafana``), in particular
``singlequote``, which escapes ``'`` but not backslashes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from test_deploy_grafana_queries import (
    RANGE,
    conversation_rows,
    dead_letter_rows,
    interval_rows,
    published_rows,
    restatement_rows,
)

from stitchboard.sinks.clickhouse import ClickHouseWriter, init_db
from stitchboard.testing.grafana import (
    All,
    Choice,
    Url,
    expand,
    format_value,
    load_dashboards,
    panel_queries,
    resolve,
)

HOSTILE = (
    "x\\') OR 1=1 --",  # the case: ignores the tenant and the time filter
    "\\",  # broke the All view
    "'",
    "x' OR '1'='1",
    "acme,globex",  # a list separator inside one name
    "{acme}",
    "x\\\\'); DROP TABLE dead_letters; --",
    "/* c */ acme",
    "$__toTime ${tenant} [[tenant]]",
    "%27%5C",
    'qu"ote`back`',
    "Zürich ☎ 電話",
    "line\nbreak\ttab\x00nul",
    "",
)
URL_VALUES = (*HOSTILE, "%7Bx61636D65%7D", "X61636D65", "x6", "x61636D65 ")
QUEUE = "s\\') OR 1=1 --"  # a hostile queue name of the tenant, for the queue variable


def tenant_rows(tenant: str) -> list[tuple[str, list[Any]]]:
    """acme's rows of every table, as ``tenant``'s, with its sales queue called ``QUEUE``."""

    def own(row: Any) -> Any:
        changes: dict[str, Any] = {"tenant": tenant}
        for field in ("queue", "first_queue", "last_queue"):
            if getattr(row, field, None) == "sales":
                changes[field] = QUEUE
        return dataclasses.replace(row, **changes)

    def of_acme(rows: Sequence[Any]) -> list[Any]:
        return [own(row) for row in rows if row.tenant == "acme"]

    return [
        ("interval_metrics", of_acme(interval_rows())),
        ("interval_published", of_acme(published_rows())),
        ("conversations", of_acme(conversation_rows())),
        ("interval_restatements", of_acme(restatement_rows())),
        ("dead_letters", of_acme(dead_letter_rows())),
    ]


def everyone_else() -> list[tuple[str, list[Any]]]:
    """acme's, globex's and the unknown tenant's rows."""
    return [
        ("interval_metrics", interval_rows()),
        ("interval_published", published_rows()),
        ("conversations", conversation_rows()),
        ("interval_restatements", restatement_rows()),
        ("dead_letters", dead_letter_rows()),
    ]


def populate(client: Client, database: str, tenants: Sequence[str], others: bool) -> None:
    """``tenants`` with acme's data each, and with ``others`` everyone else's rows (without, only
    those of the given tenants: the unknown tenant ``''`` has dead letters of its own)."""
    writer = ClickHouseWriter(client, database)
    for tenant in tenants:
        for table, rows in tenant_rows(tenant):
            writer.add(table, rows)
    for table, rows in everyone_else():
        writer.add(table, [row for row in rows if others or row.tenant in tenants])
    writer.close()


@contextlib.contextmanager
def database(client: Client, tenants: Sequence[str], others: bool) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    init_db(client, name)
    populate(client, name, tenants, others)
    try:
        yield name
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="module")
def shared(chdb_client: Client) -> Iterator[str]:
    """Every hostile tenant (each with acme's data), acme, globex and the unknown tenant."""
    with database(chdb_client, HOSTILE, others=True) as name:
        yield name


@pytest.fixture(scope="module")
def empty(chdb_client: Client) -> Iterator[str]:
    with database(chdb_client, [], others=False) as name:
        yield name


def panel_rows(
    client: Client, dashboard: dict[str, Any], database: str, choices: dict[str, Choice]
) -> dict[str, list[dict[str, Any]]]:
    """Every panel's rows with the variables ``choices`` selects (the rest: their first option)."""

    def run_query(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in client.query(sql).result_rows]

    variables = resolve(dashboard, choices, run_query, RANGE, {"database": database})
    found: dict[str, list[dict[str, Any]]] = {}
    for query in panel_queries(dashboard):
        sql = expand(query.sql, RANGE, variables)
        try:
            found[query.where.split(" / ")[1]] = list(client.query(sql).named_results())
        except Exception as exc:
            raise AssertionError(f"{query.where} failed:\n{sql}") from exc
    return found


def results(
    client: Client, dashboard: dict[str, Any], database: str, choices: dict[str, Choice]
) -> dict[str, Any]:
    """``panel_rows`` in a comparable form: each panel's rows as sorted text."""
    rows = panel_rows(client, dashboard, database, choices)
    return {title: sorted(repr(sorted(row.items())) for row in found) for title, found in rows.items()}


def test_singlequote_leaves_backslashes_alone_as_grafana_does() -> None:
    """The harness no longer hides the problem: Grafana's ``singlequote`` keeps the backslash, so
    ``\\'`` closes the ClickHouse string literal."""
    assert format_value(["x\\') OR 1=1 --"], "singlequote", "tenant") == "'x\\\\') OR 1=1 --'"
    assert format_value(["\\"], "singlequote", "tenant") == "'\\'"


@pytest.mark.parametrize("tenant", HOSTILE, ids=[f"tenant-{index}" for index in range(len(HOSTILE))])
def test_a_hostile_tenant_name_selects_exactly_its_own_rows(
    tenant: str, chdb_client: Client, shared: str, fresh_database: str
) -> None:
    """Every panel of every dashboard, with the hostile tenant selected from the variable's options,
    returns on the shared database (every hostile name at once) exactly what it returns on a
    database holding only that tenant."""
    alone = fresh_database
    populate(chdb_client, alone, [tenant], others=False)
    shown = 0
    for dashboard in load_dashboards().values():
        choices: dict[str, Choice] = {"tenant": [tenant] if _multi(dashboard, "tenant") else tenant}
        if "queue" in _variables(dashboard):
            choices |= {"queue": [QUEUE], "channel": All()}
        mine = results(chdb_client, dashboard, alone, choices)
        assert results(chdb_client, dashboard, shared, choices) == mine, dashboard["uid"]
        shown += sum(len(rows) for rows in mine.values())
    assert shown >= 30  # the tenant's own figures are there: the comparison is not between empties


@pytest.mark.parametrize("value", URL_VALUES, ids=[f"url-{index}" for index in range(len(URL_VALUES))])
def test_a_hostile_url_value_selects_nothing(
    value: str, chdb_client: Client, shared: str, empty: str
) -> None:
    """A value set through the URL (not one of the options) cannot change a query either: it names
    no tenant, so every panel shows what it shows on an empty database."""
    for dashboard in load_dashboards().values():
        choices: dict[str, Choice] = {
            name: Url([value] if _multi(dashboard, name) else value)
            for name in ("tenant", "queue", "channel", "interval_length", "view")
            if name in _variables(dashboard)
        }
        assert results(chdb_client, dashboard, shared, choices) == results(
            chdb_client, dashboard, empty, choices
        ), dashboard["uid"]


def test_all_tenants_with_hostile_names_still_show(chdb_client: Client, shared: str) -> None:
    """*All* on the operator dashboards runs with every hostile name present (``\\`` broke it) and
    counts each tenant's dead letters under its own name."""
    dashboards = load_dashboards()
    panel_rows(chdb_client, dashboards["stitchboard-pipeline"], shared, {"tenant": All()})
    quality = panel_rows(chdb_client, dashboards["stitchboard-data-quality"], shared, {"tenant": All()})
    counts = {
        (row["tenant"], row["reason"]): row["dead_letters"]
        for row in quality["Dead letters by tenant, reason and source"]
    }
    expected = {(tenant, "invalid_json"): 20 for tenant in (*HOSTILE, "acme")}
    expected |= {(tenant, "schema"): 5 for tenant in (*HOSTILE, "acme")}  # 7 more fall before the range
    assert counts == expected | {("globex", "schema"): 3, ("", "invalid_envelope"): 2}


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def _multi(dashboard: dict[str, Any], name: str) -> bool:
    return bool(_variables(dashboard)[name].get("multi"))
