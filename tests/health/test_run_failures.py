"""How a failed flow ends: one line naming the dependency, not "unexpected BytewaxRuntimeError".

Bytewax wraps an exception raised in a step (``BytewaxRuntimeError: error writing output batch``)
and keeps the original as its cause; the runner tells the user about the cause.
"""

from __future__ import annotations

from bytewax.errors import BytewaxRuntimeError
from clickhouse_connect.driver.exceptions import OperationalError

from stitchboard.app.errors import UserError
from stitchboard.app.health import HealthMonitor
from stitchboard.app.runner import _failed
from stitchboard.flows.sources import BrokerUnreachable, StopFlag
from stitchboard.settings import ClickHouseSettings, HealthSettings, Settings

SETTINGS = Settings(clickhouse=ClickHouseSettings(dsn="https://writer:s3cret@clickhouse:8443"))


def wrapped(inner: Exception) -> BytewaxRuntimeError:
    """``inner`` as it leaves ``cli_main``: raised in a sink, re-raised by the sink, wrapped by Bytewax."""
    try:
        try:
            try:
                raise inner
            except Exception as cause:
                raise RuntimeError("writing committed rows to ClickHouse failed") from cause
        except RuntimeError as cause:
            raise BytewaxRuntimeError("error writing output batch") from cause
    except BytewaxRuntimeError as exc:
        return exc


def monitor() -> HealthMonitor:
    return HealthMonitor(HealthSettings(), StopFlag(), [])


def test_a_clickhouse_failure_in_the_sink_is_one_line_naming_the_server() -> None:
    refused = OperationalError("Error HTTPConnectionPool(host='clickhouse', port=8443): Max retries exceeded")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    failure = _failed(wrapped(refused), SETTINGS, monitor())
    assert isinstance(failure, UserError)
    assert str(failure) == (
        "writing to ClickHouse at https://writer:***@clickhouse:8443 failed ([Errno 111] Connection refused; "
        "retried clickhouse.max_retries times if transient): check that the server is up and accepts inserts; "
        "a restart resumes from the last snapshot and loses nothing"
    )


def test_partitions_not_listed_in_time_name_the_brokers() -> None:
    failure = _failed(
        wrapped(BrokerUnreachable("cannot list the partitions of topic 'raw' at k:9092 within 300 s (x)")),
        SETTINGS,
        monitor(),
    )
    assert str(failure).startswith(
        "cannot list the partitions of topic 'raw' at k:9092 within 300 s (x): check kafka.brokers"
    )


def test_anything_else_is_left_to_the_cli_as_unexpected() -> None:
    bug = wrapped(KeyError("tenant"))
    assert _failed(bug, SETTINGS, monitor()) is bug
