"""Put raw records on a Kafka topic: what webhook receivers, pollers and file loaders do."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaException, Producer


def produce_records(
    brokers: list[str], topic: str, values: Iterable[bytes], extra: dict[str, str] | None = None
) -> int:
    """Produce every value (idempotent producer, zstd) and wait until all are acknowledged."""
    failures: list[str] = []

    def on_delivery(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    producer = Producer(
        {
            "bootstrap.servers": ",".join(brokers),
            "enable.idempotence": True,
            "compression.type": "zstd",
            "linger.ms": 20,
            **(extra or {}),
        }
    )
    sent = 0
    for value in values:
        while True:
            try:
                producer.produce(topic, value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    if producer.flush(60) != 0 or failures:
        raise KafkaException(f"{len(failures)} records not delivered to {topic}: {failures[:3]}")
    return sent
