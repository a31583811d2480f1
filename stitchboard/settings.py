"""Validated configuration: per-tenant reporting rules, flow timing, Kafka and ClickHouse.

``Settings.load`` reads pydantic-settings' own sources; a higher one overrides a lower one key by key:

1. arguments (``Settings(...)``, ``Settings.load(..., clickhouse={...})``, the CLI's ``--dsn``);
2. ``STITCHBOARD_*`` environment variables, ``__`` between levels (``STITCHBOARD_CLICKHOUSE__DSN``);
3. secret files in ``secrets_dir``, one per setting, named like the variable without its prefix
   (``clickhouse__dsn``): Kubernetes mounts a Secret as files instead of putting it in the environment;
4. the settings file (``.toml``, or ``.json``): a Kubernetes ConfigMap;
5. the defaults below.

Explicit beats ambient beats packaged: whoever starts the process can override the mounted
configuration without editing it. Unknown keys are errors at every level, from every source
(environment variables are ambient, so only the top level of those is left unchecked: a
``STITCHBOARD_`` variable naming no setting is ignored, one under a known setting is an error).
"""

from __future__ import annotations

import json
import re
import tomllib
from contextvars import ContextVar
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from stitchboard.events import MAX_COUNT, MAX_DURATION_MS, Channel

INTERVAL_MINUTES: tuple[int, ...] = (15, 30, 60, 1440)  # 1440 = the local calendar day

_WEEK_HOURS = 7 * 24
_YEAR_HOURS = 365 * 24
# Live sessions end within a week (Amazon Connect caps a chat at 10,080 minutes, StartChatContact
# ChatDurationInMinutes; a week is also the stitcher's stale period). Callbacks are scheduled for
# later, and messaging, email and tasks are tickets that stay open and are reopened for months.
DEFAULT_MAX_CONTACT_HOURS: dict[Channel, int] = {
    Channel.VOICE: _WEEK_HOURS,
    Channel.CHAT: _WEEK_HOURS,
    Channel.BOT: _WEEK_HOURS,
    Channel.CALLBACK: _YEAR_HOURS,
    Channel.MESSAGING: _YEAR_HOURS,
    Channel.EMAIL: _YEAR_HOURS,
    Channel.WEB_FORM: _YEAR_HOURS,
}
_MAX_HOURS = MAX_DURATION_MS // 3_600_000


class InputBounds(BaseModel):
    """What a record may say before it is dead-lettered instead of trusted (docs/adapters.md, "Bounds").

    Event time is bounded by the record's receive time: nothing happens after it was reported
    (beyond a clock skew), and a record whose newest event is older than the restatement horizon
    could change no final figure. Durations and counts are bounded by the longest real contact of
    the channel. The model's own invariants (``stitchboard.events``) cap every value here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Keep it well below the allowed lateness: a source this far ahead finalises intervals early by
    # at most this much, so records up to (lateness - skew) late still count.
    max_future_skew_seconds: int = Field(default=300, ge=0, le=24 * 3600)
    # None: the restatement horizon (``TimingSettings.restatement_horizon_days``), so what is refused
    # here is exactly what the interval book could no longer restate.
    max_event_age_days: int | None = Field(default=None, ge=1, le=36_500)
    max_contact_hours: dict[Channel, int] = Field(default_factory=lambda: dict(DEFAULT_MAX_CONTACT_HOURS))
    # One hold every 10 minutes through a week-long contact; a reported count beyond it is a broken source.
    max_holds_per_leg: int = Field(default=1_000, ge=1, le=MAX_COUNT)

    @field_validator("max_contact_hours")
    @classmethod
    def _every_channel(cls, value: dict[Channel, int]) -> dict[Channel, int]:
        """Channels not named keep their default; every maximum fits the model's invariant."""
        merged = DEFAULT_MAX_CONTACT_HOURS | value
        for channel, hours in merged.items():
            if not 1 <= hours <= _MAX_HOURS:
                raise ValueError(f"max_contact_hours[{channel.value}] must be within 1..{_MAX_HOURS}")
        return merged

    # The limits as timedeltas, made once (cached properties are neither fields nor compared):
    # every record is checked against them.
    @cached_property
    def max_future_skew(self) -> timedelta:
        return timedelta(seconds=self.max_future_skew_seconds)

    @cached_property
    def _contact_limits(self) -> dict[Channel, timedelta]:
        return {channel: timedelta(hours=hours) for channel, hours in self.max_contact_hours.items()}

    @cached_property
    def _ages(self) -> dict[int, timedelta]:
        return {}

    def max_age(self, restatement_horizon_days: int) -> timedelta:
        """The tenant's maximum age, else the restatement horizon."""
        age = self._ages.get(restatement_horizon_days)
        if age is None:
            age = self._ages[restatement_horizon_days] = timedelta(
                days=self.max_event_age_days or restatement_horizon_days
            )
        return age

    def max_contact(self, channel: Channel) -> timedelta:
        return self._contact_limits[channel]


