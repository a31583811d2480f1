"""Masking secrets in text: URL passwords, credential parameters, and the configured values."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from stitchboard import redaction
from stitchboard.redaction import is_credential_key, redact, remember, remember_dsn
from stitchboard.telemetry import JsonFormatter


@pytest.fixture(autouse=True)
def forget_afterwards() -> Iterator[None]:
    known = set(redaction._known)
    yield
    redaction._known.clear()
    redaction._known.update(known)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("at https://writer:s3cret@ch.example:8443/db", "at https://writer:***@ch.example:8443/db"),
        ("http://writer:p@ss@ch:8123?x=1", "http://writer:***@ch:8123?x=1"),  # an unencoded @ in it
        ("chdb:///var/x?password=s3cret&compress=1", "chdb:///var/x?password=***&compress=1"),
        ('{"error": "https://u:s3cret@h:8443 refused"}', '{"error": "https://u:***@h:8443 refused"}'),
        ("https://h:8443/?user=u&Password=s3cret", "https://h:8443/?user=u&Password=***"),
        ("http://clickhouse:8123 and http://reader@clickhouse:8123", None),  # no password: unchanged
    ],
)
def test_credentials_in_urls_are_masked(text: str, masked: str | None) -> None:
    assert redact(text) == (masked if masked is not None else text)


def test_remembered_values_are_masked_wherever_they_appear() -> None:
    remember_dsn("https://writer:p%40ss-W0rd@ch.example:8443/?token=t0ken-V4lue")
    remember("sasl-s3cret")
    remember("abc")  # too short to mask without masking ordinary words
    text = "auth failed for p@ss-W0rd, p%40ss-W0rd, t0ken-V4lue and sasl-s3cret; abc"
    assert redact(text) == "auth failed for ***, ***, *** and ***; abc"


def test_credential_keys_of_kafka_options() -> None:
    assert [
        is_credential_key(key)
        for key in ("sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret", "sasl.username")
    ] == [True, True, True, False]


def test_json_logs_are_masked() -> None:
    remember("Pl4nted-in-config")
    record = logging.makeLogRecord(
        {
            "name": "stitchboard.sink",
            "levelname": "WARNING",
            "msg": "clickhouse insert failed, retrying",
            "error": "OperationalError: https://writer:Pl4nted@ch:8443 said no to Pl4nted-in-config",
        }
    )
    line = JsonFormatter().format(record)
    assert "Pl4nted" not in line and "https://writer:***@ch:8443 said no to ***" in line
