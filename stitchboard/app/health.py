"""Health of a running flow: ``/healthz``, ``/readyz`` and ``/metrics`` on the metrics port, and the
watch that ends the run when Kafka or ClickHouse stays unreachable.

- ``/healthz``: 200 while the process runs (the liveness probe: only a dead or hung process
  should be restarted by it; an unreachable dependency is the watch's job, below).
- ``/readyz``: 200 when every check passes, else 503; the body is JSON naming each check and why
  it fails. Checks: the flow is running (not starting, resuming or stopping); each dependency
  answered its last probe (the brokers a metadata request, ClickHouse ``/ping``); inserts have not
  been failing for longer than ``health.sink_failing_seconds``; and the flow progresses: its
  input was polled within ``health.progress_seconds``, and whenever records were accepted some
  tenant's watermark advanced within that bound too (an idle input is progress).
- ``/metrics``: Prometheus' own WSGI app. Every other path is 404.

The watch probes the dependencies every ``health.check_seconds``; one unreachable for
``health.unreachable_exit_seconds`` ends the run with one line naming it and exit status 1. Before
the flow starts, the runner raises it (the CLI prints the line). Once the flow runs, the process
exits at once (``on_failure``): a clean stop cannot complete without the dependency (the sink
retries ClickHouse, dead letters wait for the brokers, ~30-50 s, and Bytewax then aborts with a
panic), and nothing is lost by not stopping cleanly: a restart resumes from the last committed
snapshot, at most ``snapshot_seconds`` old, as after a crash.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Literal, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from prometheus_client import make_wsgi_app

from stitchboard import telemetry
from stitchboard.app.errors import UserError, detail
from stitchboard.flows.sources import StopFlag, kafka_client_config
from stitchboard.redaction import redact
from stitchboard.settings import HealthSettings, KafkaSettings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

_log = logging.getLogger("stitchboard.health")
Clock = Callable[[], float]
Phase = Literal["starting", "running"]


@dataclass(frozen=True, slots=True)
class Reachability:
    """A dependency's state since monotonic time ``since``, and the last probe's error if down."""

    ok: bool
    since: float
    error: str = ""


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything readiness is decided from, read at one instant (monotonic seconds)."""

    phase: Phase
    stopping: str | None  # the stop request's reason
    started: float  # when the flow was started (the phase became running)
    dependencies: Mapping[str, Reachability | None]  # None: not probed yet
    vitals: telemetry.VitalSigns
    progress_since: float  # the last sample in which a watermark advanced or no record was accepted


def readiness(seen: Observation, bounds: HealthSettings, now: float) -> dict[str, Check]:
    """Each readiness check by name (the module docstring says what they mean)."""
    checks = {"flow": _flow_check(seen)}
    for name, state in seen.dependencies.items():
        if state is None:
            checks[name] = Check(False, "not probed yet")
        elif state.ok:
            checks[name] = Check(True, "reachable")
        else:
            checks[name] = Check(False, f"unreachable for {now - state.since:.0f} s: {state.error}")
    failing = seen.vitals.sink_failing_since
    if failing is not None and now - failing > bounds.sink_failing_seconds:
        checks["sink"] = Check(False, f"inserts failing for {now - failing:.0f} s without a success")
    else:
        checks["sink"] = Check(True, "retrying" if failing is not None else "writing")
    checks["progress"] = _progress_check(seen, bounds, now)
    return checks


def _flow_check(seen: Observation) -> Check:
    if seen.stopping is not None:
        return Check(False, f"stopping: {seen.stopping}")
    if seen.phase == "starting":
        return Check(False, "starting: waiting for the dependencies")
    last_poll = seen.vitals.last_poll
    if last_poll is None or last_poll < seen.started:
        return Check(False, "starting: the input is not read yet (listing partitions, restoring state)")
    return Check(True, "running")


def _progress_check(seen: Observation, bounds: HealthSettings, now: float) -> Check:
    if seen.phase != "running" or seen.stopping is not None:
        return Check(True, "not running")
    polled = seen.vitals.last_poll
    reference = polled if polled is not None and polled >= seen.started else seen.started
    if now - reference > bounds.progress_seconds:
        return Check(False, f"the input was not polled for {now - reference:.0f} s (the worker is stuck)")
    if now - seen.progress_since > bounds.progress_seconds:
        return Check(
            False,
            f"records accepted for {now - seen.progress_since:.0f} s without any tenant's watermark advancing",
        )
    return Check(True, "advancing or idle")