class TenantSettings(BaseModel):
    """How one tenant reports: its zone and its definitions' thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_zone: str = "UTC"
    service_level_seconds: int = Field(default=20, ge=0)
    service_level_seconds_by_queue: dict[str, int] = Field(default_factory=dict)
    short_abandon_seconds: int = Field(default=10, ge=0)
    resolved_wrapup_codes: frozenset[str] = frozenset({"resolved", "sale", "info_given"})
    intent_by_wrapup_code: dict[str, str] = Field(default_factory=dict)
    bounds: InputBounds = Field(default_factory=InputBounds)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def service_level_ms(self, queue: str) -> int:
        return 1000 * self.service_level_seconds_by_queue.get(queue, self.service_level_seconds)

    def short_abandon_ms(self) -> int:
        return 1000 * self.short_abandon_seconds


class TimingSettings(BaseModel):
    """Event-time rules: how late data may be and when intervals are final."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    out_of_orderness_seconds: int = Field(default=60, ge=0)
    allowed_lateness_seconds: int = Field(default=1800, ge=0)
    idle_advance_seconds: int = Field(default=30, ge=1)
    provisional_every_seconds: float = Field(default=1.0, gt=0)
    conversation_retention_seconds: int = Field(
        default=24 * 3600, ge=0
    )  # after the last event of an ended one
    stale_conversation_seconds: int = Field(
        default=7 * 24 * 3600, ge=0
    )  # silent this long: evicted even if open
    restatement_horizon_days: int = Field(default=35, ge=1)
    # How far ahead of its receive time (capped by system time) an event may move the watermark: a
    # future-dated record moves it this far at most (``stitchboard.watermark``, docs/architecture.md).
    watermark_lead_seconds: int = Field(default=60, ge=0)
    interval_minutes: tuple[int, ...] = INTERVAL_MINUTES

    @property
    def out_of_orderness(self) -> timedelta:
        return timedelta(seconds=self.out_of_orderness_seconds)

    @property
    def allowed_lateness(self) -> timedelta:
        return timedelta(seconds=self.allowed_lateness_seconds)


class JourneySettings(BaseModel):
    """Engagement window and frustration thresholds (docs/journeys.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_days: int = Field(default=7, ge=1)
    window_days_by_tenant: dict[str, int] = Field(default_factory=dict)
    long_duration_seconds: int = Field(default=30 * 60, ge=1)
    many_transfers: int = Field(default=2, ge=1)
    many_steps: int = Field(default=10, ge=1)

    def window(self, tenant: str) -> timedelta:
        return timedelta(days=self.window_days_by_tenant.get(tenant, self.window_days))


class ConversationLimits(BaseModel):
    """The most one conversation's stitched state may hold (docs/architecture.md, "Conversation limits").

    A delivery that would take a conversation past one of them is dead-lettered whole
    (``conversation_limit``) and the conversation keeps its earlier state: one broken or hostile
    record cannot grow a state without bound or slow its shard. Far above any real contact (the
    busiest real ones hold hundreds of events), and a 20,000-event conversation still stitches.
    Distinct values are positions in the packed state: 65,535 at most.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_events: int = Field(default=20_000, ge=1, le=1_000_000)
    max_holds: int = Field(default=10_000, ge=0)  # hold events, and holds a source reports as a count
    max_ivr_steps: int = Field(default=10_000, ge=0)
    max_distinct_values: int = Field(default=20_000, ge=1, le=65_535)


