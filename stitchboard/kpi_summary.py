"""The readable KPI summary: per tenant and channel, from the finalised daily intervals.

The SQL is derived from the metric catalogue (``stitchboard.metrics.DERIVED``), so the summary and
the dashboards cannot disagree on what "service level" means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stitchboard.metrics import DERIVED

_COUNTS = (
    "contacts",
    "contacts_answered",
    "contacts_abandoned",
    "contacts_transferred",
    "offered",
    "answered",
)
_DERIVED = {derived.name: derived for derived in DERIVED}
_RATIOS = ("service_level", "abandon_rate", "asa_ms", "aht_ms", "containment_rate")


def summary_sql(database: str) -> str:
    """One row per (tenant, channel): counts and derived figures over finalised daily intervals."""
    counts = ", ".join(f"sum({name}) AS total_{name}" for name in _COUNTS)
    ratios = ", ".join(f"{_DERIVED[name].aggregated()} AS kpi_{name}" for name in _RATIOS)
    return (
        f"SELECT tenant, channel, {counts}, {ratios}, any(time_zone) AS zone"
        f" FROM {database}.interval_metrics FINAL"
        " WHERE interval_minutes = 1440 AND status != 'provisional'"
        " GROUP BY tenant, channel ORDER BY tenant, channel"
    )


@dataclass(frozen=True, slots=True)
class Audit:
    """What else a reader should know: dead letters, restatements, conversations."""

    conversations: int
    restatements: int
    dead_letters: dict[str, int]


def audit_sql(database: str) -> dict[str, str]:
    return {
        "conversations": f"SELECT count() FROM {database}.conversations FINAL",
        "restatements": f"SELECT count() FROM {database}.interval_restatements FINAL",
        "dead_letters": f"SELECT reason, count() FROM {database}.dead_letters FINAL GROUP BY reason ORDER BY reason",
    }


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "ratio":
        return f"{100 * value:5.1f}%"
    if kind == "ms":
        return f"{value / 1000:6.1f}s"
    return str(int(value))


def format_summary(rows: list[dict[str, Any]], audit: Audit) -> str:
    """A fixed-width table a person can read in a terminal."""
    headers = [
        ("tenant", "tenant", "text"),
        ("channel", "channel", "text"),
        ("contacts", "total_contacts", "count"),
        ("answered", "total_contacts_answered", "count"),
        ("abandoned", "total_contacts_abandoned", "count"),
        ("transferred", "total_contacts_transferred", "count"),
        ("SL", "kpi_service_level", "ratio"),
        ("abandon%", "kpi_abandon_rate", "ratio"),
        ("ASA", "kpi_asa_ms", "ms"),
        ("AHT", "kpi_aht_ms", "ms"),
        ("contained", "kpi_containment_rate", "ratio"),
    ]
    table = [[title for title, _, _ in headers]]
    for row in rows:
        table.append([str(row[key]) if kind == "text" else _fmt(row[key], kind) for _, key, kind in headers])
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    dead = ", ".join(f"{reason}={count}" for reason, count in sorted(audit.dead_letters.items())) or "none"
    lines += [
        "",
        f"conversations stitched: {audit.conversations}",
        f"restatements (dated corrections to final figures): {audit.restatements}",
        f"dead letters: {sum(audit.dead_letters.values())} ({dead})",
        "SL = answered within threshold / (offered - short abandons); ASA/AHT in seconds; see docs/metrics.md",
    ]
    return "\n".join(lines)


def read_summary(client: Any, database: str) -> tuple[list[dict[str, Any]], Audit]:
    """Run the summary and audit queries through a clickhouse-connect client."""
    rows = list(client.query(summary_sql(database)).named_results())
    queries = audit_sql(database)
    audit = Audit(
        conversations=int(client.query(queries["conversations"]).result_rows[0][0]),
        restatements=int(client.query(queries["restatements"]).result_rows[0][0]),
        dead_letters={str(r): int(n) for r, n in client.query(queries["dead_letters"]).result_rows},
    )
    return rows, audit
