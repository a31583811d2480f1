"""Fuzz, long run: 100,000 hostile mutants through the real flow, with the suite's checks.

The same mutator and checks as tests/hostile/test_fuzz.py (``stitchboard.testing.mutator``,
``stitchboard.testing.fuzz``), at long-run sizes: thousands of holds and IVR steps, strings close to
the 1 MiB record limit, conversations of more than 65,535 distinct values. Mutants go through the
flow in chunks, each chunk interleaved with the valid records and replayed into a fresh database,
then judged against one run of the valid records alone. A chunk that breaks a check is replayed
again kind by kind, so every finding is named by its kind.

Not part of ``python -m bench`` by default (it takes minutes): ``python -m bench --only fuzz``, or
``python -m bench.fuzz --workdir DIR --json FILE [--mutants N] [--chunk N] [--seed S] [--kind K]``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from clickhouse_connect.driver.client import Client

from bench.common import Result, main, say
from stitchboard.sinks.clickhouse import connect
from stitchboard.testing import fuzz
from stitchboard.testing.mutator import KINDS, Mutant, Mutator, ValidRecord, same_group, valid_records

SEED = 13
DAY_SCALE = 0.05
MUTANTS, QUICK_MUTANTS = 100_000, 5_000
CHUNK = 10_000


class _Fuzzer:
    """The valid records, their run alone, and a database per mixed run."""

    def __init__(self, client: Client, workdir: Path, seed: int) -> None:
        self.client, self.workdir, self.seed = client, workdir, seed
        self.valid: list[ValidRecord] = valid_records(seed, DAY_SCALE)
        self.same = same_group([record.tenant for record in self.valid])
        alone = fuzz.run_stream(client, fuzz.interleave(self.valid, [], seed), workdir, "valid")
        if alone.error is not None or alone.counts.accepted != len(self.valid):
            raise RuntimeError(f"the valid records alone did not go through: {alone.error} {alone.counts}")
        self.baseline = fuzz.Baseline(alone, fuzz.read_stored(client, alone.database))

    def judge(self, mutants: Sequence[Mutant], name: str) -> tuple[fuzz.Run, fuzz.Verdict]:
        lines = fuzz.interleave(self.valid, mutants, self.seed + mutants[0].index)
        run = fuzz.run_stream(self.client, lines, self.workdir, name)
        verdict = fuzz.judge(self.client, self.baseline, run, self.valid, self.same)
        self.client.command(f"DROP DATABASE IF EXISTS `{run.database}`")
        (self.workdir / f"{name}.jsonl").unlink(missing_ok=True)
        return run, verdict

    def culprits(self, mutants: Sequence[Mutant]) -> dict[str, fuzz.Verdict]:
        """Each kind of a failing chunk replayed alone: the kinds that still fail, with their verdicts."""
        by_kind: dict[str, list[Mutant]] = {}
        for mutant in mutants:
            by_kind.setdefault(mutant.kind, []).append(mutant)
        failing = {}
        for kind, own in sorted(by_kind.items()):
            _run, verdict = self.judge(own, "kind")
            if verdict.problems:
                failing[kind] = verdict
        return failing


def run(
    quick: bool,
    workdir: Path,
    *,
    mutants: int | None = None,
    chunk: int = CHUNK,
    seed: int = SEED,
    kinds: list[str] | None = None,
) -> Result:
    total = mutants or (QUICK_MUTANTS if quick else MUTANTS)
    result = Result("fuzz", f"Fuzz: {total:,} hostile mutants through the flow (seed {seed})")
    started = time.perf_counter()
    fuzzer = _Fuzzer(connect(f"chdb://{workdir / 'chdb'}"), workdir, seed)
    base = fuzzer.baseline.run.counts
    say(
        f"  {len(fuzzer.valid)} valid records; {len(fuzzer.same)} valid tenants take hostile records of their own"
    )
    mutator = Mutator(fuzzer.valid, fuzzer.same, seed, heavy=True, kinds=kinds)
    made: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    records = accepted = dead = failed_chunks = stops = 0
    findings: dict[str, str] = {}
    for number, first in enumerate(range(0, total, chunk)):
        batch = [mutator.next() for _ in range(min(chunk, total - first))]
        made.update(m.kind for m in batch)
        modes.update(m.mode for m in batch)
        flow, verdict = fuzzer.judge(batch, f"chunk{number}")
        records += flow.counts.records_in - base.records_in
        accepted += flow.counts.accepted - base.accepted
        dead += flow.counts.dead_lettered - base.dead_lettered
        reasons.update({r: n - base.by_reason.get(r, 0) for r, n in flow.counts.by_reason.items()})
        failed_chunks += bool(verdict.problems)
        stops += verdict.error is not None
        say(
            f"  chunk {number}: {len(batch)} mutants, {flow.counts.records_in} records in {flow.seconds:.0f} s, {len(verdict.problems)} problems"
            + (f"; the flow stopped: {verdict.error}" if verdict.error else "")
        )
        if verdict.problems:
            culprits = fuzzer.culprits(batch)
            for kind, own in culprits.items():
                findings.setdefault(kind, own.problems[0][:400])
                say(f"    kind {kind}: {own.problems[0][:400]}")
            if not culprits:  # only mutants of several kinds together break a check
                shown = fuzz.suspects(verdict.problems, batch, limit=3)
                findings.setdefault(f"several kinds together (chunk {number})", shown[:600])
                say(f"    several kinds together: {shown}")
    seconds = time.perf_counter() - started
    result.add("mutants", total, "")
    result.add("kinds of mutation", len(made), "")
    result.add("hostile records (a mutant is one or more)", records, "")
    result.add("hostile records accepted", accepted, "")
    result.add("hostile records dead-lettered", dead, "")
    result.add("flow stops (crashes)", stops, "", target="0", met=stops == 0)
    internal = reasons["internal_error"]
    result.add(
        "internal errors (dead letters of caught exceptions)", internal, "", target="0", met=internal == 0
    )
    result.add(
        f"flow runs failing a check (of {-(-total // chunk)})",
        failed_chunks,
        "",
        target="0",
        met=failed_chunks == 0,
    )
    result.add(
        "findings (a kind alone, or a chunk's kinds together)",
        len(findings),
        "",
        target="0",
        met=not findings,
    )
    result.add("mutants per second, flow and checks", total / seconds, "mutants/s")
    result.note(
        f"{len(fuzzer.valid)} valid records (corpus, fixtures, a generated day at scale {DAY_SCALE}) replayed with every chunk of {chunk:,}"
    )
    result.note("mutants by kind: " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(made.items())))
    result.note("placement: " + ", ".join(f"{mode} tenant {n:,}" for mode, n in sorted(modes.items())))
    result.note(
        "dead-lettered by reason: " + ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items()) if n)
    )
    for kind, problem in sorted(findings.items()):
        result.note(f"finding, kind {kind}: {problem}")
    return result


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mutants", type=int, help=f"default {MUTANTS:,} ({QUICK_MUTANTS:,} with --quick)")
    parser.add_argument("--chunk", type=int, default=CHUNK, help="mutants per flow run")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--kind", action="append", choices=[kind.name for kind in KINDS], help="only these kinds (repeatable)"
    )
    ours, rest = parser.parse_known_args(argv)
    main(
        functools.partial(run, mutants=ours.mutants, chunk=ours.chunk, seed=ours.seed, kinds=ours.kind),
        argv=rest,
    )


if __name__ == "__main__":
    cli(sys.argv[1:])
