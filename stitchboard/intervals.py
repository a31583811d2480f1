"""Reporting intervals aligned to a tenant's local wall clock (15/30/60 minutes, or the local day).

Rule for sub-daily intervals: within a stretch of constant UTC offset, intervals start where the
local wall clock reads a multiple of ``minutes`` after local midnight. A UTC-offset change always
starts a new interval, so an interval that a transition falls inside is *cut* at the transition:
on Australia/Lord_Howe's fall-back day (02:00 +11 → 01:30 +10:30) the hourly grid yields an
interval 01:30-02:00 +10:30 of 30 minutes; a transition at a non-aligned wall time (Monrovia
1972, -00:44:30 → +00:00 at local midnight) yields a 30-second interval 00:44:30-00:45 UTC. Cut
intervals are labelled by their true local start. On ordinary DST days this gives 23/25 hourly
intervals, the repeated fall-back hour being two intervals with different UTC starts and offsets.

The daily interval (``minutes=1440``) is the local calendar day and is never cut: it runs from the
first instant whose local date is the day to the first instant of the next day (23, 24, 25 h, or
23.5/24.5 h on Lord Howe). Results are memoised per (zone, minutes, UTC quarter-hour) whenever the
interval covers the whole quarter-hour, because the book calls this once per contribution and
interval length.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY_MINUTES = 1440
_CACHE_SLOT_SECONDS = 900
_CACHE_MAX = 200_000
_cache: dict[tuple[ZoneInfo, int, int], Interval] = {}


@dataclass(frozen=True, slots=True)
class Interval:
    """One reporting interval: [start, end) in UTC, labelled by its local wall-clock start."""

    minutes: int  # the nominal length (15, 30, 60 or 1440); the real length may differ on transitions
    start: datetime  # UTC
    end: datetime  # UTC
    local_start: datetime  # aware, in ``time_zone``
    time_zone: str

    @property
    def local_start_iso(self) -> str:
        return self.local_start.isoformat()

    @property
    def local_date(self) -> date:
        return self.local_start.date()

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def interval_of(ts: datetime, zone: ZoneInfo, minutes: int) -> Interval:
    """The interval of length ``minutes`` (a divisor of 1440, or 1440) that contains instant ``ts``."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive datetime {ts!r}: interval assignment needs an aware instant")
    if minutes <= 0 or DAY_MINUTES % minutes:
        raise ValueError(f"interval length {minutes} min does not divide a day")
    epoch = ts.timestamp()
    slot = int(epoch // _CACHE_SLOT_SECONDS)
    cache_key = (zone, minutes, slot)
    cached = _cache.get(cache_key)
    if cached is not None:
        return cached
    found = _day_of(ts, zone) if minutes == DAY_MINUTES else _sub_daily(epoch, zone, minutes)
    slot_start = slot * _CACHE_SLOT_SECONDS
    if found.start.timestamp() <= slot_start and found.end.timestamp() >= slot_start + _CACHE_SLOT_SECONDS:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[cache_key] = found
    return found


def next_interval(interval: Interval) -> Interval:
    """The interval of the same nominal length that starts where ``interval`` ends."""
    return interval_of(interval.end, ZoneInfo(interval.time_zone), interval.minutes)


def intervals_between(start: datetime, end: datetime, zone: ZoneInfo, minutes: int) -> list[Interval]:
    """All intervals overlapping [start, end), in order."""
    found: list[Interval] = []
    current = interval_of(start, zone, minutes)
    while current.start < end:
        found.append(current)
        current = next_interval(current)
    return found


def intervals_of_local_day(day: date, zone: ZoneInfo, minutes: int) -> list[Interval]:
    """All intervals of one local calendar day (e.g. 92, 96 or 100 quarter-hours on DST days)."""
    whole_day = interval_of(_first_instant_of(day, zone), zone, DAY_MINUTES)
    return intervals_between(whole_day.start, whole_day.end, zone, minutes)


def _zone_name(zone: ZoneInfo) -> str:
    return zone.key if zone.key is not None else str(zone)


def _offset_at(epoch_seconds: int, zone: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(epoch_seconds, zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


def _sub_daily(epoch: float, zone: ZoneInfo, minutes: int) -> Interval:
    second = int(epoch // 1)  # offsets change on whole seconds
    offset = _offset_at(second, zone)
    length = minutes * 60
    local = second + offset
    start = local - local % length - offset  # grid start under the offset in force at ``ts``
    end = start + length
    if _offset_at(start, zone) != offset:
        start = _first_second_with_offset(start, second, zone, offset)
    if _offset_at(end - 1, zone) != offset:
        end = _first_second_without_offset(second, end - 1, zone, offset)
    start_utc = _utc(start)
    return Interval(minutes, start_utc, _utc(end), start_utc.astimezone(zone), _zone_name(zone))


def _first_second_with_offset(lo: int, hi: int, zone: ZoneInfo, offset: int) -> int:
    """Transition instant in (lo, hi]: ``lo`` has another offset, ``hi`` has ``offset``."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(mid, zone) == offset:
            hi = mid
        else:
            lo = mid
    return hi


def _first_second_without_offset(lo: int, hi: int, zone: ZoneInfo, offset: int) -> int:
    """Transition instant in (lo, hi]: ``lo`` has ``offset``, ``hi`` has another."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(mid, zone) == offset:
            lo = mid
        else:
            hi = mid
    return hi


def _day_of(ts: datetime, zone: ZoneInfo) -> Interval:
    day = ts.astimezone(zone).date()
    start = _first_instant_of(day, zone)
    end = _first_instant_of(day + timedelta(days=1), zone)
    return Interval(DAY_MINUTES, start, end, start.astimezone(zone), _zone_name(zone))


def _first_instant_of(day: date, zone: ZoneInfo) -> datetime:
    """The first UTC instant whose local date is ``day``, also when local midnight is skipped."""
    midnight = datetime.combine(day, time(), tzinfo=zone)
    candidates = [midnight.astimezone(UTC), midnight.replace(fold=1).astimezone(UTC)]
    lo, hi = min(candidates), max(candidates)
    if lo.astimezone(zone).date() >= day:
        return lo
    low, high = int(lo.timestamp()), int(hi.timestamp())  # midnight falls in a gap: find the jump
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, zone).date() >= day:
            high = mid
        else:
            low = mid
    return _utc(high)
