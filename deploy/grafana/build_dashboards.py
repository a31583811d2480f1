"""Generate the Grafana dashboards and alert rules from the metric catalogue.

Derived KPIs (service level, ASA, ...) are spelled exactly once, in ``stitchboard.metrics.DERIVED``;
this script pastes their ``aggregated()`` SQL into every panel and alert, so a change of definition
reaches Grafana by re-running it. The output is committed and a test checks that it is current::

    python -m deploy.grafana.build_dashboards          # rewrite the files
    python -m deploy.grafana.build_dashboards --check  # exit 1 if a committed file is stale

Every dashboard query filters by the selected tenants (``TENANT_FILTER``) and reads the tables of
the ``${database}`` constant variable. Alert rules cannot use dashboard variables, so they evaluate
every tenant at once and carry ``tenant`` as a label (one alert instance per tenant, or tenant and
queue).

Variables are safe by construction: tenant, queue and channel names come from the data (a rejected
record's envelope names a tenant too) and a URL can set any value, so no value may reach the SQL in
a form that can change its structure. Grafana's quoting formats cannot do that for ClickHouse
(``singlequote`` escapes ``'`` as ``\'`` but leaves backslashes, so ``x\') OR 1=1 --`` closes the
literal; ``sqlstring`` likewise). Instead:

- every value is expanded with ``percentencode`` inside a string literal: Grafana's
  ``encodeURIComponentStrict`` leaves only ``A-Za-z0-9-_.~`` and ``%XX`` (no quote, no backslash),
  and ClickHouse's ``decodeURLComponent`` gives the exact text back;
- query variables list ``'x' || hex(name)`` as option value (the plugin takes the first column as
  value, the second as the text shown), so a multi-value list (``{v1,v2}``) splits unambiguously,
  and each element is kept only if it matches ``^x([0-9A-F]{2})*$`` before ``unhex`` (``chosen``);
  any name works, even ``''`` (``x``), and anything else selects nothing;
- custom variables compare their decoded text (``picked``) with fixed values instead of pasting it
  as SQL: ``view`` picks a table through a ``UNION ALL`` whose other branch is constant-false.

``${database}`` is a hidden constant, pasted as an identifier: constants are not read from the URL
(``skipUrlSync`` in Grafana's scenes), only from this provisioned JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from stitchboard.metrics import DERIVED

HERE = Path(__file__).resolve().parent
DASHBOARD_DIR = HERE / "dashboards"
ALERTS_FILE = HERE / "provisioning" / "alerting" / "stitchboard-alerts.yaml"

PLUGIN = "grafana-clickhouse-datasource"
DATASOURCE_UID = "stitchboard-clickhouse"
DATASOURCE = {"type": PLUGIN, "uid": DATASOURCE_UID}
DEFAULT_DATABASE = "stitchboard"
DB = "${database}"
OPTION_PATTERN = "^x([0-9A-F]{2})*$"


def option_value(column: str) -> str:
    """SQL of a query variable's option value for a name: ``x`` and its bytes in hex (see ``chosen``)."""
    return f"concat('x', hex({column}))"


def chosen(variable: str) -> str:
    """SQL array of the names selected in query variable ``variable`` (see the module docstring).

    ``percentencode`` writes one value as itself and several as ``{v1,v2}``, percent-encoded;
    decoded, split at braces and commas, each element is an option value or is dropped.
    """
    text = f"decodeURLComponent('${{{variable}:percentencode}}')"
    return (
        f"arrayMap(v -> unhex(substring(v, 2)), arrayFilter(v -> match(v, '{OPTION_PATTERN}'),"
        f" splitByRegexp('[{{}},]', {text})))"
    )


def picked(variable: str) -> str:
    """SQL text of the value of single-valued custom variable ``variable``, exactly as selected."""
    return f"decodeURLComponent('${{{variable}:percentencode}}')"


def selected(variable: str, column: str) -> str:
    """``column`` is one of the names selected in query variable ``variable`` (uses the primary key
    when ``column`` is in it: ``has`` of a constant array is an index condition)."""
    return f"has({chosen(variable)}, {column})"


TENANT_FILTER = selected("tenant", "tenant")
ALERT_FOLDER = "Stitchboard"
SCHEMA_VERSION = 39

Format = Literal["table", "time_series"]
_CLAUSE = re.compile(r" (?=(?:FROM|PREWHERE|WHERE|GROUP BY|ORDER BY|INNER JOIN|LEFT JOIN|UNION ALL|LIMIT) )")
_FORMAT_CODES = {"time_series": 0, "table": 1}  # the plugin's numeric format enum
_QUERY_TYPES = {"time_series": "timeseries", "table": "table"}

_DERIVED = {derived.name: derived for derived in DERIVED}


def pretty(sql: str) -> str:
    """One clause per line: the SQL is read in Grafana's editor and in review diffs."""
    return _CLAUSE.sub("\n", sql)


def kpi(name: str) -> str:
    """The catalogue's expression of a derived figure, summed over the selected rows."""
    return _DERIVED[name].aggregated()


def kpi_seconds(name: str) -> str:
    """A derived millisecond figure in seconds (Grafana's ``s`` unit)."""
    return f"{kpi(name)} / 1000"


# --------------------------------------------------------------------------------------------------
# Dashboards


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    kind: str  # Grafana panel type: stat, timeseries, table, barchart, bargauge
    sql: str
    format: Format
    unit: str = "none"
    width: int = 12
    height: int = 8
    description: str = ""
    decimals: int | None = None
    ratio: bool = False  # 0..1 figures: fix the axis to 0..100 %

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {"unit": "percentunit" if self.ratio else self.unit}
        if self.ratio:
            defaults |= {"min": 0, "max": 1}
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {},
            "targets": [
                {
                    "refId": "A",
                    "datasource": DATASOURCE,
                    "editorType": "sql",
                    "format": _FORMAT_CODES[self.format],
                    "queryType": _QUERY_TYPES[self.format],
                    "rawSql": pretty(self.sql),
                }
            ],
        }


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[dict[str, Any], ...]
    time_from: str = "now-24h"
    time_to: str = "now"
    refresh: str = ""
    tags: tuple[str, ...] = field(default=("stitchboard",))

    def to_json(self) -> dict[str, Any]:
        panels, x, y, row_height = [], 0, 0, 0
        for panel_id, panel in enumerate(self.panels, start=1):
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(panel.to_json(panel_id, x, y))
            x, row_height = x + panel.width, max(row_height, panel.height)
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "editable": False,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "time": {"from": self.time_from, "to": self.time_to},
            "refresh": self.refresh,
            "timezone": "browser",
            "templating": {"list": list(self.variables)},
            "annotations": {"list": []},
            "links": [],
            "panels": panels,
        }


def constant_database() -> dict[str, Any]:
    """Hidden constant naming the database (``clickhouse.database`` in the settings)."""
    return {"type": "constant", "name": "database", "hide": 2, "query": DEFAULT_DATABASE}


def query_variable(
    name: str, label: str, sql: str, *, multi: bool, include_all: bool = False
) -> dict[str, Any]:
    """``sql`` returns the option value (``option_value``) first and the text shown second."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": pretty(sql),
        "definition": pretty(sql),
        "refresh": 1,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "options": [],
        "hide": 0,
    }


def custom_variable(name: str, label: str, options: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A fixed choice; ``options`` are (text, value) pairs, the first is the default."""
    choices = [
        {"text": text, "value": value, "selected": index == 0} for index, (text, value) in enumerate(options)
    ]
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(f"{text} : {value}" for text, value in options),
        "multi": False,
        "includeAll": False,
        "current": {"text": options[0][0], "value": options[0][1], "selected": True},
        "options": choices,
        "hide": 0,
    }


def tenant_variable(*, multi: bool, sources: Sequence[str] = ("interval_metrics",)) -> dict[str, Any]:
    """Tenants present in the data; with row policies a Grafana user only ever sees their own."""
    names = " UNION ALL ".join(f"SELECT DISTINCT tenant FROM {DB}.{source}" for source in sources)
    sql = (
        f"SELECT DISTINCT {option_value('tenant')} AS tenant_value, tenant AS tenant_text"
        f" FROM ({names}) ORDER BY tenant_text"
    )
    return query_variable("tenant", "Tenant", sql, multi=multi, include_all=multi)


def queue_variable() -> dict[str, Any]:
    sql = (
        f"SELECT DISTINCT {option_value('queue')} AS queue_value, queue AS queue_text"
        f" FROM {DB}.interval_metrics WHERE {TENANT_FILTER} AND queue != '' ORDER BY queue_text"
    )
    return query_variable("queue", "Queue", sql, multi=True, include_all=True)


def channel_variable() -> dict[str, Any]:
    sql = (
        f"SELECT DISTINCT {option_value('channel')} AS channel_value, channel AS channel_text"
        f" FROM {DB}.interval_metrics WHERE {TENANT_FILTER} ORDER BY channel_text"
    )
    return query_variable("channel", "Channel", sql, multi=True, include_all=True)


_TODAY = "interval_minutes = 1440 AND interval_start <= $__toTime AND interval_end > $__toTime"
"""The tenant's local day containing the end of the time range (23/25 h on DST days)."""


