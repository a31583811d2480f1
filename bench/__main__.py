"""``python -m bench``: run every benchmark, print every figure and ratio, write docs/benchmarks.md.

Each benchmark runs in a subprocess of its own (chDB binds one data path per process, and a
freshness run leaves a tailing flow behind), with its own scratch directory.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Result, machine, say
from bench.report import render

BENCHMARKS = ("throughput", "end_to_end", "freshness", "queries", "memory", "large_conversation")
# Run only when named with --only: the fuzz long run (100,000 mutants) takes many minutes and checks
# robustness, not speed (its test-size twin runs in the suite: tests/hostile/test_fuzz.py).
ON_REQUEST = ("fuzz",)
REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"


def _run_one(name: str, quick: bool, scratch: Path, timeout: float) -> Result:
    workdir = scratch / name
    workdir.mkdir(parents=True, exist_ok=True)
    output = workdir / "result.json"
    command = [sys.executable, "-m", f"bench.{name}", "--workdir", str(workdir), "--json", str(output)]
    if quick:
        command.append("--quick")
    say(f"\n=== {name} ===")
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, timeout=timeout, check=False)
    if completed.returncode != 0 or not output.exists():
        failed = Result(name, f"{name} (failed)")
        failed.note(f"exited with {completed.returncode} after {time.perf_counter() - started:.0f} s")
        return failed
    return Result.from_json(json.loads(output.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run in about a minute")
    parser.add_argument(
        "--only",
        choices=BENCHMARKS + ON_REQUEST,
        action="append",
        help=f"run only these (repeatable); {', '.join(ON_REQUEST)} runs only when named",
    )
    parser.add_argument("--out", type=Path, default=DOC, help="markdown report (default docs/benchmarks.md)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the report alone")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per benchmark")
    args = parser.parse_args(argv)
    chosen = args.only or list(BENCHMARKS)
    command = "python -m bench" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="stitchboard-bench-") as scratch:
        results = [_run_one(name, args.quick, Path(scratch), args.timeout) for name in chosen]
    say("\n=== summary: every figure and ratio ===")
    for result in results:
        say(f"\n{result.title} ({result.seconds:.0f} s)")
        for figure in result.figures:
            say(f"  {figure.text()}")
        for note in result.notes:
            say(f"  note: {note}")
    if not args.no_write:
        report = render(results, machine(), command, started, quick=args.quick)
        args.out.write_text(report, encoding="utf-8")
        say(f"\nwrote {args.out}")
    failed = [result.name for result in results if result.title.endswith("(failed)")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
