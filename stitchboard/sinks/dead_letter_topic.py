"""Dead letters to a Kafka topic, so rejected input can be inspected and replayed by other tools.

Value: JSON ``{reason, detail, tenant, source, origin, received_at, raw_base64}`` (the original bytes
survive any encoding). Headers repeat ``reason``, ``tenant`` and ``source`` so consumers can route
without parsing. Key: the tenant, so one tenant's dead letters stay ordered in one partition.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime

import orjson
from confluent_kafka import KafkaError, Message, Producer

from stitchboard.deadletters import DeadLetter


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


class DeadLetterDeliveryError(RuntimeError):
    """The broker did not acknowledge some dead letters; they must not be reported as kept."""


class KafkaDeadLetterProducer:
    """Produces dead letters; ``flush``/``close`` raise if any were not delivered."""

    def __init__(
        self,
        brokers: Sequence[str] | str,
        topic: str,
        extra_config: Mapping[str, str] | None = None,
        *,
        flush_timeout_seconds: float = 30.0,
    ) -> None:
        servers = brokers if isinstance(brokers, str) else ",".join(brokers)
        config: dict[str, str | int | bool] = {
            "bootstrap.servers": servers,
            "enable.idempotence": True,
            "compression.type": "zstd",
        }
        config.update(extra_config or {})
        self.topic = topic
        self.flush_timeout_seconds = flush_timeout_seconds
        self._producer = Producer(config)
        self._errors: list[KafkaError] = []
        self.produced = 0
        self.delivered = 0

    def produce(self, letter: DeadLetter) -> None:
        headers = [
            ("reason", letter.reason.encode()),
            ("tenant", letter.tenant.encode()),
            ("source", letter.source.encode()),
        ]
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=encode(letter),
                    key=letter.tenant.encode(),
                    headers=headers,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                self._producer.poll(0.5)
        self.produced += 1
        self._producer.poll(0)

    def flush(self) -> None:
        remaining = self._producer.flush(self.flush_timeout_seconds)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise DeadLetterDeliveryError(f"{remaining} dead letters undelivered, errors: {errors}")

    def close(self) -> None:
        self.flush()

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._errors.append(error)
        else:
            self.delivered += 1
