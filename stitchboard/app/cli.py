"""``stitchboard`` command line: demo, run, generate, init-db, summary.

A failure a user can fix ends the command with one line on stderr naming the problem and the fix,
exit status 2 when the command line or the settings are wrong and 1 when running failed
(``stitchboard.app.errors``). Secrets are masked in everything printed or logged.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stitchboard import __version__
from stitchboard.app.errors import SettingsOrigin, UsageError, UserError, describe, detail
from stitchboard.redaction import is_credential_key, redact, remember, remember_dsn
from stitchboard.settings import Settings
from stitchboard.synthetic.dataset import DEMO_TENANTS, FaultProfile, build_dataset, write_dataset
from stitchboard.tenant_access import TenantReader, tenant_readers, tenant_tables

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

DEFAULT_DEMO_DAY = date(2026, 10, 25)  # Europe/London falls back: a 25-hour local day
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SUMMARY_TABLES = ("interval_metrics", "conversations", "interval_restatements", "dead_letters")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {redact(message)}", file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block): the problem and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def _tenant_zone(text: str) -> tuple[str, str]:
    tenant, separator, zone = text.partition("=")
    if not separator or not tenant or not zone:
        raise argparse.ArgumentTypeError(f"expected NAME=Area/Zone, e.g. acme=Europe/London, got {text!r}")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown IANA time zone {zone!r} in {text!r}: use a name like Europe/London"
        ) from None
    return tenant, zone


def _origin(args: argparse.Namespace) -> SettingsOrigin:
    return SettingsOrigin(
        config_file=getattr(args, "config", None),
        secrets_dir=getattr(args, "secrets_dir", None),
        dsn_argument=getattr(args, "dsn", None) is not None,
    )


def _load_settings(args: argparse.Namespace) -> Settings:
    """Settings in the documented precedence (stitchboard.settings), ``--dsn`` above all; the
    secrets they hold are masked from here on."""
    if args.secrets_dir is not None and not args.secrets_dir.is_dir():
        raise UsageError(
            f"secrets directory {str(args.secrets_dir)!r} does not exist or is not a directory: "
            "mount the Secret there or correct --secrets-dir"
        )
    dsn = getattr(args, "dsn", None)
    if dsn is not None:
        remember_dsn(dsn)  # masked even if it does not validate
    overrides: dict[str, Any] = {"clickhouse": {"dsn": dsn}} if dsn is not None else {}
    settings = Settings.load(args.config, secrets_dir=args.secrets_dir, **overrides)
    remember_dsn(settings.clickhouse.dsn)
    for key, value in settings.kafka.extra_config.items():
        if is_credential_key(key):
            remember(value)
    for digest in settings.clickhouse.tenant_access.user_password_sha256.values():
        remember(digest)
    return settings


def _clickhouse(settings: Settings) -> Client:
    """A connected client, or one line saying which server could not be reached (password masked)."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from stitchboard.sinks.clickhouse import connect

    dsn = settings.clickhouse.dsn
    try:
        return connect(dsn)
    except (ClickHouseError, OSError, RuntimeError) as exc:
        raise UserError(
            f"cannot connect to ClickHouse at {redact(dsn)} ({detail(exc)}): check clickhouse.dsn "
            "(--dsn, STITCHBOARD_CLICKHOUSE__DSN or the secret file clickhouse__dsn) and that the server is up"
        ) from exc


def cmd_generate(args: argparse.Namespace) -> int:
    zones = dict(args.tenant) if args.tenant else dict(DEMO_TENANTS)
    faults = FaultProfile(malformed_rate=0, duplicate_rate=0, late_rate=0) if args.clean else FaultProfile()
    _log(f"generating {args.day} for {', '.join(f'{t} ({z})' for t, z in zones.items())}")
    dataset = build_dataset(zones, args.day, args.seed, scale=args.scale, faults=faults)
    events, truth = write_dataset(dataset, args.out)
    _log(f"wrote {dataset.delivery.consumed} records to {events} and the ground truth to {truth}")
    if args.kafka:
        from stitchboard.sinks.kafka import produce_records

        sent = produce_records(args.kafka.split(","), args.topic, [r.raw for r in dataset.delivery.records])
        _log(f"produced {sent} records to {args.topic} at {args.kafka}")
    return 0


