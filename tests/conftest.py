"""Shared fixtures: one chDB engine per test session (a database per test) and an in-memory Tansu."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from stitchboard.sinks.clickhouse import connect, init_db
from stitchboard.testing.broker import Kafka, tansu_broker


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The session's chDB DSN. chDB binds one path per process: every in-process client must use this."""
    path: Path = tmp_path_factory.mktemp("chdb")
    return f"chdb://{path}"


@pytest.fixture(scope="session")
def chdb_client(chdb_dsn: str) -> Iterator[Client]:
    client = connect(chdb_dsn)
    yield client
    client.close()


@pytest.fixture
def fresh_database(chdb_client: Client) -> Iterator[str]:
    """A unique database with every Stitchboard table, dropped after the test."""
    database = f"test_{uuid.uuid4().hex[:12]}"
    init_db(chdb_client, database)
    yield database
    chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Bootstrap address of an in-memory Tansu broker shared by the session (use unique topics)."""
    with tansu_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def kafka(kafka_broker: str) -> Kafka:
    """Helpers for the session broker: ``create_topic``, ``produce``, ``consume`` (exact counts)."""
    return Kafka(kafka_broker)
