"""A record's events against the tenant's bounds: a clock-broken or absurd source is dead-lettered.

The adapters check each field where they read it (types, vocabularies, the model's invariants);
what needs the tenant's settings or the record as a whole is checked here, once the record's events
are built and before anything downstream trusts them:

* ``clock_skew``: an event later than the record's receive time plus the tenant's skew. Nothing is
  reported before it happens, so the source's clock is wrong; trusted, such an event would move the
  tenant's watermark ahead and push every later valid record beyond the restatement horizon.
* ``too_old``: the record's newest event is older than the receive time minus the tenant's maximum
  age (by default the restatement horizon, beyond which no final figure can change any more).
* ``out_of_range``: the contact the record describes lasts longer than the channel's maximum, or a
  reported hold lasts longer or counts more holds than the bounds allow.

A record is the unit of dead letters: one event beyond a bound rejects the whole record, with its
bytes, since the rest of it comes from the same broken clock or source.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from stitchboard.deadletters import AdapterError
from stitchboard.events import OUT_OF_RANGE, CanonicalEvent, EventType
from stitchboard.settings import InputBounds

CLOCK_SKEW = "clock_skew"
TOO_OLD = "too_old"

# Facts set after the contact by design (a wrap-up corrected, a QA evaluation, a reopened ticket)
# and presence: they bound the record's age, not the contact's length.
_AFTER_THE_CONTACT = frozenset(
    {EventType.WRAPUP_SET, EventType.QA_SCORE_SET, EventType.TICKET_REOPENED, EventType.AGENT_STATE_CHANGED}
)
_HOLD = EventType.HOLD


def check_received_at(received_at: datetime, transport_time: datetime | None, bounds: InputBounds) -> None:
    """The envelope's receive time may not lie after the transport's (the broker's) beyond the skew:
    the receiver stamped it before handing the record on."""
    if transport_time is not None and received_at > transport_time + bounds.max_future_skew:
        raise AdapterError(
            CLOCK_SKEW,
            f"envelope.received_at {received_at.isoformat()} is {_ahead(received_at, transport_time)} after"
            f" the transport's time {transport_time.isoformat()} (at most {bounds.max_future_skew_seconds} s)",
        )


def check_record(
    events: Sequence[CanonicalEvent], received_at: datetime, bounds: InputBounds, horizon_days: int
) -> None:
    """Raise the dead-letter reason of the first bound the record's events break; one pass."""
    if not events:
        return
    latest_allowed = received_at + bounds.max_future_skew
    newest = first = last = events[0].event_time
    for event in events:
        at = event.event_time
        if at > latest_allowed:
            raise AdapterError(
                CLOCK_SKEW,
                f"{event.event_type.value} at {at.isoformat()} is {_ahead(at, received_at)} after the record"
                f" was received ({received_at.isoformat()}; at most {bounds.max_future_skew_seconds} s)",
            )
        if at > newest:
            newest = at
        kind = event.event_type
        if kind in _AFTER_THE_CONTACT:
            continue
        if at < first:
            first = at
        elif at > last:
            last = at
        if kind is _HOLD and event.attributes:
            _check_hold(event, bounds)
    if events[0].event_type in _AFTER_THE_CONTACT:  # the first time seeded the span: recompute it
        contact = [event.event_time for event in events if event.event_type not in _AFTER_THE_CONTACT]
        first, last = (min(contact), max(contact)) if contact else (newest, newest)
    channel = events[0].channel
    if last - first > bounds.max_contact(channel):
        raise AdapterError(
            OUT_OF_RANGE,
            f"the {channel.value} contact spans {first.isoformat()}..{last.isoformat()}, longer than"
            f" {bounds.max_contact_hours[channel]} h (bounds.max_contact_hours)",
        )
    oldest_allowed = received_at - bounds.max_age(horizon_days)
    if newest < oldest_allowed:
        raise AdapterError(
            TOO_OLD,
            f"the newest event ({newest.isoformat()}) is older than {oldest_allowed.isoformat()}, the"
            f" receive time {received_at.isoformat()} minus the maximum age",
        )


def _check_hold(event: CanonicalEvent, bounds: InputBounds) -> None:
    """A reported hold total: no longer than the channel's longest contact, no more holds than allowed."""
    duration = event.attributes.get("duration_ms")
    hours = bounds.max_contact_hours[event.channel]
    if isinstance(duration, int) and duration > hours * 3_600_000:
        raise AdapterError(
            OUT_OF_RANGE,
            f"hold of {duration} ms on leg {event.leg_id!r} is longer than a {event.channel.value} contact"
            f" may last ({hours} h)",
        )
    count = event.attributes.get("count")
    if isinstance(count, int) and count > bounds.max_holds_per_leg:
        raise AdapterError(
            OUT_OF_RANGE,
            f"{count} holds on leg {event.leg_id!r} exceed bounds.max_holds_per_leg"
            f" ({bounds.max_holds_per_leg})",
        )


def _ahead(later: datetime, earlier: datetime) -> str:
    return f"{(later - earlier).total_seconds():,.0f} s"
