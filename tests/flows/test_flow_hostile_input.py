"""#13 through the real flow: records that pass parsing but must not be trusted change no figure.

A generated day for two tenants is replayed twice through ``make_flow`` into chDB: once as it is,
once with hostile records placed a third of the way in: the issue's webhook ``missed.call`` dated
2099 and one only 37 days ahead (they advanced the tenant's watermark, so the tenant's daily
contacts fell from 378 to 43), a Connect record holding for 10^16 s (a crash loop while packing
conversation state), an envelope naming its tenant twice, a tenant padded with a space, and a tenant
not on the allow-list. Every tenant's daily figures must equal the clean run's, and every hostile
record must be a dead letter with its exact bytes and its reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client

from stitchboard.app.runner import make_flow
from stitchboard.reconcile import Figures, read_figures
from stitchboard.replay_file import write_records
from stitchboard.settings import ClickHouseSettings, Settings
from stitchboard.sinks.clickhouse import init_db
from stitchboard.synthetic.dataset import DEMO_TENANTS, Dataset, build_dataset

DAY = date(2026, 3, 10)
DAILY = 1440


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def missed_call(tenant: str, conversation: str, missed_at: datetime) -> dict[str, Any]:
    """A valid ``missed.call`` (docs/webhook-format.md): queued 65 s before it was missed."""
    return {
        "event": "missed.call",
        "id": f"wh-{conversation}",
        "tenant": tenant,
        "conversation_id": conversation,
        "direction": "inbound",
        "leg_id": f"{conversation}-leg",
        "queue": "billing",
        "queued_at": _time(missed_at - timedelta(seconds=65)),
        "missed_at": _time(missed_at),
    }


def webhook(tenant: str, received_at: datetime, payload: dict[str, Any]) -> bytes:
    document = {"tenant": tenant, "source": "webhook", "received_at": _time(received_at), "payload": payload}
    return orjson.dumps(document)


def connect_hold_of_ten_to_the_sixteen(dataset: Dataset) -> bytes:
    """A globex contact record that was answered, re-keyed as a new contact, holding for 10^16 s."""
    for record in dataset.delivery.records:
        if record.kind != "original":
            continue
        document = orjson.loads(record.raw)
        payload = document["payload"]
        if (
            document["source"] == "connect"
            and "ContactId" in payload
            and not payload.get("InitialContactId")
            and (payload.get("Agent") or {}).get("ConnectedToAgentTimestamp")
        ):
            payload["ContactId"] = "hostile-contact-hold"
            payload["Agent"]["CustomerHoldDuration"] = 10**16
            payload["Agent"]["NumberOfHolds"] = 2
            return orjson.dumps(document)
    raise AssertionError("the generated day has no answered Connect contact")


def hostile_records(dataset: Dataset, at: datetime) -> list[tuple[bytes, str]]:
    """Each hostile record (received at ``at``, a moment of the valid day) with its expected reason."""
    ahead_2099 = missed_call("acme", "hostile-2099", at.replace(year=2099))
    ahead_37_days = missed_call("acme", "hostile-37-days", at + timedelta(days=37))
    globex_call = missed_call("globex", "hostile-twice", at - timedelta(minutes=1))
    twice = webhook("acme", at, globex_call)[:-1] + b',"tenant":"globex"}'  # last key wins in orjson
    padded = webhook(" globex", at, missed_call("globex", "hostile-padded", at - timedelta(minutes=1)))
    stranger = webhook("mallory", at, missed_call("mallory", "hostile-stranger", at - timedelta(minutes=1)))
    return [
        (webhook("acme", at, ahead_2099), "clock_skew"),
        (webhook("acme", at, ahead_37_days), "clock_skew"),
        (connect_hold_of_ten_to_the_sixteen(dataset), "out_of_range"),
        (twice, "duplicate_key"),
        (padded, "bad_envelope"),
        (stranger, "unknown_tenant"),
    ]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return build_dataset(DEMO_TENANTS, DAY, seed=13, scale=0.2)


def _run(
    settings: Settings, chdb_client: Client, chdb_dsn: str, records: list[tuple[datetime, bytes]], path: Path
) -> str:
    database = f"hostile_{uuid.uuid4().hex[:10]}"
    init_db(chdb_client, database)
    write_records(path, records)
    run_settings = settings.model_copy(
        update={"clickhouse": ClickHouseSettings(dsn=chdb_dsn, database=database), "metrics_port": None}
    )
    run_main(make_flow(run_settings, replay=path, drain_at_eof=True))
    return database


@pytest.fixture(scope="module")
def runs(
    dataset: Dataset, chdb_client: Client, chdb_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, list[tuple[bytes, str]]]]:
    """(clean database, hostile database, the hostile records with their reasons)."""
    settings = dataset.settings.model_copy(update={"allowed_tenants": frozenset(DEMO_TENANTS)})
    clean = [(record.delivered_at, record.raw) for record in dataset.delivery.records]
    third = len(clean) // 3
    at = clean[third][0]
    hostile = hostile_records(dataset, at)
    with_hostile = [*clean[:third], *((at, raw) for raw, _ in hostile), *clean[third:]]
    directory = tmp_path_factory.mktemp("hostile_input")
    clean_db = _run(settings, chdb_client, chdb_dsn, clean, directory / "clean.jsonl")
    hostile_db = _run(settings, chdb_client, chdb_dsn, with_hostile, directory / "hostile.jsonl")
    yield clean_db, hostile_db, hostile
    for database in (clean_db, hostile_db):
        chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")


def _daily(client: Client, database: str) -> Figures:
    return read_figures(client, database, DAILY)


def test_every_tenants_daily_figures_equal_the_clean_runs(
    runs: tuple[str, str, list[tuple[bytes, str]]], chdb_client: Client
) -> None:
    clean_db, hostile_db, _ = runs
    clean, hostile = _daily(chdb_client, clean_db), _daily(chdb_client, hostile_db)
    contacts = {
        tenant: sum(f["contacts"] for (t, *_), f in clean.items() if t == tenant) for tenant in DEMO_TENANTS
    }
    assert all(count > 20 for count in contacts.values()), contacts
    assert hostile == clean
    tenants = chdb_client.query(f"SELECT DISTINCT tenant FROM {hostile_db}.conversations FINAL").result_rows
    assert {tenant for (tenant,) in tenants} == set(DEMO_TENANTS)


def test_every_hostile_record_is_a_dead_letter_with_its_bytes_and_reason(
    runs: tuple[str, str, list[tuple[bytes, str]]], chdb_client: Client
) -> None:
    clean_db, hostile_db, hostile = runs

    def letters(database: str) -> list[tuple[str, bytes, str]]:
        rows = chdb_client.query(
            f"SELECT reason, hex(raw), tenant FROM {database}.dead_letters FINAL"
        ).result_rows
        return [(reason, bytes.fromhex(raw), tenant) for reason, raw, tenant in rows]

    by_raw = {raw: (reason, tenant) for reason, raw, tenant in letters(hostile_db)}
    for raw, reason in hostile:
        assert by_raw.get(raw, ("not dead-lettered", ""))[0] == reason, raw[:120]
    assert len(letters(hostile_db)) == len(letters(clean_db)) + len(hostile)
    # a tenant nobody vouched for (not allowed, not verbatim) is not named by its dead letter
    assert {by_raw[raw][1] for raw, reason in hostile if reason in ("unknown_tenant", "bad_envelope")} == {""}
