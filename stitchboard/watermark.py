"""The event-time watermark: its one definition, and a tenant-level tracker with an idle fallback.

Bytewax 0.21 keeps watermarks per key and has no allowed lateness, so Stitchboard keeps its own:
watermark = max event time seen - out-of-orderness (``event_time_watermark``); what lies more than
the allowed lateness before it is complete (``complete_before``): intervals ending by then are
final, and journeys' windows closing by then are final. A tenant that goes quiet would never
finalise its last intervals, so once no newer event time has been observed for ``idle_advance`` of
system time, the watermark moves on with the system time elapsed since that observation (event time
is assumed to keep flowing like wall time). It never moves backwards. The caller passes system time
in (``now``) so the class stays pure and replays are reproducible.

One record cannot move it far (issue #13): nothing happens before it is received, so an event time
counts for the watermark only up to its record's receive time plus ``lead`` (``bounded_event_time``),
the receive time itself taken no later than the system time (a receiver with a broken clock is
not trusted either); the caller passes the earliest receive time the record claims (its envelope's
or its transport's, ``stitchboard.deliveries.Delivery.received_at``). A record dated 2099, or 37 days ahead, among a valid day's records therefore
moves the watermark at most ``lead`` past that day's receive times, and later valid deltas stay
within the restatement horizon. The record itself is still applied (its figures land on its own
day); bounding event time against receive time on input is the adapters' job, this is the second
line. A watermark restored from a snapshot written before this rule may already be poisoned:
``restore`` clamps it to the system time at which its latest event time was observed plus ``lead``.
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


def bounded_event_time(
    event_time: datetime, now: datetime, received_at: datetime | None, lead: timedelta
) -> datetime:
    """The event time as far as the watermark may trust it: at most the receive time (no later than
    the system time ``now``; ``now`` itself when the receive time is unknown) plus ``lead``."""
    received = now if received_at is None or received_at > now else received_at
    return min(event_time, received + lead)


class TenantWatermark:
    """Event-time progress of one tenant; ``None`` until the first event time is observed."""

    __slots__ = (
        "_floor",
        "_idle_advance",
        "_last_progress_at",
        "_lead",
        "_max_event_time",
        "_out_of_orderness",
    )

    def __init__(
        self, out_of_orderness: timedelta, idle_advance: timedelta, lead: timedelta = timedelta(seconds=60)
    ) -> None:
        if out_of_orderness < timedelta(0) or idle_advance <= timedelta(0) or lead < timedelta(0):
            raise ValueError("out_of_orderness and lead must be >= 0 and idle_advance > 0")
        self._out_of_orderness = out_of_orderness
        self._idle_advance = idle_advance
        self._lead = lead
        self._max_event_time: datetime | None = None  # the latest bounded event time
        self._last_progress_at: datetime | None = None  # system time of the last new max event time
        self._floor: datetime | None = None  # the highest watermark handed out so far

    @classmethod
    def from_timing(cls, timing: TimingSettings) -> TenantWatermark:
        return cls(
            timing.out_of_orderness,
            timedelta(seconds=timing.idle_advance_seconds),
            timedelta(seconds=timing.watermark_lead_seconds),
        )

    @property
    def value(self) -> datetime | None:
        """The watermark as of the last ``observe``/``advance`` call."""
        return self._floor

    @property
    def max_event_time(self) -> datetime | None:
        """The latest event time observed, as bounded by receive time (``bounded_event_time``)."""
        return self._max_event_time

    def observe(self, event_time: datetime, now: datetime, received_at: datetime | None = None) -> None:
        """Record an event time seen at system time ``now`` in a record received at ``received_at``."""
        _require_aware(event_time, now, *(() if received_at is None else (received_at,)))
        self.advance(now)
        moment = bounded_event_time(event_time, now, received_at, self._lead)
        if self._max_event_time is None or moment > self._max_event_time:
            self._max_event_time = moment
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

    def restore(self, state: WatermarkState, now: datetime | None = None) -> bool:
        """Take ``state`` back, repairing a watermark that ran ahead of the clock; True if repaired.

        The latest event time may be at most ``lead`` past the system time it was observed at:
        snapshots written before event times were bounded can hold a record's 2099. Beyond that it
        is clamped, and the watermark handed out is lowered to what the clamped time and the idle
        fallback allow by ``now`` (the system time of the restore).
        """
        self._max_event_time, self._last_progress_at, self._floor = state
        latest, observed_at = self._max_event_time, self._last_progress_at
        if latest is None or observed_at is None:
            return False
        limit = observed_at + self._lead
        ceiling = event_time_watermark(limit, self._out_of_orderness)
        if now is not None and now - observed_at >= self._idle_advance:
            ceiling += now - observed_at  # what the idle fallback hands out by now
        repaired = latest > limit or (self._floor is not None and self._floor > ceiling)
        if latest > limit:
            self._max_event_time = limit
        if self._floor is not None and self._floor > ceiling:
            self._floor = ceiling
        return repaired


def _require_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: watermarks need aware instants")
