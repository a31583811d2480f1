"""``stitchboard`` command line: demo, run, generate, init-db, summary."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from stitchboard.settings import Settings
from stitchboard.synthetic.dataset import DEMO_TENANTS, FaultProfile, build_dataset, write_dataset

DEFAULT_DEMO_DAY = date(2026, 10, 25)  # Europe/London falls back: a 25-hour local day


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _zones(pairs: Sequence[str] | None) -> dict[str, str]:
    if not pairs:
        return dict(DEMO_TENANTS)
    zones: dict[str, str] = {}
    for pair in pairs:
        tenant, sep, zone = pair.partition("=")
        if not sep or not tenant or not zone:
            raise SystemExit(f"--tenant takes NAME=Area/Zone, got {pair!r}")
        zones[tenant] = zone
    return zones


def _load_settings(path: Path | None) -> Settings:
    return Settings.from_file(path) if path is not None else Settings()


def cmd_generate(args: argparse.Namespace) -> int:
    zones = _zones(args.tenant)
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


def cmd_init_db(args: argparse.Namespace) -> int:
    from stitchboard.sinks.clickhouse import connect, init_db

    settings = _load_settings(args.config)
    dsn = args.dsn or settings.clickhouse.dsn
    init_db(connect(dsn), settings.clickhouse.database)
    _log(f"tables ready in {settings.clickhouse.database} at {dsn}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from stitchboard.app.runner import run
    from stitchboard.telemetry import configure_logging

    configure_logging(args.log_level)
    settings = _load_settings(args.config)
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
    from stitchboard.sinks.clickhouse import connect

    settings = _load_settings(args.config)
    client = connect(args.dsn or settings.clickhouse.dsn)
    print(format_summary(*read_summary(client, settings.clickhouse.database)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stitchboard.app.demo import run_demo

    return run_demo(args.dir, args.day, args.seed, args.scale)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stitchboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate a day for two tenants, run the flow into chDB, print KPIs")
    demo.add_argument("--dir", type=Path, default=Path("var/demo"), help="where events, truth and chDB go")
    demo.add_argument("--day", type=date.fromisoformat, default=DEFAULT_DEMO_DAY)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--scale", type=float, default=1.0, help="volume multiplier (1.0 ≈ 2-3k contacts/tenant)"
    )
    demo.set_defaults(func=cmd_demo)

    gen = sub.add_parser("generate", help="write synthetic events (with delivery faults) and their truth")
    gen.add_argument("--out", type=Path, default=Path("var/generated"))
    gen.add_argument(
        "--tenant", action="append", help="NAME=Area/Zone (repeatable); default: two demo tenants"
    )
    gen.add_argument("--day", type=date.fromisoformat, default=date.today() - timedelta(days=1))
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--scale", type=float, default=1.0)
    gen.add_argument("--clean", action="store_true", help="no duplicates, late or malformed records")
    gen.add_argument("--kafka", help="also produce to these brokers (host:port[,host:port])")
    gen.add_argument("--topic", default="stitchboard.raw")
    gen.set_defaults(func=cmd_generate)

    init = sub.add_parser("init-db", help="create or migrate the ClickHouse tables (idempotent)")
    init.add_argument(
        "--config", type=Path, help="settings file (.toml or .json); env STITCHBOARD_* overrides"
    )
    init.add_argument("--dsn", help="chdb:///path or http(s)://user:pass@host:8123")
    init.set_defaults(func=cmd_init_db)

    run = sub.add_parser("run", help="run the flow: Kafka (or a replay file) → ClickHouse")
    run.add_argument(
        "--config", type=Path, help="settings file (.toml or .json); env STITCHBOARD_* overrides"
    )
    run.add_argument("--replay", type=Path, help="read this events file instead of Kafka, then stop")
    run.add_argument("--workers", type=int, default=1)
    run.add_argument(
        "--until-eof",
        action="store_true",
        help="stop at the end of every Kafka partition and finalise all intervals (catch-up, tests)",
    )
    run.add_argument("--log-level", default="INFO", help="structured JSON logs on stderr at this level")
    run.set_defaults(func=cmd_run)

    summary = sub.add_parser("summary", help="print the KPI summary from ClickHouse")
    summary.add_argument("--config", type=Path)
    summary.add_argument("--dsn")
    summary.set_defaults(func=cmd_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
