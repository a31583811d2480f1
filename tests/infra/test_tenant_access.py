"""Tenant isolation in ClickHouse: the roles, row policies and grants ``init-db --tenant-access``
creates (stitchboard.tenant_access), for every table that carries a tenant and for hostile names.

What chDB allows (checked in chDB 4.4 / ClickHouse 26.9): its session user is always ``default``,
its only user directory is the read-only users file, so ``CREATE ROLE / USER / ROW POLICY`` fail
(ACCESS_DENIED, or ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND with access management allowed) and
``EXECUTE AS`` is disabled. A users file given through ``config-file`` *is* loaded, with its row
policies and grants. So the statements are checked by ClickHouse's parser (every name parses to
exactly the intended text), and their effect end to end by giving chDB's ``default`` user,
through the users file, exactly the tenant role's privileges: the same ``GRANT SELECT`` on each
tenant-bearing table and the same policy condition on each. Not exercised here: the SQL-created
role binding (``TO role``, ``DEFAULT ROLE``), which needs a ClickHouse server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from stitchboard import tables, tenant_access
from stitchboard.sinks.clickhouse import init_db
from stitchboard.tenant_access import (
    TenantReader,
    grant_select,
    quote_name,
    quote_string,
    row_policies,
    statements,
    tenant_readers,
    tenant_tables,
)

SESSION = Path(__file__).resolve().parents[1] / "support" / "chdb_session.py"
DATABASE = "stitchboard"
# Tenant names reach SQL from settings (and the data can name any tenant): quotes, a statement
# break, backslashes (Grafana's singlequote leaves them alone), back quotes, control characters
# and a NUL, Unicode beyond the BMP.
TENANTS = (
    "acme",
    "x'); DROP ROLE ALL; --",
    "x\\') OR 1=1 --",
    "\\",
    "'",
    "tick`name",
    "Ünïcødé 租户 🙂",
    "line\nbreak\ttab\x00nul",
)
HASH = "0f" * 32


def readers(tenants: tuple[str, ...] = TENANTS, users: tuple[str, ...] = ()) -> tuple[TenantReader, ...]:
    return tenant_readers(
        tenants,
        role_prefix="stitchboard_tenant_",
        user_prefix="stitchboard_reader_",
        password_sha256_hex={tenant: HASH for tenant in users},
    )


# --- coverage: every table that carries a tenant, derived from tables.py ---------------------


def test_every_table_carries_a_tenant_and_every_tenant_has_a_policy_and_a_grant_on_each() -> None:
    every_table = {table.name for table in tables.tables()}
    covered = {table.name for table in tenant_tables()}
    # A table without a tenant would be unreadable to tenant roles: adding one is a decision.
    assert covered == every_table
    generated = statements(DATABASE, readers())
    for reader in readers():
        for table in covered:
            policy = tenant_access.RowPolicy(DATABASE, table, reader.tenant, reader.role)
            assert policy.create() in generated
            assert policy.alter() in generated
            assert f"{grant_select(DATABASE, table)} TO {quote_name(reader.role)}" in generated
    assert not any(".*" in statement or " ON *" in statement for statement in generated)


def test_a_table_added_to_tables_py_gets_a_policy_and_grant_and_one_without_a_tenant_gets_neither(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    added = tables.Table(
        name="queue_targets",
        comment="",
        columns=(tables.Column("tenant", tables.LOW), tables.Column("queue", tables.LOW)),
        engine="ReplacingMergeTree",
        order_by=("tenant", "queue"),
        partition_by="tuple()",
    )
    shared = tables.Table(
        name="calendar",
        comment="",
        columns=(tables.Column("day", "Date"),),
        engine="ReplacingMergeTree",
        order_by=("day",),
        partition_by="tuple()",
    )
    original = tables.tables()
    monkeypatch.setattr(tables, "tables", lambda: (*original, added, shared))
    generated = statements(DATABASE, readers(("acme",)))
    policy = tenant_access.RowPolicy(DATABASE, "queue_targets", "acme", "stitchboard_tenant_acme")
    assert policy.create() in generated
    assert f"{grant_select(DATABASE, 'queue_targets')} TO `stitchboard_tenant_acme`" in generated
    assert not any("`calendar`" in statement for statement in generated)


# --- idempotence and order ---------------------------------------------------------------------


def test_every_statement_is_idempotent_and_no_role_reads_a_table_before_its_policy_exists() -> None:
    generated = statements(DATABASE, readers(users=("acme", "'")))
    for statement in generated:
        assert statement.startswith(
            (
                "CREATE ROLE IF NOT EXISTS ",
                "CREATE ROW POLICY IF NOT EXISTS ",
                "CREATE USER IF NOT EXISTS ",
                "ALTER ROW POLICY ",
                "ALTER USER ",
                "GRANT ",
            )
        ), statement
    assert len(set(generated)) == len(generated)
    for reader in readers(users=("acme", "'")):
        role = quote_name(reader.role)
        assert generated.index(f"CREATE ROLE IF NOT EXISTS {role}") < min(
            i for i, statement in enumerate(generated) if statement.endswith(f"TO {role}")
        )
        for policy in row_policies(DATABASE, [reader]):
            grant = f"{grant_select(DATABASE, policy.table)} TO {role}"
            assert generated.index(policy.create()) < generated.index(policy.alter()) < generated.index(grant)
        if reader.user is not None:
            user = quote_name(reader.user)
            last_grant = max(
                i
                for i, statement in enumerate(generated)
                if statement.startswith("GRANT SELECT") and statement.endswith(role)
            )
            create_user = next(
                i for i, s in enumerate(generated) if s.startswith(f"CREATE USER IF NOT EXISTS {user} ")
            )
            assert last_grant < create_user  # a login exists only once its role is complete
            assert generated[create_user].endswith("DEFAULT ROLE NONE")
            assert generated[create_user + 1] == f"GRANT {role} TO {user}"
            assert generated[create_user + 2].endswith(f"DEFAULT ROLE {role}")


def test_adding_a_tenant_adds_only_its_own_statements_and_changes_none_of_the_others() -> None:
    before = statements(DATABASE, readers(("acme", "globex")))
    after = statements(DATABASE, readers(("acme", "globex", "initech")))
    alone = statements(DATABASE, readers(("initech",)))
    assert [s for s in after if s not in before] == alone
    assert [s for s in after if s in before] == before


def test_init_db_runs_the_tenant_statements_after_the_tables(chdb_client: Client) -> None:
    """chDB refuses them (it has no writable access storage), so record what init_db sends."""

    class Recorder:
        def __init__(self) -> None:
            self.commands: list[str] = []

        def command(self, statement: str) -> None:
            self.commands.append(statement)

    recorder = Recorder()
    init_db(recorder, DATABASE, readers(users=("acme",)))  # type: ignore[arg-type]
    schema = tables.ddl(DATABASE) + tables.migrations(DATABASE)
    assert recorder.commands == schema + statements(DATABASE, readers(users=("acme",)))


# --- ClickHouse's own parser on the statements and the quoting ---------------------------------


def test_names_and_literals_round_trip_through_clickhouse_for_hostile_tenants(chdb_client: Client) -> None:
    for text in (*TENANTS, *(reader.role for reader in readers())):
        assert chdb_client.query(f"SELECT 1 AS {quote_name(text)}").column_names == (text,)
        assert chdb_client.query(f"SELECT {quote_string(text)}").result_rows == [(text,)]


def test_every_statement_parses_as_one_statement_naming_exactly_the_intended_entities(
    chdb_client: Client,
) -> None:
    """ClickHouse formats each statement back from its syntax tree; each name in it must be the
    formatter's own spelling of the intended name (learnt from an alias, whose round trip the test
    above proves), so no name or literal reads as anything else and nothing follows the statement."""

    def formatted(sql: str) -> str:
        text: str = chdb_client.query(
            "SELECT formatQuerySingleLine({sql:String})", parameters={"sql": sql}
        ).result_rows[0][0]
        return text

    def name(text: str) -> str:
        return formatted(f"SELECT 1 AS {quote_name(text)}").removeprefix("SELECT 1 AS ")

    def literal(text: str) -> str:
        return formatted(f"SELECT {quote_string(text)}").removeprefix("SELECT ")

    expected: list[str] = []
    for reader in readers(users=TENANTS):
        role = name(reader.role)
        expected.append(f"CREATE ROLE IF NOT EXISTS {role}")
        for table in tenant_tables():
            target = f"{role} ON {name(DATABASE)}.{name(table.name)}"
            definition = f"AS PERMISSIVE FOR SELECT USING tenant = {literal(reader.tenant)} TO {role}"
            expected += [
                f"CREATE ROW POLICY IF NOT EXISTS {target} {definition}",
                f"ALTER ROW POLICY {target} {definition}",
                f"GRANT SELECT ON {name(DATABASE)}.{name(table.name)} TO {role}",
            ]
        assert reader.user is not None
        user = name(reader.user)
        expected += [
            f"CREATE USER IF NOT EXISTS {user} IDENTIFIED WITH sha256_hash BY {literal(HASH)} DEFAULT ROLE NONE",
            f"GRANT {role} TO {user}",
            f"ALTER USER {user} IDENTIFIED WITH sha256_hash BY {literal(HASH)} DEFAULT ROLE {role}",
        ]
    assert [formatted(statement) for statement in statements(DATABASE, readers(users=TENANTS))] == expected


def test_empty_tenant_names_and_malformed_hashes_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        readers(("acme", ""))
    with pytest.raises(ValueError, match="not listed"):
        tenant_readers(["acme"], role_prefix="r_", user_prefix="u_", password_sha256_hex={"globex": HASH})
    with pytest.raises(ValueError, match="64 lowercase hex"):
        tenant_readers(["acme"], role_prefix="r_", user_prefix="u_", password_sha256_hex={"acme": "secret"})


# --- end to end in chDB: the role's privileges on chDB's session user --------------------------


def _session(path: Path, config: Path | None, queries: list[str]) -> list[dict[str, Any]]:
    request = {"path": str(path), "config": str(config) if config else None, "queries": queries}
    done = subprocess.run(
        [sys.executable, str(SESSION)], input=json.dumps(request), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def _reader_config(directory: Path, reader: TenantReader, *, with_policies: bool) -> Path:
    """A config whose users file gives ``default`` what ``reader``'s role holds: SELECT on every
    tenant-bearing table and (``with_policies``) the role's condition on each."""
    root = ET.Element("clickhouse")
    ET.SubElement(ET.SubElement(root, "profiles"), "default")
    user = ET.SubElement(ET.SubElement(root, "users"), "default")
    ET.SubElement(user, "password")
    ET.SubElement(ET.SubElement(user, "networks"), "ip").text = "::/0"
    ET.SubElement(user, "profile").text = "default"
    ET.SubElement(user, "quota").text = "default"
    grants = ET.SubElement(user, "grants")
    for table in tenant_tables():
        ET.SubElement(grants, "query").text = grant_select(DATABASE, table.name)
    if with_policies:
        database = ET.SubElement(ET.SubElement(user, "databases"), DATABASE)
        for policy in row_policies(DATABASE, [reader]):
            ET.SubElement(ET.SubElement(database, policy.table), "filter").text = policy.condition
    ET.SubElement(ET.SubElement(root, "quotas"), "default")
    directory.mkdir(parents=True, exist_ok=True)
    users = directory / "users.xml"
    ET.ElementTree(root).write(users, encoding="utf-8", xml_declaration=True)
    config = ET.Element("clickhouse")
    directories = ET.SubElement(config, "user_directories")
    ET.SubElement(ET.SubElement(directories, "users_xml"), "path").text = str(users)
    ET.ElementTree(config).write(directory / "config.xml", encoding="utf-8", xml_declaration=True)
    return directory / "config.xml"