class KafkaSettings(BaseModel):
    # extra_config may carry SASL credentials: never echoed by validation errors.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    brokers: list[str] = Field(default_factory=lambda: ["127.0.0.1:9092"])
    topics: list[str] = Field(default_factory=lambda: ["stitchboard.raw"])
    dead_letter_topic: str = "stitchboard.deadletters"
    # Largest dead-letter message (value, key and headers): at most the topic's max.message.bytes.
    # A larger letter goes out truncated, with the size and SHA-256 of its bytes (the table keeps
    # them all). 1 MB is librdkafka's default limit; 64 KiB leaves room for the cut text fields.
    dead_letter_max_bytes: int = Field(default=1_000_000, ge=65_536)
    extra_config: dict[str, str] = Field(default_factory=dict, repr=False)


class TenantAccessSettings(BaseModel):
    """Per-tenant read roles, row policies and login users that ``init-db`` creates on a ClickHouse
    server (``stitchboard.tenant_access``; docs/operations.md, "Multi-tenancy")."""

    # password hashes are credentials: never echoed by repr() or by validation errors
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    enabled: bool = False  # or ``init-db --tenant-access``
    # Tenants that get a role besides those under ``tenants`` (which need no reporting overrides).
    # Never taken from the data: a record can name any tenant, and must not create a role.
    tenants: tuple[str, ...] = ()
    role_prefix: str = Field(default="stitchboard_tenant_", min_length=1)
    user_prefix: str = Field(default="stitchboard_reader_", min_length=1)
    # tenant -> SHA-256 (hex) of its reader's password: such a tenant also gets a login user
    user_password_sha256: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("tenants")
    @classmethod
    def _named(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "" in value:
            raise ValueError("a tenant name is empty")
        return value

    @field_validator("user_password_sha256")
    @classmethod
    def _sha256_hex(cls, value: dict[str, str]) -> dict[str, str]:
        """64 hex digits per tenant, kept lowercase; the message names the tenant, never the hash."""
        for tenant, digest in value.items():
            if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
                raise ValueError(
                    f"the hash for tenant {tenant!r} is not a SHA-256 in hex (64 digits): "
                    "printf %s PASSWORD | sha256sum"
                )
        return {tenant: digest.lower() for tenant, digest in value.items()}


DSN_SCHEMES = ("chdb", "http", "https")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


class ClickHouseSettings(BaseModel):
    # The DSN carries a password: never echoed by repr() or by validation errors.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    dsn: str = Field(default="chdb:///var/lib/stitchboard/chdb", repr=False)
    database: str = "stitchboard"
    batch_rows: int = Field(default=20_000, ge=1)
    flush_seconds: float = Field(default=1.0, gt=0)
    max_retries: int = Field(default=8, ge=0)
    max_buffered_rows: int = Field(default=500_000, ge=1)
    # At most this many partitions per INSERT: the server's max_partitions_per_insert_block
    # (ClickHouse's default is 100). Rows of more partitions (e.g. months) go in several INSERTs.
    max_partitions_per_insert: int = Field(default=100, ge=1)
    tenant_access: TenantAccessSettings = Field(default_factory=TenantAccessSettings)

    @field_validator("dsn")
    @classmethod
    def _clickhouse_scheme(cls, value: str) -> str:
        """Only the schemes ``connect`` speaks; the message names the scheme, never the DSN."""
        scheme, separator, _ = value.partition("://")
        if separator and scheme.lower() in DSN_SCHEMES:
            return value
        found = f"scheme {scheme!r}" if separator and _SCHEME.fullmatch(scheme) else "no scheme"
        raise ValueError(
            f"{found} is not ClickHouse: use chdb:///path, http://host:8123 or https://host:8443 "
            "(with user:password@ before the host)"
        )


SETTINGS_FILE_FORMATS = {".toml": "TOML", ".json": "JSON"}
# The files ``Settings.load`` reads (settings file, secrets directory), seen by the sources it builds.
# Plain ``Settings(...)`` reads neither: tests and library callers stay independent of the machine.
_files: ContextVar[tuple[Path | None, Path | None]] = ContextVar(
    "stitchboard_settings_files", default=(None, None)
)


class SettingsFileError(ValueError):
    """The settings file cannot be read: missing, not a file, not TOML or JSON, or malformed."""


class Settings(BaseSettings):
    """Everything a run needs; every field has a production-sensible default."""

    model_config = SettingsConfigDict(
        env_prefix="STITCHBOARD_",
        env_nested_delimiter="__",
        extra="forbid",
        hide_input_in_errors=True,  # errors name the setting, never its value (it may be a secret)
        secrets_prefix="",  # secret files are named clickhouse__dsn, not stitchboard_clickhouse__dsn
        secrets_dir_missing="error",  # a secrets_dir that is not there is a mistake, not "no secrets"
    )

    tenants: dict[str, TenantSettings] = Field(default_factory=dict)
    default_tenant: TenantSettings = Field(default_factory=TenantSettings)
    # When set, only these tenants' records are accepted; any other envelope tenant is dead-lettered
    # (``unknown_tenant``). Unset, every tenant is accepted with ``default_tenant``'s settings.
    allowed_tenants: frozenset[str] | None = None
    timing: TimingSettings = Field(default_factory=TimingSettings)
    journeys: JourneySettings = Field(default_factory=JourneySettings)
    conversation_limits: ConversationLimits = Field(default_factory=ConversationLimits)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    recovery_dir: Path | None = None
    snapshot_seconds: int = Field(default=10, ge=1)
    # Conversations per tenant are stitched in this many shards (the unit of parallelism across
    # workers). Recovery state is keyed by shard: keep it fixed for the life of a recovery store.
    stitch_shards: int = Field(default=16, ge=1, le=4096)
    metrics_port: int | None = 9464

    @model_validator(mode="after")
    def _configured_tenants_allowed(self) -> Settings:
        if self.allowed_tenants is not None:
            refused = sorted(set(self.tenants) - self.allowed_tenants)
            if refused:
                raise ValueError(f"tenants {refused} are configured but not in allowed_tenants")
        return self

    def tenant(self, name: str) -> TenantSettings:
        return self.tenants.get(name, self.default_tenant)

    def accepts(self, tenant: str) -> bool:
        """Whether records of ``tenant`` are accepted (the allow-list, when there is one)."""
        return self.allowed_tenants is None or tenant in self.allowed_tenants

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The precedence of the module docstring; files only under ``load``."""
        path, secrets_dir = _files.get()
        sources = [
            init_settings,
            env_settings,
            NestedSecretsSettingsSource(file_secret_settings, secrets_dir=secrets_dir),
        ]
        if path is not None:
            file_source = TomlConfigSettingsSource if path.suffix == ".toml" else JsonConfigSettingsSource
            sources.append(file_source(settings_cls, path))
        return tuple(sources)

    @classmethod
    def load(
        cls, config_file: Path | None = None, *, secrets_dir: Path | None = None, **overrides: Any
    ) -> Self:
        """Settings from arguments, environment, secret files in ``secrets_dir`` and ``config_file``.

        Raises ``SettingsFileError`` for an unreadable file, pydantic's ``ValidationError`` for an
        unknown or invalid setting and pydantic-settings' ``SettingsError`` for a missing
        ``secrets_dir`` or an environment value that is not valid JSON where JSON is expected.
        """
        if config_file is not None:
            _check_settings_file(config_file)
        token = _files.set((config_file, secrets_dir))
        try:
            return cls(**overrides)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            if config_file is None:  # only the file sources decode text
                raise
            kind = SETTINGS_FILE_FORMATS[config_file.suffix]
            raise SettingsFileError(
                f"settings file {str(config_file)!r} is not valid {kind} ({exc})"
            ) from None
        finally:
            _files.reset(token)


def _check_settings_file(path: Path) -> None:
    """Refuse what the file sources would silently skip (a missing file) or misread."""
    shown = repr(str(path))
    if not path.exists():
        raise SettingsFileError(f"settings file {shown} does not exist: check the path")
    if not path.is_file():
        raise SettingsFileError(f"settings file {shown} is not a file: name the .toml file itself")
    if path.suffix not in SETTINGS_FILE_FORMATS:
        kind = "YAML" if path.suffix in (".yaml", ".yml") else f"a {path.suffix or 'suffix-less'} file"
        raise SettingsFileError(
            f"settings file {shown} is {kind}: settings are read from TOML (.toml) or JSON (.json); "
            "convert it, the keys stay the same"
        )
