"""The interval book's protocol: a delivery of deltas and the current time in, what to publish out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from stitchboard.contributions import ContributionKey, Delta, TenantFeed
from stitchboard.deadletters import RecordRef
from stitchboard.interval_book import BEYOND_HORIZON, IntervalBook
from stitchboard.rows import IntervalRow, RestatementRow
from stitchboard.settings import TenantSettings, TimingSettings

TIMING = TimingSettings(
    interval_minutes=(15,),
    out_of_orderness_seconds=60,
    allowed_lateness_seconds=600,
    idle_advance_seconds=30,
    provisional_every_seconds=1.0,
    restatement_horizon_days=2,
)
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def at(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 6, day, hour, minute, tzinfo=UTC)


def feed(arrival: int, when: datetime, value: int = 1, reason: str = "queued") -> TenantFeed:
    delta = Delta("acme", ContributionKey("sales", "voice", "offered", when), value, reason)
    return TenantFeed("acme", arrival, when, when, [delta])


def book() -> IntervalBook:
    return IntervalBook("acme", TenantSettings(), TIMING, ("offered",))


def test_a_delivery_publishes_provisional_rows_then_final_once_the_watermark_passes() -> None:
    subject = book()
    first = subject.receive(feed(0, at(8, 5)), NOW)
    assert [(r.status, r.metrics["offered"]) for r in first.rows if isinstance(r, IntervalRow)] == [
        ("provisional", 1)
    ]
    assert not first.late and first.dead_letters == []
    # within provisional_every_seconds nothing is due: no flush, nothing to publish
    quiet = subject.receive(feed(1, at(8, 6)), NOW + timedelta(seconds=0.5))
    assert quiet.flushed is None and quiet.rows == []
    # 08:26 + 60 s out-of-orderness leaves the watermark at 08:25 = 08:15 end + 10 min lateness
    closing = subject.receive(feed(2, at(8, 26)), NOW + timedelta(seconds=2))
    finals = [r for r in closing.rows if isinstance(r, IntervalRow) and r.status == "final"]
    assert [(r.interval_start, r.metrics["offered"]) for r in finals] == [(at(8, 0), 2)]


def test_a_delivery_older_than_the_allowed_lateness_is_late_and_restates() -> None:
    subject = book()
    subject.receive(feed(0, at(8, 5)), NOW)
    subject.receive(feed(1, at(9, 0)), NOW + timedelta(seconds=2))  # 08:00-08:15 is final
    late = subject.receive(feed(2, at(8, 10), reason="wrapup_set"), NOW + timedelta(seconds=4))
    assert late.late
    restated = [r for r in late.rows if isinstance(r, IntervalRow) and r.status == "restated"]
    assert [(r.interval_start, r.metrics["offered"]) for r in restated] == [(at(8, 0), 2)]
    [restatement] = [r for r in late.rows if isinstance(r, RestatementRow)]
    assert (restatement.published, restatement.corrected, restatement.reason) == (1, 2, "wrapup_set")


def test_a_correction_beyond_the_horizon_is_published_as_a_dead_letter() -> None:
    subject = book()
    subject.receive(feed(0, at(12, day=4)), NOW)  # watermark 11:59 on the 4th; horizon 2 days
    out = subject.receive(feed(1, at(11, 58, day=2), value=-1), NOW + timedelta(seconds=2))
    [letter] = out.dead_letters
    assert (letter.reason, letter.tenant, letter.received_at) == (
        BEYOND_HORIZON,
        "acme",
        NOW + timedelta(seconds=2),
    )
    assert "offered -1 for queue 'sales'" in letter.detail
    assert letter in out.rows


def test_the_timer_and_the_end_of_input_publish_what_is_due() -> None:
    subject = book()
    subject.receive(feed(0, at(8, 5)), NOW)
    subject.receive(feed(1, at(8, 6)), NOW + timedelta(seconds=0.5))  # throttled
    ticked = subject.tick(NOW + timedelta(seconds=1))
    assert [(r.status, r.metrics["offered"]) for r in ticked.rows if isinstance(r, IntervalRow)] == [
        ("provisional", 2)
    ]
    drained = subject.end_of_input(NOW + timedelta(seconds=2), drain=True)
    assert [(r.status, r.metrics["offered"]) for r in drained.rows if isinstance(r, IntervalRow)] == [
        ("final", 2)
    ]


def received(arrival: int, when: datetime, received_at: datetime, value: int = 1) -> TenantFeed:
    """A delivery of a record received at ``received_at`` (as the stitcher names it)."""
    record = RecordRef(f"raw/0/{arrival}", f"{arrival:064x}", received_at, "webhook")
    return replace(feed(arrival, when, value), conversation_id=f"c{arrival}", record=record)


def test_a_future_dated_delivery_moves_the_watermark_only_to_its_receive_time_plus_the_lead() -> None:
    """Issue #13 seen #1: a record dated 2099 among a valid day; the later valid ones still count."""
    subject = book()  # horizon 2 days, lead 60 s
    subject.receive(received(0, at(8, 5), at(8, 6)), NOW)
    outlier = subject.receive(
        received(1, datetime(2099, 6, 1, tzinfo=UTC), at(8, 7)), NOW + timedelta(seconds=1)
    )
    assert outlier.dead_letters == []
    assert subject.watermark == at(8, 7)  # 08:07 received + 60 s lead - 60 s out-of-orderness
    later = subject.receive(received(2, at(8, 9), at(8, 10)), NOW + timedelta(seconds=2))
    assert later.dead_letters == [] and subject.dropped_beyond_horizon == 0
    drained = subject.end_of_input(NOW + timedelta(seconds=3), drain=True)
    finals = {(r.interval_start, r.metrics["offered"]) for r in drained.rows if isinstance(r, IntervalRow)}
    assert finals == {(at(8, 0), 2), (datetime(2099, 6, 1, tzinfo=UTC), 1)}


