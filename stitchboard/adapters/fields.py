"""The field readers all adapters share.

Adapters read untrusted JSON; these readers turn every way a field can be wrong into an
``AdapterError`` whose reason is the dead-letter class and whose detail names the field by its path,
so a rejected record tells an operator exactly what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, overload

from stitchboard.deadletters import AdapterError
from stitchboard.events import (
    EARLIEST_EVENT_TIME,
    LATEST_EVENT_TIME,
    MAX_COUNT,
    MAX_DURATION_MS,
    OUT_OF_RANGE,
)

_fromisoformat = datetime.fromisoformat
_Value = TypeVar("_Value")


def parse_time(value: Any, where: str) -> datetime:
    """An ISO-8601 instant with a zone, inside 2000..2100, as a UTC datetime."""
    return _parse_time(value, where, "")


_TIMES: dict[str, datetime] = {}  # timestamp text → parsed: records repeat times (segment bounds, re-sends)
_TIMES_LIMIT = 1 << 14


def _parse_time(value: Any, where: str | Fields, key: str) -> datetime:
    """``parse_time`` naming the field ``where`` (a path, or ``key`` of an object) only on error."""
    if value.__class__ is str:
        parsed = _TIMES.get(value)
        if parsed is not None:
            return parsed
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(UTC)
                if EARLIEST_EVENT_TIME <= parsed < LATEST_EVENT_TIME:
                    if len(_TIMES) >= _TIMES_LIMIT:
                        _TIMES.clear()
                    _TIMES[value] = parsed
                    return parsed
    return _reject_time(value, where if isinstance(where, str) else where.path(key))


def _reject_time(value: Any, place: str) -> datetime:
    """The precise reason a timestamp was refused (the slow path, taken only for bad input)."""
    if not isinstance(value, str):
        raise AdapterError("schema", f"{place} must be an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise AdapterError("bad_timestamp", f"{place} is not an ISO-8601 timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        raise AdapterError("bad_timestamp", f"{place} has no time zone: {value!r}")
    parsed = parsed.astimezone(UTC)
    if not EARLIEST_EVENT_TIME <= parsed < LATEST_EVENT_TIME:
        raise AdapterError("bad_timestamp", f"{place} is outside 2000..2100: {value!r}")
    return parsed  # a str subclass that parses: accepted like the fast path would


def check_order(start: datetime, end: datetime | None, where: str | Fields) -> None:
    if end is not None and end < start:
        place = where if isinstance(where, str) else where.where
        raise AdapterError("bad_timestamp", f"{place} ends before it starts")


def millis(moment: datetime) -> int:
    """Epoch milliseconds: the sequence of a mutable fact is the time it was last set."""
    return int(moment.timestamp() * 1000)


class Fields:
    """Typed access to one JSON object, reporting problems with the object's path.

    A nested object's path is spelled out only when a message needs it: most records are valid,
    and building every path eagerly cost more than reading the fields.
    """

    __slots__ = ("_index", "_key", "_parent", "_where", "data")

    def __init__(self, data: Any, where: str) -> None:
        self._where: str | None = where
        self._parent: Fields | None = None
        self._key = ""
        self._index: int | None = None
        self.data: dict[str, Any] = self._checked(data)

    @classmethod
    def _child(cls, data: Any, parent: Fields, key: str, index: int | None = None) -> Fields:
        child = _new_fields(cls)
        child._where = None
        child._parent = parent
        child._key = key
        child._index = index
        child.data = data if data.__class__ is dict else child._checked(data)
        return child

    def _checked(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise AdapterError("schema", f"{self.where} must be an object, got {type(data).__name__}")
        return data

    @property
    def where(self) -> str:
        """The object's path in the record, e.g. ``payload.participants[2].sessions[0]``."""
        if self._where is None:
            assert self._parent is not None
            path = self._parent.path(self._key)
            self._where = path if self._index is None else f"{path}[{self._index}]"
        return self._where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}"

    def _get(self, key: str, kind: type | tuple[type, ...], kind_name: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None:
            if required:
                raise AdapterError("missing_field", f"{self.path(key)} is missing")
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise AdapterError("schema", f"{self.path(key)} must be {kind_name}, got {type(value).__name__}")
        return value

    @overload
    def text(self, key: str, required: Literal[True] = True) -> str: ...
    @overload
    def text(self, key: str, required: bool) -> str | None: ...
    def text(self, key: str, required: bool = True) -> str | None:
        value = self.data.get(key)
        if isinstance(value, str) and value and not value.isspace():
            return value
        checked: str | None = self._get(key, str, "a string", required)
        if checked is not None and not checked.strip():
            if required:
                raise AdapterError("missing_field", f"{self.path(key)} is empty")
            return None
        return checked

    def integer(self, key: str, required: bool = True) -> Any:
        return self._get(key, int, "an integer", required)

    def number(self, key: str, required: bool = True) -> Any:
        return self._get(key, (int, float), "a number", required)

    def duration_ms(self, key: str, unit_ms: int = 1) -> int | None:
        """An optional duration counted in units of ``unit_ms``, as milliseconds; beyond 0..the longest
        span event times can cover it is ``out_of_range`` (a source's garbage, not a long contact)."""
        value: int | None = self.integer(key, required=False)
        if value is None:
            return None
        if not 0 <= value * unit_ms <= MAX_DURATION_MS:
            limit = MAX_DURATION_MS // unit_ms
            raise AdapterError(OUT_OF_RANGE, f"{self.path(key)} {value} is outside 0..{limit}")
        return value * unit_ms

    def count(self, key: str) -> int | None:
        """An optional count; beyond 0..``MAX_COUNT`` it is ``out_of_range``."""
        value: int | None = self.integer(key, required=False)
        if value is not None and not 0 <= value <= MAX_COUNT:
            raise AdapterError(OUT_OF_RANGE, f"{self.path(key)} {value} is outside 0..{MAX_COUNT}")
        return value

    @overload
    def time(self, key: str, required: Literal[True] = True) -> datetime: ...
    @overload
    def time(self, key: str, required: bool) -> datetime | None: ...
    def time(self, key: str, required: bool = True) -> datetime | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise AdapterError("missing_field", f"{self.path(key)} is missing")
            return None
        return _parse_time(value, self, key)

    def obj(self, key: str, required: bool = True) -> Fields | None:
        value = self.data.get(key)
        if value.__class__ is not dict:
            value = self._get(key, dict, "an object", required)
            if value is None:
                return None
        return Fields._child(value, self, key)

    def objects(self, key: str, required: bool = True) -> list[Fields]:
        value = self.data.get(key)
        if value.__class__ is not list:
            value = self._get(key, list, "an array", required) or ()
        child = Fields._child
        return [child(item, self, key, i) for i, item in enumerate(value)]


_new_fields = object.__new__


def choose(
    mapping: Mapping[Any, _Value], value: Any, reason: str, where: str | Fields, key: str = ""
) -> _Value:
    """Explicit vocabulary mapping: an unmapped value is rejected, never guessed.

    ``where`` is the value's path, or the object holding it as ``key`` (spelled out only on error).
    """
    try:
        return mapping[value]
    except KeyError:
        place = where if isinstance(where, str) else where.path(key)
        raise AdapterError(reason, f"{place} has unknown value {value!r}") from None


def check_tenant(claimed: str | None, tenant: str, where: str | Fields, key: str = "") -> None:
    if claimed is not None and claimed != tenant:
        place = where if isinstance(where, str) else where.path(key)
        raise AdapterError("tenant_mismatch", f"{place} names tenant {claimed!r}, envelope says {tenant!r}")


# Unicode White_Space: what pydantic's ``strip_whitespace`` trimmed (``str.strip()`` also trims \x1c-\x1f)
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def trim(value: Any) -> Any:
    """An identifier as the canonical event holds it: surrounding whitespace dropped (same object if none)."""
    return value.strip(WHITESPACE) if value.__class__ is str else value