def wallboard() -> Dashboard:
    live_today = f"FROM {DB}.interval_metrics FINAL WHERE {TENANT_FILTER} AND {_TODAY}"
    stat = {"kind": "stat", "format": "table", "width": 4, "height": 5}
    return Dashboard(
        uid="stitchboard-wallboard",
        title="Stitchboard / Wallboard",
        description="Live figures of the tenant's current local day, provisional figures included.",
        refresh="10s",
        time_from="now/d",
        variables=(constant_database(), tenant_variable(multi=False)),
        panels=(
            Panel("Offered", sql=f"SELECT sum(offered) AS offered_today {live_today}", **stat),
            Panel("Answered", sql=f"SELECT sum(answered) AS answered_today {live_today}", **stat),
            Panel("Abandoned", sql=f"SELECT sum(abandoned) AS abandoned_today {live_today}", **stat),
            Panel(
                "Service level",
                sql=f"SELECT {kpi('service_level')} AS service_level_today {live_today}",
                ratio=True,
                description=_DERIVED["service_level"].description,
                **stat,
            ),
            Panel(
                "ASA",
                sql=f"SELECT {kpi_seconds('asa_ms')} AS asa_seconds_today {live_today}",
                unit="s",
                decimals=1,
                **stat,
            ),
            Panel(
                "Abandon rate",
                sql=f"SELECT {kpi('abandon_rate')} AS abandon_rate_today {live_today}",
                ratio=True,
                **stat,
            ),
            Panel(
                "Today by queue",
                kind="table",
                format="table",
                width=16,
                sql=(
                    "SELECT queue, sum(offered) AS offered_today, sum(answered) AS answered_today,"
                    f" sum(abandoned) AS abandoned_today, {kpi('service_level')} AS service_level_today,"
                    f" {kpi_seconds('asa_ms')} AS asa_seconds_today"
                    f" {live_today} AND queue != '' GROUP BY queue ORDER BY queue"
                ),
            ),
            Panel(
                "Open conversations by queue",
                kind="bargauge",
                format="table",
                width=8,
                description="Conversations not yet ended, by the queue they are in now ('' = self-service).",
                sql=(
                    "SELECT last_queue AS current_queue, count() AS open_conversations"
                    f" FROM {DB}.conversations FINAL WHERE {TENANT_FILTER} AND status = 'open'"
                    " GROUP BY current_queue ORDER BY current_queue"
                ),
            ),
            Panel(
                "Offered, answered, abandoned per 15 minutes",
                kind="timeseries",
                format="time_series",
                width=24,
                sql=(
                    "SELECT interval_start AS time, sum(offered) AS offered_legs,"
                    " sum(answered) AS answered_legs, sum(abandoned) AS abandoned_legs"
                    f" FROM {DB}.interval_metrics FINAL WHERE {TENANT_FILTER} AND interval_minutes = 15"
                    " AND $__timeFilter(interval_start) GROUP BY time ORDER BY time"
                ),
            ),
        ),
    )


VIEWS = ("interval_metrics", "interval_published")
"""The tables the interval report's ``view`` variable chooses between."""


def report_source(extra: str = "") -> str:
    """``FROM`` the table the ``view`` variable names, filtered: each table in a ``UNION ALL`` branch
    whose condition on the view is constant, so ClickHouse reads only the chosen one (and neither
    for a value that is no view)."""
    filters = (
        f"{TENANT_FILTER} AND interval_minutes = toUInt16OrZero({picked('interval_length')})"
        f" AND status != 'provisional' AND $__timeFilter(interval_start) AND {selected('channel', 'channel')}"
        f"{extra}"
    )
    branches = " UNION ALL ".join(
        f"SELECT * FROM {DB}.{table} FINAL WHERE {filters} AND {picked('view')} = '{table}'"
        for table in VIEWS
    )
    return f"FROM ({branches})"


def interval_report() -> Dashboard:
    source = report_source()
    leg_source = report_source(f" AND {selected('queue', 'queue')}")
    figures = (
        "sum(offered) AS offered_legs, sum(answered) AS answered_legs, sum(abandoned) AS abandoned_legs,"
        f" {kpi('service_level')} AS service_level, {kpi('abandon_rate')} AS abandon_rate,"
        f" {kpi_seconds('asa_ms')} AS asa_seconds, {kpi_seconds('aht_ms')} AS aht_seconds,"
        f" {kpi('transfer_rate')} AS transfer_rate"
    )
    return Dashboard(
        uid="stitchboard-interval-report",
        title="Stitchboard / Interval report",
        description=(
            "Final figures per interval, queue and channel: as corrected (every restatement applied)"
            " or as published (exactly as first finalised). Set the dashboard time zone to the tenant's."
        ),
        time_from="now-7d",
        variables=(
            constant_database(),
            tenant_variable(multi=False),
            custom_variable(
                "interval_length",
                "Interval",
                [("15 min", "15"), ("30 min", "30"), ("60 min", "60"), ("day", "1440")],
            ),
            custom_variable("view", "View", list(zip(("as corrected", "as published"), VIEWS, strict=True))),
            queue_variable(),
            channel_variable(),
        ),
        panels=(
            Panel(
                "Service level by queue",
                kind="timeseries",
                format="time_series",
                ratio=True,
                sql=(
                    f"SELECT interval_start AS time, queue, {kpi('service_level')} AS service_level"
                    f" {leg_source} GROUP BY time, queue ORDER BY time, queue"
                ),
            ),
            Panel(
                "Offered and answered",
                kind="timeseries",
                format="time_series",
                sql=(
                    "SELECT interval_start AS time, sum(offered) AS offered_legs, sum(answered) AS answered_legs,"
                    f" sum(abandoned) AS abandoned_legs {leg_source} GROUP BY time ORDER BY time"
                ),
            ),
            Panel(
                "Figures per interval, queue and channel",
                kind="table",
                format="table",
                width=24,
                height=12,
                description="local_start is the wall time with the offset that applied (unambiguous on DST days).",
                sql=(
                    "SELECT interval_start AS time, any(local_start) AS local_time, queue, channel,"
                    f" {figures} {leg_source}"
                    " GROUP BY interval_start, queue, channel ORDER BY interval_start, queue, channel"
                ),
            ),
            Panel(
                "Totals by queue",
                kind="table",
                format="table",
                sql=f"SELECT queue, {figures} {leg_source} GROUP BY queue ORDER BY queue",
            ),
            Panel(
                "Contacts by channel (conversation scope)",
                kind="table",
                format="table",
                description="Counted once per conversation, in its first queue: tenant totals never double-count transfers.",
                sql=(
                    "SELECT channel, sum(contacts) AS contact_count, sum(contacts_answered) AS contacts_answered_count,"
                    f" sum(contacts_abandoned) AS contacts_abandoned_count, {kpi('containment_rate')} AS containment_rate,"
                    f" {kpi('resolution_rate')} AS resolution_rate {source} GROUP BY channel ORDER BY channel"
                ),
            ),
        ),
    )


