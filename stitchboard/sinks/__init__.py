"""Where Stitchboard writes: ClickHouse tables (batched, retrying, staged by epoch under recovery),
the dead-letter topic, and raw records onto the input topic.

May import the domain package, clickhouse-connect, confluent-kafka and Bytewax's sink interfaces;
never ``stitchboard.flows`` nor ``stitchboard.app``.
"""
