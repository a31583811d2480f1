"""The command line a platform engineer uses: generate, init-db, run (replay), summary, demo.

Most tests run ``python -m stitchboard.app.cli`` as a subprocess, so what they check is what a
person sees: every user error is one line on stderr naming the problem and the fix, exit status 2
for a wrong command line or wrong settings and 1 for a failed run, and no secret anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import prometheus_client
import pytest
from clickhouse_connect.driver.client import Client

from stitchboard import __version__
from stitchboard.app.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
PLANTED = "Pl4ntedS3cretXyZ"  # a password that must appear in no output of any command


def stitchboard(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m stitchboard.app.cli ARGS`` with no STITCHBOARD_* variable but those given."""
    clean = {name: value for name, value in os.environ.items() if not name.upper().startswith("STITCHBOARD_")}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "stitchboard.app.cli", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=cwd,
        timeout=300,
    )


def one_error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The one line a failed command ended with: nothing on stdout, before it at most the command's
    own progress lines (``[HH:MM:SS] ...``), no traceback."""
    assert result.stdout == ""
    *progress, last = result.stderr.splitlines()
    assert all(line.startswith("[") for line in progress), result.stderr
    assert last.startswith(f"stitchboard{' ' + command if command else ''}: error: "), last
    return last


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process (here: this one) is listening on."""
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.fixture(scope="module")
def replay_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated day (about 200 records) to replay."""
    out = tmp_path_factory.mktemp("generated")
    result = stitchboard(
        "generate",
        "--out",
        str(out),
        "--day",
        "2026-03-29",
        "--scale",
        "0.02",
        "--tenant",
        "acme=Europe/London",
    )
    assert result.returncode == 0, result.stderr
    return out / "events.jsonl"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# (name, arguments, files to write first, environment, exit status, the line after "error: ")
SETTINGS_ERRORS = [
    (
        "missing config file",
        ["init-db", "--config", "{tmp}/missing.toml"],
        {},
        {},
        2,
        "settings file '{tmp}/missing.toml' does not exist: check the path",
    ),
    (
        "unknown setting",
        ["init-db", "--config", "{tmp}/settings.toml"],
        {"settings.toml": '[clickhouse]\ndsnn = "chdb:///x"\n'},
        {},
        2,
        "unknown setting 'clickhouse.dsnn' (from settings file {tmp}/settings.toml): did you mean 'clickhouse.dsn'?",
    ),
    (
        "unknown setting unlike any",
        ["summary", "--config", "{tmp}/settings.toml"],
        {"settings.toml": "[journeys]\nfrobnicate = 1\n"},
        {},
        2,
        "unknown setting 'journeys.frobnicate' (from settings file {tmp}/settings.toml): remove it (journeys takes "
        "long_duration_seconds, many_steps, many_transfers, window_days, window_days_by_tenant)",
    ),
    (
        "unknown setting from the environment",
        ["init-db"],
        {},
        {"STITCHBOARD_CLICKHOUSE__DATABSE": "reports"},
        2,
        "unknown setting 'clickhouse.databse' (from environment variable STITCHBOARD_CLICKHOUSE__DATABSE): "
        "did you mean 'clickhouse.database'?",
    ),
    (
        "bad time zone",
        ["run", "--config", "{tmp}/settings.toml"],
        {"settings.toml": '[tenants.acme]\ntime_zone = "Europe/Londn"\n'},
        {},
        2,
        "setting 'tenants.acme.time_zone' (from settings file {tmp}/settings.toml): unknown IANA time zone "
        "'Europe/Londn'",
    ),
    (
        "YAML file as config",
        ["run", "--config", "{tmp}/settings.yaml"],
        {"settings.yaml": "clickhouse:\n  database: reports\n"},
        {},
        2,
        "settings file '{tmp}/settings.yaml' is YAML: settings are read from TOML (.toml) or JSON (.json); "
        "convert it, the keys stay the same",
    ),
    (
        "malformed TOML",
        ["init-db", "--config", "{tmp}/settings.toml"],
        {"settings.toml": "[clickhouse\n"},
        {},
        2,
        "settings file '{tmp}/settings.toml' is not valid TOML (Expected ']' at the end of a table declaration "
        "(at line 1, column 12))",
    ),
    (
        "postgres DSN argument",
        ["init-db", "--dsn", f"postgres://writer:{PLANTED}@db:5432/reports"],
        {},
        {},
        2,
        "setting 'clickhouse.dsn' (from --dsn): scheme 'postgres' is not ClickHouse: use chdb:///path, "
        "http://host:8123 or https://host:8443 (with user:password@ before the host)",
    ),
    (
        "postgres DSN secret file",
        ["summary", "--secrets-dir", "{tmp}"],
        {"clickhouse__dsn": f"postgres://writer:{PLANTED}@db:5432/reports\n"},
        {},
        2,
        "setting 'clickhouse.dsn' (from secret file clickhouse__dsn in {tmp}): scheme 'postgres' is not "
        "ClickHouse: use chdb:///path, http://host:8123 or https://host:8443 (with user:password@ before the host)",
    ),
    (
        "missing secrets directory",
        ["run", "--secrets-dir", "{tmp}/secrets"],
        {},
        {},
        2,
        "secrets directory '{tmp}/secrets' does not exist or is not a directory: mount the Secret there or "
        "correct --secrets-dir",
    ),
    (
        "environment value that is not JSON",
        ["init-db"],
        {},
        {"STITCHBOARD_KAFKA__BROKERS": "kafka:9092"},
        2,
        'settings cannot be read: error parsing value for field "kafka" from source "EnvSettingsSource": '
        "correct the value it names",
    ),
]


@pytest.mark.parametrize(
    ("arguments", "files", "env", "status", "expected"),
    [case[1:] for case in SETTINGS_ERRORS],
    ids=[case[0] for case in SETTINGS_ERRORS],
)
def test_settings_errors_are_one_line_with_exit_status_2(
    arguments: list[str],
    files: dict[str, str],
    env: dict[str, str],
    status: int,
    expected: str,
    tmp_path: Path,
) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    result = stitchboard(*(argument.format(tmp=tmp_path) for argument in arguments), env=env)
    line = one_error_line(result, arguments[0])
    assert line == f"stitchboard {arguments[0]}: error: {expected.format(tmp=tmp_path)}"
    assert result.returncode == status
    assert PLANTED not in line


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ([], "stitchboard: error: the following arguments are required: COMMAND (see stitchboard --help)"),
        (
            ["generate", "--tenant", "acme"],
            "stitchboard generate: error: argument --tenant: expected NAME=Area/Zone, e.g. acme=Europe/London, "
            "got 'acme' (see stitchboard generate --help)",
        ),
        (
            ["generate", "--tenant", "acme=Europe/Londn"],
            "stitchboard generate: error: argument --tenant: unknown IANA time zone 'Europe/Londn' in "
            "'acme=Europe/Londn': use a name like Europe/London (see stitchboard generate --help)",
        ),
        (
            ["demo", "--day", "2026-02-30"],
            "stitchboard demo: error: argument --day: expected a date as YYYY-MM-DD, got '2026-02-30' "
            "(see stitchboard demo --help)",
        ),
        (
            ["run", "--workers", "0"],
            "stitchboard run: error: argument --workers: expected a whole number of at least 1, got '0' "
            "(see stitchboard run --help)",
        ),
        (
            ["run", "--replay", "{tmp}/nothing.jsonl"],
            "stitchboard run: error: replay file '{tmp}/nothing.jsonl' does not exist: check the --replay path",
        ),
    ],
    ids=["no command", "tenant without zone", "tenant bad zone", "bad day", "no workers", "missing replay"],
)
def test_usage_errors_are_one_line_with_exit_status_2(
    arguments: list[str], expected: str, tmp_path: Path
) -> None:
    result = stitchboard(*(argument.format(tmp=tmp_path) for argument in arguments))
    assert result.returncode == 2
    assert one_error_line(result, arguments[0] if arguments else "") == expected.format(tmp=tmp_path)


def test_summary_on_an_empty_database_says_to_run_init_db(tmp_path: Path) -> None:
    result = stitchboard("summary", "--dsn", f"chdb://{tmp_path}/chdb")
    assert result.returncode == 1
    assert one_error_line(result, "summary") == (
        f"stitchboard summary: error: no Stitchboard tables in database 'stitchboard' at chdb://{tmp_path}/chdb "
        "(missing: interval_metrics, conversations, interval_restatements, dead_letters): run "
        "`stitchboard init-db` with the same settings, then `stitchboard run`"
    )


def test_an_unreachable_clickhouse_is_one_line_with_exit_status_1(closed_port: int) -> None:
    result = stitchboard(
        "init-db", env={"STITCHBOARD_CLICKHOUSE__DSN": f"http://writer:{PLANTED}@127.0.0.1:{closed_port}"}
    )
    assert result.returncode == 1
    assert one_error_line(result, "init-db") == (
        f"stitchboard init-db: error: cannot connect to ClickHouse at http://writer:***@127.0.0.1:{closed_port} "
        "([Errno 111] Connection refused): check clickhouse.dsn (--dsn, STITCHBOARD_CLICKHOUSE__DSN or the "
        "secret file clickhouse__dsn) and that the server is up"
    )


def test_a_metrics_port_in_use_is_one_line_with_exit_status_1(
    busy_port: int, replay_file: Path, tmp_path: Path
) -> None:
    config = write(
        tmp_path / "settings.toml",
        f'metrics_port = {busy_port}\n[clickhouse]\ndsn = "chdb://{tmp_path}/chdb"\n',
    )
    result = stitchboard("run", "--config", str(config), "--replay", str(replay_file))
    assert result.returncode == 1
    assert one_error_line(result, "run") == (
        f"stitchboard run: error: cannot serve metrics on port {busy_port} (Address already in use): stop the "
        "process using it or set metrics_port (STITCHBOARD_METRICS_PORT) to a free port"
    )


def test_a_path_that_cannot_be_written_is_one_line_with_exit_status_1(tmp_path: Path) -> None:
    blocker = write(tmp_path / "a-file", "")
    result = stitchboard("generate", "--out", str(blocker / "out"), "--scale", "0.02")
    assert result.returncode == 1
    assert one_error_line(result, "generate").endswith(
        f"error: Not a directory: '{blocker}/out': check the path and its permissions"
    )


def test_an_unexpected_failure_is_one_line_and_its_traceback_is_on_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug has no known fix: one line naming the exception; ``--traceback`` adds where it was."""

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError(f"https://writer:{PLANTED}@clickhouse:8443")

    monkeypatch.setattr("stitchboard.app.cli.build_dataset", broken)
    assert main(["generate", "--out", "unused"]) == 1
    (line,) = capsys.readouterr().err.splitlines()[-1:]
    assert line == (
        "stitchboard generate: error: unexpected KeyError: 'https://writer:***@clickhouse:8443': rerun with "
        "--traceback for where it failed and report it if the cause is not yours"
    )
    assert main(["--traceback", "generate", "--out", "unused"]) == 1
    printed = capsys.readouterr().err
    assert "Traceback (most recent call last):" in printed and "in broken" in printed
    assert printed.splitlines()[-1] == line and PLANTED not in printed


