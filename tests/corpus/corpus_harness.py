"""The fixture-corpus harness: load and validate manifests, replay every delivery once through the
real flow into chDB, and compare each case's stored figures with its hand-computed expectations.

The real corpus (``tests/fixtures/corpus``) and the harness self-test (a corpus written to a
temporary directory) go through exactly these functions, with the corpus root as a parameter, so a
harness that catches a wrong figure in the self-test catches it in the corpus too. The format is
described in ``tests/fixtures/corpus/README.md``.

Why one module of over 500 lines: the manifest's validation, the replay through the real flow and
the comparison with hand figures are one harness, tested as one by its self-test.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client

from stitchboard import telemetry
from stitchboard.adapters import ADAPTERS
from stitchboard.adapters.fields import parse_time
from stitchboard.app.runner import make_flow
from stitchboard.deadletters import AdapterError
from stitchboard.metrics import METRIC_NAMES
from stitchboard.reconcile import read_figures
from stitchboard.replay_file import to_jsonl
from stitchboard.settings import INTERVAL_MINUTES, ClickHouseSettings, Settings
from stitchboard.sinks.clickhouse import init_db
from stitchboard.tables import table

CORPUS_ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
GROUPS: tuple[str, ...] = ("genesys_records", "connect_records", "genesys_events", "connect_events")
DAILY = 1440

REQUIRED_CONVERSATION_KEYS: tuple[str, ...] = (
    "status",
    "ended_at",
    "answered",
    "abandoned",
    "legs",
    "transfers",
    "wait_ms",
    "talk_ms",
    "hold_ms",
    "acw_ms",
    "handle_ms",
)
REQUIRED_INTERVAL_METRICS: tuple[str, ...] = (
    "offered",
    "answered",
    "abandoned",
    "answer_wait_ms",
    "transferred_out",
    "handled",
    "talk_ms",
    "hold_ms",
    "acw_ms",
    "handle_ms",
)
_CASE_KEYS = frozenset(
    {"name", "tenant", "provenance", "exercises", "deliveries", "dead_letters", "expected", "notes"}
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # usable as a test id with ``pytest -k``
_BOOKKEEPING_COLUMNS = frozenset({"tenant", "conversation_id", "version", "updated_at"})

Kind = Literal["text", "int", "bool", "time", "list"]


def _column_kind(column_type: str) -> tuple[Kind, bool]:
    """The JSON kind an expected value of a ClickHouse column must have, and whether null is allowed."""
    nullable = column_type.startswith("Nullable(")
    inner = column_type.removeprefix("Nullable(").removesuffix(")") if nullable else column_type
    if inner.startswith("Array("):
        return "list", nullable
    if inner.startswith("DateTime"):
        return "time", nullable
    if inner == "Bool":
        return "bool", nullable
    if "Int" in inner:
        return "int", nullable
    return "text", nullable


# Every figure of a conversation row an expectation may name (the required eleven and any other column).
CONVERSATION_KINDS: dict[str, tuple[Kind, bool]] = {
    column.name: _column_kind(column.type)
    for column in table("conversations").columns
    if column.name not in _BOOKKEEPING_COLUMNS
}


@dataclass(frozen=True, slots=True)
class Delivery:
    source: str
    file: str  # relative to the group directory
    received_at: str  # as written in the manifest; the envelope carries it verbatim


@dataclass(frozen=True, slots=True)
class Case:
    group: str
    directory: Path
    name: str
    tenant: str
    deliveries: tuple[Delivery, ...]
    dead_letters: Mapping[str, str]  # file -> expected reason
    conversations: Mapping[str, Mapping[str, Any]]
    intervals: Mapping[str, Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class Corpus:
    """The valid cases in manifest order, the invalid ones by label, and every manifest problem."""

    root: Path
    manifests: tuple[Path, ...]
    cases: tuple[Case, ...]
    invalid: Mapping[str, tuple[str, ...]]
    problems: tuple[str, ...]

    def labels(self) -> list[str]:
        """One test id per case: valid cases by name, then invalid ones by name (or group#index)."""
        return [case.name for case in self.cases] + list(self.invalid)

    def case(self, name: str) -> Case:
        return next(case for case in self.cases if case.name == name)

    def groups(self) -> list[str]:
        return [path.parent.name for path in self.manifests]


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One expected figure the stored data disagrees with."""

    case: str
    subject: str  # "conversation 'c1'", "queue 'billing'", "delivery #2 x.json"
    field: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        return (
            f"case {self.case}: {self.subject}: {self.field}: expected {self.expected!r}, got {self.actual!r}"
        )


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one delivery sits in the replay file."""

    case: str
    index: int
    file: str


@dataclass(frozen=True, slots=True)
class RunCounts:
    """Flow counters moved by one run: raw records in, accepted, dead-lettered."""

    records_in: int
    accepted: int
    dead_lettered: int


@dataclass(frozen=True, slots=True)
class Replay:
    corpus: Corpus
    settings: Settings
    path: Path
    placements: Mapping[str, Placement]  # replay origin ("file@offset") -> delivery
    counts: RunCounts

    @property
    def database(self) -> str:
        return self.settings.clickhouse.database


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    tenant: str
    reason: str
    detail: str
    origin: str


@dataclass(frozen=True, slots=True)
class Observed:
    """What a corpus run stored, per tenant."""

    conversations: Mapping[str, Mapping[str, Mapping[str, Any]]]  # tenant -> id -> row
    daily: Mapping[str, Mapping[str, Mapping[str, int]]]  # tenant -> queue -> metric -> sum
    dead_letters: tuple[StoredDeadLetter, ...]
    provisional: Mapping[str, int]  # tenant -> interval rows still provisional after the drain


# ---------------------------------------------------------------- loading and validation


def manifest_paths(root: Path) -> tuple[Path, ...]:
    return tuple(sorted(root.glob("*/manifest.json"))) if root.is_dir() else ()


def load_corpus(root: Path) -> Corpus:
    """Every manifest under ``root``; a case with any problem is kept out of the replay and listed."""
    manifests = manifest_paths(root)
    problems: list[str] = []
    parsed: list[tuple[str, Case | None, list[str]]] = []
    for manifest in manifests:
        group = manifest.parent.name
        where = f"{group}/manifest.json"
        if group not in GROUPS:
            problems.append(f"{where}: group directory {group!r} is not one of {list(GROUPS)}")
        try:
            document = orjson.loads(manifest.read_bytes())
        except orjson.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON: {exc}")
            continue
        entries = document.get("cases") if isinstance(document, dict) else None
        if not isinstance(entries, list) or not entries:
            problems.append(f"{where}: must be an object with a non-empty list 'cases'")
            continue
        referenced: set[str] = set()
        for index, entry in enumerate(entries):
            label = _label(group, index, entry)
            case, case_problems = _parse_case(group, manifest.parent, entry)
            referenced.update(_delivery_files(entry))
            parsed.append((label, case, case_problems))
        for path in sorted(manifest.parent.rglob("*.json")):
            relative = path.relative_to(manifest.parent).as_posix()
            if relative != "manifest.json" and relative not in referenced:
                problems.append(f"{group}/{relative}: not referenced by any case of {where}")
    names = Counter(label for label, _, _ in parsed)
    tenants = Counter(case.tenant for _, case, _ in parsed if case is not None)
    cases: list[Case] = []
    invalid: dict[str, tuple[str, ...]] = {}
    for label, case, case_problems in parsed:
        if names[label] > 1:
            case_problems.append(f"case name {label!r} is used {names[label]} times in the corpus")
        if case is not None and tenants[case.tenant] > 1:
            case_problems.append(f"tenant {case.tenant!r} is used by {tenants[case.tenant]} cases")
        if case_problems or case is None:
            invalid[label] = tuple(case_problems)
            problems.extend(f"case {label}: {problem}" for problem in case_problems)
        else:
            cases.append(case)
    return Corpus(root, manifests, tuple(cases), invalid, tuple(problems))


def _label(group: str, index: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return name if isinstance(name, str) and name.strip() else f"{group}#{index}"


def _delivery_files(entry: Any) -> list[str]:
    deliveries = entry.get("deliveries") if isinstance(entry, dict) else None
    if not isinstance(deliveries, list):
        return []
    return [d["file"] for d in deliveries if isinstance(d, dict) and isinstance(d.get("file"), str)]


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _parse_case(group: str, directory: Path, entry: Any) -> tuple[Case | None, list[str]]:
    """A case and its problems (the case is None when it cannot even be read)."""
    if not isinstance(entry, dict):
        return None, [f"must be an object, got {type(entry).__name__}"]
    problems = [f"unknown key {key!r}" for key in sorted(set(entry) - _CASE_KEYS)]
    for key in ("name", "tenant", "exercises"):
        if not _text(entry.get(key)):
            problems.append(f"{key} must be a non-empty string")
    if _text(entry.get("name")) and not _NAME.fullmatch(entry["name"]):
        problems.append(f"name {entry['name']!r} must be letters, digits, '.', '_' or '-' (a pytest id)")
    tenant = entry.get("tenant")
    if _text(tenant) and tenant != tenant.strip():
        problems.append(f"tenant {tenant!r} has surrounding whitespace (the envelope would strip it)")
    provenance = entry.get("provenance")
    if not isinstance(provenance, dict):
        problems.append("provenance must be an object with source, derived and pii")
    else:
        problems += [
            f"provenance.{key} must be a non-empty string"
            for key in ("source", "derived", "pii")
            if not _text(provenance.get(key))
        ]
    deliveries, dead_letters = _parse_deliveries(directory, entry, problems)
    expected = entry.get("expected")
    conversations: dict[str, Mapping[str, Any]] = {}
    intervals: dict[str, Mapping[str, int]] = {}
    if not isinstance(expected, dict) or set(expected) != {"conversations", "intervals"}:
        problems.append("expected must be an object with exactly 'conversations' and 'intervals'")
    else:
        conversations = _parse_conversations(expected["conversations"], problems)
        intervals = _parse_intervals(expected["intervals"], problems)
    if not _text(entry.get("name")) or not _text(tenant):
        return None, problems
    case = Case(group, directory, entry["name"], tenant, deliveries, dead_letters, conversations, intervals)
    return case, problems


def _parse_deliveries(
    directory: Path, entry: dict[str, Any], problems: list[str]
) -> tuple[tuple[Delivery, ...], dict[str, str]]:
    raw_letters = entry.get("dead_letters", [])
    dead_letters: dict[str, str] = {}
    if not isinstance(raw_letters, list):
        problems.append("dead_letters must be a list")
        raw_letters = []
    for index, letter in enumerate(raw_letters):
        where = f"dead_letters[{index}]"
        if not isinstance(letter, dict) or not all(_text(letter.get(k)) for k in ("file", "reason", "why")):
            problems.append(f"{where} must have non-empty file, reason and why")
            continue
        dead_letters[letter["file"]] = letter["reason"]
    raw = entry.get("deliveries")
    if not isinstance(raw, list) or not raw:
        problems.append("deliveries must be a non-empty list")
        return (), dead_letters
    deliveries: list[Delivery] = []
    for index, item in enumerate(raw):
        where = f"deliveries[{index}]"
        if not isinstance(item, dict) or not all(
            _text(item.get(k)) for k in ("source", "file", "received_at")
        ):
            problems.append(f"{where} must have non-empty source, file and received_at")
            continue
        source, name, received_at = item["source"], item["file"], item["received_at"]
        if source not in ADAPTERS:
            problems.append(f"{where}.source {source!r} is not one the adapters know: {sorted(ADAPTERS)}")
        try:
            parse_time(received_at, f"{where}.received_at")
        except AdapterError as exc:
            problems.append(exc.detail)
        path = directory / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            problems.append(f"{where}.file {name!r} must be a path inside the group directory")
        elif not path.is_file():
            problems.append(f"{where}.file {name!r} does not exist")
        elif name not in dead_letters:
            try:
                payload = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                payload = exc
            if not isinstance(payload, dict):
                problems.append(
                    f"{where}.file {name!r} is not a JSON object, yet it is not listed in dead_letters"
                )
        deliveries.append(Delivery(source, name, received_at))
    delivered = {delivery.file for delivery in deliveries}
    problems += [
        f"dead_letters names {name!r}, which is not delivered"
        for name in dead_letters
        if name not in delivered
    ]
    return tuple(deliveries), dead_letters


def _parse_conversations(raw: Any, problems: list[str]) -> dict[str, Mapping[str, Any]]:
    if not isinstance(raw, dict):
        problems.append("expected.conversations must be an object keyed by conversation id")
        return {}
    conversations: dict[str, Mapping[str, Any]] = {}
    for conversation_id, figures in raw.items():
        where = f"expected.conversations[{conversation_id!r}]"
        if not isinstance(figures, dict):
            problems.append(f"{where} must be an object")
            continue
        problems += [f"{where} lacks {key!r}" for key in REQUIRED_CONVERSATION_KEYS if key not in figures]
        for key, value in figures.items():
            if key not in CONVERSATION_KINDS:
                problems.append(f"{where}.{key} is not a conversations column: {sorted(CONVERSATION_KINDS)}")
            elif not _is_kind(value, *CONVERSATION_KINDS[key]):
                kind, nullable = CONVERSATION_KINDS[key]
                problems.append(
                    f"{where}.{key} must be {kind}{' or null' if nullable else ''}, got {value!r}"
                )
        if figures.get("status") not in (None, "open", "ended"):
            problems.append(f"{where}.status must be 'open' or 'ended'")
        conversations[conversation_id] = figures
    return conversations


def _parse_intervals(raw: Any, problems: list[str]) -> dict[str, Mapping[str, int]]:
    if not isinstance(raw, dict):
        problems.append("expected.intervals must be an object keyed by queue ('' for no queue)")
        return {}
    intervals: dict[str, Mapping[str, int]] = {}
    for queue, figures in raw.items():
        where = f"expected.intervals[{queue!r}]"
        if not isinstance(figures, dict):
            problems.append(f"{where} must be an object of metric figures")
            continue
        problems += [
            f"{where} lacks {metric!r}" for metric in REQUIRED_INTERVAL_METRICS if metric not in figures
        ]
        for metric, value in figures.items():
            if metric not in METRIC_NAMES:
                problems.append(f"{where}.{metric} is not a catalogue metric")
            elif not _is_kind(value, "int", False):
                problems.append(f"{where}.{metric} must be an integer, got {value!r}")
        intervals[queue] = figures
    return intervals


def _is_kind(value: Any, kind: Kind, nullable: bool) -> bool:
    if value is None:
        return nullable
    if kind == "time":
        return _instant_ms(value) is not None
    if kind == "list":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _instant_ms(value: Any) -> int | None:
    """Epoch milliseconds (floored) of a zoned datetime or ISO-8601 string; None if it has no zone."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    return (value - _EPOCH) // timedelta(milliseconds=1)


# ---------------------------------------------------------------- replay


def envelope(case: Case, delivery: Delivery) -> bytes:
    """The delivery wrapped as the flow receives it; the payload bytes go in exactly as stored."""
    payload = (case.directory / delivery.file).read_bytes().strip()
    head = {"tenant": case.tenant, "source": delivery.source, "received_at": delivery.received_at}
    return orjson.dumps(head)[:-1] + b',"payload":' + payload + b"}"


def write_replay(cases: Iterable[Case], path: Path) -> dict[str, Placement]:
    """Write every delivery of every case (manifest order) as a replay file; map origins to deliveries.

    An origin is ``<file name>@<byte offset of the line>``, as ``stitchboard.flows.sources`` names replayed records.
    """
    lines: list[bytes] = []
    placements: dict[str, Placement] = {}
    offset = 0
    for case in cases:
        for index, delivery in enumerate(case.deliveries):
            at = parse_time(delivery.received_at, "received_at")
            line = to_jsonl([(at, envelope(case, delivery))])
            placements[f"{path.name}@{offset}"] = Placement(case.name, index, delivery.file)
            lines.append(line)
            offset += len(line)
    path.write_bytes(b"".join(lines))
    return placements


def _counter_total(counter: Any) -> int:
    return int(
        sum(
            sample.value
            for metric in counter.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    )


def run_flow(settings: Settings, path: Path) -> RunCounts:
    """Run the production flow over a replay file, drained at the end; the counters it moved."""
    counters = (telemetry.RECORDS_IN, telemetry.RECORDS_ACCEPTED, telemetry.RECORDS_DEAD_LETTERED)
    before = [_counter_total(counter) for counter in counters]
    run_main(make_flow(settings, replay=path, drain_at_eof=True))
    after = [_counter_total(counter) for counter in counters]
    return RunCounts(*(a - b for a, b in zip(after, before, strict=True)))


def replay_corpus(corpus: Corpus, client: Client, dsn: str, workdir: Path) -> Replay:
    """Replay every valid case once into a new database (tenant defaults: UTC, catalogue thresholds)."""
    database = f"corpus_{uuid.uuid4().hex[:10]}"
    init_db(client, database)
    settings = Settings(clickhouse=ClickHouseSettings(dsn=dsn, database=database), metrics_port=None)
    path = workdir / "corpus.jsonl"
    placements = write_replay(corpus.cases, path)
    counts = run_flow(settings, path)
    return Replay(corpus, settings, path, placements, counts)


# ---------------------------------------------------------------- reading what was stored


def _rows(client: Client, sql: str) -> list[dict[str, Any]]:
    result = client.query(sql)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def observe(client: Client, database: str) -> Observed:
    conversations: dict[str, dict[str, dict[str, Any]]] = {}
    for row in _rows(client, f"SELECT * FROM {database}.conversations FINAL"):
        conversations.setdefault(row["tenant"], {})[row["conversation_id"]] = row
    daily: dict[str, dict[str, dict[str, int]]] = {}
    for (tenant, queue, _channel, _start), figures in read_figures(client, database, DAILY).items():
        sums = daily.setdefault(tenant, {}).setdefault(queue, dict.fromkeys(METRIC_NAMES, 0))
        for metric, value in figures.items():
            sums[metric] += value
    letters = tuple(
        StoredDeadLetter(row["tenant"], row["reason"], row["detail"], row["origin"])
        for row in _rows(client, f"SELECT tenant, reason, detail, origin FROM {database}.dead_letters FINAL")
    )
    provisional = {
        row["tenant"]: int(row["rows"])
        for row in _rows(
            client,
            f"SELECT tenant, count() AS rows FROM {database}.interval_metrics FINAL"
            " WHERE status = 'provisional' GROUP BY tenant",
        )
    }
    return Observed(conversations, daily, letters, provisional)


# ---------------------------------------------------------------- comparison


def _shown(value: Any) -> Any:
    """A stored value as a manifest would write it (times as ISO-8601 UTC with milliseconds)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, tuple):
        return list(value)
    return value


def _same(kind: Kind, expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if kind == "time":
        return _instant_ms(expected) == _instant_ms(actual)
    if kind == "list":
        return list(expected) == list(actual)
    if kind == "bool":
        return bool(actual) is expected
    return bool(expected == actual)


def check_conversations(case: Case, stored: Mapping[str, Mapping[str, Any]]) -> list[Mismatch]:
    mismatches: list[Mismatch] = []
    for conversation_id, figures in case.conversations.items():
        subject = f"conversation {conversation_id!r}"
        row = stored.get(conversation_id)
        if row is None:
            mismatches.append(Mismatch(case.name, subject, "row", "stored", "no row in conversations"))
            continue
        for key, want in figures.items():
            got = row.get(key)
            if not _same(CONVERSATION_KINDS[key][0], want, got):
                mismatches.append(Mismatch(case.name, subject, key, want, _shown(got)))
    for conversation_id in sorted(set(stored) - set(case.conversations)):
        row = stored[conversation_id]
        found = f"status={row['status']} legs={row['legs']} started_at={_shown(row['started_at'])}"
        mismatches.append(
            Mismatch(case.name, f"conversation {conversation_id!r}", "row", "not expected", found)
        )
    return mismatches


def check_intervals(case: Case, stored: Mapping[str, Mapping[str, int]]) -> list[Mismatch]:
    """Daily figures per queue; a queue the case does not list must be all zero."""
    mismatches: list[Mismatch] = []
    for queue in sorted(set(case.intervals) | set(stored)):
        got = stored.get(queue, {})
        listed = case.intervals.get(queue)
        subject = f"queue {queue!r}" if listed is not None else f"queue {queue!r} (not listed)"
        want = listed if listed is not None else dict.fromkeys(METRIC_NAMES, 0)
        mismatches += [
            Mismatch(case.name, subject, metric, value, got.get(metric, 0))
            for metric, value in want.items()
            if got.get(metric, 0) != value
        ]
    return mismatches


def _letter_text(letter: StoredDeadLetter | None) -> str | None:
    return None if letter is None else f"{letter.reason} ({letter.detail})"


def check_dead_letters(
    case: Case, letters: Iterable[StoredDeadLetter], placements: Mapping[str, Placement]
) -> list[Mismatch]:
    """Exactly the listed deliveries are dead-lettered, with their reasons; nothing else of the tenant."""
    by_index: dict[int, StoredDeadLetter] = {}
    strays: list[StoredDeadLetter] = []
    for letter in letters:
        placement = placements.get(letter.origin)
        if placement is not None and placement.case == case.name:
            by_index[placement.index] = letter
        elif placement is None and letter.tenant == case.tenant:
            strays.append(letter)
    mismatches: list[Mismatch] = []
    for index, delivery in enumerate(case.deliveries):
        want = case.dead_letters.get(delivery.file)
        got = by_index.get(index)
        if (got.reason if got else None) != want:
            subject = f"delivery #{index} {delivery.file}"
            expected = f"dead letter {want}" if want else "accepted"
            mismatches.append(
                Mismatch(case.name, subject, "dead_letter", expected, _letter_text(got) or "accepted")
            )
    mismatches += [
        Mismatch(case.name, "tenant", "dead_letter", "none after acceptance", _letter_text(letter))
        for letter in strays
    ]
    return mismatches


def check_case(case: Case, observed: Observed, placements: Mapping[str, Placement]) -> list[Mismatch]:
    """Every way the stored data of one case differs from its expectations (empty when it agrees)."""
    mismatches = check_conversations(case, observed.conversations.get(case.tenant, {}))
    mismatches += check_intervals(case, observed.daily.get(case.tenant, {}))
    mismatches += check_dead_letters(case, observed.dead_letters, placements)
    provisional = observed.provisional.get(case.tenant, 0)
    if provisional:
        mismatches.append(Mismatch(case.name, "intervals", "provisional rows after drain", 0, provisional))
    return mismatches


def report(mismatches: Iterable[Mismatch]) -> str:
    return "\n".join(str(mismatch) for mismatch in mismatches)


# ---------------------------------------------------------------- accounting and idempotence


def accounting_problems(replay: Replay, observed: Observed) -> list[str]:
    """records in = deliveries = accepted + dead-lettered, and every replay dead letter is placed."""
    counts = replay.counts
    deliveries = len(replay.placements)
    problems: list[str] = []
    if counts.records_in != deliveries:
        problems.append(f"the flow read {counts.records_in} records, the corpus has {deliveries} deliveries")
    if counts.accepted + counts.dead_lettered != counts.records_in:
        problems.append(
            f"accepted {counts.accepted} + dead-lettered {counts.dead_lettered} != in {counts.records_in}"
        )
    prefix = f"{replay.path.name}@"
    replayed = [letter for letter in observed.dead_letters if letter.origin.startswith(prefix)]
    problems += [
        f"dead letter from unknown origin {letter.origin}: {letter.reason}"
        for letter in replayed
        if letter.origin not in replay.placements
    ]
    if len(replayed) != counts.dead_lettered:
        problems.append(f"{len(replayed)} dead letters stored, the flow counted {counts.dead_lettered}")
    return problems


def summary(replay: Replay, observed: Observed) -> str:
    """Cases, deliveries, accepted, dead-lettered and acceptance rate per group, then the totals."""
    group_of = {case.name: case.group for case in replay.corpus.cases}
    dead: Counter[str] = Counter(
        group_of[replay.placements[letter.origin].case]
        for letter in observed.dead_letters
        if letter.origin in replay.placements
    )
    cases: Counter[str] = Counter(case.group for case in replay.corpus.cases)
    deliveries: Counter[str] = Counter(group_of[placement.case] for placement in replay.placements.values())
    lines = [f"{'group':<18}{'cases':>7}{'deliveries':>12}{'accepted':>10}{'dead':>7}{'rate':>9}"]
    for group in [*sorted(cases), "total"]:
        n_cases = sum(cases.values()) if group == "total" else cases[group]
        n_in = sum(deliveries.values()) if group == "total" else deliveries[group]
        n_dead = sum(dead.values()) if group == "total" else dead[group]
        rate = f"{100 * (n_in - n_dead) / n_in:.1f}%" if n_in else "-"
        lines.append(f"{group:<18}{n_cases:>7}{n_in:>12}{n_in - n_dead:>10}{n_dead:>7}{rate:>9}")
    missing = [group for group in GROUPS if group not in replay.corpus.groups()]
    if missing:
        lines.append(f"groups without a manifest: {', '.join(missing)}")
    counts = replay.counts
    lines.append(
        f"flow counters: in {counts.records_in}, accepted {counts.accepted}, dead-lettered {counts.dead_lettered}"
    )
    return "\n".join(lines)


Snapshot = dict[str, Any]


def snapshot(client: Client, database: str) -> Snapshot:
    """Every stored figure a replay could change: conversation rows (minus bookkeeping), interval
    figures of every length (corrected and as published), dead letters and FINAL row counts.
    """
    rows = _rows(client, f"SELECT * FROM {database}.conversations FINAL")
    conversations = {
        (row["tenant"], row["conversation_id"]): {
            k: _shown(v) for k, v in row.items() if k in CONVERSATION_KINDS
        }
        for row in rows
    }
    figures = {
        (view, minutes): read_figures(client, database, minutes, view=view)
        for view in ("corrected", "published")
        for minutes in INTERVAL_MINUTES
    }
    letters = sorted(
        (row["tenant"], row["reason"], row["origin"])
        for row in _rows(client, f"SELECT tenant, reason, origin FROM {database}.dead_letters FINAL")
    )
    counts = {
        name: int(client.query(f"SELECT count() FROM {database}.{name} FINAL").result_rows[0][0])
        for name in (
            "conversations",
            "interval_metrics",
            "interval_published",
            "interval_restatements",
            "dead_letters",
        )
    }
    return {"conversations": conversations, "figures": figures, "dead_letters": letters, "row_counts": counts}


def snapshot_changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs between two snapshots, named down to the conversation field or interval metric."""
    changes: list[str] = []
    old, new = before["conversations"], after["conversations"]
    for key in sorted(set(old) | set(new)):
        if key not in old or key not in new:
            changes.append(f"conversation {key}: {'appeared' if key not in old else 'disappeared'}")
            continue
        changes += [
            f"conversation {key}: {name} {old[key][name]!r} -> {new[key].get(name)!r}"
            for name in old[key]
            if old[key][name] != new[key].get(name)
        ]
    for view_minutes, figures in before["figures"].items():
        later = after["figures"][view_minutes]
        for interval in sorted(set(figures) | set(later)):
            was, now = figures.get(interval, {}), later.get(interval, {})
            changes += [
                f"{view_minutes} interval {interval}: {metric} {was.get(metric, 0)} -> {now.get(metric, 0)}"
                for metric in METRIC_NAMES
                if was.get(metric, 0) != now.get(metric, 0)
            ]
    if before["dead_letters"] != after["dead_letters"]:
        changes.append(f"dead letters {before['dead_letters']} -> {after['dead_letters']}")
    changes += [
        f"{name}: {count} rows -> {after['row_counts'][name]}"
        for name, count in before["row_counts"].items()
        if after["row_counts"][name] != count
    ]
    return changes