def _tenant_readers(settings: Settings, requested: bool) -> tuple[TenantReader, ...]:
    """The tenant readers ``init-db`` creates: none unless ``--tenant-access`` or
    ``clickhouse.tenant_access.enabled``; then one per tenant under ``tenants`` or listed in
    ``clickhouse.tenant_access.tenants``."""
    access = settings.clickhouse.tenant_access
    if not (requested or access.enabled):
        return ()
    tenants = set(settings.tenants) | set(access.tenants)
    if not tenants:
        raise UsageError(
            "tenant access names no tenant: list the tenants under [tenants] or in "
            "clickhouse.tenant_access.tenants"
        )
    try:
        return tenant_readers(
            tenants,
            role_prefix=access.role_prefix,
            user_prefix=access.user_prefix,
            password_sha256_hex=access.user_password_sha256,
        )
    except ValueError as exc:
        raise UsageError(
            f"clickhouse.tenant_access: {exc}: correct [tenants] or clickhouse.tenant_access.tenants"
        ) from None


def cmd_init_db(args: argparse.Namespace) -> int:
    from stitchboard.sinks.clickhouse import AccessManagementRefused, init_db

    settings = _load_settings(args)
    readers = _tenant_readers(settings, args.tenant_access)
    database = settings.clickhouse.database
    try:
        init_db(_clickhouse(settings), database, readers)
    except AccessManagementRefused as exc:
        raise UserError(
            f"{detail(exc)}: run it with the DSN of a ClickHouse server user allowed to manage access "
            "(docs/operations.md, Multi-tenancy); chDB cannot store roles or row policies"
        ) from exc
    _log(f"tables ready in database {database!r} at {redact(settings.clickhouse.dsn)}")
    if readers:
        roles = ", ".join(repr(reader.role) for reader in readers)
        users = sum(reader.user is not None for reader in readers)
        count = len(tenant_tables())
        _log(
            f"tenant access ready: {len(readers)} roles ({roles}), {len(readers) * count} row policies "
            f"on {count} tables, {users} with a login user"
        )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from stitchboard.app.runner import run
    from stitchboard.telemetry import configure_logging

    configure_logging(args.log_level)
    settings = _load_settings(args)
    if args.replay is not None and not args.replay.is_file():
        raise UsageError(f"replay file {str(args.replay)!r} does not exist: check the --replay path")
    _clickhouse(settings).close()  # an unreachable server is one line here, before the flow starts
    run(
        settings,
        replay=args.replay,
        workers=args.workers,
        drain_at_eof=args.replay is not None,
        until_eof=args.until_eof,
    )
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from stitchboard.kpi_summary import format_summary, read_summary

    settings = _load_settings(args)
    client = _clickhouse(settings)
    database = settings.clickhouse.database
    missing = [
        table for table in SUMMARY_TABLES if not client.command(f"EXISTS TABLE `{database}`.`{table}`")
    ]
    if missing:
        raise UserError(
            f"no Stitchboard tables in database {database!r} at {redact(settings.clickhouse.dsn)} "
            f"(missing: {', '.join(missing)}): run `stitchboard init-db` with the same settings, "
            "then `stitchboard run`"
        )
    print(format_summary(*read_summary(client, database)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stitchboard.app.demo import run_demo

    return run_demo(args.dir, args.day, args.seed, args.scale)


def _settings_options(parser: argparse.ArgumentParser, *, dsn: bool) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings file (.toml or .json); STITCHBOARD_* environment variables and secret files override it",
    )
    parser.add_argument(
        "--secrets-dir",
        type=Path,
        metavar="DIR",
        help="directory of secret files, one per setting named like clickhouse__dsn (a mounted Kubernetes "
        "Secret); they override the settings file, the environment overrides them",
    )
    if dsn:
        parser.add_argument(
            "--dsn",
            metavar="DSN",
            help="ClickHouse: chdb:///path or http(s)://USER:PASSWORD@HOST:PORT; overrides every other "
            "source (prefer STITCHBOARD_CLICKHOUSE__DSN or a secret file: arguments show in ps)",
        )


def _command(sub: Any, name: str, summary: str) -> argparse.ArgumentParser:
    """A subcommand whose one-line summary is both its entry in the list and its own help's heading."""
    command: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=summary)
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stitchboard",
        description="Stitchboard: contact-centre analytics as a stream-processing job.",
        epilog="Exit status: 0 done; 1 running failed (a server unreachable, a port in use, no tables); "
        "2 the command line or the settings are wrong. Errors are one line on stderr.",
    )
    parser.add_argument("--version", action="version", version=f"stitchboard {__version__}")
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="on an unexpected error, also print the traceback (secrets masked)",
    )
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="`stitchboard COMMAND --help` shows its options",
    )

    demo = _command(sub, "demo", "generate a day for two tenants, run the flow into chDB, print KPIs")
    demo.add_argument("--dir", type=Path, default=Path("var/demo"), help="where events, truth and chDB go")
    demo.add_argument(
        "--day",
        type=_day,
        default=DEFAULT_DEMO_DAY,
        help=f"the day to generate, YYYY-MM-DD (default {DEFAULT_DEMO_DAY}: London's 25-hour day)",
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed: the same seed gives the same day")
    demo.add_argument(
        "--scale", type=_positive_float, default=1.0, help="volume multiplier (1.0 ≈ 2-3k contacts/tenant)"
    )
    demo.set_defaults(func=cmd_demo)

    gen = _command(sub, "generate", "write synthetic events (with delivery faults) and their truth")
    gen.add_argument(
        "--out", type=Path, default=Path("var/generated"), help="directory for events.jsonl and truth.json"
    )
    gen.add_argument(
        "--tenant",
        action="append",
        type=_tenant_zone,
        metavar="NAME=Area/Zone",
        help="a tenant and its IANA time zone (repeatable); default: two demo tenants",
    )
    gen.add_argument(
        "--day",
        type=_day,
        default=date.today() - timedelta(days=1),
        help="the day to generate, YYYY-MM-DD (default: yesterday)",
    )
    gen.add_argument("--seed", type=int, default=7, help="random seed: the same seed gives the same day")
    gen.add_argument("--scale", type=_positive_float, default=1.0, help="volume multiplier")
    gen.add_argument("--clean", action="store_true", help="no duplicates, late or malformed records")
    gen.add_argument(
        "--kafka", metavar="HOST:PORT[,HOST:PORT]", help="also produce the records to these brokers"
    )
    gen.add_argument("--topic", default="stitchboard.raw", help="the topic --kafka produces to")
    gen.set_defaults(func=cmd_generate)

    init = _command(sub, "init-db", "create or migrate the ClickHouse tables (idempotent)")
    _settings_options(init, dsn=True)
    init.add_argument(
        "--tenant-access",
        action="store_true",
        help="also create a read role per tenant with a row policy and SELECT on every table that "
        "carries a tenant, and login users for tenants with a password hash (as clickhouse.tenant_access."
        "enabled does; needs a ClickHouse server and a user allowed to manage access)",
    )
    init.set_defaults(func=cmd_init_db)

    run = _command(sub, "run", "run the flow: Kafka (or a replay file) → ClickHouse")
    _settings_options(run, dsn=False)
    run.add_argument(
        "--replay", type=Path, metavar="FILE", help="read this events file instead of Kafka, then stop"
    )
    run.add_argument(
        "--workers", type=_positive_int, default=1, help="Bytewax workers in this process (about a core each)"
    )
    run.add_argument(
        "--until-eof",
        action="store_true",
        help="stop at the end of every Kafka partition and finalise all intervals (catch-up, tests)",
    )
    run.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        help="structured JSON logs on stderr at this level",
    )
    run.set_defaults(func=cmd_run)

    summary = _command(sub, "summary", "print the KPI summary from ClickHouse")
    _settings_options(summary, dsn=True)
    summary.set_defaults(func=cmd_summary)
    return parser


@contextmanager
def _library_logs(command: str) -> Iterator[None]:
    """Other libraries' log lines as masked JSON on stderr: for ``run`` from warnings up, for the
    one-shot commands only errors (a failure a library warns about reaches the user as the command's
    own error line). Removed afterwards (tests call ``main`` in-process)."""
    from stitchboard.telemetry import JsonFormatter

    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.WARNING if command == "run" else logging.ERROR)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure becomes its exit status and one line on stderr."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _library_logs(args.command):
            return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the one top-level handler: nothing below prints a traceback
        failure = describe(exc, _origin(args))
        if failure.unexpected and args.traceback:
            print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        print(redact(f"stitchboard {args.command}: error: {failure.message}"), file=sys.stderr, flush=True)
        return failure.exit_status


if __name__ == "__main__":
    raise SystemExit(main())
