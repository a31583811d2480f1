"""Settings: pydantic-settings' own sources in the documented precedence, unknown keys refused at
every level from every source, DSN schemes checked, secrets never echoed."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from stitchboard.settings import ClickHouseSettings, Settings, SettingsFileError, TenantSettings

# Highest first, as docs/operations.md ("Settings") and the settings module say.
PRECEDENCE = ("arguments", "environment", "secret files", "settings file", "defaults")


@pytest.fixture(autouse=True)
def no_stitchboard_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.upper().startswith("STITCHBOARD_")]:
        monkeypatch.delenv(name)


def load_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values: dict[str, dict[str, str]]) -> Settings:
    """Settings.load with each source setting the ``clickhouse`` keys given for it."""
    config = tmp_path / "settings.toml"
    lines = [f'{key} = "{value}"' for key, value in values.get("settings file", {}).items()]
    config.write_text("[clickhouse]\n" + "\n".join(lines) + "\n", encoding="utf-8")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for key, value in values.get("secret files", {}).items():
        (secrets / f"clickhouse__{key}").write_text(value + "\n", encoding="utf-8")
    for key, value in values.get("environment", {}).items():
        monkeypatch.setenv(f"STITCHBOARD_CLICKHOUSE__{key.upper()}", value)
    arguments: dict[str, Any] = {}
    if "arguments" in values:
        arguments["clickhouse"] = values["arguments"]
    return Settings.load(config, secrets_dir=secrets, **arguments)


@pytest.mark.parametrize(
    ("higher", "lower"), list(itertools.combinations(PRECEDENCE, 2)), ids=lambda source: source
)
def test_each_source_overrides_every_lower_one(
    higher: str, lower: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        source: {"database": source.replace(" ", "_")} for source in (higher, lower) if source != "defaults"
    }
    assert ClickHouseSettings().database == "stitchboard"  # the default, below every source
    assert load_with(tmp_path, monkeypatch, values).clickhouse.database == higher.replace(" ", "_")


def test_sources_merge_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A source overrides only the keys it sets: a Secret's DSN does not wipe the file's database."""
    loaded = load_with(
        tmp_path,
        monkeypatch,
        {
            "arguments": {"flush_seconds": "2.5"},
            "environment": {"batch_rows": "7"},
            "secret files": {"dsn": "https://writer:s3cret@clickhouse.example:8443"},
            "settings file": {"database": "reports"},
        },
    )
    assert loaded.clickhouse == ClickHouseSettings(
        dsn="https://writer:s3cret@clickhouse.example:8443",
        database="reports",
        batch_rows=7,
        flush_seconds=2.5,
    )


def test_a_table_merges_across_sources_and_a_list_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/operations.md: a secret ``kafka__extra_config`` adds SASL keys to the ConfigMap's."""
    config = tmp_path / "settings.toml"
    config.write_text(
        '[kafka]\nbrokers = ["kafka-0:9092"]\nextra_config = { "security.protocol" = "SASL_SSL" }\n',
        encoding="utf-8",
    )
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "kafka__extra_config").write_text('{"sasl.password": "p4ss"}', encoding="utf-8")
    monkeypatch.setenv("STITCHBOARD_KAFKA__BROKERS", '["kafka-1:9092"]')
    kafka = Settings.load(config, secrets_dir=secrets).kafka
    assert kafka.brokers == ["kafka-1:9092"]
    assert kafka.extra_config == {"security.protocol": "SASL_SSL", "sasl.password": "p4ss"}


def test_plain_construction_reads_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only ``Settings.load`` reads files: ``Settings(...)`` in code and tests is arguments,
    environment and defaults."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "settings.toml").write_text('[clickhouse]\ndatabase = "from-file"\n', encoding="utf-8")
    assert Settings().clickhouse.database == "stitchboard"


def test_json_files_load_too(tmp_path: Path) -> None:
    config = tmp_path / "settings.json"
    config.write_text('{"tenants": {"acme": {"time_zone": "Asia/Kolkata"}}}', encoding="utf-8")
    assert Settings.load(config).tenant("acme").time_zone == "Asia/Kolkata"
    assert Settings.load(config).tenant("other").time_zone == "UTC"


