"""The fuzz harness: valid records with hostile ones interleaved, through the real flow into chDB, and
the checks that must hold whatever the hostile records were (tests/hostile/test_fuzz.py runs it at
test size, bench/fuzz.py over 100,000 mutants).

The checks:

* the flow finishes;
* every record is accounted for: records in = accepted + dead-lettered (the flow's counters), and
  every record-level dead letter is stored;
* no impossible figure anywhere (``impossible_figures``): no negative duration or count, handle =
  talk + hold + acw, answered + abandoned ≤ offered per queue, nothing beyond what 2000..2100 can hold;
* the valid records' figures do not depend on the hostile ones (``valid_figure_changes``), against a
  run of the valid records alone: a valid tenant that took no hostile record on purpose comes out
  exactly the same; one that took hostile records of its own keeps every valid conversation as it
  was and none of its interval figures shrinks.

Why one module of over 500 lines: the stream, the run and the checks are one harness, which the test
and the long run share.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client

from stitchboard import telemetry
from stitchboard.app.runner import make_flow
from stitchboard.metrics import METRIC_NAMES
from stitchboard.reconcile import read_figures
from stitchboard.replay_file import to_jsonl
from stitchboard.settings import INTERVAL_MINUTES, ClickHouseSettings, Settings, TenantSettings
from stitchboard.sinks.clickhouse import init_db
from stitchboard.sinks.clickhouse_sink import ClickHouseSink
from stitchboard.testing.mutator import DAY_TENANTS, Mutant, ValidRecord, conversation_ids

SPAN_MS = int(
    (datetime(2100, 1, 1, tzinfo=UTC) - datetime(2000, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1)
)
MS_COLUMNS = ("wait_ms", "talk_ms", "hold_ms", "acw_ms", "handle_ms")
WINDOW = 100  # a mutant is delivered among this many valid records after its base
_BOOKKEEPING = frozenset({"version", "updated_at"})
_STEP = re.compile(r'in step "([^"]+)" for key "([^"]*)"')


# ---------------------------------------------------------------- the stream


@dataclass(frozen=True, slots=True)
class Line:
    """One record of the replay file and what it is: a valid record (its index) or part of a mutant."""

    raw: bytes
    delivered_at: datetime
    valid: int | None = None
    mutant: Mutant | None = None


def interleave(valid: Sequence[ValidRecord], mutants: Sequence[Mutant], seed: int) -> list[Line]:
    """The valid records in order, each mutant's records together at a random place among the
    ``WINDOW`` valid records after its base record, delivered (the transport's time) when its base was
    received: a broker stamps what it is handed, whatever the record claims."""
    rng = random.Random(seed)
    position = {record: index for index, record in enumerate(valid)}
    slots: dict[int, list[Mutant]] = defaultdict(list)
    for mutant in mutants:
        after = position.get(mutant.base, rng.randrange(len(valid) + 1) - 1) + 1
        slots[min(len(valid), after + rng.randint(0, WINDOW))].append(mutant)
    lines: list[Line] = []
    for index in range(len(valid) + 1):
        for mutant in slots.get(index, ()):
            lines += [Line(raw, mutant.base.received_at, mutant=mutant) for raw in mutant.records]
        if index < len(valid):
            lines.append(Line(valid[index].raw, valid[index].received_at, valid=index))
    return lines


def write_stream(lines: Sequence[Line], path: Path) -> dict[str, Line]:
    """Write the replay file; map each record's origin (``file@offset``, as the flow names it) to it."""
    origins: dict[str, Line] = {}
    chunks: list[bytes] = []
    offset = 0
    for line in lines:
        chunk = to_jsonl([(line.delivered_at, line.raw)])
        origins[f"{path.name}@{offset}"] = line
        chunks.append(chunk)
        offset += len(chunk)
    path.write_bytes(b"".join(chunks))
    return origins


# ---------------------------------------------------------------- running the flow


def fuzz_settings(database: str) -> Settings:
    """Defaults everywhere (the generated day's tenants in their zones), no metrics endpoint."""
    return Settings(
        tenants={name: TenantSettings(time_zone=zone) for name, zone in DAY_TENANTS.items()},
        metrics_port=None,
        clickhouse=ClickHouseSettings(dsn="chdb://in-process", database=database),
    )


def _total(counter: Any) -> int:
    return int(sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total")))


@dataclass(frozen=True, slots=True)
class Counts:
    records_in: int
    accepted: int
    dead_lettered: int
    after_acceptance: int  # dead letters raised after a record was accepted
    by_reason: Mapping[str, int]


def _by_reason() -> dict[str, int]:
    return {
        sample.labels["reason"]: int(sample.value)
        for metric in telemetry.RECORDS_DEAD_LETTERED.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


@dataclass(frozen=True, slots=True)
class Run:
    """One flow run: the counters it moved, the error that stopped it (if any), the seconds it took."""

    database: str
    origins: Mapping[str, Line]
    counts: Counts
    error: str | None
    seconds: float


def run_stream(client: Client, lines: Sequence[Line], workdir: Path, name: str) -> Run:
    """Replay ``lines`` through the production flow (drained at the end) into a new database."""
    database = f"fuzz_{name}_{uuid.uuid4().hex[:8]}"
    init_db(client, database)
    settings = fuzz_settings(database)
    path = workdir / f"{name}.jsonl"
    origins = write_stream(lines, path)
    counters = (
        telemetry.RECORDS_IN,
        telemetry.RECORDS_ACCEPTED,
        telemetry.RECORDS_DEAD_LETTERED,
        telemetry.DEAD_LETTERS_AFTER_ACCEPTANCE,
    )
    before, reasons_before = [_total(c) for c in counters], _by_reason()
    error: str | None = None
    started = time.perf_counter()
    try:
        run_main(
            make_flow(
                settings,
                replay=path,
                drain_at_eof=True,
                sink=ClickHouseSink(lambda: client, settings.clickhouse),
            )
        )
    except Exception as exc:  # the flow must finish; what stopped it is the finding
        error = _cause(exc)
    seconds = time.perf_counter() - started
    after, reasons_after = [_total(c) for c in counters], _by_reason()
    by_reason = {
        r: n - reasons_before.get(r, 0) for r, n in reasons_after.items() if n != reasons_before.get(r, 0)
    }
    records_in, accepted, dead, later = (a - b for a, b in zip(after, before, strict=True))
    counts = Counts(records_in, accepted, dead, later, by_reason)
    return Run(database, origins, counts, error, seconds)


def _cause(exc: BaseException) -> str:
    """The innermost exception of a chain (Bytewax wraps the step's own), where it was raised, and
    the step and key Bytewax names (the key starts with the tenant)."""
    step = _STEP.search(str(exc))
    while exc.__cause__ is not None:
        exc = exc.__cause__
    frames = traceback.extract_tb(exc.__traceback__)
    where = (
        f" at {frames[-1].filename.rpartition('/')[2]}:{frames[-1].lineno} ({frames[-1].name})"
        if frames
        else ""
    )
    context = f" [step {step.group(1)} key {step.group(2)}]" if step else ""
    return f"{type(exc).__name__}: {str(exc)[:500]}{where}{context}"


# ---------------------------------------------------------------- what a run stored


@dataclass(frozen=True, slots=True)
class Letter:
    """A stored dead letter; ``part`` is '' for a whole record (and where the table has no part)."""

    tenant: str
    reason: str
    origin: str
    detail: str
    part: str


@dataclass(slots=True)
class Stored:
    """Everything the checks read from one run's database."""

    conversations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    figures: dict[int, dict[tuple[str, str, str, datetime], dict[str, int]]] = field(default_factory=dict)
    agent_states: set[tuple[str, str, str, datetime, str]] = field(default_factory=set)
    letters: list[Letter] = field(default_factory=list)
    restatements: list[dict[str, Any]] = field(default_factory=list)


def _rows(client: Client, sql: str) -> list[dict[str, Any]]:
    result = client.query(sql)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def read_stored(client: Client, database: str) -> Stored:
    stored = Stored()
    for row in _rows(client, f"SELECT * FROM {database}.conversations FINAL"):
        stored.conversations[(row["tenant"], row["conversation_id"])] = {
            k: v for k, v in row.items() if k not in _BOOKKEEPING
        }
    stored.figures = {minutes: read_figures(client, database, minutes) for minutes in INTERVAL_MINUTES}
    stored.agent_states = {
        (r["tenant"], r["agent"], r["state"], r["at"], r["event_id"])
        for r in _rows(
            client, f"SELECT tenant, agent, state, at, event_id FROM {database}.agent_states FINAL"
        )
    }
    stored.letters = [
        Letter(r["tenant"], r["reason"], r["origin"], r["detail"], r.get("part", ""))
        for r in _rows(client, f"SELECT * EXCEPT (raw) FROM {database}.dead_letters FINAL")
    ]
    stored.restatements = _rows(
        client,
        f"SELECT tenant, queue, metric, published, previous, corrected FROM {database}.interval_restatements FINAL",
    )
    return stored


# ---------------------------------------------------------------- checks


def accounting_problems(run: Run, stored: Stored, path_name: str) -> list[str]:
    """Records in = lines written = accepted + dead-lettered; every dead letter counted is stored, one
    row each (a record's, and each raised after acceptance: conflicts, corrections beyond the horizon)."""
    counts, problems = run.counts, []
    if counts.records_in != len(run.origins):
        problems.append(f"the flow read {counts.records_in} records of {len(run.origins)}")
    if counts.accepted + counts.dead_lettered != counts.records_in:
        problems.append(
            f"accepted {counts.accepted} + dead-lettered {counts.dead_lettered} != in {counts.records_in}"
        )
    whole = [x for x in stored.letters if x.origin.startswith(f"{path_name}@") and not x.part]
    if len(whole) != counts.dead_lettered:
        problems.append(f"{len(whole)} record dead letters stored, the flow counted {counts.dead_lettered}")
    later = len(stored.letters) - len(whole)
    if later != counts.after_acceptance:
        problems.append(
            f"{later} dead letters after acceptance stored, the flow counted {counts.after_acceptance}"
        )
    return problems


def impossible_figures(stored: Stored) -> list[str]:
    """Figures no input may produce, in every tenant (the hostile ones included)."""
    problems: list[str] = []
    for (tenant, conversation), row in stored.conversations.items():
        where = f"conversation {tenant!r}/{conversation!r}"
        for column in MS_COLUMNS:
            if not 0 <= row[column] <= SPAN_MS:
                problems.append(f"{where}: {column} = {row[column]} (outside 0..{SPAN_MS})")
        if row["handle_ms"] != row["talk_ms"] + row["hold_ms"] + row["acw_ms"]:
            problems.append(
                f"{where}: handle_ms {row['handle_ms']} != talk + hold + acw ({row['talk_ms']} + {row['hold_ms']} + {row['acw_ms']})"
            )
        if row["ended_at"] is not None and row["ended_at"] < row["started_at"]:
            problems.append(f"{where}: ended_at {row['ended_at']} before started_at {row['started_at']}")
        if row["transfers"] > row["legs"]:
            problems.append(f"{where}: {row['transfers']} transfers of {row['legs']} legs")
        if row["qa_score"] is not None and not 0 <= row["qa_score"] <= 100:
            problems.append(f"{where}: qa_score {row['qa_score']}")
    for minutes, figures in stored.figures.items():
        totals: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
        for (tenant, queue, channel, start), values in figures.items():
            where = f"{minutes}-minute interval {tenant!r}/{queue!r}/{channel} {start:%Y-%m-%d %H:%M}"
            negative = {m: v for m, v in values.items() if v < 0}
            if negative:
                problems.append(f"{where}: negative {negative}")
            if values["handle_ms"] != values["talk_ms"] + values["hold_ms"] + values["acw_ms"]:
                problems.append(f"{where}: handle_ms {values['handle_ms']} != talk + hold + acw")
            for metric, count in (
                ("talk_ms", "handled"),
                ("hold_ms", "handled"),
                ("acw_ms", "handled"),
                ("answer_wait_ms", "answered"),
                ("abandon_wait_ms", "abandoned"),
            ):
                if values[metric] > SPAN_MS * values[count]:
                    problems.append(
                        f"{where}: {metric} {values[metric]} beyond {values[count]} {count} x 100 years"
                    )
            totals[(tenant, queue, channel)].update(values)
        for (tenant, queue, channel), total in totals.items():
            where = f"{minutes}-minute totals {tenant!r}/{queue!r}/{channel}"
            for part, whole in (
                ("answered", "offered"),
                ("answered_in_sl", "answered"),
                ("abandoned_short", "abandoned"),
                ("abandoned_in_sl", "abandoned"),
                ("transferred_out", "answered"),
                ("qa_scored", "handled"),
            ):
                if total[part] > total[whole]:
                    problems.append(f"{where}: {part} {total[part]} > {whole} {total[whole]}")
            if total["answered"] + total["abandoned"] > total["offered"]:
                problems.append(
                    f"{where}: answered {total['answered']} + abandoned {total['abandoned']} > offered {total['offered']}"
                )
            if total["qa_score_sum"] > 100 * total["qa_scored"]:
                problems.append(
                    f"{where}: qa_score_sum {total['qa_score_sum']} > 100 x {total['qa_scored']} scored"
                )
    problems += _lengths_disagree(stored)
    for row in stored.restatements:
        if row["corrected"] < 0 or row["previous"] < 0:
            problems.append(
                f"restatement {row['tenant']!r}/{row['queue']!r} {row['metric']}: {row['previous']} -> {row['corrected']}"
            )
    return problems


def _lengths_disagree(stored: Stored) -> list[str]:
    """Every figure lands in the interval of its event, for every length: the totals agree."""
    totals = {minutes: _totals_by_queue(figures) for minutes, figures in stored.figures.items()}
    daily = totals.get(1440, {})
    problems = []
    for minutes, by_queue in totals.items():
        for key in sorted(set(by_queue) | set(daily)):
            ours, days = by_queue.get(key, Counter()), daily.get(key, Counter())
            diff = {m: (ours[m], days[m]) for m in METRIC_NAMES if ours[m] != days[m]}
            if diff:
                problems.append(f"{minutes}-minute and daily totals of {key} differ: {diff}")
    return problems


def _totals_by_queue(
    figures: Mapping[tuple[str, str, str, datetime], Mapping[str, int]],
) -> dict[tuple[str, str, str], Counter[str]]:
    totals: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    for (tenant, queue, channel, _start), values in figures.items():
        totals[(tenant, queue, channel)].update(values)
    return totals


def valid_figure_changes(
    baseline: Stored,
    mixed: Stored,
    valid_tenants: Iterable[str],
    same_tenants: frozenset[str],
) -> list[str]:
    """How the hostile records changed the valid records' figures (empty when they did not)."""
    problems: list[str] = []
    for tenant in sorted(valid_tenants):
        shared = tenant in same_tenants
        label = (
            f"tenant {tenant!r} ({'took hostile records of its own' if shared else 'took no hostile record'})"
        )
        before = {k: v for k, v in baseline.conversations.items() if k[0] == tenant}
        after = {k: v for k, v in mixed.conversations.items() if k[0] == tenant}
        for key, row in before.items():
            if key not in after:
                problems.append(f"{label}: conversation {key[1]!r} disappeared")
                continue
            changed = {c: (v, after[key].get(c)) for c, v in row.items() if after[key].get(c) != v}
            if changed:
                problems.append(f"{label}: conversation {key[1]!r} changed {changed}")
        if not shared:
            problems += [
                f"{label}: conversation {key[1]!r} appeared" for key in sorted(set(after) - set(before))
            ]
        for minutes in INTERVAL_MINUTES:
            was = {k: v for k, v in baseline.figures[minutes].items() if k[0] == tenant}
            now = {k: v for k, v in mixed.figures[minutes].items() if k[0] == tenant}
            for interval in sorted(set(was) | set(now)):
                old, new = was.get(interval, {}), now.get(interval, {})
                for metric in METRIC_NAMES:
                    a, b = old.get(metric, 0), new.get(metric, 0)
                    if (b < a) if shared else (b != a):
                        problems.append(
                            f"{label}: {minutes}-minute {interval[1]!r}/{interval[2]} {interval[3]:%Y-%m-%d %H:%M} {metric} {a} -> {b}"
                        )
        states_before = {s for s in baseline.agent_states if s[0] == tenant}
        states_after = {s for s in mixed.agent_states if s[0] == tenant}
        lost = states_before - states_after
        gained = set() if shared else states_after - states_before
        if lost or gained:
            problems.append(f"{label}: agent states lost {sorted(lost)[:3]} gained {sorted(gained)[:3]}")
    return problems


def valid_letter_changes(
    baseline: Run, baseline_stored: Stored, mixed: Run, mixed_stored: Stored
) -> list[str]:
    """Valid records are dead-lettered in the mixed run exactly as they were alone, with the same reasons."""

    def letters(run: Run, stored: Stored) -> Counter[tuple[int, str]]:
        return Counter(
            (line.valid, f"{letter.reason} {letter.part}".rstrip())
            for letter in stored.letters
            if (line := run.origins.get(letter.origin)) is not None and line.valid is not None
        )

    alone, mixed_letters = letters(baseline, baseline_stored), letters(mixed, mixed_stored)
    if alone == mixed_letters:
        return []
    return [
        f"valid record #{index} dead-lettered {reason!r}: {mixed_letters[(index, reason)]} time(s) mixed, {alone[(index, reason)]} alone"
        for index, reason in sorted(set(alone) | set(mixed_letters))
        if alone[(index, reason)] != mixed_letters[(index, reason)]
    ]


def internal_errors(run: Run, stored: Stored) -> list[str]:
    """Dead letters that are caught exceptions (``internal_error``): a record no rule explains."""
    found = []
    for letter in stored.letters:
        if letter.reason == "internal_error":
            line = run.origins.get(letter.origin)
            kind = line.mutant.kind if line is not None and line.mutant is not None else "?"
            found.append(f"internal_error from {kind}: {letter.detail[:300]}")
    return found


def suspects(problems: Sequence[str], mutants: Sequence[Mutant], limit: int = 40) -> str:
    """The problems, each with the mutants that name its conversation (or, failing that, its tenant)."""
    by_conversation: dict[str, set[tuple[int, str]]] = defaultdict(set)
    by_tenant: dict[str, set[str]] = defaultdict(set)
    for mutant in mutants:
        for raw in mutant.records:
            with contextlib.suppress(orjson.JSONDecodeError):
                document = orjson.loads(raw)
                if isinstance(document, dict):
                    for conversation in conversation_ids(document.get("payload")):
                        by_conversation[conversation].add((mutant.index, mutant.kind))
        for tenant in {
            mutant.tenant,
            mutant.tenant.strip(),
            mutant.base.tenant if mutant.mode == "same" else "",
        }:
            by_tenant[tenant].add(mutant.kind)
    lines = []
    for problem in problems[:limit]:
        named = sorted({m for c, ms in by_conversation.items() if repr(c) in problem for m in ms})
        if named:
            lines.append(
                f"{problem}\n    from mutant(s) {', '.join(f'#{i} {kind}' for i, kind in named[:5])}"
            )
            continue
        kinds = sorted({k for t, ks in by_tenant.items() if t and repr(t) in problem for k in ks})
        lines.append(f"{problem}\n    kinds of mutants naming its tenant: {kinds}" if kinds else problem)
    more = f"\n… and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n".join(lines) + more


@dataclass(frozen=True, slots=True)
class Verdict:
    """Everything one mixed run broke, by check."""

    error: str | None
    accounting: list[str]
    impossible: list[str]
    changed: list[str]
    internal: list[str]

    @property
    def problems(self) -> list[str]:
        head = [f"the flow stopped: {self.error}"] if self.error else []
        return head + self.accounting + self.impossible + self.changed + self.internal

    def report(self, limit: int = 40) -> str:
        problems = self.problems
        more = f"\n… and {len(problems) - limit} more" if len(problems) > limit else ""
        return "\n".join(problems[:limit]) + more


@dataclass(frozen=True, slots=True)
class Baseline:
    run: Run
    stored: Stored


def judge(
    client: Client,
    baseline: Baseline,
    mixed: Run,
    valid: Sequence[ValidRecord],
    same_tenants: frozenset[str],
) -> Verdict:
    """Every check of the module docstring, for a mixed run against the valid-only baseline; when the
    flow stopped, only that (what it left in the tables is a consequence, not a finding)."""
    if mixed.error is not None:
        return Verdict(mixed.error, [], [], [], [])
    stored = read_stored(client, mixed.database)
    path_name = next(iter(mixed.origins)).partition("@")[0]
    changed = valid_figure_changes(baseline.stored, stored, {r.tenant for r in valid}, same_tenants)
    changed += valid_letter_changes(baseline.run, baseline.stored, mixed, stored)
    return Verdict(
        mixed.error,
        accounting_problems(mixed, stored, path_name),
        impossible_figures(stored),
        changed,
        internal_errors(mixed, stored),
    )
