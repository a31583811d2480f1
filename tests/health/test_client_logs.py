"""Client libraries' own log lines: through the project's JSON logger, rate-limited.

librdkafka printed its lines straight to stderr (about 19 a second while a broker is down);
clickhouse-connect and urllib3 warn on every failed request.
"""

from __future__ import annotations

import io
import logging
import socket
import time
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from stitchboard.flows.sources import kafka_client_config
from stitchboard.settings import KafkaSettings
from stitchboard.telemetry import (
    KAFKA_CLIENT_LOGGER,
    LIBRARY_LOGGERS,
    JsonFormatter,
    RateLimit,
    configure_logging,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def librdkafka(facility: str, text: str) -> logging.LogRecord:
    """A record as confluent-kafka logs it: ``"%s [%s] %s" % (facility, client, text)``."""
    return logging.LogRecord(
        KAFKA_CLIENT_LOGGER, logging.ERROR, "", 0, "%s [%s] %s", (facility, "rdkafka#consumer-1", text), None
    )


def test_five_lines_of_a_kind_a_minute_then_the_count_of_those_dropped() -> None:
    clock = Clock()
    limit = RateLimit(limit=5, window=60.0, clock=clock)
    passed = [limit.filter(librdkafka("FAIL", f"connect to broker {n} failed")) for n in range(40)]
    assert passed == [True] * 5 + [False] * 35
    assert limit.filter(librdkafka("ERROR", "all brokers down"))  # another facility: its own count
    clock.now = 60.0
    record = librdkafka("FAIL", "connect failed")
    assert limit.filter(record) and record.suppressed == 35  # type: ignore[attr-defined]
    again = librdkafka("FAIL", "connect failed")
    assert limit.filter(again) and not hasattr(again, "suppressed")


def test_other_libraries_lines_are_counted_by_their_template() -> None:
    limit = RateLimit(limit=2, window=60.0, clock=Clock())
    records = [
        logging.LogRecord(
            "urllib3.connectionpool", logging.WARNING, "", 0, "Retrying (%r) after %s", (n, "refused"), None
        )
        for n in range(4)
    ]
    assert [limit.filter(r) for r in records] == [True, True, False, False]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def kafka_records() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(KAFKA_CLIENT_LOGGER)
    handler, level, propagate = Keep(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # only this test's handler, whatever configured ``stitchboard`` before
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def test_a_client_made_from_the_settings_logs_through_the_logger_not_stderr(
    kafka_records: list[logging.LogRecord], capfd: pytest.CaptureFixture[str]
) -> None:
    settings = KafkaSettings(brokers=[f"127.0.0.1:{closed_port()}"])
    consumer = Consumer({**kafka_client_config(settings), "group.id": "ignored"})
    consumer.assign([TopicPartition("t", 0, 0)])
    deadline = time.monotonic() + 10
    while not kafka_records and time.monotonic() < deadline:
        consumer.consume(10, 0.05)  # serves the log queue
    consumer.close()
    assert kafka_records, "no librdkafka line reached the logger"
    assert any("Connection refused" in r.getMessage() for r in kafka_records)
    assert (
        "rdkafka" not in capfd.readouterr().err
    )  # librdkafka printed nothing itself ("%3|…|FAIL|rdkafka#…")


def test_configured_clickhouse_client_warnings_are_json_and_rate_limited() -> None:
    configure_logging()
    (handler,) = [
        h for h in logging.getLogger(LIBRARY_LOGGERS[0]).handlers if isinstance(h.formatter, JsonFormatter)
    ]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous, handler.stream = handler.stream, stream  # (setStream would flush a stream pytest closed)
    try:
        logger = logging.getLogger("clickhouse_connect.driver.test")
        for _ in range(20):
            logger.warning("Unexpected Http Driver Exception")
        logger.info("below warning: not shown")
    finally:
        handler.stream = previous
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 5
    assert {(line["level"], line["logger"], line["msg"]) for line in lines} == {
        ("warning", "clickhouse_connect.driver.test", "Unexpected Http Driver Exception")
    }
    assert not logging.getLogger(LIBRARY_LOGGERS[0]).propagate  # not printed twice by the root logger
