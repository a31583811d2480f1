"""Sinks: the batched ClickHouse writer and the dead-letter Kafka producer."""
