"""The event-time watermark: its one definition, and a tenant-level tracker with an idle fallback.

Bytewax 0.21 keeps watermarks per key and has no allowed lateness, so Stitchboard keeps its own:
watermark = max event time seen - out-of-orderness (``event_time_watermark``); what lies more than
the allowed lateness before it is complete (``complete_before``): intervals ending by then are
final, and journeys' windows closing by then are final. A tenant that goes quiet would never
finalise its last intervals, so once no newer event time has been observed for ``idle_advance`` of
system time, the watermark moves on with the system time elapsed since that observation (event time
is assumed to keep flowing like wall time). It never moves backwards. The caller passes system time
in (``now``) so the class stays pure and replays are reproducible.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from stitchboard.settings import TimingSettings

WatermarkState = tuple[datetime | None, datetime | None, datetime | None]


def event_time_watermark(max_event_time: datetime, out_of_orderness: timedelta) -> datetime:
    """The watermark: the latest event time seen minus the out-of-orderness allowed for."""
    return max_event_time - out_of_orderness


def complete_before(watermark: datetime, allowed_lateness: timedelta) -> datetime:
    """Event time before which figures are taken as complete: the watermark minus the allowed lateness."""
    return watermark - allowed_lateness


class TenantWatermark:
    """Event-time progress of one tenant; ``None`` until the first event time is observed."""

    __slots__ = ("_floor", "_idle_advance", "_last_progress_at", "_max_event_time", "_out_of_orderness")

    def __init__(self, out_of_orderness: timedelta, idle_advance: timedelta) -> None:
        if out_of_orderness < timedelta(0) or idle_advance <= timedelta(0):
            raise ValueError("out_of_orderness must be >= 0 and idle_advance > 0")
        self._out_of_orderness = out_of_orderness
        self._idle_advance = idle_advance
        self._max_event_time: datetime | None = None
        self._last_progress_at: datetime | None = None  # system time of the last new max event time
        self._floor: datetime | None = None  # the highest watermark handed out so far

    @classmethod
    def from_timing(cls, timing: TimingSettings) -> TenantWatermark:
        return cls(timing.out_of_orderness, timedelta(seconds=timing.idle_advance_seconds))

    @property
    def value(self) -> datetime | None:
        """The watermark as of the last ``observe``/``advance`` call."""
        return self._floor

    @property
    def max_event_time(self) -> datetime | None:
        return self._max_event_time

    def observe(self, event_time: datetime, now: datetime) -> None:
        """Record an event time seen at system time ``now``."""
        _require_aware(event_time, now)
        self.advance(now)
        if self._max_event_time is None or event_time > self._max_event_time:
            self._max_event_time = event_time
            self._last_progress_at = now
            self.advance(now)

    def advance(self, now: datetime) -> datetime | None:
        """The watermark at system time ``now`` (applying the idle fallback); latched, never lower."""
        _require_aware(now)
        if self._max_event_time is None or self._last_progress_at is None:
            return self._floor
        candidate = event_time_watermark(self._max_event_time, self._out_of_orderness)
        idle_for = now - self._last_progress_at
        if idle_for >= self._idle_advance:
            candidate += idle_for
        if self._floor is None or candidate > self._floor:
            self._floor = candidate
        return self._floor

    def snapshot(self) -> WatermarkState:
        return (self._max_event_time, self._last_progress_at, self._floor)

    def restore(self, state: WatermarkState) -> None:
        self._max_event_time, self._last_progress_at, self._floor = state


def _require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: watermarks need aware instants")
