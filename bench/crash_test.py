"""Crash test at full size: a generated day of more than 200k canonical events in Tansu, the flow
SIGKILLed at seeded random points and restarted, then an exact comparison with the truth.

    .venv/bin/python bench/crash_test.py --scale 3 --kills 6 --partitions 4 --seed 5

Exit status 0 when every final and restated figure, conversation, agent state and dead letter
matches the generator's truth exactly and the restatement log chains exactly; 1 otherwise. The
same harness runs at CI size in ``tests/recovery/test_crash_recovery.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from recovery.crash_harness import CrashPlan, crash_and_recover, expected_of, problems_of

from stitchboard.sinks.kafka import produce_records
from stitchboard.synthetic.dataset import DEMO_TENANTS, build_dataset
from stitchboard.testing.broker import Kafka, free_port, tansu_broker


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", type=float, default=3.0, help="volume multiplier (3.0 ≈ 55k records, 235k events)"
    )
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--day", type=date.fromisoformat, default=date(2026, 3, 29))
    parser.add_argument("--work", type=Path, help="keep settings, logs, chDB and recovery here")
    args = parser.parse_args()

    plan = CrashPlan(dict(DEMO_TENANTS), args.day, args.seed, args.scale, args.partitions, args.kills)
    work = args.work or Path(tempfile.mkdtemp(prefix="stitchboard-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    _say(f"generating {plan.day} at scale {plan.scale} (seed {plan.seed})")
    dataset = build_dataset(plan.zones, plan.day, plan.seed, scale=plan.scale)
    expected = expected_of(dataset)
    _say(
        f"  {expected.records} records → {expected.events} canonical events, {expected.conversations} conversations"
    )
    with tansu_broker() as bootstrap:
        kafka = Kafka(bootstrap)
        topic = kafka.create_topic(partitions=plan.partitions)
        produce_records(
            [bootstrap],
            topic,
            [r.raw for r in dataset.delivery.records],
            {"sticky.partitioning.linger.ms": "0"},
        )
        _say(
            f"produced to {topic} ({plan.partitions} partitions); running the flow with {plan.kills} SIGKILLs"
        )
        started = time.perf_counter()
        report = crash_and_recover(
            plan, dataset, bootstrap=bootstrap, topic=topic, work=work, free_port=free_port, log=_say
        )
    elapsed = time.perf_counter() - started
    problems = problems_of(dataset, expected, report.outcome)
    _say(
        f"{report.runs} runs ({report.resumes} resumed from a committed snapshot) in {elapsed:.0f} s; "
        f"{report.outcome['restatements']} restatement rows; dead letters {report.outcome['dead_letters']}"
    )
    for problem in problems:
        print(f"  MISMATCH {problem}")
    _say(
        "exactly once: every figure equals the truth"
        if not problems
        else f"{len(problems)} problems; see {work}"
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
