from datetime import UTC, datetime

from stitchboard.deadletters import DeadLetter
from stitchboard.sinks.dead_letter_topic import KafkaDeadLetterProducer, decode, encode
from stitchboard.testing.broker import Kafka

LETTERS = [
    DeadLetter(
        "invalid_json",
        "expected value at line 1",
        b"\x00\xff{oops",
        datetime(2026, 3, 29, 8, 0, 1, 250000, tzinfo=UTC),
        "acme",
        "genesys",
        "raw/0/7",
    ),
    DeadLetter("unknown_source", "source 'fax' is not supported", b'{"source":"fax"}', datetime.now(UTC)),
]


def test_encoding_round_trips_every_field() -> None:
    assert [decode(encode(letter)) for letter in LETTERS] == LETTERS


def test_dead_letters_round_trip_through_kafka(kafka: Kafka) -> None:
    topic = kafka.create_topic(partitions=2)
    producer = KafkaDeadLetterProducer([kafka.bootstrap], topic, {"linger.ms": "5"})
    for letter in LETTERS:
        producer.produce(letter)
    producer.close()
    assert (producer.produced, producer.delivered) == (2, 2)
    records = kafka.consume(topic, expected=2)
    received = {decode(r.value()).reason: (decode(r.value()), dict(r.headers()), r.key()) for r in records}
    assert len(records) == 2
    assert received == {
        letter.reason: (letter, _headers(letter), letter.tenant.encode()) for letter in LETTERS
    }


def _headers(letter: DeadLetter) -> dict[str, bytes]:
    return {
        "reason": letter.reason.encode(),
        "tenant": letter.tenant.encode(),
        "source": letter.source.encode(),
    }