def test_a_poisoned_watermark_restored_from_a_snapshot_is_repaired() -> None:
    """State written before the bound: the watermark at 2099, observed on 1 June at 08:07."""
    subject = book()
    subject.receive(received(0, at(8, 5), at(8, 6)), at(8, 6))
    state = subject.snapshot()
    state["watermark"] = (datetime(2099, 6, 1, tzinfo=UTC), at(8, 7), datetime(2099, 6, 1, tzinfo=UTC))
    restart = at(8, 7) + timedelta(seconds=10)
    restored = IntervalBook.restore("acme", TenantSettings(), TIMING, ("offered",), state, restart)
    assert restored.watermark_repaired
    assert restored.watermark == at(8, 7)
    later = restored.receive(received(1, at(8, 7), at(8, 7)), restart)
    assert later.dead_letters == [] and restored.dropped_beyond_horizon == 0
    healthy = IntervalBook.restore("acme", TenantSettings(), TIMING, ("offered",), subject.snapshot(), at(9))
    assert not healthy.watermark_repaired


def test_a_delivery_the_book_cannot_take_leaves_it_as_it_was() -> None:
    """Deltas are checked and placed before anything changes: a bad one fails the whole delivery."""
    subject = book()
    subject.receive(feed(0, at(8, 5)), NOW)
    before = subject.snapshot()
    good = Delta("acme", ContributionKey("sales", "voice", "offered", at(8, 9)), 1, "queued")
    bad = Delta("acme", ContributionKey("sales", "voice", "no_such_metric", at(8, 9)), 1, "queued")
    with pytest.raises(ValueError, match="unknown metric"):
        subject.receive(TenantFeed("acme", 1, at(23), at(23), [good, bad]), NOW + timedelta(seconds=1))
    assert subject.snapshot() == before  # not even the watermark moved
