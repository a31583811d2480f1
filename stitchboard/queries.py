"""Named read queries: the three views of interval figures and the audit queries (see docs/queries.md).

Templates use ClickHouse server-side parameters (``{name:Type}``), bound by clickhouse-connect:
``client.query(queries.AS_CORRECTED, parameters={"db": ..., "tenant": ..., ...})``.
"""

from __future__ import annotations

from typing import Final

from stitchboard.metrics import DERIVED

DERIVED_BY_NAME = {derived.name: derived for derived in DERIVED}

_WINDOW = (
    "WHERE tenant = {tenant:String} AND interval_minutes = {interval_minutes:UInt16}"
    " AND interval_start >= {start:DateTime64(3, 'UTC')} AND interval_start < {end:DateTime64(3, 'UTC')}"
)
_ORDER = "ORDER BY interval_start, queue, channel"

LIVE: Final = f"SELECT * FROM {{db:Identifier}}.interval_metrics FINAL {_WINDOW} {_ORDER}"
"""Latest figures of every interval, provisional ones included: for wallboards."""

AS_CORRECTED: Final = (
    f"SELECT * FROM {{db:Identifier}}.interval_metrics FINAL {_WINDOW} AND status != 'provisional' {_ORDER}"
)
"""Final figures with every restatement applied: for reports that must be right."""

AS_PUBLISHED: Final = f"SELECT * FROM {{db:Identifier}}.interval_published FINAL {_WINDOW} {_ORDER}"
"""Final figures exactly as first published: for reconciling with what was already reported."""

_KPIS = ("service_level", "abandon_rate", "asa_ms", "aht_ms")

QUEUE_KPIS: Final = (
    "SELECT interval_start, queue, sum(offered) AS offered_legs, "
    + ", ".join(f"{DERIVED_BY_NAME[name].aggregated()} AS {name}" for name in _KPIS)
    + f" FROM {{db:Identifier}}.interval_metrics FINAL {_WINDOW} AND queue != ''"
    " GROUP BY interval_start, queue ORDER BY interval_start, queue"
)
"""Derived leg-scope figures per queue and interval (live view), straight from the metric catalogue's
definitions (``stitchboard.metrics.DERIVED``); ratios are NULL when undefined."""

RESTATEMENTS_SINCE: Final = (
    "SELECT * FROM {db:Identifier}.interval_restatements FINAL"
    " WHERE tenant = {tenant:String} AND restated_at >= {since:DateTime64(3, 'UTC')}"
    " ORDER BY restated_at, interval_start, queue, channel, metric, restatement_seq"
)
"""Every change to a finalised figure made since an instant."""

DEAD_LETTERS_BY_REASON: Final = (
    "SELECT tenant, reason, count() AS records FROM {db:Identifier}.dead_letters FINAL"
    " WHERE received_at >= {since:DateTime64(3, 'UTC')}"
    " GROUP BY tenant, reason ORDER BY records DESC, tenant, reason"
)
"""Rejected input per tenant and reason since an instant."""
