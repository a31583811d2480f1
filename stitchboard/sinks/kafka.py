"""Writing to Kafka: the one producer helper, and raw records onto the input topic.

``KafkaWriter`` wraps a confluent-kafka producer the way every Stitchboard writer needs it:
idempotent and zstd-compressed, waiting out a full local queue instead of failing, and raising on
``flush`` when the broker did not acknowledge everything, so nothing is reported as written that
was not. The dead-letter topic (``stitchboard.sinks.dead_letter_topic``) and ``produce_records``
(what webhook receivers, pollers, file loaders and ``stitchboard generate --kafka`` do) use it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from confluent_kafka import KafkaError, Message, Producer

from stitchboard.telemetry import KAFKA_CLIENT_LOGGER


class KafkaDeliveryError(RuntimeError):
    """The broker did not acknowledge some records; they must not be reported as written."""


class KafkaWriter:
    """Produces records; ``flush`` raises ``KafkaDeliveryError`` if any were not delivered."""

    def __init__(
        self,
        brokers: Sequence[str] | str,
        extra_config: Mapping[str, str | int] | None = None,
        *,
        full_queue_wait_seconds: float = 0.1,
    ) -> None:
        servers = brokers if isinstance(brokers, str) else ",".join(brokers)
        config: dict[str, object] = {
            "bootstrap.servers": servers,
            "enable.idempotence": True,
            "compression.type": "zstd",
            "logger": logging.getLogger(KAFKA_CLIENT_LOGGER),  # librdkafka's lines as our JSON logs
        }
        config.update(extra_config or {})
        self._producer = Producer(config)
        self._wait = full_queue_wait_seconds
        self._errors: list[KafkaError] = []
        self.produced = 0
        self.delivered = 0

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue one record; while the local queue is full, serve deliveries and try again."""
        while True:
            try:
                self._producer.produce(topic, value, key=key, headers=headers, on_delivery=self._on_delivery)  # type: ignore[arg-type]
                break
            except BufferError:
                self._producer.poll(self._wait)
        self.produced += 1
        self._producer.poll(0)

    def flush(self, timeout_seconds: float) -> None:
        """Wait until every record is acknowledged; raise if some were not (and forget them)."""
        remaining = self._producer.flush(timeout_seconds)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise KafkaDeliveryError(
                f"{remaining} records undelivered, errors: {[str(e) for e in errors[:3]]}"
            )

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._errors.append(error)
        else:
            self.delivered += 1


def produce_records(
    brokers: list[str], topic: str, values: Iterable[bytes], extra: dict[str, str] | None = None
) -> int:
    """Produce every value and wait until all are acknowledged; returns how many were sent."""
    writer = KafkaWriter(brokers, {"linger.ms": 20, **(extra or {})})
    for value in values:
        writer.send(topic, value)
    writer.flush(60)
    return writer.produced
