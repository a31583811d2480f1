"""``IntervalBook.due``: a flush it calls unnecessary would publish, finalise and evict nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stitchboard.contributions import ContributionKey, Delta
from stitchboard.interval_book import Flushed, IntervalBook
from stitchboard.settings import TenantSettings, TimingSettings

TIMING = TimingSettings(
    out_of_orderness_seconds=60,
    allowed_lateness_seconds=600,
    provisional_every_seconds=1.0,
    restatement_horizon_days=2,
    interval_minutes=(15,),
)
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def book() -> IntervalBook:
    return IntervalBook("acme", TenantSettings(), TIMING, ("offered", "answered"))


def offered(when: datetime, value: int = 1) -> Delta:
    return Delta("acme", ContributionKey("sales", "voice", "offered", when), value, "queued")


def empty(flushed: Flushed) -> bool:
    return not (flushed.interval_rows or flushed.restatements or flushed.dropped)


def test_nothing_is_due_until_provisional_rows_are_and_then_until_the_next_throttle_slot() -> None:
    subject = book()
    subject.observe(T0, NOW)
    assert not subject.due(NOW)
    subject.apply(offered(T0))
    assert subject.due(NOW)
    assert len(subject.flush(NOW).provisional) == 1
    subject.apply(offered(T0 + timedelta(minutes=1)))
    assert not subject.due(NOW + timedelta(seconds=0.5))
    assert empty(subject.flush(NOW + timedelta(seconds=0.5)))
    assert subject.due(NOW + timedelta(seconds=1))


def test_finalisation_restatements_and_drops_are_due_at_once() -> None:
    subject = book()
    subject.observe(T0, NOW)
    subject.apply(offered(T0))
    subject.flush(NOW)
    later = NOW + timedelta(seconds=0.1)  # inside the provisional throttle
    subject.observe(T0 + timedelta(minutes=15 + 10, seconds=60), later)  # end + lateness + disorder
    assert subject.due(later)
    assert [row.status for row in subject.flush(later).final] == ["final"]
    subject.apply(offered(T0, 2))  # lands in a final bucket: a restatement
    assert subject.due(later)
    assert len(subject.flush(later).restated) == 1
    subject.apply(offered(T0 - timedelta(days=3)))  # beyond the 2-day horizon: dropped
    assert subject.due(later)
    assert len(subject.flush(later).dropped) == 1
    assert not subject.due(later)


def test_eviction_is_due_when_a_final_bucket_leaves_the_horizon() -> None:
    subject = book()
    subject.observe(T0, NOW)
    subject.apply(offered(T0))
    subject.drain(NOW)
    assert subject.bucket_count == 1 and not subject.due(NOW)
    subject.observe(T0 + timedelta(days=2, hours=1), NOW)
    assert subject.due(NOW)
    subject.flush(NOW)
    assert subject.bucket_count == 0
