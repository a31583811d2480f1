"""End to end: Kafka (Tansu) → flow → ClickHouse (chDB), sustained over a produced backlog.

Side by side in one run: how fast a bare Python consumer drains the same topic (the transport's
limit for any flow) and how fast the production flow drains it into chDB, stopping at the end of
the topic (``until_eof``) with every interval drained.
"""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import date
from pathlib import Path

from bytewax.testing import run_main
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from bench.common import Result, check_stitched, main, say
from stitchboard import adapters
from stitchboard.app.runner import make_flow
from stitchboard.settings import ClickHouseSettings, KafkaSettings
from stitchboard.sinks.clickhouse import connect, init_db
from stitchboard.synthetic.dataset import DEMO_TENANTS, build_dataset
from stitchboard.testing.broker import Kafka, tansu_broker

DAY = date(2026, 3, 11)
SEED = 8
TARGET_EVENTS_PER_SECOND = 50_000


def _produce(bootstrap: str, topic: str, raws: list[bytes]) -> float:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "compression.type": "lz4",
        }
    )
    started = time.perf_counter()
    for raw in raws:
        while True:
            try:
                producer.produce(topic, value=raw)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise TimeoutError("records were not delivered to Tansu")
    return time.perf_counter() - started


def _consume_all(bootstrap: str, topic: str, expected: int) -> float:
    """A bare consumer reading the topic to its end (counting records; Tansu's watermarks lie)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = 0
    started = 0.0
    while True:
        messages = consumer.consume(10_000, timeout=0.05)
        at_end = False
        for message in messages:
            error = message.error()
            if error is None:
                if not seen:
                    started = time.perf_counter()  # from the first record: connecting is not draining
                seen += 1
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end = seen >= expected
            else:
                raise RuntimeError(str(error))
        if at_end:
            break
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def run(quick: bool, workdir: Path) -> Result:
    result = Result("end_to_end", "2. End to end: Kafka (Tansu) → flow → ClickHouse (chDB)")
    scale = 0.2 if quick else 3.0
    say(f"end to end: generating {DAY} at scale {scale}")
    dataset = build_dataset(DEMO_TENANTS, DAY, SEED, scale=scale)
    raws = [record.raw for record in dataset.delivery.records]
    events = 0
    for raw in raws:
        normalised = adapters.normalise(raw)
        events += len(normalised) if isinstance(normalised, list) else 0
    records = len(raws)
    result.add("records in the topic", records, "records")
    result.add("canonical events they carry", events, "events")
    chdb_path = workdir / "chdb"
    shutil.rmtree(chdb_path, ignore_errors=True)
    with tansu_broker() as bootstrap:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        Kafka(bootstrap).create_topic(topic)
        produce_s = _produce(bootstrap, topic, raws)
        result.add("produce into Tansu (not part of the flow)", records / produce_s, "records/s")
        consume_s = _consume_all(bootstrap, topic, records)
        consume_rate = records / consume_s * events / records
        result.add("bare consumer drains the topic (event-equivalents)", consume_rate, "events/s")
        settings = dataset.settings.model_copy(
            update={
                "clickhouse": ClickHouseSettings(dsn=f"chdb://{chdb_path}"),
                "kafka": KafkaSettings(
                    brokers=[bootstrap], topics=[topic], dead_letter_topic=f"{topic}.dead"
                ),
                "metrics_port": None,
            }
        )
        Kafka(bootstrap).create_topic(settings.kafka.dead_letter_topic)
        init_db(connect(settings.clickhouse.dsn), settings.clickhouse.database)
        flow = make_flow(settings, until_eof=True, drain_at_eof=True)
        started = time.perf_counter()
        run_main(flow)
        flow_s = time.perf_counter() - started
    rate = events / flow_s
    result.add(
        "Kafka → flow → chDB, sustained over the backlog, 1 worker",
        rate,
        "events/s",
        target=f"≥ {TARGET_EVENTS_PER_SECOND:,} events/s",
        met=rate >= TARGET_EVENTS_PER_SECOND,
    )
    result.add("Kafka → flow → chDB (records)", records / flow_s, "records/s")
    result.ratio("flow ÷ bare consumer", rate / consume_rate)
    conversations = sum(len(day.conversations) for day in dataset.days)
    check_stitched(result, settings.clickhouse.dsn, settings.clickhouse.database, conversations)
    return result


if __name__ == "__main__":
    main(run)
