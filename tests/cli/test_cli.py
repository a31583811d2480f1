"""The command line a platform engineer uses: generate, init-db, run (replay), summary."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from stitchboard.app.cli import main


def test_generate_writes_events_and_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen"
    assert (
        main(
            [
                "generate",
                "--out",
                str(out),
                "--day",
                "2026-03-29",
                "--scale",
                "0.05",
                "--tenant",
                "acme=Europe/London",
            ]
        )
        == 0
    )
    truth = json.loads((out / "truth.json").read_text())
    lines = (out / "events.jsonl").read_bytes().splitlines()
    assert len(lines) == truth["delivery"]["consumed"] > 50
    assert truth["delivery"]["malformed"] == sum(truth["delivery"]["malformed_by_kind"].values())
    assert {c["tenant"] for c in truth["conversations"]} == {"acme"}
    assert set(truth["intervals"]) == {"15", "30", "60", "1440"}


def test_tenant_argument_must_name_a_zone(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="NAME=Area/Zone"):
        main(["generate", "--out", str(tmp_path), "--tenant", "acme"])


def test_init_run_and_summary_on_a_replay(
    tmp_path: Path, chdb_dsn: str, chdb_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gen"
    main(
        [
            "generate",
            "--out",
            str(out),
            "--day",
            "2026-11-01",
            "--scale",
            "0.05",
            "--tenant",
            "globex=America/New_York",
        ]
    )
    database = f"cli_{uuid.uuid4().hex[:10]}"
    config = tmp_path / "settings.toml"
    config.write_text(
        "metrics_port = 0\n"
        '[tenants.globex]\ntime_zone = "America/New_York"\n'
        f'[clickhouse]\ndsn = "{chdb_dsn}"\ndatabase = "{database}"\n',
        encoding="utf-8",
    )
    assert main(["init-db", "--config", str(config)]) == 0
    assert main(["init-db", "--config", str(config)]) == 0  # idempotent
    assert main(["run", "--config", str(config), "--replay", str(out / "events.jsonl")]) == 0
    capsys.readouterr()
    assert main(["summary", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "globex" in printed and "voice" in printed and "dead letters:" in printed
    truth = json.loads((out / "truth.json").read_text())
    contacts = sum(i["metrics"]["contacts"] for i in truth["intervals"]["1440"])
    stored = chdb_client.query(
        f"SELECT sum(contacts) FROM {database}.interval_metrics FINAL WHERE interval_minutes = 1440"
    ).result_rows[0][0]
    assert stored == contacts > 0