def restatements_audit() -> Dashboard:
    restatements = (
        f"FROM {DB}.interval_restatements FINAL WHERE {TENANT_FILTER} AND $__timeFilter(restated_at)"
    )
    return Dashboard(
        uid="stitchboard-restatements",
        title="Stitchboard / Restatements audit",
        description="Every change to a finalised figure made in the time range: when, why, published vs corrected.",
        time_from="now-30d",
        variables=(constant_database(), tenant_variable(multi=False)),
        panels=(
            Panel(
                "Restatements over time",
                kind="timeseries",
                format="time_series",
                sql=(
                    "SELECT $__timeInterval(restated_at) AS time, reason, count() AS restatements"
                    f" {restatements} GROUP BY time, reason ORDER BY time, reason"
                ),
            ),
            Panel(
                "By reason",
                kind="table",
                format="table",
                sql=(
                    "SELECT reason, count() AS restatements, uniqExact(interval_start, queue, channel) AS intervals,"
                    f" sum(abs(delta)) AS absolute_change {restatements}"
                    " GROUP BY reason ORDER BY restatements DESC, reason"
                ),
            ),
            Panel(
                "Published vs corrected per interval and metric",
                kind="table",
                format="table",
                width=24,
                height=12,
                description="published: the figure in the final row; corrected: after the latest restatement.",
                sql=(
                    "SELECT interval_start AS time, interval_minutes, queue, channel, metric,"
                    " any(published) AS published_figure, argMax(corrected, restatement_seq) AS corrected_figure,"
                    " corrected_figure - published_figure AS net_change, count() AS restatements,"
                    " groupUniqArray(reason) AS reasons, max(restated_at) AS last_restated_at"
                    f" {restatements} GROUP BY interval_start, interval_minutes, queue, channel, metric"
                    " ORDER BY last_restated_at DESC, time, queue, channel, metric"
                ),
            ),
            Panel(
                "Daily offered and service level: as published vs as corrected",
                kind="table",
                format="table",
                width=24,
                description="Local days that started in the time range, both views side by side.",
                sql=(
                    "SELECT published.interval_start AS time, published.offered_published AS offered_published,"
                    " corrected.offered_corrected AS offered_corrected,"
                    " published.service_level_published AS service_level_published,"
                    " corrected.service_level_corrected AS service_level_corrected FROM ("
                    f"SELECT interval_start, sum(offered) AS offered_published, {kpi('service_level')} AS service_level_published"
                    f" FROM {DB}.interval_published FINAL WHERE {TENANT_FILTER} AND interval_minutes = 1440"
                    " AND $__timeFilter(interval_start) GROUP BY interval_start) AS published"
                    " LEFT JOIN ("
                    f"SELECT interval_start, sum(offered) AS offered_corrected, {kpi('service_level')} AS service_level_corrected"
                    f" FROM {DB}.interval_metrics FINAL WHERE {TENANT_FILTER} AND interval_minutes = 1440"
                    " AND status != 'provisional' AND $__timeFilter(interval_start) GROUP BY interval_start) AS corrected"
                    " ON corrected.interval_start = published.interval_start ORDER BY time"
                ),
            ),
        ),
    )


def data_quality() -> Dashboard:
    dead_letters = f"FROM {DB}.dead_letters FINAL WHERE {TENANT_FILTER} AND $__timeFilter(received_at)"
    return Dashboard(
        uid="stitchboard-data-quality",
        title="Stitchboard / Data quality",
        description="Rejected input (dead letters) and conversation counts; tenant '' = tenant unknown.",
        time_from="now-7d",
        variables=(
            constant_database(),
            tenant_variable(multi=True, sources=("interval_metrics", "dead_letters")),
        ),
        panels=(
            Panel(
                "Dead letters by reason",
                kind="timeseries",
                format="time_series",
                sql=(
                    "SELECT $__timeInterval(received_at) AS time, reason, count() AS dead_letters"
                    f" {dead_letters} GROUP BY time, reason ORDER BY time, reason"
                ),
            ),
            Panel(
                "Dead letters by tenant, reason and source",
                kind="table",
                format="table",
                sql=(
                    "SELECT tenant, reason, source, count() AS dead_letters, max(received_at) AS last_received_at"
                    f" {dead_letters} GROUP BY tenant, reason, source ORDER BY dead_letters DESC, tenant, reason, source"
                ),
            ),
            Panel(
                "Latest dead letters",
                kind="table",
                format="table",
                width=24,
                description="The original bytes are in dead_letters.raw (base64 here).",
                sql=(
                    "SELECT received_at, tenant, reason, source, origin, detail, base64Encode(raw) AS raw_base64"
                    f" {dead_letters} ORDER BY received_at DESC, origin LIMIT 100"
                ),
            ),
            Panel(
                "Conversations by channel and status",
                kind="table",
                format="table",
                sql=(
                    "SELECT tenant, channel, countIf(status = 'open') AS open_conversations,"
                    " countIf(status = 'ended') AS ended_conversations, countIf(answered) AS answered_conversations,"
                    " countIf(abandoned) AS abandoned_conversations"
                    f" FROM {DB}.conversations FINAL WHERE {TENANT_FILTER} AND $__timeFilter(started_at)"
                    " GROUP BY tenant, channel ORDER BY tenant, channel"
                ),
            ),
            Panel(
                "Conversations vs contacts in 60-minute intervals",
                kind="table",
                format="table",
                description=(
                    "Conversations started in the range vs the contacts metric of the intervals that started"
                    " in it; a gap points at evicted or unanchored conversations."
                ),
                sql=(
                    "SELECT stitched.tenant AS tenant, stitched.conversation_count AS conversation_count,"
                    " counted.contact_count AS contact_count,"
                    " stitched.conversation_count - counted.contact_count AS difference FROM ("
                    "SELECT tenant, count() AS conversation_count"
                    f" FROM {DB}.conversations FINAL WHERE {TENANT_FILTER} AND $__timeFilter(started_at)"
                    " GROUP BY tenant) AS stitched LEFT JOIN ("
                    "SELECT tenant, sum(contacts) AS contact_count"
                    f" FROM {DB}.interval_metrics FINAL WHERE {TENANT_FILTER} AND interval_minutes = 60"
                    " AND $__timeFilter(interval_start) GROUP BY tenant) AS counted"
                    " ON counted.tenant = stitched.tenant ORDER BY tenant"
                ),
            ),
        ),
    )


def pipeline() -> Dashboard:
    return Dashboard(
        uid="stitchboard-pipeline",
        title="Stitchboard / SRE pipeline",
        description="Freshness, finalisation lag and write rates, as of the end of the time range.",
        refresh="30s",
        time_from="now-6h",
        variables=(
            constant_database(),
            tenant_variable(multi=True, sources=("interval_metrics", "dead_letters")),
        ),
        panels=(
            Panel(
                "Freshness",
                kind="stat",
                format="table",
                unit="s",
                width=8,
                height=6,
                description="Seconds since the newest conversation update (ingest time of its latest event).",
                sql=(
                    "SELECT tenant, dateDiff('second', max(updated_at), $__toTime) AS freshness_seconds"
                    f" FROM {DB}.conversations WHERE {TENANT_FILTER} AND updated_at <= $__toTime"
                    " GROUP BY tenant ORDER BY tenant"
                ),
            ),
            Panel(
                "Finalisation lag",
                kind="stat",
                format="table",
                unit="s",
                width=8,
                height=6,
                description="Seconds since the end of the newest final 15-minute interval.",
                sql=(
                    "SELECT tenant, dateDiff('second', max(interval_end), $__toTime) AS finalisation_lag_seconds"
                    f" FROM {DB}.interval_metrics WHERE {TENANT_FILTER} AND interval_minutes = 15"
                    " AND status != 'provisional' AND interval_start >= $__toTime - INTERVAL 7 DAY"
                    " AND interval_end <= $__toTime GROUP BY tenant ORDER BY tenant"
                ),
            ),
            Panel(
                "Oldest provisional interval past its end",
                kind="stat",
                format="table",
                unit="s",
                width=8,
                height=6,
                description=(
                    "Seconds since the end of the oldest 15-minute interval still provisional; normal is below"
                    " out-of-orderness + allowed lateness (about 11 minutes by default)."
                ),
                sql=(
                    "SELECT tenant, dateDiff('second', min(interval_end), $__toTime) AS provisional_overdue_seconds"
                    f" FROM {DB}.interval_metrics FINAL WHERE {TENANT_FILTER} AND interval_minutes = 15"
                    " AND status = 'provisional' AND interval_start >= $__toTime - INTERVAL 7 DAY"
                    " AND interval_end <= $__toTime GROUP BY tenant ORDER BY tenant"
                ),
            ),
            Panel(
                "Rows per minute",
                kind="timeseries",
                format="time_series",
                width=24,
                description=(
                    "Conversation row versions (by updated_at), dead letters and restatements per minute."
                    " Superseded conversation versions disappear as parts merge, so old minutes undercount."
                ),
                sql=(
                    "SELECT time, sum(conversation_versions) AS conversation_rows, sum(rejected) AS dead_letter_rows,"
                    " sum(restated) AS restatement_rows FROM ("
                    "SELECT toStartOfMinute(updated_at) AS time, count() AS conversation_versions, 0 AS rejected,"
                    f" 0 AS restated FROM {DB}.conversations WHERE {TENANT_FILTER} AND $__timeFilter(updated_at)"
                    " GROUP BY time UNION ALL "
                    "SELECT toStartOfMinute(received_at) AS time, 0, count(), 0"
                    f" FROM {DB}.dead_letters WHERE {TENANT_FILTER} AND $__timeFilter(received_at) GROUP BY time"
                    " UNION ALL SELECT toStartOfMinute(restated_at) AS time, 0, 0, count()"
                    f" FROM {DB}.interval_restatements WHERE {TENANT_FILTER} AND $__timeFilter(restated_at)"
                    " GROUP BY time) GROUP BY time ORDER BY time"
                ),
            ),
            Panel(
                "Interval rows by status",
                kind="table",
                format="table",
                width=24,
                sql=(
                    "SELECT tenant, interval_minutes, status, count() AS interval_rows"
                    f" FROM {DB}.interval_metrics FINAL WHERE {TENANT_FILTER} AND $__timeFilter(interval_start)"
                    " GROUP BY tenant, interval_minutes, status ORDER BY tenant, interval_minutes, status"
                ),
            ),
        ),
    )


