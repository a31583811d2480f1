"""Input plug-ins: every source yields ``RawRecord``s (original bytes + where they came from).

Kafka is the production source; a replay file (``stitchboard.replay_file``: JSON Lines
of base64 raw records, so even non-UTF-8 input survives) serves the demo, benchmarks and tests.
Both are Bytewax fixed-partitioned sources, so their read positions live in the recovery store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kafka_op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from stitchboard.deadletters import DeadLetter
from stitchboard.replay_file import decode_line
from stitchboard.settings import KafkaSettings
from stitchboard.state_version import StateSchema, Versioned, unchanged

Progress = Callable[[int, int], None]  # (bytes read, bytes in all)
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


def kafka_input(
    flow: Dataflow, settings: KafkaSettings, *, tail: bool = True
) -> Stream[RawRecord | DeadLetter]:
    """Raw records from Kafka; consumer errors become dead letters instead of stopping the flow."""
    consumed = kafka_op.input(
        "kafka_in",
        flow,
        brokers=settings.brokers,
        topics=settings.topics,
        tail=tail,
        add_config=settings.extra_config,
    )
    records = op.map("kafka_record", consumed.oks, _from_message)
    errors = op.map("kafka_error", consumed.errs, _from_error)
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
