"""Input plug-ins: every source yields ``RawRecord``s (original bytes + where they came from).

Kafka is the production source; a replay file (``stitchboard.replay_file``: JSON Lines
of base64 raw records, so even non-UTF-8 input survives) serves the demo, benchmarks and tests.
Both are Bytewax fixed-partitioned sources, so their read positions live in the recovery store.

A run stops cleanly by ending its input. Bytewax 0.21 has no stop call (bytewax/bytewax#268
proposes this very approach), but a partition whose ``next_batch`` raises ``StopIteration`` is at
its end, and once every partition is, the flow finishes as a bounded input does: each partition's
position is snapshotted as it ends (Bytewax does so at EOF "as if this partition would have lived
to the next epoch interval"), every step gets its end of input, the sinks close and the last
epoch is committed. So a set ``StopFlag`` (SIGTERM) makes every partition of a
``StoppableSource`` end at its next poll, and a restart resumes exactly where the stopped run
ended.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stitchboard import telemetry
from stitchboard.deadletters import DeadLetter
from stitchboard.replay_file import decode_line
from stitchboard.settings import KafkaSettings
from stitchboard.state_version import StateSchema, Versioned, unchanged

Progress = Callable[[int, int], None]  # (bytes read, bytes in all)
X = TypeVar("X")
S = TypeVar("S")
KafkaItem = KafkaSourceMessage[bytes | None, bytes | None] | KafkaError[bytes | None, bytes | None]
DEFAULT_METADATA_TIMEOUT = 300.0  # seconds; HealthSettings.unreachable_exit_seconds' default


class StopFlag:
    """A request to end the run cleanly; the first reason given is kept (thread-safe, and cheap
    enough to check at every poll)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason: str | None = None

    def set(self, reason: str) -> None:
        with self._lock:
            if self._reason is None:
                self._reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    @property
    def reason(self) -> str | None:
        return self._reason


class _StoppablePartition(StatefulSourcePartition[X, S]):
    """Delegates to a partition; ends it at the first poll after the flag is set."""

    def __init__(self, inner: StatefulSourcePartition[X, S], stop: StopFlag) -> None:
        self._inner = inner
        self._stop = stop

    def next_batch(self) -> list[X]:
        if self._stop.is_set():
            raise StopIteration
        telemetry.VITALS.input_polled()
        return list(self._inner.next_batch())

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> S:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class StoppableSource(FixedPartitionedSource[X, S]):
    """Any fixed-partitioned source, whose partitions end when ``stop`` is set (module docstring).

    Partition names and states are the inner source's, so a recovery store written without this
    wrapper resumes with it and the other way round.
    """

    def __init__(self, inner: FixedPartitionedSource[X, S], stop: StopFlag) -> None:
        self._inner = inner
        self._stop = stop

    def list_parts(self) -> list[str]:
        return self._inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: S | None) -> _StoppablePartition[X, S]:
        return _StoppablePartition(self._inner.build_part(step_id, for_part, resume_state), self._stop)


def kafka_client_config(settings: KafkaSettings) -> dict[str, Any]:
    """A confluent-kafka client's configuration: the brokers, ``extra_config``, and librdkafka's
    lines through ``telemetry.KAFKA_CLIENT_LOGGER`` (served by the client's poll calls)."""
    return {
        "bootstrap.servers": ",".join(settings.brokers),
        **settings.extra_config,
        "logger": logging.getLogger(telemetry.KAFKA_CLIENT_LOGGER),
    }


class BrokerUnreachable(RuntimeError):
    """The topics' partitions could not be listed within the bound: no broker answered."""


class BoundedKafkaSource(KafkaSource):
    """Bytewax's ``KafkaSource`` whose partition listing gives up after ``metadata_timeout``.

    Bytewax lists partitions without a timeout, so a run whose brokers are unreachable at start
    waited forever (issue 14). The consumers and the listing client log through
    ``telemetry.KAFKA_CLIENT_LOGGER`` (rate-limited JSON) instead of printing to stderr.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        tail: bool,
        metadata_timeout: float,
        batch_size: int = 1000,
    ) -> None:
        self._settings = settings
        self._metadata_timeout = metadata_timeout
        config = kafka_client_config(settings)
        del config["bootstrap.servers"]  # Bytewax sets it from ``brokers``
        super().__init__(
            settings.brokers,
            settings.topics,
            tail,
            add_config=cast(dict[str, str], config),  # a ``logger`` value is fine for confluent-kafka
            batch_size=batch_size,
            raise_on_errors=False,
        )

    def list_parts(self) -> list[str]:
        """``"<partition>-<topic>"`` for every partition, as Bytewax names them (the recovery keys)."""
        client = AdminClient(kafka_client_config(self._settings))
        parts: list[str] = []
        try:
            for topic in self._settings.topics:  # one by one, so a broker that auto-creates topics does
                try:
                    metadata = client.list_topics(topic, timeout=self._metadata_timeout)
                except KafkaException as exc:
                    raise BrokerUnreachable(
                        f"cannot list the partitions of topic {topic!r} at {','.join(self._settings.brokers)} "
                        f"within {self._metadata_timeout:g} s ({exc.args[0].str()})"
                    ) from exc
                listed = metadata.topics[topic]
                if listed.error is not None:
                    raise RuntimeError(
                        f"error listing partitions for Kafka topic {topic!r}: {listed.error.str()}"
                    )
                parts += [f"{index}-{topic}" for index in listed.partitions]
        finally:
            client.poll(0)  # serves the client's queued log lines
        return parts


# A replay's read position; version 0 is the bare byte offset written before versioning.
REPLAY_STATE = StateSchema[int](
    "replay_file", 1, {0: unchanged}, lambda s: isinstance(s, int) and not isinstance(s, bool)
)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One input record exactly as received."""

    value: bytes
    origin: str  # "topic/partition/offset" or "path:line"
    received_at: datetime | None = None  # broker timestamp, when the transport has one


