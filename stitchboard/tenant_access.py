"""Tenant isolation inside ClickHouse: per-tenant read roles, row policies and grants.

The flow keeps tenants apart up to the envelope; a shared ClickHouse server keeps them apart only
if a reader cannot select another tenant's rows, whatever SQL it sends. For every tenant this
module writes the statements that give it:

- a role (``role_prefix`` + tenant name);
- on every table that carries a ``tenant`` column (read from ``stitchboard.tables``, the one
  source of DDL, so a table added there gets its policy at the next ``init-db``), a permissive
  row policy ``tenant = '<name>'`` for that role, created *before* the role may read the table;
- ``SELECT`` on exactly those tables, never ``db.*``: a table added later is readable only once
  its policy exists, and a table without a tenant is never readable by a tenant role;
- optionally a login user (``user_prefix`` + tenant name, a SHA-256 password hash) whose only
  grant and default role is that role. Grants and policies both sit on the role, so a user can
  never hold the one without the other (``SET ROLE NONE`` drops the read grant too).

Every statement is idempotent: ``CREATE ... IF NOT EXISTS`` followed by ``ALTER`` to the same
definition (which also repairs an edited policy or rotates a password), and ``GRANT`` (a no-op
when granted). Re-running changes nothing; a new tenant or table adds only its own entities.
Names and the tenant literal are quoted here for any text (quotes, backslashes, control
characters, any Unicode): tenant names come from settings, and the data can name tenants too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stitchboard import tables

TENANT_COLUMN = "tenant"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def quote_name(name: str) -> str:
    """A ClickHouse back-quoted identifier (also a role, user or policy name) for any text."""
    return "`" + _escape(name, "`") + "`"


def quote_string(text: str) -> str:
    """A ClickHouse single-quoted string literal for any text."""
    return "'" + _escape(text, "'") + "'"


def _escape(text: str, quote: str) -> str:
    """Backslash-escape the backslash and the quote; control characters as ``\\xHH`` so no
    transport (HTTP form, URL, log line) sees a raw NUL or line break."""
    escaped = []
    for char in text:
        if char == "\\" or char == quote:
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\x{ord(char):02X}")
        else:
            escaped.append(char)
    return "".join(escaped)


def tenant_tables() -> tuple[tables.Table, ...]:
    """The tables whose rows belong to a tenant: every table with a ``tenant`` column."""
    return tuple(
        table for table in tables.tables() if any(column.name == TENANT_COLUMN for column in table.columns)
    )


def tenant_condition(tenant: str) -> str:
    """The row-policy filter that keeps exactly ``tenant``'s rows."""
    return f"{TENANT_COLUMN} = {quote_string(tenant)}"


@dataclass(frozen=True, slots=True)
class TenantReader:
    """One tenant's read access: its role and, when a password hash is given, its login user."""

    tenant: str
    role: str
    user: str | None = None
    password_sha256_hex: str | None = field(default=None, repr=False)


def tenant_readers(
    tenants: Iterable[str],
    *,
    role_prefix: str,
    user_prefix: str,
    password_sha256_hex: Mapping[str, str],
) -> tuple[TenantReader, ...]:
    """A reader per tenant (sorted, de-duplicated); a login user for tenants with a password hash.

    Raises ``ValueError`` for an empty tenant name (``''`` holds dead letters without a tenant: no
    tenant owns them), a malformed hash, or a hash for a tenant that is not listed.
    """
    names = sorted(set(tenants))
    if "" in names:
        raise ValueError("a tenant name is empty: a role needs a tenant to read")
    unknown = sorted(set(password_sha256_hex) - set(names))
    if unknown:
        raise ValueError(f"password hashes for tenants that are not listed: {unknown}")
    for tenant, digest in password_sha256_hex.items():
        if not SHA256_HEX.fullmatch(digest):
            raise ValueError(f"the password hash of tenant {tenant!r} is not 64 lowercase hex digits")
    return tuple(
        TenantReader(
            tenant,
            role_prefix + tenant,
            user_prefix + tenant if tenant in password_sha256_hex else None,
            password_sha256_hex.get(tenant),
        )
        for tenant in names
    )


@dataclass(frozen=True, slots=True)
class RowPolicy:
    """The policy letting ``role`` select only ``tenant``'s rows of one table."""

    database: str
    table: str
    tenant: str
    role: str

    @property
    def condition(self) -> str:
        return tenant_condition(self.tenant)

    def _target(self) -> str:
        return f"{quote_name(self.role)} ON {quote_name(self.database)}.{quote_name(self.table)}"

    def _definition(self) -> str:
        return f"AS permissive FOR SELECT USING {self.condition} TO {quote_name(self.role)}"

    def create(self) -> str:
        return f"CREATE ROW POLICY IF NOT EXISTS {self._target()} {self._definition()}"

    def alter(self) -> str:
        return f"ALTER ROW POLICY {self._target()} {self._definition()}"


def row_policies(database: str, readers: Sequence[TenantReader]) -> list[RowPolicy]:
    """Every (tenant-bearing table, tenant) policy."""
    return [
        RowPolicy(database, table.name, reader.tenant, reader.role)
        for reader in readers
        for table in tenant_tables()
    ]


def grant_select(database: str, table: str) -> str:
    """The privilege a tenant role holds on one table (``GRANT`` without its grantee)."""
    return f"GRANT SELECT ON {quote_name(database)}.{quote_name(table)}"


def statements(database: str, readers: Sequence[TenantReader]) -> list[str]:
    """The idempotent statements giving each reader its role, policies, grants and user, in an
    order that never lets a role read a table before its policy on that table exists."""
    result: list[str] = []
    for reader in readers:
        role = quote_name(reader.role)
        result.append(f"CREATE ROLE IF NOT EXISTS {role}")
        for policy in row_policies(database, [reader]):
            result += [policy.create(), policy.alter(), f"{grant_select(database, policy.table)} TO {role}"]
        if reader.user is not None and reader.password_sha256_hex is not None:
            user = quote_name(reader.user)
            identified = f"IDENTIFIED WITH sha256_hash BY {quote_string(reader.password_sha256_hex)}"
            result += [
                f"CREATE USER IF NOT EXISTS {user} {identified} DEFAULT ROLE NONE",
                f"GRANT {role} TO {user}",
                f"ALTER USER {user} {identified} DEFAULT ROLE {role}",
            ]
    return result
