"""The dead-letter topic: rejected input, for other tools to inspect and replay; its record format,
producer and Bytewax sink.

Value: JSON ``{reason, detail, tenant, source, origin, part, received_at, raw_base64, raw_size,
raw_sha256, truncated}`` (the original bytes survive any encoding). Headers repeat ``reason``,
``tenant`` and ``source`` so consumers can route without parsing. Key: the tenant, so one tenant's
dead letters stay ordered in one partition.

A letter must fit the topic's message limit (``kafka.dead_letter_max_bytes``): the input limit is
1 MiB, and base64 in JSON makes a letter a third larger than its record. A letter that does not fit
is sent truncated: ``truncated`` is true, ``raw_base64`` holds a prefix of the bytes, and text
fields (and with them key and headers) are cut to ``MAX_TEXT_BYTES``. ``raw_size`` and
``raw_sha256`` always describe the complete bytes, which the ``dead_letters`` table keeps
(``SELECT … FROM dead_letters WHERE lower(hex(SHA256(raw))) = '<raw_sha256>'``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from stitchboard.deadletters import DeadLetter
from stitchboard.settings import KafkaSettings
from stitchboard.sinks.kafka import KafkaWriter

_log = logging.getLogger("stitchboard.sink")

DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
"""librdkafka's default ``message.max.bytes``, below Kafka's default topic limit (1,048,588)."""

MAX_TEXT_BYTES = 1024
"""UTF-8 bytes kept of each text field (reason, detail, tenant, source, origin, part) of a truncated letter."""

_OVERHEAD_BYTES = 1024
"""Room for the record's framing (librdkafka counts up to ~40 bytes of varints) with a wide margin."""

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """What is produced for one letter: value, key and headers, and whether the letter was cut."""

    value: bytes
    key: bytes
    headers: Headers
    truncated: bool

    @property
    def size(self) -> int:
        """Bytes of value, key and headers (librdkafka adds a few dozen bytes of framing)."""
        return len(self.value) + len(self.key) + sum(len(name) + len(data) for name, data in self.headers)


@dataclass(frozen=True, slots=True)
class TopicLetter:
    """A dead letter as read from the topic: ``letter.raw`` is a prefix of the bytes when truncated."""

    letter: DeadLetter
    raw_size: int
    raw_sha256: str
    truncated: bool


class TruncatedDeadLetter(ValueError):
    """``decode`` met a truncated letter: its complete bytes are only in the ``dead_letters`` table."""

    def __init__(self, message: TopicLetter) -> None:
        super().__init__(
            f"dead letter truncated on the topic: {message.raw_size} bytes, sha256 {message.raw_sha256};"
            " the dead_letters table has them"
        )
        self.message = message


