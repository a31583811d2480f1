"""Crash-test harness: a generated day in Tansu, the flow as a subprocess killed with SIGKILL at
seeded random points and restarted, and an exact comparison of what ClickHouse holds with the truth.

Used by ``tests/recovery/test_crash_recovery.py`` (reduced size, in CI) and ``bench/crash_test.py``
(a day of more than 200k events). chDB binds one path per process, so the flow and the reader
run as subprocesses on their own path; the calling process never opens it. Run as a script, this
module is that reader: ``python crash_harness.py read DSN DATABASE OUT.json``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from stitchboard import adapters
from stitchboard.deadletters import DeadLetter
from stitchboard.events import EventType
from stitchboard.interval_book import FINAL_VERSION
from stitchboard.metrics import METRIC_NAMES
from stitchboard.reconcile import compare
from stitchboard.synthetic.dataset import Dataset, build_dataset
from stitchboard.synthetic.truth import interval_truth

HERE = Path(__file__).resolve()
DATABASE = "stitchboard"
Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class CrashPlan:
    zones: dict[str, str]
    day: date
    seed: int
    scale: float
    partitions: int = 3
    kills: int = 4
    snapshot_seconds: int = 1


@dataclass(slots=True)
class Expected:
    """What an exactly-once run must end with, computed from the generator, not from the flow."""

    records: int
    events: int
    conversations: int
    agent_states: int
    dead_letters: Counter[str]


@dataclass(slots=True)
class CrashReport:
    kills: list[str] = field(default_factory=list)
    runs: int = 0
    resumes: int = 0  # runs that restored a committed sink snapshot (rather than starting afresh)
    problems: list[str] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)


def expected_of(dataset: Dataset) -> Expected:
    """Normalise every delivered record (pure) to count records, events, ids and dead letters."""
    reasons: Counter[str] = Counter()
    events = 0
    agent_ids: set[str] = set()
    for record in dataset.delivery.records:
        result = adapters.normalise(record.raw, "", record.delivered_at)
        if isinstance(result, DeadLetter):
            reasons[result.reason] += 1
            continue
        events += len(result)
        agent_ids.update(e.event_id for e in result if e.event_type is EventType.AGENT_STATE_CHANGED)
    conversations = sum(len(day.conversations) for day in dataset.days)
    return Expected(dataset.delivery.consumed, events, conversations, len(agent_ids), reasons)


def write_settings(
    path: Path,
    dataset: Dataset,
    *,
    bootstrap: str,
    topic: str,
    work: Path,
    port: int,
    snapshot_seconds: int,
    consumer: dict[str, str] | None = None,
    health: dict[str, float] | None = None,
) -> Path:
    """A settings file for one flow run (its own metrics port; the same chDB and recovery dirs).

    Small fetches by default, so the partitions interleave differently from run to run.
    """
    document = json.loads(dataset.settings.model_dump_json())
    document.update(
        {
            "kafka": {
                "brokers": [bootstrap],
                "topics": [topic],
                "dead_letter_topic": f"{topic}.dead",
                "extra_config": consumer or {"max.partition.fetch.bytes": "8192", "fetch.wait.max.ms": "5"},
            },
            "snapshot_seconds": snapshot_seconds,
            "clickhouse": {"dsn": f"chdb://{work / 'chdb'}", "database": DATABASE},
            "recovery_dir": str(work / "recovery"),
            "metrics_port": port,
            "health": health or {},
        }
    )
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def start_flow(config: Path, log: Path, *, until_eof: bool = True) -> subprocess.Popen[bytes]:
    """``stitchboard run`` as a subprocess; without ``until_eof`` it tails Kafka like production."""
    command = [sys.executable, "-m", "stitchboard.app.cli", "run", "--config", str(config)]
    command += ["--until-eof"] if until_eof else []
    with log.open("ab") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=sink)


def scrape(port: int) -> dict[str, float]:
    """Samples of the flow's metrics endpoint by name (labels summed); empty while it is starting."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            text = response.read().decode("utf-8")
    except OSError:
        return {}
    values: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] += sample.value
    return dict(values)


def health(port: int, path: str = "/readyz") -> tuple[int, Any] | None:
    """Status and JSON body of a health endpoint; None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())
    except OSError:
        return None


def _wait_for(process: subprocess.Popen[bytes], port: int, records: int, timeout: float) -> bool:
    """True once this run has read ``records`` records; False if it exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if scrape(port).get("stitchboard_records_in_total", 0) >= records:
            return True
        time.sleep(0.02)
    raise TimeoutError(f"the flow did not read {records} records within {timeout} s")


