"""What the command line says when it fails: one line naming the problem and the fix.

A person (or Kubernetes' last log line) gets ``stitchboard <command>: error: <problem>: <fix>``
and an exit status that says whose move it is: 2 when the command line or the settings are wrong
(nothing was attempted; retrying the same command cannot help), 1 when running failed (a server
unreachable, a port in use, no tables yet). Tracebacks are for bugs, and only on request.
"""

from __future__ import annotations

import difflib
import os
import typing
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from stitchboard.settings import Settings, SettingsFileError
from stitchboard.state_version import StateVersionError

USAGE = 2
RUNTIME = 1
_LONGEST_DETAIL = 300  # a server's error can be long; the line stays readable
_SHOWN_PROBLEMS = 3


class UserError(Exception):
    """A failure the user can fix; ``str()`` is the whole message: the problem, then the fix."""

    exit_status = RUNTIME


class UsageError(UserError):
    """The command line or the settings are wrong: nothing was attempted."""

    exit_status = USAGE


@dataclass(frozen=True)
class SettingsOrigin:
    """Where a command's settings came from, to say which one holds a bad key."""

    config_file: Path | None = None
    secrets_dir: Path | None = None
    dsn_argument: bool = False


@dataclass(frozen=True)
class Failure:
    """How a command ends: exit status, the one line, and whether it is a bug (no known cause)."""

    exit_status: int
    message: str
    unexpected: bool = False


def error_line(command: str, message: str) -> str:
    """The line a failed command ends with (unmasked: print it through ``redaction.redact``)."""
    return f"stitchboard {command}: error: {message}"


def describe(exc: BaseException, origin: SettingsOrigin) -> Failure:
    """The one line for any exception that ends a command."""
    if isinstance(exc, UserError):
        return Failure(exc.exit_status, str(exc))
    state = _state_version_error(exc)
    if state is not None:
        return Failure(RUNTIME, str(state))
    if isinstance(exc, SettingsFileError):
        return Failure(USAGE, str(exc))
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        return Failure(USAGE, settings_problem(exc, origin))
    if isinstance(exc, SettingsError):
        return Failure(USAGE, f"settings cannot be read: {detail(exc)}: correct the value it names")
    if isinstance(exc, OSError) and exc.filename is not None:
        return Failure(RUNTIME, f"{exc.strerror}: {str(exc.filename)!r}: check the path and its permissions")
    return Failure(
        RUNTIME,
        f"unexpected {type(exc).__name__}: {detail(exc)}: rerun with --traceback for where it failed "
        "and report it if the cause is not yours",
        unexpected=True,
    )


def _state_version_error(exc: BaseException) -> StateVersionError | None:
    """A snapshot that cannot be restored, as raised inside the flow (Bytewax wraps it)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, StateVersionError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def detail(exc: BaseException) -> str:
    """The first line of what went wrong, cut to a readable length. A network failure wrapped by a
    client library (clickhouse-connect around urllib3 around a socket) is told by its root cause."""
    cause = exc
    while (
        inner := cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    ) is not None:
        cause = inner
    shown = cause if isinstance(cause, OSError) and cause is not exc else exc
    text = str(shown).strip()
    first = text.splitlines()[0] if text else type(shown).__name__
    return first if len(first) <= _LONGEST_DETAIL else first[: _LONGEST_DETAIL - 1] + "…"


def settings_problem(exc: ValidationError, origin: SettingsOrigin) -> str:
    """Every invalid or unknown setting, by dotted key and source, never by value (it may be secret)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        location = tuple(str(part) for part in error["loc"])
        key = ".".join(location)
        source = _source(location, origin)
        where = f" (from {source})" if source else ""
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown setting {key!r}{where}: {_suggestion(location)}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"setting {key!r}{where}: {message}")
    shown = problems[:_SHOWN_PROBLEMS]
    if len(problems) > _SHOWN_PROBLEMS:
        shown.append(f"and {len(problems) - _SHOWN_PROBLEMS} more")
    return "; ".join(shown)


def _source(location: tuple[str, ...], origin: SettingsOrigin) -> str | None:
    """The source that holds this key, from the most to the least precedent (settings.py)."""
    if origin.dsn_argument and location == ("clickhouse", "dsn"):
        return "--dsn"
    variable = "STITCHBOARD_" + "__".join(location).upper()
    if any(name.upper() == variable for name in os.environ):
        return f"environment variable {variable}"
    secret = "__".join(location).lower()
    directory = origin.secrets_dir
    if (
        directory is not None
        and directory.is_dir()
        and any(p.name.lower() == secret for p in directory.iterdir())
    ):
        return f"secret file {secret} in {directory}"
    if origin.config_file is not None:
        return f"settings file {origin.config_file}"
    return None


def _suggestion(location: tuple[str, ...]) -> str:
    """'did you mean ...' for a misspelling, else the keys that level takes."""
    *parents, name = location
    known = _keys_at(tuple(parents))
    if not known:
        return "remove it"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean {'.'.join([*parents, close[0]])!r}?"
    level = ".".join(parents) or "the top level"
    return f"remove it ({level} takes {', '.join(sorted(known))})"


def _keys_at(parents: tuple[str, ...]) -> list[str]:
    """The setting names a nested level takes: walks models and ``dict[str, Model]`` fields."""
    current: object = Settings
    for part in parents:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            current = field.annotation if field is not None else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]  # ``part`` is a key of the dict (a tenant)
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []
