"""The broker goes down in the middle of a run and comes back: the flow waits, resumes, and ends
exactly once.

Tansu here keeps its log in memory (its durable engines need PostgreSQL or S3), so a restart is
emulated faithfully: the broker is killed while the flow is consuming; the flow runs on against a
dead broker for a while; then, with the flow paused (SIGSTOP) so it cannot fetch from a half-built
log, a new broker starts on the same port and the same records are produced to the same
partitions in the same order (same offsets, as a durable broker would have kept them); the flow
is resumed (SIGCONT), reconnects to the new broker process and carries on from its own position.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from confluent_kafka import Producer
from recovery.crash_harness import (
    DATABASE,
    expected_of,
    problems_of,
    read_outcome,
    scrape,
    start_flow,
    write_settings,
)

from stitchboard.synthetic.dataset import DEMO_TENANTS, FaultProfile, build_dataset
from stitchboard.testing.broker import Kafka, free_port, tansu_binary, wait_for_port

PARTITIONS = 2


class Broker:
    """A Tansu process on a fixed port that can be killed and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        command = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]
        command += ["--storage-engine", "memory://tansu/", "--silent"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 10, self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def broker() -> Iterator[Broker]:
    broker = Broker()
    broker.start()
    yield broker
    broker.kill()


def produce_log(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Round-robin over the partitions, so each partition's order (and offsets) is reproducible."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for index, value in enumerate(values):
        producer.produce(topic, value, partition=index % PARTITIONS)
        producer.poll(0)
    assert producer.flush(30) == 0


def test_flow_resumes_after_a_broker_restart(broker: Broker, tmp_path: Path) -> None:
    faults = FaultProfile(malformed_rate=0)  # no dead letters: nothing to produce while the broker is away
    dataset = build_dataset(dict(DEMO_TENANTS), date(2026, 10, 25), seed=21, scale=0.5, faults=faults)
    values = [record.raw for record in dataset.delivery.records]
    topic = Kafka(broker.bootstrap).create_topic("raw", partitions=PARTITIONS)
    produce_log(broker.bootstrap, topic, values)

    port = free_port()
    small_fetches = {"max.partition.fetch.bytes": "4096", "queued.max.messages.kbytes": "16"}
    config = write_settings(
        tmp_path / "settings.json",
        dataset,
        bootstrap=broker.bootstrap,
        topic=topic,
        work=tmp_path,
        port=port,
        snapshot_seconds=1,
        consumer=small_fetches,  # little read-ahead: the outage must be felt, not bridged by a buffer
    )
    flow = start_flow(config, tmp_path / "flow.log")
    try:
        deadline = time.monotonic() + 60
        while scrape(port).get("stitchboard_records_in_total", 0) < len(values) // 5:
            assert flow.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)

        broker.kill()
        time.sleep(3)
        read_during_outage = scrape(port).get("stitchboard_records_in_total", 0)
        assert flow.poll() is None  # the flow waits for the broker instead of failing
        assert read_during_outage < len(values)

        flow.send_signal(signal.SIGSTOP)
        broker.start()
        Kafka(broker.bootstrap).create_topic("raw", partitions=PARTITIONS)
        produce_log(broker.bootstrap, topic, values)
        flow.send_signal(signal.SIGCONT)

        assert flow.wait(timeout=180) == 0
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.wait()

    outcome = read_outcome(f"chdb://{tmp_path / 'chdb'}", DATABASE, tmp_path / "outcome.json")
    assert problems_of(dataset, expected_of(dataset), outcome) == []
