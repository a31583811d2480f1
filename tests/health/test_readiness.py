"""Readiness as a rule (``stitchboard.app.health.readiness``) and the monitor that feeds it.

The rule is checked on observations built by hand; the monitor with probes that answer or fail on
demand and a clock the test moves, so each bound is crossed exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stitchboard import telemetry
from stitchboard.app.errors import UserError
from stitchboard.app.health import Check, HealthMonitor, Observation, Reachability, readiness
from stitchboard.flows.sources import StopFlag
from stitchboard.settings import HealthSettings

BOUNDS = HealthSettings(
    unreachable_exit_seconds=60, check_seconds=5, sink_failing_seconds=30, progress_seconds=120
)
T0 = 1000.0


def seen(
    *,
    phase: str = "running",
    stopping: str | None = None,
    last_poll: float | None = T0 + 1,
    failing_since: float | None = None,
    progress_since: float = T0,
    dependencies: dict[str, Reachability | None] | None = None,
) -> Observation:
    return Observation(
        phase=phase,  # type: ignore[arg-type]
        stopping=stopping,
        started=T0,
        dependencies=dependencies if dependencies is not None else {"kafka": Reachability(True, T0)},
        vitals=telemetry.VitalSigns(last_poll, failing_since, 0),
        progress_since=progress_since,
    )


def failing(checks: dict[str, Check]) -> dict[str, str]:
    return {name: check.detail for name, check in checks.items() if not check.ok}


def test_a_running_flow_with_its_dependencies_up_is_ready() -> None:
    assert failing(readiness(seen(), BOUNDS, T0 + 10)) == {}


@pytest.mark.parametrize(
    ("observation", "now", "expected"),
    [
        (seen(phase="starting"), T0 + 1, {"flow": "starting: waiting for the dependencies"}),
        (
            seen(last_poll=None),
            T0 + 1,
            {"flow": "starting: the input is not read yet (listing partitions, restoring state)"},
        ),
        (seen(stopping="SIGTERM received"), T0 + 5, {"flow": "stopping: SIGTERM received"}),
        (seen(dependencies={"kafka": None}), T0 + 1, {"kafka": "not probed yet"}),
        (
            seen(
                dependencies={
                    "kafka": Reachability(True, T0),
                    "clickhouse": Reachability(False, T0, "refused"),
                }
            ),
            T0 + 12,
            {"clickhouse": "unreachable for 12 s: refused"},
        ),
        (seen(failing_since=T0), T0 + 31, {"sink": "inserts failing for 31 s without a success"}),
        (
            seen(last_poll=T0 + 1, progress_since=T0 + 125),
            T0 + 125,
            {"progress": "the input was not polled for 124 s (the worker is stuck)"},
        ),
        (
            seen(last_poll=T0 + 129, progress_since=T0 + 8),
            T0 + 130,
            {"progress": "records accepted for 122 s without any tenant's watermark advancing"},
        ),
    ],
)
def test_each_check_fails_alone_with_its_reason(
    observation: Observation, now: float, expected: dict[str, str]
) -> None:
    assert failing(readiness(observation, BOUNDS, now)) == expected


def test_within_their_bounds_retries_and_quiet_spells_are_ready() -> None:
    assert failing(readiness(seen(failing_since=T0), BOUNDS, T0 + 30)) == {}
    assert readiness(seen(failing_since=T0), BOUNDS, T0 + 30)["sink"].detail == "retrying"
    assert failing(readiness(seen(last_poll=T0 + 119, progress_since=T0), BOUNDS, T0 + 120)) == {}


class Switch:
    """A probe that answers or refuses as the test says."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = False

    def check(self) -> None:
        if not self.up:
            raise ConnectionRefusedError(111, "Connection refused")

    def failure(self, seconds: float, error: str) -> str:
        return f"{self.name} unreachable for {seconds:.0f} s ({error}): check it"

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_a_dependency_down_past_the_bound_ends_the_run_with_its_line() -> None:
    clock, stop, kafka, ended = Clock(), StopFlag(), Switch("kafka"), []
    monitor = HealthMonitor(BOUNDS, stop, [kafka], on_failure=ended.append, clock=clock)
    monitor.check_once()
    assert not monitor.dependencies_up()
    monitor.mark_running()
    clock.now += 59
    monitor.check_once()
    assert monitor.failure is None and not stop.is_set() and ended == []
    clock.now += 1
    monitor.check_once()
    assert str(monitor.failure) == "kafka unreachable for 60 s ([Errno 111] Connection refused): check it"
    assert ended == [monitor.failure] and isinstance(ended[0], UserError)
    assert stop.reason == "kafka unreachable for 60 s"


def test_an_outage_shorter_than_the_bound_is_forgotten_once_it_answers() -> None:
    clock, stop, clickhouse = Clock(), StopFlag(), Switch("clickhouse")
    monitor = HealthMonitor(BOUNDS, stop, [clickhouse], clock=clock)
    monitor.check_once()
    clock.now += 50
    clickhouse.up = True
    monitor.check_once()
    assert monitor.dependencies_up()
    clickhouse.up = False
    clock.now += 50
    monitor.check_once()  # down again: the count starts over
    clock.now += 50
    monitor.check_once()
    assert monitor.failure is None and not stop.is_set()
    assert monitor.observe().dependencies["clickhouse"] == Reachability(
        False, T0 + 100, "[Errno 111] Connection refused"
    )


def test_before_the_flow_runs_the_failure_is_left_to_the_runner() -> None:
    clock, stop, kafka, ended = Clock(), StopFlag(), Switch("kafka"), []
    monitor = HealthMonitor(BOUNDS, stop, [kafka], on_failure=ended.append, clock=clock)
    monitor.check_once()
    clock.now += 60
    monitor.check_once()
    assert monitor.failure is not None and ended == []  # raised by ``run``, printed by the CLI
    assert monitor.wait_for_dependencies() is False  # the wait for the dependencies ends


def test_a_sigterm_stop_is_not_turned_into_a_failure() -> None:
    clock, stop, kafka = Clock(), StopFlag(), Switch("kafka")
    monitor = HealthMonitor(BOUNDS, stop, [kafka], clock=clock)
    monitor.mark_running()
    stop.set("SIGTERM received")
    monitor.check_once()
    clock.now += 61
    monitor.check_once()
    assert monitor.failure is None and stop.reason == "SIGTERM received"


def test_progress_is_an_advancing_watermark_or_an_idle_input() -> None:
    clock, stop = Clock(), StopFlag()
    monitor = HealthMonitor(BOUNDS, stop, [], clock=clock)
    monitor.mark_running()
    monitor.check_once()
    start = monitor.observe().progress_since
    clock.now += 10
    monitor.check_once()  # nothing accepted since the last sample: idle is progress
    assert monitor.observe().progress_since == start + 10
    clock.now += 10
    telemetry.RECORDS_ACCEPTED.inc()
    monitor.check_once()  # accepted, no watermark moved
    assert monitor.observe().progress_since == start + 10
    clock.now += 10
    telemetry.RECORDS_ACCEPTED.inc()
    telemetry.VITALS.watermark("readiness-test", datetime.now(UTC) + timedelta(days=3650))
    monitor.check_once()
    assert monitor.observe().progress_since == start + 30