def crash_and_recover(
    plan: CrashPlan,
    dataset: Dataset,
    *,
    bootstrap: str,
    topic: str,
    work: Path,
    free_port: Callable[[], int],
    log: Log = lambda _: None,
    timeout: float = 600.0,
) -> CrashReport:
    """Run the flow ``plan.kills`` times with a SIGKILL at a seeded random point, then to the end."""
    rng = random.Random(plan.seed)
    report = CrashReport()
    total = dataset.delivery.consumed
    for kill in range(plan.kills + 1):
        port = free_port()
        config = write_settings(
            work / f"settings-{kill}.json",
            dataset,
            bootstrap=bootstrap,
            topic=topic,
            work=work,
            port=port,
            snapshot_seconds=plan.snapshot_seconds,
        )
        process = start_flow(config, work / "flow.log")
        report.runs += 1
        if kill == plan.kills:
            code = process.wait(timeout=timeout)
            if code != 0:
                raise RuntimeError(f"final run exited with {code}; see {work / 'flow.log'}")
            break
        draw = rng.random()
        if draw < 0.1:  # during start-up or resume, before any record is read
            delay = rng.uniform(0.2, 2.0)
            time.sleep(delay)
            point = f"{delay:.2f} s after start"
        elif draw < 0.6:
            delay = rng.uniform(1.0, 6.0)
            if not _wait_for(process, port, 1, timeout):
                report.kills.append("exited before the kill point")
                continue
            time.sleep(delay)
            point = f"{delay:.2f} s after the first record"
        else:
            records = rng.randint(max(1, total // (4 * plan.kills)), max(2, total // plan.kills))
            if not _wait_for(process, port, records, timeout):
                report.kills.append("exited before the kill point")
                continue
            point = f"after {records} records"
        if process.poll() is None:
            process.kill()
            process.wait()
            report.kills.append(point)
            log(f"  SIGKILL {kill + 1}/{plan.kills}: {point}")
        else:
            report.kills.append(f"exited (rc {process.returncode}) before {point}")
    report.resumes = (work / "flow.log").read_text(encoding="utf-8", errors="replace").count('"sink resumed"')
    report.outcome = read_outcome(f"chdb://{work / 'chdb'}", DATABASE, work / "outcome.json")
    return report


def read_outcome(dsn: str, database: str, out: Path) -> dict[str, Any]:
    """Run this module as the reader in a subprocess (the caller keeps its own chDB path, if any)."""
    subprocess.run([sys.executable, str(HERE), "read", dsn, database, str(out)], check=True, timeout=300)
    outcome: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return outcome


def _key(key: tuple[str, str, str, datetime]) -> str:
    tenant, queue, channel, start = key
    return "|".join((tenant, queue, channel, start.isoformat()))


def problems_of(dataset: Dataset, expected: Expected, outcome: dict[str, Any]) -> list[str]:
    """Every way the stored outcome differs from the truth (empty means exactly once)."""
    problems: list[str] = []
    for minutes in dataset.settings.timing.interval_minutes:
        truth = {_key(k): v for k, v in interval_truth(dataset.days, dataset.settings, minutes).items()}
        stored = outcome["corrected"][str(minutes)]
        mismatches = compare(truth, stored)  # type: ignore[arg-type]
        problems += [
            f"{minutes} min {m.key} {m.metric}: truth {m.expected}, stored {m.actual}"
            for m in mismatches[:20]
        ]
    if outcome["conversations"] != expected.conversations:
        problems.append(f"conversations: truth {expected.conversations}, stored {outcome['conversations']}")
    if outcome["agent_states"] != expected.agent_states:
        problems.append(f"agent states: truth {expected.agent_states}, stored {outcome['agent_states']}")
    if Counter(outcome["dead_letters"]) != expected.dead_letters:
        problems.append(
            f"dead letters: expected {dict(expected.dead_letters)}, stored {outcome['dead_letters']}"
        )
    problems += outcome["restatement_violations"][:20]
    return problems


# ---- the reader (runs in its own process) -------------------------------------------------------


def _figures(client: Any, query: str) -> dict[str, dict[str, int]]:
    figures: dict[str, dict[str, int]] = {}
    for tenant, queue, channel, start, *values in client.query(query).result_rows:
        figures[_key((tenant, queue, channel, start))] = dict(
            zip(METRIC_NAMES, map(int, values), strict=True)
        )
    return figures


def restatement_violations(client: Any, database: str) -> list[str]:
    """The restatement log must chain exactly: published → seq 1 → … → the current restated row."""
    key = "tenant, queue, channel, interval_minutes, interval_start"
    columns = ", ".join(METRIC_NAMES)
    current = {
        row[:5]: row[5:]
        for row in client.query(
            f"SELECT {key}, status, version, {columns} FROM {database}.interval_metrics FINAL"
        ).result_rows
    }
    published = {
        row[:5]: dict(zip(METRIC_NAMES, row[5:], strict=True))
        for row in client.query(
            f"SELECT {key}, {columns} FROM {database}.interval_published FINAL"
        ).result_rows
    }
    chains: dict[tuple[Any, ...], dict[str, list[tuple[int, int, int, int, int]]]] = {}
    for row in client.query(
        f"SELECT {key}, metric, restatement_seq, published, previous, corrected, delta"
        f" FROM {database}.interval_restatements FINAL ORDER BY restatement_seq"
    ).result_rows:
        chains.setdefault(row[:5], {}).setdefault(row[5], []).append(row[6:])
    violations: list[str] = []
    for bucket, (status, version, *values) in current.items():
        figures = dict(zip(METRIC_NAMES, values, strict=True))
        metrics = chains.get(bucket, {})
        if status == "provisional":
            violations.append(f"{bucket}: still provisional after the end of input")
            continue
        if bucket not in published:
            violations.append(f"{bucket}: {status} but never published")
            continue
        last_seq = max((chain[-1][0] for chain in metrics.values()), default=0)
        if version != (last_seq + 1) * FINAL_VERSION or (status == "final") != (last_seq == 0):
            violations.append(f"{bucket}: {status} version {version} but {last_seq} restatements")
        for metric in METRIC_NAMES:
            chain = metrics.get(metric, [])
            running = published[bucket][metric]
            for seq, as_published, previous, corrected, delta in chain:
                if (
                    as_published != published[bucket][metric]
                    or previous != running
                    or delta != corrected - previous
                ):
                    violations.append(f"{bucket} {metric} seq {seq}: broken chain")
                running = corrected
            if running != figures[metric]:
                violations.append(
                    f"{bucket} {metric}: log ends at {running}, current row says {figures[metric]}"
                )
    violations += [
        f"{bucket}: restated but not in interval_metrics" for bucket in chains if bucket not in current
    ]
    return violations


def _read(dsn: str, database: str, out: Path) -> None:
    from stitchboard.sinks.clickhouse import connect

    client = connect(dsn)
    columns = ", ".join(METRIC_NAMES)
    corrected = {
        str(minutes): _figures(
            client,
            f"SELECT tenant, queue, channel, interval_start, {columns} FROM {database}.interval_metrics FINAL"
            f" WHERE interval_minutes = {minutes} AND status != 'provisional'",
        )
        for minutes in (15, 30, 60, 1440)
    }

    def scalar(sql: str) -> int:
        return int(client.query(sql).result_rows[0][0])

    outcome = {
        "corrected": corrected,
        "conversations": scalar(f"SELECT count() FROM {database}.conversations FINAL"),
        "agent_states": scalar(f"SELECT count() FROM {database}.agent_states FINAL"),
        "dead_letters": {
            str(reason): int(n)
            for reason, n in client.query(
                f"SELECT reason, count() FROM {database}.dead_letters FINAL GROUP BY reason"
            ).result_rows
        },
        "restatements": scalar(f"SELECT count() FROM {database}.interval_restatements FINAL"),
        "restatement_violations": restatement_violations(client, database),
        "stored_rows": scalar(f"SELECT count() FROM {database}.interval_metrics"),
    }
    out.write_text(json.dumps(outcome), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "read":
        raise SystemExit("usage: crash_harness.py read DSN DATABASE OUT.json")
    _read(sys.argv[2], sys.argv[3], Path(sys.argv[4]))


__all__ = ["CrashPlan", "CrashReport", "build_dataset", "crash_and_recover", "expected_of", "problems_of"]
