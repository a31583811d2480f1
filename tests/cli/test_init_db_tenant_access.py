"""``stitchboard init-db --tenant-access`` (or ``clickhouse.tenant_access.enabled``): what it sends,
what it says, and the one line when the server (here chDB) cannot store roles. In-process: the
session's chDB is bound to this process."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from stitchboard import tables
from stitchboard.app import cli
from stitchboard.tenant_access import statements, tenant_readers

PLANTED_HASH = "5eed" * 16  # a password hash that must appear in no output


def settings_file(tmp_path: Path, dsn: str, database: str, access: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(
        "metrics_port = 0\n"
        '[tenants.acme]\ntime_zone = "Europe/London"\n'
        f'[clickhouse]\ndsn = "{dsn}"\ndatabase = "{database}"\n'
        f"[clickhouse.tenant_access]\n{access}",
        encoding="utf-8",
    )
    return path


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    *progress, last = captured.err.splitlines()
    assert all(line.startswith("[") for line in progress), captured.err
    return last


@pytest.mark.parametrize("how", ["option", "setting"])
def test_chdb_refuses_roles_in_one_line_after_creating_the_tables(
    how: str, tmp_path: Path, chdb_dsn: str, chdb_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    database = f"access_{uuid.uuid4().hex[:10]}"
    access = f'tenants = ["globex"]\nuser_password_sha256 = {{ acme = "{PLANTED_HASH}" }}\n'
    if how == "setting":
        access += "enabled = true\n"
    config = settings_file(tmp_path, chdb_dsn, database, access)
    arguments = ["init-db", "--config", str(config)] + (["--tenant-access"] if how == "option" else [])
    assert cli.main(arguments) == 1
    line = error_line(capsys)
    assert line.startswith("stitchboard init-db: error: ClickHouse refused CREATE ROLE: Code: 497.")
    assert "(ACCESS_DENIED)" in line
    assert line.endswith(
        ": run it with the DSN of a ClickHouse server user allowed to manage access "
        "(docs/operations.md, Multi-tenancy); chDB cannot store roles or row policies"
    )
    assert PLANTED_HASH not in line
    assert all(chdb_client.command(f"EXISTS TABLE `{database}`.`{table.name}`") for table in tables.tables())
    chdb_client.command(f"DROP DATABASE `{database}`")


def test_a_server_gets_the_tenant_statements_after_the_tables_and_the_output_names_no_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that accepts every statement, recorded: what init-db sends and prints."""
    sent: list[str] = []

    class Server:
        def command(self, statement: str) -> None:
            sent.append(statement)

    monkeypatch.setattr(cli, "_clickhouse", lambda settings: Server())
    access = f'tenants = ["globex"]\nuser_password_sha256 = {{ acme = "{PLANTED_HASH}" }}\n'
    config = settings_file(tmp_path, "http://admin:pw@clickhouse:8123", "reports", access)
    assert cli.main(["init-db", "--config", str(config), "--tenant-access"]) == 0
    readers = tenant_readers(
        ["acme", "globex"],
        role_prefix="stitchboard_tenant_",
        user_prefix="stitchboard_reader_",
        password_sha256_hex={"acme": PLANTED_HASH},
    )
    assert sent == tables.ddl("reports") + tables.migrations("reports") + statements("reports", readers)
    err = capsys.readouterr().err
    count = len(tables.tables())
    assert (
        "tenant access ready: 2 roles ('stitchboard_tenant_acme', 'stitchboard_tenant_globex'), "
        f"{2 * count} row policies on {count} tables, 1 with a login user"
    ) in err
    assert PLANTED_HASH not in err


@pytest.mark.parametrize(
    ("tenants", "access", "expected"),
    [
        (
            False,
            "",
            "tenant access names no tenant: list the tenants under [tenants] or in clickhouse.tenant_access.tenants",
        ),
        (
            True,
            f'user_password_sha256 = {{ initech = "{PLANTED_HASH}" }}\n',
            "clickhouse.tenant_access: password hashes for tenants that are not listed: ['initech']: correct "
            "[tenants] or clickhouse.tenant_access.tenants",
        ),
        (
            True,
            f'user_password_sha256 = {{ acme = "{PLANTED_HASH}x" }}\n',
            "setting 'clickhouse.tenant_access.user_password_sha256' (from settings file {config}): the hash for "
            "tenant 'acme' is not a SHA-256 in hex (64 digits): printf %s PASSWORD | sha256sum",
        ),
        (
            True,
            'tenants = ["globex", ""]\n',
            "setting 'clickhouse.tenant_access.tenants' (from settings file {config}): a tenant name is empty",
        ),
    ],
    ids=["no tenant", "hash of an unlisted tenant", "malformed hash", "empty tenant name"],
)
def test_tenant_access_settings_errors_are_one_line_with_exit_status_2(
    tenants: bool, access: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(
        ('[tenants.acme]\ntime_zone = "UTC"\n' if tenants else "")
        + f'[clickhouse]\ndsn = "chdb://{tmp_path}/unused"\n[clickhouse.tenant_access]\n{access}',
        encoding="utf-8",
    )
    assert cli.main(["init-db", "--config", str(config), "--tenant-access"]) == 2
    line = error_line(capsys)
    assert line == "stitchboard init-db: error: " + expected.format(config=config)
    assert PLANTED_HASH not in line