def _clean(text: str) -> str:
    """``text`` as valid UTF-8 (lone surrogates escaped), which JSON and headers need."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _document(letter: DeadLetter, raw: bytes, size: int, digest: str, truncated: bool) -> dict[str, Any]:
    return {
        "reason": _clean(letter.reason),
        "detail": _clean(letter.detail),
        "tenant": _clean(letter.tenant),
        "source": _clean(letter.source),
        "origin": _clean(letter.origin),
        "part": _clean(letter.part),
        "received_at": letter.received_at.isoformat(),
        "raw_base64": base64.b64encode(raw).decode("ascii"),
        "raw_size": size,
        "raw_sha256": digest,
        "truncated": truncated,
    }


def _headers(letter: DeadLetter) -> Headers:
    return [
        ("reason", _clean(letter.reason).encode()),
        ("tenant", _clean(letter.tenant).encode()),
        ("source", _clean(letter.source).encode()),
    ]


def _cut(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    """At most ``limit`` UTF-8 bytes of ``text``, never splitting a character."""
    encoded = _clean(text).encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def message_parts(letter: DeadLetter, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> TopicMessage:
    """The message of ``letter``, value, key and headers together at most ``max_bytes`` minus
    framing (see the module docstring). ``max_bytes`` must leave room for the cut text fields:
    64 KiB always does."""
    size, digest = len(letter.raw), hashlib.sha256(letter.raw).hexdigest()
    value = orjson.dumps(_document(letter, letter.raw, size, digest, truncated=False))
    whole = TopicMessage(value, _clean(letter.tenant).encode(), _headers(letter), truncated=False)
    if whole.size + _OVERHEAD_BYTES <= max_bytes:
        return whole
    cut = dataclasses.replace(
        letter,
        reason=_cut(letter.reason),
        detail=_cut(letter.detail),
        tenant=_cut(letter.tenant),
        source=_cut(letter.source),
        origin=_cut(letter.origin),
        part=_cut(letter.part),
    )
    empty = TopicMessage(
        orjson.dumps(_document(cut, b"", size, digest, truncated=True)),
        _clean(cut.tenant).encode(),
        _headers(cut),
        truncated=True,
    )
    room = max_bytes - _OVERHEAD_BYTES - empty.size
    prefix = letter.raw[: max(0, room) // 4 * 3]  # base64: 4 characters per 3 bytes
    value = orjson.dumps(_document(cut, prefix, size, digest, truncated=True))
    return dataclasses.replace(empty, value=value)


def encode(letter: DeadLetter) -> bytes:
    """The complete value of ``letter`` (no size limit)."""
    size, digest = len(letter.raw), hashlib.sha256(letter.raw).hexdigest()
    return orjson.dumps(_document(letter, letter.raw, size, digest, truncated=False))


def read(value: bytes) -> TopicLetter:
    """A topic value, truncated or not (values written before sizes and digests were added too)."""
    data = orjson.loads(value)
    raw = base64.b64decode(data["raw_base64"])
    letter = DeadLetter(
        reason=data["reason"],
        detail=data["detail"],
        raw=raw,
        received_at=datetime.fromisoformat(data["received_at"]),
        tenant=data["tenant"],
        source=data["source"],
        origin=data["origin"],
        part=data.get("part", ""),
    )
    return TopicLetter(
        letter,
        data.get("raw_size", len(raw)),
        data.get("raw_sha256", hashlib.sha256(raw).hexdigest()),
        bool(data.get("truncated", False)),
    )


def decode(value: bytes) -> DeadLetter:
    """The complete letter; raises ``TruncatedDeadLetter`` rather than return a prefix of its bytes."""
    message = read(value)
    if message.truncated:
        raise TruncatedDeadLetter(message)
    return message.letter


class KafkaDeadLetterProducer:
    """Produces dead letters of at most ``max_message_bytes``; ``flush``/``close`` raise if any
    were not delivered.

    The producer's own ``message.max.bytes`` is raised to the limit when the limit is larger
    (``extra_config`` may set it explicitly; the smaller of the two then applies).
    """

    def __init__(
        self,
        brokers: Sequence[str] | str,
        topic: str,
        extra_config: Mapping[str, str] | None = None,
        *,
        flush_timeout_seconds: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        limit = max(max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES)
        config: dict[str, str | int] = {"message.max.bytes": limit, **(extra_config or {})}
        self.topic = topic
        self.flush_timeout_seconds = flush_timeout_seconds
        self.max_message_bytes = min(max_message_bytes, int(config["message.max.bytes"]))
        self.truncated = 0
        self._writer = KafkaWriter(brokers, config, full_queue_wait_seconds=0.5)

    @property
    def produced(self) -> int:
        return self._writer.produced

    @property
    def delivered(self) -> int:
        return self._writer.delivered

    def produce(self, letter: DeadLetter) -> None:
        message = message_parts(letter, self.max_message_bytes)
        self.truncated += message.truncated
        self._writer.send(self.topic, message.value, key=message.key, headers=message.headers)

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
        """Never raises: ``write_batch`` already flushed and raised for anything undelivered, and an
        exception here, while Bytewax unwinds from another failure, aborts the process (a panic in
        a destructor) instead of letting it exit with its one error line."""
        try:
            self._producer.close()
        except Exception as exc:
            _log.warning("dead-letter producer closed with undelivered letters", extra={"error": str(exc)})


class KafkaDeadLetterSink(DynamicSink[DeadLetter]):
    """Dead letters to their Kafka topic; each batch is flushed (delivered) before the epoch ends.
    A letter over ``kafka.dead_letter_max_bytes`` is sent truncated (see the module docstring)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        s = self._settings
        producer = KafkaDeadLetterProducer(
            s.brokers, s.dead_letter_topic, s.extra_config, max_message_bytes=s.dead_letter_max_bytes
        )
        return _DeadLetterPartition(producer)
