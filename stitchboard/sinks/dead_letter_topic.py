"""The dead-letter topic: rejected input, for other tools to inspect and replay; its record format,
producer and Bytewax sink.

Value: JSON ``{reason, detail, tenant, source, origin, received_at, raw_base64}`` (the original bytes
survive any encoding). Headers repeat ``reason``, ``tenant`` and ``source`` so consumers can route
without parsing. Key: the tenant, so one tenant's dead letters stay ordered in one partition.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from stitchboard.deadletters import DeadLetter
from stitchboard.settings import KafkaSettings
from stitchboard.sinks.kafka import KafkaWriter


def encode(letter: DeadLetter) -> bytes:
    return orjson.dumps(
        {
            "reason": letter.reason,
            "detail": letter.detail,
            "tenant": letter.tenant,
            "source": letter.source,
            "origin": letter.origin,
            "received_at": letter.received_at.isoformat(),
            "raw_base64": letter.raw_base64(),
        }
    )


def decode(value: bytes) -> DeadLetter:
    data = orjson.loads(value)
    return DeadLetter(
        reason=data["reason"],
        detail=data["detail"],
        raw=base64.b64decode(data["raw_base64"]),
        received_at=datetime.fromisoformat(data["received_at"]),
        tenant=data["tenant"],
        source=data["source"],
        origin=data["origin"],
    )


class KafkaDeadLetterProducer:
    """Produces dead letters; ``flush``/``close`` raise ``KafkaDeliveryError`` if any were not delivered."""

    def __init__(
        self,
        brokers: Sequence[str] | str,
        topic: str,
        extra_config: Mapping[str, str] | None = None,
        *,
        flush_timeout_seconds: float = 30.0,
    ) -> None:
        self.topic = topic
        self.flush_timeout_seconds = flush_timeout_seconds
        self._writer = KafkaWriter(brokers, extra_config, full_queue_wait_seconds=0.5)

    @property
    def produced(self) -> int:
        return self._writer.produced

    @property
    def delivered(self) -> int:
        return self._writer.delivered

    def produce(self, letter: DeadLetter) -> None:
        headers = [
            ("reason", letter.reason.encode()),
            ("tenant", letter.tenant.encode()),
            ("source", letter.source.encode()),
        ]
        self._writer.send(self.topic, encode(letter), key=letter.tenant.encode(), headers=headers)

    def flush(self) -> None:
        self._writer.flush(self.flush_timeout_seconds)

    def close(self) -> None:
        self.flush()


class _DeadLetterPartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, producer: KafkaDeadLetterProducer) -> None:
        self._producer = producer

    def write_batch(self, items: list[DeadLetter]) -> None:
        for letter in items:
            self._producer.produce(letter)
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


class KafkaDeadLetterSink(DynamicSink[DeadLetter]):
    """Dead letters to their Kafka topic; each batch is flushed (delivered) before the epoch ends."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        s = self._settings
        return _DeadLetterPartition(KafkaDeadLetterProducer(s.brokers, s.dead_letter_topic, s.extra_config))