def test_a_kubernetes_secret_volume_is_read(tmp_path: Path) -> None:
    """The kubelet's layout: a timestamped directory, the ``..data`` link to it and one link per key."""
    volume = tmp_path / "secrets"
    (volume / "..2026_01_01_00_00_00.000000001").mkdir(parents=True)
    (volume / "..2026_01_01_00_00_00.000000001" / "clickhouse__dsn").write_text("https://w:p4ss@ch:8443")
    (volume / "..data").symlink_to("..2026_01_01_00_00_00.000000001")
    (volume / "clickhouse__dsn").symlink_to("..data/clickhouse__dsn")
    assert Settings.load(secrets_dir=volume).clickhouse.dsn == "https://w:p4ss@ch:8443"


@pytest.mark.parametrize(
    ("toml", "location"),
    [
        ("metric_port = 1\n", ("metric_port",)),
        ('[clickhouse]\ndsnn = "chdb:///x"\n', ("clickhouse", "dsnn")),
        ("[timing]\nlateness = 3\n", ("timing", "lateness")),
        ('[tenants.acme]\ntimezone = "UTC"\n', ("tenants", "acme", "timezone")),
        ("[default_tenant]\nsla = 3\n", ("default_tenant", "sla")),
    ],
)
def test_unknown_keys_in_the_file_are_refused_at_every_level(
    toml: str, location: tuple[str, ...], tmp_path: Path
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(toml, encoding="utf-8")
    with pytest.raises(ValidationError) as caught:
        Settings.load(config)
    assert [(error["type"], error["loc"]) for error in caught.value.errors()] == [
        ("extra_forbidden", location)
    ]


def test_unknown_keys_from_the_other_sources_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="clickhose"):
        Settings(clickhose={})  # type: ignore[call-arg]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "kafka__broker").write_text("kafka:9092")
    with pytest.raises(ValidationError, match=r"kafka\.broker\n"):
        Settings.load(secrets_dir=secrets)
    monkeypatch.setenv("STITCHBOARD_JOURNEYS__WINDOW", "3")
    with pytest.raises(ValidationError, match=r"journeys\.window\n"):
        Settings.load()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("missing.toml", None, "does not exist"),
        ("settings.yaml", "clickhouse:\n  database: x\n", "is YAML: settings are read from TOML"),
        ("settings.ini", "[clickhouse]\n", "is a .ini file"),
        ("broken.toml", "[clickhouse\n", "is not valid TOML"),
        ("broken.json", "{", "is not valid JSON"),
    ],
)
def test_unreadable_settings_files_say_why(
    name: str, content: str | None, problem: str, tmp_path: Path
) -> None:
    """A missing file is an error, not "no settings" (the file sources would skip it silently)."""
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(SettingsFileError, match=problem):
        Settings.load(path)


def test_a_missing_secrets_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        Settings.load(secrets_dir=tmp_path / "nowhere")


@pytest.mark.parametrize(
    "dsn", ["chdb:///var/lib/x", "http://u:p@clickhouse:8123", "HTTPS://u:p@clickhouse:8443/?secure=true"]
)
def test_clickhouse_dsn_schemes_are_accepted(dsn: str) -> None:
    assert ClickHouseSettings(dsn=dsn).dsn == dsn


@pytest.mark.parametrize(
    ("dsn", "named"),
    [
        ("postgres://writer:Pl4nted@db:5432/reports", "scheme 'postgres'"),
        ("clickhouse:8123", "no scheme"),
        ("writer:Pl4nted@clickhouse:8123", "no scheme"),
        ("tcp://writer:Pl4nted@clickhouse:9000", "scheme 'tcp'"),
    ],
)
def test_other_dsns_are_refused_without_echoing_them(dsn: str, named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(clickhouse={"dsn": dsn})  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"{named} is not ClickHouse" in message
    assert "Pl4nted" not in message and dsn not in message


def test_repr_shows_no_secret() -> None:
    settings = Settings(
        clickhouse=ClickHouseSettings(dsn="https://w:Pl4nted@ch:8443"),
        kafka={"extra_config": {"sasl.password": "Pl4nted"}},  # type: ignore[arg-type]
    )
    assert "Pl4nted" not in repr(settings) and "Pl4nted" not in str(settings)


def test_unknown_zones_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        TenantSettings(time_zone="Mars/Olympus")


def test_per_queue_service_level_thresholds() -> None:
    tenant = TenantSettings(service_level_seconds=20, service_level_seconds_by_queue={"vip": 10})
    assert (tenant.service_level_ms("vip"), tenant.service_level_ms("sales")) == (10_000, 20_000)
