import dataclasses
import hashlib
from datetime import UTC, datetime

import pytest

from stitchboard.deadletters import DeadLetter
from stitchboard.sinks.dead_letter_topic import (
    KafkaDeadLetterProducer,
    TruncatedDeadLetter,
    decode,
    encode,
    message_parts,
    read,
)
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


def oversized(raw_bytes: int, **changes: str) -> DeadLetter:
    """A malformed record under the 1 MiB input limit whose letter (base64) exceeds 1 MB."""
    fields = {"tenant": "acme", "source": "webhook", "origin": "raw/2/41"} | changes
    raw = b'{"payload": "' + bytes(range(256)) * (raw_bytes // 256)
    return DeadLetter(
        "invalid_json", "unexpected end of input", raw, datetime(2026, 3, 29, tzinfo=UTC), **fields
    )


def test_a_dead_letter_larger_than_the_topic_limit_is_truncated_with_its_digest_and_size(
    kafka: Kafka,
) -> None:
    """Issue 13 #4: an 800 KB malformed record became a 1.07 MB letter; the producer raised
    MSG_SIZE_TOO_LARGE and the flow stopped. The topic now gets a prefix of the bytes, their size and
    SHA-256 (the table keeps every byte); letters that fit are unchanged."""
    topic = kafka.create_topic()
    big = oversized(800_000)
    producer = KafkaDeadLetterProducer([kafka.bootstrap], topic)
    for letter in (big, *LETTERS):
        producer.produce(letter)
    producer.close()
    assert (producer.produced, producer.delivered, producer.truncated) == (3, 3, 1)
    first, *rest = kafka.consume(topic, expected=3)
    assert len(first.value()) <= 1_000_000
    message = read(first.value())
    assert message.truncated
    assert (message.raw_size, message.raw_sha256) == (len(big.raw), hashlib.sha256(big.raw).hexdigest())
    assert big.raw.startswith(message.letter.raw) and len(message.letter.raw) > 700_000
    assert dataclasses.replace(message.letter, raw=big.raw) == big
    assert (first.key(), dict(first.headers())) == (b"acme", _headers(big))
    with pytest.raises(TruncatedDeadLetter, match="sha256"):
        decode(first.value())
    assert [decode(record.value()) for record in rest] == LETTERS
    assert not any(read(record.value()).truncated for record in rest)


def test_every_field_of_a_letter_is_bounded_by_the_limit() -> None:
    """Text fields can be large too (a tenant or detail taken from a hostile record): each is cut to
    a few KiB once the letter does not fit, so key, headers and value together stay under the limit."""
    huge = oversized(2_000_000, tenant="t" * 500_000, source="s\u00e9" * 300_000, origin="o" * 400_000)
    huge = dataclasses.replace(huge, detail="\x01" * 600_000, reason="r" * 100_000)
    produced = message_parts(huge, 65_536)
    assert produced.truncated and produced.size <= 65_536 - 1024
    message = read(produced.value)
    assert message.truncated and message.raw_size == len(huge.raw)
    assert huge.tenant.startswith(message.letter.tenant) and produced.key == message.letter.tenant.encode()
    assert huge.source.startswith(message.letter.source) and len(message.letter.source) > 500
    assert huge.raw.startswith(message.letter.raw)


def test_the_limit_follows_the_settings(kafka: Kafka) -> None:
    topic = kafka.create_topic()
    limit = 100_000
    producer = KafkaDeadLetterProducer([kafka.bootstrap], topic, max_message_bytes=limit)
    producer.produce(oversized(80_000))
    producer.produce(oversized(60_000))
    producer.close()
    sizes = sorted(len(record.value()) for record in kafka.consume(topic, expected=2))
    assert sizes[0] < limit - 10_000 < sizes[1] <= limit
    roomy = KafkaDeadLetterProducer([kafka.bootstrap], topic, max_message_bytes=3_000_000)
    roomy.produce(oversized(2_000_000))
    roomy.close()
    assert roomy.truncated == 0
