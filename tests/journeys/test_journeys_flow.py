"""The whole flow on a generated day with hostile delivery: engagements and paths equal the truth."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client

from stitchboard.app.runner import make_flow
from stitchboard.settings import ClickHouseSettings
from stitchboard.synthetic.dataset import DEMO_TENANTS, Dataset, build_dataset, write_dataset
from stitchboard.synthetic.truth import engagement_truth, path_truth

DAY = date(2026, 3, 29)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Path]:
    data = build_dataset(DEMO_TENANTS, DAY, seed=5, scale=0.15)
    events, _ = write_dataset(data, tmp_path_factory.mktemp("journeys"))
    return data, events


def _run(data: Dataset, events: Path, dsn: str, database: str) -> None:
    settings = data.settings.model_copy(
        update={"clickhouse": ClickHouseSettings(dsn=dsn, database=database), "metrics_port": None}
    )
    run_main(make_flow(settings, replay=events))


def _engagements(client: Client, database: str) -> dict[str, list[dict[str, Any]]]:
    result = client.query(
        "SELECT tenant, intent, conversation_ids, channels, fcr, channel_switches, repeat_contacts, status"
        f" FROM `{database}`.engagements FINAL ORDER BY tenant, engagement_id"
    )
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in result.named_results():
        found[row["tenant"]].append(row)
    return found


def test_engagement_figures_equal_the_truth(
    replayed: tuple[Dataset, Path], chdb_dsn: str, chdb_client: Client, fresh_database: str
) -> None:
    data, events = replayed
    _run(data, events, chdb_dsn, fresh_database)
    truth = engagement_truth(data.days, data.settings)
    published = _engagements(chdb_client, fresh_database)
    assert set(published) == set(truth)
    for tenant, expected in truth.items():
        rows = published[tenant]
        assert len(rows) == expected.engagements
        assert sum(len(r["conversation_ids"]) for r in rows) == expected.contacts
        assert sum(r["repeat_contacts"] for r in rows) == expected.repeat_contacts
        assert sum(r["fcr"] for r in rows) == expected.first_contact_resolutions
        assert sum(r["channel_switches"] for r in rows) == expected.channel_switches
        sizes = Counter(len(r["conversation_ids"]) for r in rows)
        assert dict(sorted(sizes.items())) == expected.contacts_per_engagement
        detail = sorted(
            (tuple(r["conversation_ids"]), r["intent"], tuple(r["channels"]), bool(r["fcr"])) for r in rows
        )
        assert detail == sorted(
            (e.conversation_ids, e.intent, e.channels, e.first_contact_resolved) for e in expected.detail
        )
        assert {r["status"] for r in rows} == {"provisional"}  # a one-day replay never closes a 7-day window
    assert any(e.repeat_contacts > 0 and e.channel_switches > 0 for e in truth.values())

    paths = chdb_client.query(
        "SELECT tenant, channel, last_self_service_step, opted_out, contained, self_service"
        f" FROM `{fresh_database}`.conversation_paths FINAL"
    ).result_rows
    for tenant, expected_paths in path_truth(data.days).items():
        mine = [p for p in paths if p[0] == tenant]
        assert sum(1 for p in mine if p[5]) == expected_paths.self_service
        assert sum(1 for p in mine if p[4]) == expected_paths.contained
        assert sum(1 for p in mine if p[3]) == expected_paths.opt_outs
        by_step = Counter((p[1], p[2]) for p in mine if p[3])
        assert dict(sorted(by_step.items())) == expected_paths.opt_outs_by_last_step
        assert expected_paths.opt_outs > 0


def test_documented_dashboard_queries_run_and_agree_with_the_truth(
    replayed: tuple[Dataset, Path], chdb_dsn: str, chdb_client: Client, fresh_database: str
) -> None:
    data, events = replayed
    _run(data, events, chdb_dsn, fresh_database)
    text = (Path(__file__).parents[2] / "docs" / "journeys.md").read_text(encoding="utf-8")
    queries = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    assert len(queries) >= 10
    results = [
        chdb_client.query(query.replace("stitchboard.", f"`{fresh_database}`.")).named_results()
        for query in queries
    ]
    by_intent_channel = list(results[0])
    truth = engagement_truth(data.days, data.settings)["acme"]
    with_intent = [e for e in truth.detail if e.intent]
    assert sum(r["engagements"] for r in by_intent_channel) == len(with_intent)
    fcr = sum(r["first_contact_resolutions"] for r in by_intent_channel)
    assert fcr == sum(e.first_contact_resolved for e in with_intent)
    switches = sum(r["switches"] for r in results[3])
    assert switches == truth.channel_switches
    opt_outs = {(r["channel"], r["last_self_service_step"]): r["opt_outs"] for r in results[9]}
    assert opt_outs == path_truth(data.days)["acme"].opt_outs_by_last_step