Probe = tuple[str, str, dict[str, Any]]  # what it tries, the query, the one result allowed
DENIED = {"error": "ACCESS_DENIED"}


def _table(name: str) -> str:
    return f"{quote_name(DATABASE)}.{quote_name(name)}"


def _probes(tenant: str) -> list[Probe]:
    """Queries a tenant's reader might send, with what each must give: its own rows, one per table
    (the seed), and nothing of the others however it asks."""
    own = quote_string(tenant)
    others = ", ".join(quote_string(other) for other in (*TENANTS, "") if other != tenant)
    mine, one, none = {"rows": [[tenant, 1]]}, {"rows": [[1]]}, {"rows": [[0]]}
    probes: list[Probe] = []
    for table in tenant_tables():
        source = _table(table.name)
        probes += [
            (f"{table.name}: rows", f"SELECT tenant, count() FROM {source} GROUP BY tenant", mine),
            (f"{table.name}: FINAL", f"SELECT tenant, count() FROM {source} FINAL GROUP BY tenant", mine),
            (f"{table.name}: count()", f"SELECT count() FROM {source}", one),
            (f"{table.name}: the others", f"SELECT count() FROM {source} WHERE tenant != {own}", none),
            (f"{table.name}: PREWHERE", f"SELECT count() FROM {source} PREWHERE tenant IN ({others})", none),
            (
                f"{table.name}: OR 1=1",
                f"SELECT count() FROM (SELECT * FROM {source}) WHERE tenant = '' OR 1",
                one,
            ),
            # an error raised by another tenant's row would tell the reader that the row exists
            (
                f"{table.name}: side channel",
                f"SELECT count() FROM {source} WHERE throwIf(tenant != {own}, 'another tenant') = 0",
                one,
            ),
            (f"{table.name}: write", f"INSERT INTO {source} (tenant) VALUES ({own})", DENIED),
        ]
    conversations = _table("conversations")
    return [
        *probes,
        (
            "merge() over every table",
            f"SELECT tenant, count() FROM merge({quote_string(DATABASE)}, '.*') GROUP BY tenant",
            {"rows": [[tenant, len(tenant_tables())]]},
        ),
        (
            "the conversations projection",
            f"SELECT tenant FROM {conversations} GROUP BY tenant SETTINGS force_optimize_projection = 1",
            {"rows": [[tenant]]},
        ),
        ("remote() to itself", f"SELECT count() FROM remote('127.0.0.1', {conversations})", DENIED),
        ("a file", "SELECT count() FROM file('/etc/hostname', 'RawBLOB')", DENIED),
        ("the policies", "SELECT count() FROM system.row_policies", DENIED),
        ("a mutation", f"ALTER TABLE {conversations} DELETE WHERE 1", DENIED),
    ]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chDB directory (its own engine, in subprocesses) with every table holding one row of each
    hostile tenant and of tenant '' (dead letters without a tenant), written as the writer does:
    a user without any row policy."""
    path = tmp_path_factory.mktemp("tenant_isolation") / "chdb"
    inserts = [
        f"INSERT INTO {_table(table.name)} (tenant) FORMAT JSONEachRow {json.dumps({'tenant': tenant})}"
        for table in tenant_tables()
        for tenant in (*TENANTS, "")
    ]
    count_all = [f"SELECT count() FROM {_table(table.name)}" for table in tenant_tables()]
    results = _session(path, None, [*tables.ddl(DATABASE), *inserts, *count_all])
    assert all("error" not in result for result in results), results
    assert results[-len(count_all) :] == [{"rows": [[len(TENANTS) + 1]]}] * len(count_all)
    return path


@pytest.mark.parametrize("tenant", TENANTS, ids=[f"tenant{i}" for i in range(len(TENANTS))])
def test_a_tenant_reader_sees_only_its_own_rows_on_every_table_however_it_asks(
    seeded: Path, tmp_path: Path, tenant: str
) -> None:
    (reader,) = readers((tenant,))
    probes = _probes(tenant)
    results = _session(
        seeded, _reader_config(tmp_path, reader, with_policies=True), [query for _, query, _ in probes]
    )
    failed = [
        (what, result)
        for (what, _, allowed), result in zip(probes, results, strict=True)
        if result != allowed
    ]
    assert failed == []


def test_without_the_policies_the_same_grants_read_every_tenant(seeded: Path, tmp_path: Path) -> None:
    """The harness is not vacuous: the grants alone, as a reader without its policies, see all."""
    (reader,) = readers(("acme",))
    queries = [f"SELECT count(DISTINCT tenant) FROM {_table(table.name)}" for table in tenant_tables()]
    results = _session(seeded, _reader_config(tmp_path, reader, with_policies=False), queries)
    assert results == [{"rows": [[len(TENANTS) + 1]]}] * len(queries)


def test_chdb_cannot_create_roles_even_when_the_users_file_allows_access_management(
    seeded: Path, tmp_path: Path
) -> None:
    """The gap, measured: with ``access_management`` on, chDB still has nowhere to store a role."""
    (reader,) = readers(("acme",))
    config = _reader_config(tmp_path, reader, with_policies=False)
    users = tmp_path / "users.xml"
    tree = ET.parse(users)
    default = tree.getroot().find("users/default")
    assert default is not None
    ET.SubElement(default, "access_management").text = "1"
    grants = default.find("grants")
    assert grants is not None
    default.remove(grants)
    tree.write(users, encoding="utf-8", xml_declaration=True)
    results = _session(seeded, config, [*statements(DATABASE, [reader])[:2], "EXECUTE AS default SELECT 1"])
    assert results == [
        {"error": "ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND"},
        {"error": "UNKNOWN_ROLE"},
        {"error": "SUPPORT_IS_DISABLED"},
    ]