class Probe(Protocol):
    """One dependency: ``check`` returns when it answers and raises when it does not."""

    name: str

    def check(self) -> None: ...

    def failure(self, seconds: float, error: str) -> str:
        """The error line's message once it has been unreachable for ``seconds``."""
        ...

    def close(self) -> None: ...


class KafkaProbe:
    """A metadata request for the first input topic, as the input itself makes."""

    name = "kafka"

    def __init__(self, settings: KafkaSettings, timeout: float) -> None:
        self._settings = settings
        self._timeout = timeout
        self._client = AdminClient(kafka_client_config(settings))

    def check(self) -> None:
        try:
            self._client.list_topics(self._settings.topics[0], timeout=self._timeout)
        except KafkaException as exc:
            raise ConnectionError(exc.args[0].str()) from exc
        finally:
            self._client.poll(0)  # serves the client's log lines (they wait in its queue)

    def failure(self, seconds: float, error: str) -> str:
        return (
            f"Kafka unreachable at {','.join(self._settings.brokers)} for {seconds:.0f} s ({error}): check "
            "kafka.brokers (and kafka.extra_config for TLS or SASL), the network path and that the brokers "
            "are up; a restart resumes from the last snapshot"
        )

    def close(self) -> None:
        self._client.poll(0)


class ClickHouseProbe:
    """``/ping`` of an http(s) ClickHouse; the client is made (and remade) until one connects."""

    name = "clickhouse"

    def __init__(self, dsn: str, timeout: float) -> None:
        self._dsn = dsn
        self._timeout = timeout
        self._client: Client | None = None

    def check(self) -> None:
        client = self._client
        if client is None:
            seconds = max(1, math.ceil(self._timeout))  # the client takes whole seconds
            client = clickhouse_connect.get_client(
                dsn=self._dsn, connect_timeout=seconds, send_receive_timeout=seconds
            )
            self._client = client
        if not client.ping():
            raise ConnectionError("no answer to /ping")

    def failure(self, seconds: float, error: str) -> str:
        return (
            f"ClickHouse unreachable at {redact(self._dsn)} for {seconds:.0f} s ({error}): check "
            "clickhouse.dsn (--dsn, STITCHBOARD_CLICKHOUSE__DSN or the secret file clickhouse__dsn) and "
            "that the server is up; a restart resumes from the last snapshot"
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def probes_for(kafka: KafkaSettings | None, dsn: str, timeout: float) -> list[Probe]:
    """The brokers (when the run reads Kafka) and ClickHouse (when it is a server, not chDB)."""
    probes: list[Probe] = []
    if kafka is not None:
        probes.append(KafkaProbe(kafka, timeout))
    if not dsn.startswith("chdb:"):
        probes.append(ClickHouseProbe(dsn, timeout))
    return probes


class _Progress:
    """Samples of accepted records and watermark advances: when did the flow last progress?"""

    def __init__(self, now: float) -> None:
        self.since = now
        self._accepted: float | None = None
        self._advances: int | None = None

    def sample(self, accepted: float, advances: int, now: float) -> None:
        if accepted == self._accepted or advances != self._advances:
            self.since = now
        self._accepted, self._advances = accepted, advances


class HealthMonitor:
    """Probes the dependencies on a thread and answers readiness. When one stays unreachable past
    the bound it keeps the error (``failure``), calls ``on_failure`` with it if the flow is running
    (the runner exits there), and sets ``stop`` (which ends a wait for the dependencies)."""

    def __init__(
        self,
        bounds: HealthSettings,
        stop: StopFlag,
        probes: Iterable[Probe] = (),
        *,
        on_failure: Callable[[UserError], None] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.bounds = bounds
        self._stop = stop
        self._probes = list(probes)
        self._clock = clock
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._states: dict[str, Reachability | None] = {probe.name: None for probe in self._probes}
        self._phase: Phase = "starting"
        self._started = clock()
        self._progress = _Progress(self._started)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stitchboard-health", daemon=True)
        self.failure: UserError | None = None

    def __enter__(self) -> HealthMonitor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._closed.set()
        self._thread.join()
        for probe in self._probes:
            probe.close()

    def mark_running(self) -> None:
        """The flow is being started: from now on its input must be polled."""
        with self._lock:
            self._phase = "running"
            self._started = self._clock()
            self._progress = _Progress(self._started)

    def dependencies_up(self) -> bool:
        with self._lock:
            return all(state is not None and state.ok for state in self._states.values())

    def wait_for_dependencies(self, poll_seconds: float = 0.05) -> bool:
        """Until every dependency answered (True) or the run is to stop (False), bounded by the watch."""
        while not self.dependencies_up():
            if self._stop.wait(poll_seconds):
                return False
        return True

    def observe(self) -> Observation:
        with self._lock:
            return Observation(
                phase=self._phase,
                stopping=self._stop.reason if self._stop.is_set() else None,
                started=self._started,
                dependencies=dict(self._states),
                vitals=telemetry.VITALS.read(),
                progress_since=self._progress.since,
            )

    def report(self) -> tuple[bool, dict[str, Check]]:
        checks = readiness(self.observe(), self.bounds, self._clock())
        return all(check.ok for check in checks.values()), checks

    def check_once(self) -> None:
        """Probe every dependency, sample progress, and stop the run on a dependency down too long."""
        for probe in self._probes:
            self._probe(probe)
        vitals = telemetry.VITALS.read()
        with self._lock:
            self._progress.sample(
                telemetry.counter_total(telemetry.RECORDS_ACCEPTED), vitals.watermark_advances, self._clock()
            )

    def _probe(self, probe: Probe) -> None:
        try:
            probe.check()
            ok, error = True, ""
        except Exception as exc:  # any failure to answer is "unreachable", with its reason
            ok, error = False, redact(detail(exc))
        now = self._clock()
        with self._lock:
            previous = self._states[probe.name]
            since = previous.since if previous is not None and previous.ok == ok else now
            self._states[probe.name] = Reachability(ok, since, error)
        if previous is None or previous.ok != ok:
            if ok:
                _log.info("dependency reachable", extra={"dependency": probe.name})
            else:
                _log.warning("dependency unreachable", extra={"dependency": probe.name, "error": error})
        down_for = now - since
        if (
            not ok
            and down_for >= self.bounds.unreachable_exit_seconds
            and self.failure is None
            and not self._stop.is_set()  # already stopping (SIGTERM): that stop decides the exit
        ):
            self.failure = UserError(probe.failure(down_for, error))
            _log.error(
                "dependency unreachable too long, ending the run",
                extra={"dependency": probe.name, "seconds": round(down_for, 1), "error": error},
            )
            if self._phase == "running" and self._on_failure is not None:
                self._on_failure(self.failure)
            self._stop.set(f"{probe.name} unreachable for {down_for:.0f} s")

    def _loop(self) -> None:
        self.check_once()
        next_check = self._clock() + self.bounds.check_seconds
        stop_logged = False
        while not self._closed.wait(0.1):
            if self._stop.is_set() and not stop_logged:
                stop_logged = True
                _log.info("stop requested", extra={"reason": self._stop.reason})
            if self._clock() >= next_check:
                self.check_once()
                next_check = self._clock() + self.bounds.check_seconds


# ---- the HTTP endpoint ----------------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per request (a slow scrape must not delay a probe), daemonic."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access log: probes every few seconds would drown the flow's own lines."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def _json(start_response: StartResponse, status: str, body: object) -> list[bytes]:
    data = orjson.dumps(body)
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def application(monitor: HealthMonitor | None) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    """The WSGI app of the metrics port; without a monitor ``/readyz`` only says the process runs."""
    metrics = make_wsgi_app()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            scrape: Iterable[bytes] = metrics(environ, start_response)
            return scrape
        if path == "/healthz":
            return _json(start_response, "200 OK", {"alive": True})
        if path == "/readyz":
            if monitor is None:
                return _json(start_response, "200 OK", {"ready": True, "checks": {}})
            ready, checks = monitor.report()
            body = {
                "ready": ready,
                "checks": {name: {"ok": c.ok, "detail": redact(c.detail)} for name, c in checks.items()},
            }
            return _json(start_response, "200 OK" if ready else "503 Service Unavailable", body)
        return _json(start_response, "404 Not Found", {"error": f"no such path; try {', '.join(PATHS)}"})

    return app


PATHS: Sequence[str] = ("/metrics", "/healthz", "/readyz")


class HealthServer:
    """``application`` served on ``port`` (all interfaces) from a daemon thread until ``close``."""

    def __init__(self, port: int, monitor: HealthMonitor | None) -> None:
        self._server = make_server(
            "0.0.0.0", port, application(monitor), server_class=_Server, handler_class=_QuietHandler
        )
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="stitchboard-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
