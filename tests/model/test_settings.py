"""Settings: validated, loaded from a file, with environment variables overriding it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stitchboard.settings import Settings, TenantSettings


def test_environment_overrides_the_file_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('[clickhouse]\ndsn = "chdb:///from-file"\ndatabase = "reports"\n', encoding="utf-8")
    assert Settings.from_file(config).clickhouse.dsn == "chdb:///from-file"
    monkeypatch.setenv("STITCHBOARD_CLICKHOUSE__DSN", "https://user:secret@clickhouse:8443")
    loaded = Settings.from_file(config)
    assert loaded.clickhouse.dsn == "https://user:secret@clickhouse:8443"
    assert loaded.clickhouse.database == "reports"


def test_json_files_load_too(tmp_path: Path) -> None:
    config = tmp_path / "settings.json"
    config.write_text('{"tenants": {"acme": {"time_zone": "Asia/Kolkata"}}}', encoding="utf-8")
    assert Settings.from_file(config).tenant("acme").time_zone == "Asia/Kolkata"
    assert Settings.from_file(config).tenant("other").time_zone == "UTC"


def test_unknown_zones_and_keys_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        TenantSettings(time_zone="Mars/Olympus")
    with pytest.raises(ValidationError, match="Extra inputs"):
        Settings(clickhose={})  # type: ignore[call-arg]


def test_per_queue_service_level_thresholds() -> None:
    tenant = TenantSettings(service_level_seconds=20, service_level_seconds_by_queue={"vip": 10})
    assert (tenant.service_level_ms("vip"), tenant.service_level_ms("sales")) == (10_000, 20_000)