def dashboards() -> dict[str, dict[str, Any]]:
    """File name → dashboard JSON model."""
    built = (wallboard(), interval_report(), restatements_audit(), data_quality(), pipeline())
    return {f"{dashboard.uid}.json": dashboard.to_json() for dashboard in built}


# --------------------------------------------------------------------------------------------------
# Alert rules


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One Grafana-managed rule: a SQL query returning label columns and one number, and a threshold."""

    uid: str
    title: str
    sql: str
    comparison: Literal["gt", "lt"]
    threshold: float
    summary: str
    description: str
    audience: Literal["supervisor", "sre"]
    severity: Literal["warning", "critical"] = "warning"
    pending: str = "5m"
    lookback_seconds: int = 3600

    def to_provisioning(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "condition": "B",
            "data": [
                {
                    "refId": "A",
                    "relativeTimeRange": {"from": self.lookback_seconds, "to": 0},
                    "datasourceUid": DATASOURCE_UID,
                    "model": {
                        "refId": "A",
                        "datasource": DATASOURCE,
                        "editorType": "sql",
                        "format": _FORMAT_CODES["table"],
                        "queryType": "table",
                        "rawSql": pretty(self.sql),
                        "intervalMs": 60000,
                        "maxDataPoints": 43200,
                    },
                },
                {
                    "refId": "B",
                    "relativeTimeRange": {"from": 0, "to": 0},
                    "datasourceUid": "__expr__",
                    "model": {
                        "refId": "B",
                        "type": "threshold",
                        "expression": "A",
                        "datasource": {"type": "__expr__", "uid": "__expr__"},
                        "conditions": [{"evaluator": {"type": self.comparison, "params": [self.threshold]}}],
                    },
                },
            ],
            "noDataState": "OK",
            "execErrState": "Error",
            "for": self.pending,
            "annotations": {"summary": self.summary, "description": self.description},
            "labels": {"team": self.audience, "severity": self.severity, "source": "stitchboard"},
            "isPaused": False,
        }


BASELINE_WEEKS = 4
MIN_BASELINE_WEEKS = 3
SLOT_SHIFT_HOURS = 3
"""Bound on how far (in UTC) the same local slot k weeks earlier lies from now - k weeks.