def test_version() -> None:
    result = stitchboard("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"stitchboard {__version__}\n", "")


def test_every_option_has_help() -> None:
    parser = build_parser()
    (commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    assert set(commands.choices) == {"demo", "generate", "init-db", "run", "summary"}
    assert all(choice.help for choice in commands._choices_actions)
    for name, command in {"stitchboard": parser, **commands.choices}.items():
        for action in command._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.option_strings)
    result = stitchboard("init-db", "--help")
    assert result.returncode == 0 and "--secrets-dir DIR" in result.stdout


def test_a_planted_password_appears_in_no_output_of_any_command(
    replay_file: Path, tmp_path: Path, closed_port: int
) -> None:
    """Every command, succeeding and failing, with the password in the environment, a secret file and
    --dsn: stdout, stderr (the JSON logs included) never show it."""
    working = f"chdb://{tmp_path}/chdb?password={PLANTED}"
    unreachable = f"http://writer:{PLANTED}@127.0.0.1:{closed_port}"
    env = {"STITCHBOARD_CLICKHOUSE__DSN": working}
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    write(secrets / "clickhouse__dsn", unreachable + "\n")
    config = write(tmp_path / "settings.toml", "metrics_port = 0\n")
    runs = {
        "generate": (stitchboard("generate", "--out", str(tmp_path / "gen"), "--scale", "0.02", env=env), 0),
        "init-db": (stitchboard("init-db", env=env), 0),
        "run": (
            stitchboard(
                "run", "--config", str(config), "--replay", str(replay_file), "--log-level", "debug", env=env
            ),
            0,
        ),
        "summary": (stitchboard("summary", env=env), 0),
        "demo": (stitchboard("demo", "--dir", str(tmp_path / "demo"), "--scale", "0.02", env=env), 0),
        "init-db --dsn unreachable": (stitchboard("init-db", "--dsn", unreachable), 1),
        "summary from the secret file": (stitchboard("summary", "--secrets-dir", str(secrets)), 1),
        "run from the secret file": (stitchboard("run", "--secrets-dir", str(secrets)), 1),
        "init-db --dsn postgres": (stitchboard("init-db", "--dsn", f"postgres://w:{PLANTED}@db/x"), 2),
        "unknown setting with the password set": (
            stitchboard("init-db", env={**env, "STITCHBOARD_CLICKHOUSE__PASWORD": PLANTED}),
            2,
        ),
    }
    for name, (result, status) in runs.items():
        assert result.returncode == status, (name, result.stderr)
        assert PLANTED not in result.stdout + result.stderr, name
    assert "password=***" in runs["init-db"][0].stderr  # the DSN is shown, masked
    assert '"msg":"flow finished"' in runs["run"][0].stderr  # the logs were there to be searched
    assert "conversations stitched:" in runs["summary"][0].stdout


def test_generate_writes_events_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    result = stitchboard(
        "generate",
        "--out",
        str(out),
        "--day",
        "2026-03-29",
        "--scale",
        "0.05",
        "--tenant",
        "acme=Europe/London",
    )
    assert result.returncode == 0, result.stderr
    truth = json.loads((out / "truth.json").read_text())
    lines = (out / "events.jsonl").read_bytes().splitlines()
    assert len(lines) == truth["delivery"]["consumed"] > 50
    assert truth["delivery"]["malformed"] == sum(truth["delivery"]["malformed_by_kind"].values())
    assert {c["tenant"] for c in truth["conversations"]} == {"acme"}
    assert set(truth["intervals"]) == {"15", "30", "60", "1440"}


def test_init_run_and_summary_on_a_replay(
    tmp_path: Path, chdb_dsn: str, chdb_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process (the session's chDB is bound to this process), so the stored figures and the
    metrics registry can be read afterwards: no metric label carries the DSN's password."""
    out = tmp_path / "gen"
    assert (
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
        == 0
    )
    database = f"cli_{uuid.uuid4().hex[:10]}"
    config = write(
        tmp_path / "settings.toml",
        "metrics_port = 0\n"
        '[tenants.globex]\ntime_zone = "America/New_York"\n'
        f'[clickhouse]\ndsn = "{chdb_dsn}?password={PLANTED}"\ndatabase = "{database}"\n',
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
    metrics = prometheus_client.generate_latest().decode()
    assert "stitchboard_records_in" in metrics and PLANTED not in metrics
