from datetime import UTC, datetime, timedelta

import pytest

from stitchboard.settings import TimingSettings
from stitchboard.watermark import TenantWatermark

EVENT = datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # system time; unrelated to event time (a replay)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def fresh() -> TenantWatermark:
    return TenantWatermark.from_timing(TimingSettings(out_of_orderness_seconds=60, idle_advance_seconds=30))


def test_no_watermark_before_the_first_event() -> None:
    mark = fresh()
    assert mark.value is None
    assert mark.advance(NOW) is None


def test_max_event_time_minus_out_of_orderness_and_never_backwards() -> None:
    mark = fresh()
    mark.observe(EVENT, NOW)
    assert mark.value == EVENT - seconds(60)
    mark.observe(EVENT - seconds(300), NOW + seconds(1))
    assert mark.value == EVENT - seconds(60)
    mark.observe(EVENT + seconds(10), NOW + seconds(2))
    assert mark.value == EVENT - seconds(50)
    assert mark.max_event_time == EVENT + seconds(10)


def test_idle_fallback_advances_with_system_time_since_the_last_new_event_time() -> None:
    mark = fresh()
    mark.observe(EVENT, NOW)
    assert mark.advance(NOW + seconds(29)) == EVENT - seconds(60)
    assert mark.advance(NOW + seconds(30)) == EVENT - seconds(30)
    assert mark.advance(NOW + seconds(600)) == EVENT + seconds(540)


def test_older_event_times_do_not_reset_the_idle_clock() -> None:
    mark = fresh()
    mark.observe(EVENT, NOW)
    mark.observe(EVENT - seconds(5), NOW + seconds(20))
    assert mark.advance(NOW + seconds(40)) == EVENT - seconds(20)


def test_new_events_after_an_idle_advance_do_not_pull_it_back() -> None:
    mark = fresh()
    mark.observe(EVENT, NOW)
    assert mark.advance(NOW + seconds(300)) == EVENT + seconds(240)
    mark.observe(EVENT + seconds(100), NOW + seconds(301))  # idle until now; the fresh max is lower
    assert mark.value == EVENT + seconds(241)
    assert mark.advance(NOW + seconds(310)) == EVENT + seconds(241)
    mark.observe(EVENT + seconds(400), NOW + seconds(320))
    assert mark.value == EVENT + seconds(340)


def test_a_clock_going_backwards_changes_nothing() -> None:
    mark = fresh()
    mark.observe(EVENT, NOW)
    assert mark.advance(NOW - seconds(3600)) == EVENT - seconds(60)


def test_snapshot_restore_continues_identically() -> None:
    mark = fresh()
    mark.observe(EVENT, NOW)
    mark.advance(NOW + seconds(45))
    copy = fresh()
    copy.restore(mark.snapshot())
    for probe in (seconds(50), seconds(500)):
        assert copy.advance(NOW + probe) == mark.advance(NOW + probe)
    assert copy.snapshot() == mark.snapshot()


def test_rejects_naive_times_and_bad_settings() -> None:
    mark = fresh()
    with pytest.raises(ValueError, match="naive"):
        mark.observe(EVENT.replace(tzinfo=None), NOW)
    with pytest.raises(ValueError, match="idle_advance"):
        TenantWatermark(seconds(60), seconds(0))


def test_an_event_time_counts_only_up_to_its_receive_time_plus_the_lead() -> None:
    """Issue #13 seen #1: a record dated 2099 (or 37 days ahead) moves the watermark by the lead only."""
    mark = fresh()  # lead: 60 s (the default)
    received = EVENT + seconds(5)
    mark.observe(EVENT, NOW, received)
    assert mark.value == EVENT - seconds(60)
    mark.observe(datetime(2099, 6, 1, tzinfo=UTC), NOW + seconds(1), received)
    assert mark.max_event_time == received + seconds(60)
    assert mark.value == received
    mark.observe(EVENT + timedelta(days=37), NOW + seconds(2), received)
    assert mark.value == received
    later = EVENT + seconds(600)  # valid records keep moving it as before
    mark.observe(later, NOW + seconds(3), later + seconds(2))
    assert mark.value == later - seconds(60)


def test_a_receive_time_ahead_of_the_system_time_is_not_trusted() -> None:
    mark = fresh()
    now = datetime(2026, 3, 29, 8, 30, tzinfo=UTC)  # live: system time close to event time
    mark.observe(datetime(2099, 1, 1, tzinfo=UTC), now, datetime(2099, 1, 1, tzinfo=UTC))
    assert mark.max_event_time == now + seconds(60)
    unknown = fresh()  # no receive time: the system time bounds it
    unknown.observe(datetime(2099, 1, 1, tzinfo=UTC), now)
    assert unknown.max_event_time == now + seconds(60)


def test_the_lead_is_a_setting() -> None:
    mark = TenantWatermark.from_timing(TimingSettings(out_of_orderness_seconds=0, watermark_lead_seconds=0))
    mark.observe(EVENT + seconds(30), NOW, EVENT)
    assert mark.value == EVENT


def test_a_watermark_restored_far_ahead_of_its_observation_is_repaired() -> None:
    """A snapshot written before the bound (a production volume already poisoned) is not trusted."""
    observed_at = datetime(2026, 3, 29, 9, 0, tzinfo=UTC)
    poisoned = (datetime(2099, 6, 1, tzinfo=UTC), observed_at, datetime(2099, 6, 1, tzinfo=UTC) - seconds(60))
    mark = fresh()
    assert mark.restore(poisoned, observed_at + seconds(10)) is True
    assert mark.max_event_time == observed_at + seconds(60)
    assert mark.value == observed_at
    mark.observe(observed_at + seconds(20), observed_at + seconds(20), observed_at + seconds(21))
    assert mark.value == observed_at  # valid records go on from the repaired watermark
    assert mark.advance(observed_at + seconds(90)) == observed_at + seconds(90)  # idle fallback as ever


def test_a_healthy_restored_watermark_is_kept_as_it_was() -> None:
    mark = fresh()
    mark.observe(EVENT, NOW, EVENT + seconds(1))
    mark.advance(NOW + seconds(45))
    copy = fresh()
    assert copy.restore(mark.snapshot(), NOW + timedelta(days=3)) is False
    assert copy.snapshot() == mark.snapshot()
