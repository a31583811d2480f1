"""Freshness: at a steady 2k events/s, how soon figures are visible in ClickHouse.

The production flow reads a Tansu topic (tailing) and writes chDB, in this process, while a producer
process sends live webhook traffic (``bench.live``) at 2k canonical events/s. Every 100 ms a probe
sends one ``queued`` event into a queue of its own, so the first interval row of that queue exists
only because of the probe: latency = first seen in ``interval_metrics`` (the table the wallboards
read) minus the wall time the probe was handed to the producer. A poller reads chDB every 50 ms
(the same engine, as chDB allows one data path per process); its period is part of the latency.

Intervals here are 1, 15, 60 and 1440 minutes with 0 s out-of-orderness, so the 1-minute intervals
of the probe tenant finalise at ``end + allowed lateness``: the target compares the wall time the
final row appears with that. The allowed lateness (45 s) covers the live calls' reporting delay (a
call is reported up to 30 s after its first event), as the production default (30 min) covers real
delays: with 10 s, the early events of about a third of the calls were late for an already final
1-minute interval and the flow spent the run restating (over 50,000 restatement rows in 200 s).
Provisional rows are throttled to one batch per ``provisional_every_seconds``; the sink inserts
interval rows as soon as they come and other rows at least every ``flush_seconds``
(``stitchboard.sinks.clickhouse.BackgroundWriter``). The flow runs without recovery (an at-least-once sink);
with recovery, rows also wait for their epoch's commit (``snapshot_seconds``).

Two Tansu quirks are worked around here, not in the product (docs/operations.md describes a real
broker): Tansu answers a fetch only after ``fetch.wait.max.ms`` even when records arrive sooner,
so the consumer asks for 50 ms instead of librdkafka's 500; and its in-memory log costs CPU per
fetch in proportion to the number of record batches stored, so with a 1 ms producer linger (a batch
per record) Tansu used a whole core after ~30 s and stopped answering (measured with a bare
consumer at 10 ms fetches). The producer lingers 20 ms, an ordinary production setting, which keeps
the batch count, and Tansu's CPU, low; the probe's latency includes that linger.
"""

from __future__ import annotations

import multiprocessing
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import Queue
from pathlib import Path

from bytewax.testing import run_main
from confluent_kafka import Producer

from bench import live
from bench.common import MachineStalls, Result, main, percentile, say
from stitchboard import adapters
from stitchboard.app.runner import make_flow
from stitchboard.settings import ClickHouseSettings, KafkaSettings, Settings, TenantSettings, TimingSettings
from stitchboard.sinks.clickhouse import connect, init_db
from stitchboard.testing.broker import Kafka, tansu_broker

EVENTS_PER_SECOND = 2000
PROBES_PER_SECOND = 10
POLL_SECONDS = 0.05
LATENESS_SECONDS = 45  # > the 30 s reporting delay of bench.live's calls (see the module docstring)
PROVISIONAL_EVERY = 0.2
FLUSH_SECONDS = 1.0  # the production default: interval rows do not wait for it (BackgroundWriter)
FETCH_WAIT_MS = 50
LINGER_MS = 20
TARGET_P99_MS = 1000
TARGET_FINAL_SLACK_S = 5.0


@dataclass(frozen=True, slots=True)
class _Sent:
    probes: dict[str, float]  # queue → wall time produced
    conversations: int
    elapsed: float


def _probe(number: int) -> str:
    """The queue of probe ``number``: zero-padded, so names sort in probe order."""
    return f"p{number:06d}"


def _traffic(bootstrap: str, topic: str, seconds: float, rate: float, done: Queue[_Sent]) -> None:
    """Live conversations at a steady rate plus timed probes, from a process of its own so that
    producing does not compete with the flow for the GIL."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": LINGER_MS, "log_level": 0})
    probes: dict[str, float] = {}
    conversations = 0
    started = time.monotonic()
    next_probe = started
    while (elapsed := time.monotonic() - started) < seconds:
        now = datetime.now(UTC)
        while conversations < elapsed * rate:
            for raw in live.conversation("live", f"c{conversations:08d}", now):
                producer.produce(topic, value=raw)
            conversations += 1
        if time.monotonic() >= next_probe:
            queue = _probe(len(probes))
            producer.produce(topic, value=live.probe("probe", queue, now))
            probes[queue] = time.time()
            next_probe += 1 / PROBES_PER_SECOND
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(10)
    done.put(_Sent(probes, conversations, time.monotonic() - started))


def _events_per_conversation() -> int:
    normalised = [adapters.normalise(raw) for raw in live.conversation("live", "x", datetime.now(UTC))]
    return sum(len(events) for events in normalised if isinstance(events, list))


def run(quick: bool, workdir: Path) -> Result:
    result = Result("freshness", "3. Freshness at a steady 2k events/s: produce → visible in ClickHouse")
    seconds = 8.0 if quick else 200.0
    warmup = 2.0 if quick else 10.0
    chdb_path = workdir / "chdb"
    shutil.rmtree(chdb_path, ignore_errors=True)
    per_conversation = _events_per_conversation()
    conversations_per_second = (EVENTS_PER_SECOND - PROBES_PER_SECOND) / per_conversation
    with tansu_broker() as bootstrap:
        topic = f"fresh-{uuid.uuid4().hex[:8]}"
        Kafka(bootstrap).create_topic(topic)
        Kafka(bootstrap).create_topic(f"{topic}.dead")
        settings = Settings(
            tenants={"live": TenantSettings(), "probe": TenantSettings()},
            timing=TimingSettings(
                interval_minutes=(1, 15, 60, 1440),
                out_of_orderness_seconds=0,
                allowed_lateness_seconds=LATENESS_SECONDS,
                provisional_every_seconds=PROVISIONAL_EVERY,
            ),
            clickhouse=ClickHouseSettings(dsn=f"chdb://{chdb_path}", flush_seconds=FLUSH_SECONDS),
            kafka=KafkaSettings(
                brokers=[bootstrap],
                topics=[topic],
                dead_letter_topic=f"{topic}.dead",
                # Tansu answers a fetch only after fetch.wait.max.ms (500 ms by default) even when
                # records arrive sooner; a real broker answers at once (see the module docstring).
                extra_config={"log_level": "0", "fetch.wait.max.ms": str(FETCH_WAIT_MS)},
            ),
            metrics_port=None,
        )
        database = settings.clickhouse.database
        client = connect(settings.clickhouse.dsn)
        init_db(client, database)
        failures: list[BaseException] = []

        def flow_thread() -> None:
            try:
                run_main(make_flow(settings))
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)

        threading.Thread(target=flow_thread, daemon=True).start()
        time.sleep(1.0)  # the flow assigns its partition and opens chDB
        context = multiprocessing.get_context("spawn")
        done: Queue[_Sent] = context.Queue()
        producer = context.Process(
            target=_traffic, args=(bootstrap, topic, seconds, conversations_per_second, done), daemon=True
        )
        say(f"freshness: {seconds:.0f} s of traffic at {EVENTS_PER_SECOND} events/s (+ probes); polling chDB")
        measured_from = time.time() + warmup
        with MachineStalls(workdir / "stalls.txt") as stalls:
            producer.start()
            seen: dict[str, float] = {}
            finals: dict[datetime, float] = {}
            sent: _Sent | None = None
            deadline = None
            unseen = 0
            poll_ms: list[float] = []
            while not failures:
                now = time.time()
                # only what may be new (a growing result would hold the GIL the flow thread needs):
                # probes from the first not yet seen on, as rows need not appear in probe order
                while _probe(unseen) in seen:
                    unseen += 1
                final_after = max(finals, default=datetime(2000, 1, 1, tzinfo=UTC))
                poll = (
                    f"SELECT queue, interval_start, status FROM {database}.interval_metrics"
                    " WHERE tenant = 'probe' AND interval_minutes = 1"
                    f" AND (queue >= '{_probe(unseen)}' OR (status = 'final' AND interval_start > %(after)s))"
                )
                polled = time.perf_counter()
                rows = client.query(poll, parameters={"after": final_after}).result_rows
                poll_ms.append((time.perf_counter() - polled) * 1000)
                for queue, start, status in rows:
                    seen.setdefault(queue, now)
                    if status == "final":
                        finals.setdefault(start, now)
                if sent is None and not done.empty():
                    sent = done.get()
                    deadline = now + 10
                if (
                    sent is not None
                    and deadline is not None
                    and (set(sent.probes) <= set(seen) or now > deadline)
                ):
                    break
                time.sleep(POLL_SECONDS)
        if failures:
            raise RuntimeError("the flow failed") from failures[0]
    assert sent is not None
    produced_rate = (sent.conversations * per_conversation + len(sent.probes)) / sent.elapsed
    result.add("traffic produced", produced_rate, "events/s")
    latencies = [
        (seen[queue] - at) * 1000
        for queue, at in sent.probes.items()
        if at >= measured_from and queue in seen
    ]
    missing = sum(1 for queue in sent.probes if queue not in seen)
    result.add("probes measured", len(latencies), "probes")
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    result.add("produce → provisional row visible, p50", p50, "ms")
    result.add(
        "produce → provisional row visible, p99",
        p99,
        "ms",
        target=f"< {TARGET_P99_MS} ms",
        met=p99 < TARGET_P99_MS and missing == 0,
    )
    result.add("produce → provisional row visible, max", max(latencies, default=float("nan")), "ms")
    measured = [
        (at, seen[queue]) for queue, at in sent.probes.items() if at >= measured_from and queue in seen
    ]
    slow = [(at, visible) for at, visible in measured if visible - at > TARGET_P99_MS / 1000]
    machine = [late for at, late in stalls.stalls if at >= measured_from]
    result.add("machine stalls while measuring (an idle process woke > 100 ms late)", len(machine), "stalls")
    result.add("longest machine stall", max(machine, default=0.0) * 1000, "ms")
    result.add(
        f"probes over {TARGET_P99_MS} ms that overlap a machine stall",
        sum(1 for at, visible in slow if stalls.overlapping(at, visible)),
        f"of {len(slow)}",
    )
    result.ratio("p50 ÷ provisional throttle period", p50 / 1000 / PROVISIONAL_EVERY)
    slack = [
        seen_at - (start + timedelta(minutes=1, seconds=LATENESS_SECONDS)).timestamp()
        for start, seen_at in finals.items()
        if start.timestamp() >= measured_from
    ]
    if slack:
        result.add("intervals finalised while measuring", len(slack), "intervals")
        result.add(
            "interval end → final row visible, minus allowed lateness, max",
            max(slack),
            "s",
            target=f"< {TARGET_FINAL_SLACK_S:.0f} s (final row by end + lateness + 5 s)",
            met=max(slack) < TARGET_FINAL_SLACK_S,
        )
        result.add(
            "interval end → final row visible, minus allowed lateness, p50", percentile(slack, 0.5), "s"
        )
    else:
        result.note("no 1-minute interval ended and finalised while measuring (a --quick run is too short)")
    result.note(
        f"settings: provisional_every_seconds={PROVISIONAL_EVERY}, clickhouse.flush_seconds={FLUSH_SECONDS}"
        f" (interval rows are inserted as soon as they are published), allowed_lateness_seconds="
        f"{LATENESS_SECONDS}, out_of_orderness_seconds=0, no recovery (with recovery, provisional rows"
        f" add the staged sink's 0.2 s poll and final rows wait for their epoch, snapshot_seconds);"
        f" producer linger.ms={LINGER_MS}, consumer"
        f" fetch.wait.max.ms={FETCH_WAIT_MS} (Tansu answers a fetch only after it); poll every"
        f" {POLL_SECONDS * 1000:.0f} ms (each poll took {percentile(poll_ms, 0.5):.0f} ms at p50);"
        f" {missing} probes never seen"
    )
    return result


if __name__ == "__main__":
    main(run, hard_exit=True)
