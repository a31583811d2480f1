from stitchboard.testing.broker import Kafka


def test_produce_and_consume_exactly_across_partitions(kafka: Kafka) -> None:
    topic = kafka.create_topic(partitions=3)
    values = [f"record-{i}".encode() for i in range(50)]
    for i in range(0, 50, 10):
        kafka.produce(topic, values[i : i + 10], key=f"k{i}".encode())
    records = kafka.consume(topic, expected=50)
    assert sorted(record.value() for record in records) == sorted(values)
    assert len({record.partition() for record in records}) > 1


def test_consume_returns_extras_so_tests_can_see_duplicates(kafka: Kafka) -> None:
    topic = kafka.create_topic()
    kafka.produce(topic, [b"a", b"b", b"c"])
    assert [record.value() for record in kafka.consume(topic, expected=2)] == [b"a", b"b", b"c"]