class _ReplayPartition(StatefulSourcePartition[RawRecord, Versioned]):
    def __init__(
        self, path: Path, batch_size: int, resume_offset: int | None, progress: Progress | None
    ) -> None:
        self._file = path.open("rb")
        self._size = path.stat().st_size
        self._progress = progress
        self._name = path.name
        self._batch_size = batch_size
        self._offset = resume_offset or 0
        self._file.seek(self._offset)

    def next_batch(self) -> list[RawRecord]:
        batch: list[RawRecord] = []
        for _ in range(self._batch_size):
            line = self._file.readline()
            if not line:
                if not batch:
                    raise StopIteration
                break
            origin = f"{self._name}@{self._offset}"
            self._offset += len(line)
            if line.strip():
                delivered_at, raw = decode_line(line)
                batch.append(RawRecord(raw, origin, delivered_at))
        if self._progress is not None:
            self._progress(self._offset, self._size)
        return batch

    def snapshot(self) -> Versioned:
        return REPLAY_STATE.wrap(self._offset)

    def close(self) -> None:
        self._file.close()


class ReplayFileSource(FixedPartitionedSource[RawRecord, Versioned]):
    """Replay a file of delivered records; resumes at the byte offset it reached."""

    def __init__(self, path: Path, batch_size: int = 2000, progress: Progress | None = None) -> None:
        self._path = path
        self._batch_size = batch_size
        self._progress = progress

    def list_parts(self) -> list[str]:
        return [str(self._path)]

    def build_part(self, step_id: str, for_part: str, resume_state: object | None) -> _ReplayPartition:
        offset = REPLAY_STATE.restore(resume_state)
        return _ReplayPartition(Path(for_part), self._batch_size, offset, self._progress)


def kafka_timestamp(timestamp: tuple[int, int] | None) -> datetime | None:
    """The broker's record time, when it has one (type 0 means none)."""
    if timestamp is None or timestamp[0] == 0 or timestamp[1] < 0:
        return None
    return datetime.fromtimestamp(timestamp[1] / 1000, tz=UTC)


@operator
def _kafka_in(
    step_id: str, flow: Dataflow, source: FixedPartitionedSource[KafkaItem, Any]
) -> Stream[KafkaItem]:
    """The input step as Bytewax's ``kafka_op.input`` names it (``<step_id>.kafka_input``): the
    recovery store keys the partitions' offsets by that id."""
    return op.input("kafka_input", flow, source)


def kafka_input(
    flow: Dataflow,
    settings: KafkaSettings,
    *,
    tail: bool = True,
    stop: StopFlag | None = None,
    metadata_timeout: float = DEFAULT_METADATA_TIMEOUT,
) -> Stream[RawRecord | DeadLetter]:
    """Raw records from Kafka; consumer errors become dead letters instead of stopping the flow.
    With ``stop``, the input ends when the flag is set (module docstring)."""
    kafka = BoundedKafkaSource(settings, tail=tail, metadata_timeout=metadata_timeout)
    source: FixedPartitionedSource[KafkaItem, Any] = kafka if stop is None else StoppableSource(kafka, stop)
    consumed = _kafka_in("kafka_in", flow, source)
    split = op.branch("kafka_split", consumed, lambda item: isinstance(item, KafkaSourceMessage))
    records = op.map(
        "kafka_record",
        cast(Stream[KafkaSourceMessage[bytes | None, bytes | None]], split.trues),
        _from_message,
    )
    errors = op.map(
        "kafka_error", cast(Stream[KafkaError[bytes | None, bytes | None]], split.falses), _from_error
    )
    return op.merge("received", records, errors)


def _from_message(message: KafkaSourceMessage[bytes | None, bytes | None]) -> RawRecord:
    origin = f"{message.topic}/{message.partition}/{message.offset}"
    return RawRecord(message.value or b"", origin, kafka_timestamp(message.timestamp))


def _from_error(error: KafkaError[bytes | None, bytes | None]) -> DeadLetter:
    message = error.msg
    return DeadLetter(
        reason="kafka_error",
        detail=str(error.err),
        raw=message.value or b"",
        received_at=datetime.now(UTC),
        origin=f"{message.topic}/{message.partition}/{message.offset}",
    )