A zone's UTC offset moves by at most 2 hours (DST on Antarctica/Troll; 1 hour almost everywhere,
30 minutes on Lord Howe), and a slot label (``HH:MM``) ignores the seconds of a cut interval, so
3 hours covers every same-slot row. The baseline reads only these windows: a few granules per
tenant and week instead of 29 days of every tenant through ``FINAL``. The slot match itself
(weekday and wall time) still decides which rows count.
"""


def _key_windows(length: int, windows: Sequence[tuple[str, str]]) -> str:
    """``interval_minutes`` and ``interval_start`` ranges: key columns only, so safe before ``FINAL``."""
    ranges = " OR ".join(f"interval_start >= {start} AND interval_start < {end}" for start, end in windows)
    return f"interval_minutes = {length} AND ({ranges})"


def slot_anomaly_sql(database: str, figure: str, volume: str, min_volume: int, value: str, name: str) -> str:
    """A derived figure of the 15-minute interval that ended last vs its trailing baseline.

    The baseline is the median of the same figure in the same local time slot (weekday and wall
    time, so DST does not shift it) over the previous ``BASELINE_WEEKS`` weeks, as corrected. Rows
    appear only with enough volume now and enough baseline weeks; ``value`` combines ``figure_now``
    and ``figure_baseline`` into the one number the threshold tests.

    Both sides read ``interval_metrics FINAL`` through ``PREWHERE`` ranges of the primary key that
    contain every row the other conditions can select (a 15-minute interval is at most 15 minutes
    long, so the one that ended last started in the last 30 minutes; see ``SLOT_SHIFT_HOURS``).
    """
    slot = "toDayOfWeek(local_date) AS weekday, substring(local_start, 12, 5) AS slot"
    now = _key_windows(15, [("$__toTime - INTERVAL 30 MINUTE", "$__toTime")])
    shift = SLOT_SHIFT_HOURS
    weeks = [
        (f"$__toTime - INTERVAL {168 * week + shift} HOUR", f"$__toTime - INTERVAL {168 * week - shift} HOUR")
        for week in range(1, BASELINE_WEEKS + 1)
    ]
    return (
        f"SELECT tenant, queue, {value} AS {name} FROM ("
        f"SELECT tenant, queue, {slot}, {figure} AS figure_now, {volume} AS volume_now"
        f" FROM {database}.interval_metrics FINAL PREWHERE {now} WHERE queue != ''"
        " AND interval_end > $__toTime - INTERVAL 15 MINUTE AND interval_end <= $__toTime"
        " GROUP BY tenant, queue, weekday, slot) AS current INNER JOIN ("
        "SELECT tenant, queue, weekday, slot, median(figure_then) AS figure_baseline, count() AS baseline_weeks FROM ("
        f"SELECT tenant, queue, local_date, {slot}, {figure} AS figure_then"
        f" FROM {database}.interval_metrics FINAL PREWHERE {_key_windows(15, weeks)} WHERE queue != ''"
        " AND status != 'provisional'"
        f" AND interval_start >= $__toTime - INTERVAL {7 * BASELINE_WEEKS + 1} DAY"
        " AND interval_start < $__toTime - INTERVAL 1 DAY"
        " GROUP BY tenant, queue, local_date, weekday, slot) WHERE figure_then IS NOT NULL"
        " GROUP BY tenant, queue, weekday, slot) AS baseline USING (tenant, queue, weekday, slot)"
        f" WHERE volume_now >= {min_volume} AND figure_now IS NOT NULL"
        f" AND baseline_weeks >= {MIN_BASELINE_WEEKS} ORDER BY tenant, queue"
    )


def stale_seconds_sql(database: str) -> str:
    """Seconds since each tenant's newest conversation update at or before ``$__toTime``.

    ``max(updated_at)`` per tenant comes from the ``latest_update`` projection of ``conversations``
    (a few rows per part instead of every conversation). ``updated_at`` is the pipeline's clock when
    it wrote the row, so normally no row is newer than ``$__toTime``; a tenant that has such rows
    (a time range ending in the past, a skewed clock) is recomputed from its rows, read through the
    primary key (``tenant`` first).
    """
    latest = f"SELECT tenant, max(updated_at) AS latest FROM {database}.conversations GROUP BY tenant"
    return (
        f"SELECT tenant, dateDiff('second', latest, $__toTime) AS stale_seconds FROM ({latest})"
        " WHERE latest <= $__toTime UNION ALL "
        "SELECT tenant, dateDiff('second', max(updated_at), $__toTime) AS stale_seconds"
        f" FROM {database}.conversations WHERE tenant IN (SELECT tenant FROM ({latest}) WHERE latest > $__toTime)"
        " AND updated_at <= $__toTime GROUP BY tenant"
    )


def alert_rules(database: str = DEFAULT_DATABASE) -> list[AlertRule]:
    sl_drop = slot_anomaly_sql(
        database,
        kpi("service_level"),
        "sum(offered)",
        10,
        "figure_now / nullIf(figure_baseline, 0)",
        "service_level_vs_baseline",
    )
    abandon_spike = slot_anomaly_sql(
        database,
        kpi("abandon_rate_excluding_short"),
        "sum(offered)",
        10,
        "figure_now - figure_baseline",
        "abandon_rate_above_baseline",
    )
    asa_spike = slot_anomaly_sql(
        database,
        kpi("asa_ms"),
        "sum(answered)",
        5,
        "figure_now / greatest(figure_baseline, 5000)",
        "asa_vs_baseline",
    )
    dead_letter_surge = (
        "SELECT tenant, recent / greatest(usual, 1) AS dead_letters_vs_usual FROM ("
        "SELECT tenant, countIf(received_at > $__toTime - INTERVAL 15 MINUTE) AS recent,"
        " countIf(received_at <= $__toTime - INTERVAL 1 DAY) / (7 * 96) AS usual"
        f" FROM {database}.dead_letters FINAL"
        " WHERE received_at > $__toTime - INTERVAL 8 DAY AND received_at <= $__toTime GROUP BY tenant)"
        " WHERE recent >= 20 ORDER BY tenant"
    )
    stale = (
        f"SELECT tenant, stale_seconds FROM ({stale_seconds_sql(database)}) AS freshness INNER JOIN ("
        "SELECT tenant, sum(contacts) / 7 AS usual_hourly_contacts"
        # Only key columns before FINAL: the same hour of the previous seven days is merged, not 168 hours.
        f" FROM {database}.interval_metrics FINAL PREWHERE interval_minutes = 60"
        " AND interval_start >= $__toTime - INTERVAL 169 HOUR AND interval_start < $__toTime - INTERVAL 1 HOUR"
        " AND toHour(toTimezone(interval_start, 'UTC')) = toHour(toTimezone($__toTime, 'UTC'))"
        " WHERE status != 'provisional'"
        " GROUP BY tenant) AS usual USING (tenant) WHERE usual_hourly_contacts >= 12 ORDER BY tenant"
    )
    finalisation = (
        "SELECT tenant, dateDiff('second', min(interval_end), $__toTime) AS provisional_overdue_seconds"
        f" FROM {database}.interval_metrics FINAL WHERE interval_minutes = 15 AND status = 'provisional'"
        " AND interval_start >= $__toTime - INTERVAL 7 DAY AND interval_end <= $__toTime"
        " GROUP BY tenant ORDER BY tenant"
    )
    baseline = f"the median of the same local slot over the previous {BASELINE_WEEKS} weeks"
    return [
        AlertRule(
            "stitchboard-sl-drop",
            "Service level drop",
            sl_drop,
            "lt",
            0.8,
            "{{ $labels.tenant }} / {{ $labels.queue }}: service level below 80 % of its usual level",
            f"Service level of the last 15-minute interval divided by {baseline} (at least 10 offered).",
            "supervisor",
        ),
        AlertRule(
            "stitchboard-abandon-spike",
            "Abandon-rate spike",
            abandon_spike,
            "gt",
            0.1,
            "{{ $labels.tenant }} / {{ $labels.queue }}: abandon rate 10 points above its usual level",
            f"Abandon rate (short abandons excluded) of the last 15-minute interval minus {baseline}.",
            "supervisor",
        ),
        AlertRule(
            "stitchboard-asa-spike",
            "ASA spike",
            asa_spike,
            "gt",
            2.0,
            "{{ $labels.tenant }} / {{ $labels.queue }}: average speed of answer twice its usual level",
            f"ASA of the last 15-minute interval divided by {baseline}, floored at 5 s (at least 5 answered).",
            "supervisor",
        ),
        AlertRule(
            "stitchboard-dead-letter-surge",
            "Dead-letter surge",
            dead_letter_surge,
            "gt",
            5.0,
            "{{ $labels.tenant }}: dead letters at 5x their usual rate",
            "Dead letters in the last 15 minutes (at least 20) vs the 15-minute average of the previous 7 days.",
            "sre",
            lookback_seconds=8 * 86400,
        ),
        AlertRule(
            "stitchboard-stale-pipeline",
            "Stale pipeline",
            stale,
            "gt",
            300.0,
            "{{ $labels.tenant }}: no conversation update for 5 minutes",
            "Seconds since the newest conversation update, for tenants that usually have at least 12 contacts"
            " in this hour of the day (average of the previous 7 days).",
            "sre",
            severity="critical",
            pending="2m",
            lookback_seconds=8 * 86400,
        ),
        AlertRule(
            "stitchboard-finalisation-lag",
            "Finalisation lag",
            finalisation,
            "gt",
            1800.0,
            "{{ $labels.tenant }}: 15-minute intervals still provisional 30 minutes after their end",
            "Seconds since the end of the oldest 15-minute interval that is still provisional; finalisation"
            " normally follows out-of-orderness + allowed lateness (about 11 minutes by default).",
            "sre",
            severity="critical",
            lookback_seconds=7 * 86400,
        ),
    ]


def alert_provisioning(database: str = DEFAULT_DATABASE) -> dict[str, Any]:
    """The alerting provisioning file (apiVersion 1): one group for supervisors, one for SREs."""
    rules = alert_rules(database)
    groups = [
        {
            "orgId": 1,
            "name": f"stitchboard-{audience}",
            "folder": ALERT_FOLDER,
            "interval": "1m",
            "rules": [rule.to_provisioning() for rule in rules if rule.audience == audience],
        }
        for audience in ("supervisor", "sre")
    ]
    return {"apiVersion": 1, "groups": groups}


# --------------------------------------------------------------------------------------------------
# Output


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks and no anchors, so the YAML stays reviewable."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def render() -> dict[Path, str]:
    """Every generated file and its exact content."""
    files = {
        DASHBOARD_DIR / name: json.dumps(model, indent=2, ensure_ascii=False) + "\n"
        for name, model in dashboards().items()
    }
    header = "# Generated by `python -m deploy.grafana.build_dashboards`; do not edit.\n"
    body = yaml.dump(
        alert_provisioning(), Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=110
    )
    files[ALERTS_FILE] = header + body
    return files


def stale_files() -> list[Path]:
    """Generated files whose committed content differs from what this script renders."""
    return [
        path
        for path, text in render().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in render().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
