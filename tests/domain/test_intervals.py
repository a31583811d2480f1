from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from stitchboard.intervals import (
    Interval,
    interval_of,
    intervals_between,
    intervals_of_local_day,
    next_interval,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
SANTIAGO = ZoneInfo("America/Santiago")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def span(interval: Interval) -> tuple[datetime, datetime, str]:
    return interval.start, interval.end, interval.local_start_iso


def test_london_spring_forward_hour_after_the_gap_starts_at_local_two() -> None:
    assert span(interval_of(utc(2026, 3, 29, 0, 30), LONDON, 60)) == (
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
        "2026-03-29T00:00:00+00:00",
    )
    assert span(interval_of(utc(2026, 3, 29, 1, 0), LONDON, 60)) == (
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 2),
        "2026-03-29T02:00:00+01:00",
    )


def test_london_fall_back_repeated_hour_is_two_intervals() -> None:
    first = interval_of(utc(2026, 10, 25, 0, 59, 59), LONDON, 60)
    second = interval_of(utc(2026, 10, 25, 1, 0), LONDON, 60)
    assert span(first) == (utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), "2026-10-25T01:00:00+01:00")
    assert span(second) == (utc(2026, 10, 25, 1), utc(2026, 10, 25, 2), "2026-10-25T01:00:00+00:00")
    assert first.local_start.replace(tzinfo=None) == second.local_start.replace(tzinfo=None)
    assert next_interval(first) == second


@pytest.mark.parametrize(
    ("zone", "day", "counts", "day_start", "hours"),
    [
        (LONDON, date(2026, 3, 29), (92, 46, 23), utc(2026, 3, 29, 0), 23),
        (LONDON, date(2026, 6, 1), (96, 48, 24), utc(2026, 5, 31, 23), 24),
        (LONDON, date(2026, 10, 25), (100, 50, 25), utc(2026, 10, 24, 23), 25),
        (NEW_YORK, date(2026, 3, 8), (92, 46, 23), utc(2026, 3, 8, 5), 23),
        (NEW_YORK, date(2026, 11, 1), (100, 50, 25), utc(2026, 11, 1, 4), 25),
        (KOLKATA, date(2026, 6, 1), (96, 48, 24), datetime(2026, 5, 31, 18, 30, tzinfo=UTC), 24),
        (KATHMANDU, date(2026, 6, 1), (96, 48, 24), datetime(2026, 5, 31, 18, 15, tzinfo=UTC), 24),
        # Santiago switches at local midnight: 2026-09-06 starts at 01:00 -03, 2026-04-04 runs to 24:00 twice
        (SANTIAGO, date(2026, 9, 6), (92, 46, 23), utc(2026, 9, 6, 4), 23),
        (SANTIAGO, date(2026, 4, 4), (100, 50, 25), utc(2026, 4, 4, 3), 25),
    ],
)
def test_intervals_per_local_day(
    zone: ZoneInfo, day: date, counts: tuple[int, int, int], day_start: datetime, hours: int
) -> None:
    assert tuple(len(intervals_of_local_day(day, zone, m)) for m in (15, 30, 60)) == counts
    whole = interval_of(day_start, zone, 1440)
    assert whole.start == day_start
    assert whole.end - whole.start == timedelta(hours=hours)
    assert whole.local_date == day
    assert interval_of(whole.end - timedelta(microseconds=1), zone, 1440) == whole


def test_new_york_dst_days_hand_computed() -> None:
    assert span(interval_of(utc(2026, 3, 8, 6, 59), NEW_YORK, 60)) == (
        utc(2026, 3, 8, 6),
        utc(2026, 3, 8, 7),
        "2026-03-08T01:00:00-05:00",
    )
    assert span(interval_of(utc(2026, 3, 8, 7, 0), NEW_YORK, 60))[2] == "2026-03-08T03:00:00-04:00"
    assert span(interval_of(utc(2026, 11, 1, 5, 45), NEW_YORK, 30)) == (
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        utc(2026, 11, 1, 6),
        "2026-11-01T01:30:00-04:00",
    )
    assert span(interval_of(utc(2026, 11, 1, 6, 45), NEW_YORK, 30))[2] == "2026-11-01T01:30:00-05:00"


def test_half_hour_and_three_quarter_hour_offsets() -> None:
    ts = datetime(2026, 6, 1, 10, 10, tzinfo=UTC)  # 15:40 in Kolkata, 15:55 in Kathmandu
    assert span(interval_of(ts, KOLKATA, 60)) == (
        datetime(2026, 6, 1, 9, 30, tzinfo=UTC),
        datetime(2026, 6, 1, 10, 30, tzinfo=UTC),
        "2026-06-01T15:00:00+05:30",
    )
    assert span(interval_of(ts, KOLKATA, 15))[:2] == (
        utc(2026, 6, 1, 10),
        datetime(2026, 6, 1, 10, 15, tzinfo=UTC),
    )
    assert span(interval_of(ts, KATHMANDU, 60)) == (
        datetime(2026, 6, 1, 9, 15, tzinfo=UTC),
        datetime(2026, 6, 1, 10, 15, tzinfo=UTC),
        "2026-06-01T15:00:00+05:45",
    )
    assert span(interval_of(ts, KATHMANDU, 30))[:2] == (
        datetime(2026, 6, 1, 9, 45, tzinfo=UTC),
        datetime(2026, 6, 1, 10, 15, tzinfo=UTC),
    )
    assert span(interval_of(ts, KATHMANDU, 15))[2] == "2026-06-01T15:45:00+05:45"


def test_lord_howe_half_hour_shift_cuts_the_hour() -> None:
    # 2026-04-05 02:00 +11 -> 01:30 +10:30 at 15:00 UTC; the +10:30 hour 01:00 starts at 14:30 UTC: cut.
    cut = interval_of(datetime(2026, 4, 4, 15, 10, tzinfo=UTC), LORD_HOWE, 60)
    assert span(cut) == (
        utc(2026, 4, 4, 15),
        datetime(2026, 4, 4, 15, 30, tzinfo=UTC),
        "2026-04-05T01:30:00+10:30",
    )
    before = interval_of(datetime(2026, 4, 4, 14, 50, tzinfo=UTC), LORD_HOWE, 60)
    assert span(before) == (utc(2026, 4, 4, 14), utc(2026, 4, 4, 15), "2026-04-05T01:00:00+11:00")
    assert span(next_interval(cut))[2] == "2026-04-05T02:00:00+10:30"
    # 2026-10-04 02:00 +10:30 -> 02:30 +11 at 15:30 UTC; the +11 hour 02:00 starts at 15:00 UTC: cut.
    spring = interval_of(datetime(2026, 10, 3, 15, 45, tzinfo=UTC), LORD_HOWE, 60)
    assert span(spring) == (
        datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
        utc(2026, 10, 3, 16),
        "2026-10-04T02:30:00+11:00",
    )
    assert [len(intervals_of_local_day(date(2026, 4, 5), LORD_HOWE, m)) for m in (15, 30, 60)] == [98, 49, 25]
    assert [len(intervals_of_local_day(date(2026, 10, 4), LORD_HOWE, m)) for m in (15, 30, 60)] == [
        94,
        47,
        24,
    ]
    assert interval_of(cut.start, LORD_HOWE, 1440).duration == timedelta(hours=24, minutes=30)
    assert interval_of(spring.start, LORD_HOWE, 1440).duration == timedelta(hours=23, minutes=30)


def test_transitions_at_non_aligned_wall_times_cut_intervals() -> None:
    # Nepal 1986-01-01: +05:30 -> +05:45 at 18:30 UTC (local 00:00 -> 00:15).
    assert span(interval_of(datetime(1985, 12, 31, 18, 40, tzinfo=UTC), KATHMANDU, 60)) == (
        datetime(1985, 12, 31, 18, 30, tzinfo=UTC),
        datetime(1985, 12, 31, 19, 15, tzinfo=UTC),
        "1986-01-01T00:15:00+05:45",
    )
    assert span(interval_of(datetime(1985, 12, 31, 18, 20, tzinfo=UTC), KATHMANDU, 60))[:2] == (
        datetime(1985, 12, 31, 17, 30, tzinfo=UTC),
        datetime(1985, 12, 31, 18, 30, tzinfo=UTC),
    )
    # Liberia 1972-01-07: -00:44:30 -> +00:00 at 00:44:30 UTC; the quarter 00:30-00:45 is cut to 30 s.
    monrovia = ZoneInfo("Africa/Monrovia")
    assert span(interval_of(datetime(1972, 1, 7, 0, 44, 40, tzinfo=UTC), monrovia, 15)) == (
        datetime(1972, 1, 7, 0, 44, 30, tzinfo=UTC),
        datetime(1972, 1, 7, 0, 45, tzinfo=UTC),
        "1972-01-07T00:44:30+00:00",
    )
    assert interval_of(datetime(1972, 1, 7, 1, tzinfo=UTC), monrovia, 1440).duration == timedelta(
        hours=23, minutes=15, seconds=30
    )


@pytest.mark.parametrize("zone", [LONDON, NEW_YORK, KATHMANDU, LORD_HOWE, SANTIAGO])
@pytest.mark.parametrize("minutes", [60, 1440])
def test_intervals_tile_a_year_on_the_local_grid(zone: ZoneInfo, minutes: int) -> None:
    year = intervals_between(utc(2026, 1, 1), utc(2027, 1, 1), zone, minutes)
    for previous, current in pairwise(year):
        assert previous.end == current.start
    for interval in year:
        assert interval.start < interval.end
        assert interval.local_start == interval.start.astimezone(zone)
        wall = interval.local_start
        on_grid = (wall.hour * 60 + wall.minute) % minutes == 0 and wall.second == 0
        starts_at_transition = (interval.start - timedelta(seconds=1)).astimezone(zone).utcoffset() != (
            wall.utcoffset()
        )
        assert on_grid or starts_at_transition
        probe = interval.start + (interval.end - interval.start) / 2
        assert interval_of(probe, zone, minutes) == interval


def test_memoised_answers_match_fresh_ones_on_cut_quarter_hours() -> None:
    first = [interval_of(datetime(2026, 4, 4, 15, m, tzinfo=UTC), LORD_HOWE, 60) for m in (5, 20, 35)]
    again = [interval_of(datetime(2026, 4, 4, 15, m, tzinfo=UTC), LORD_HOWE, 60) for m in (5, 20, 35)]
    assert first == again
    assert [i.start.minute for i in first] == [0, 0, 30]


def test_any_aware_input_zone_and_microseconds() -> None:
    ts = datetime(2026, 6, 1, 10, 14, 59, 999_999, tzinfo=KOLKATA)  # 04:44:59.999999 UTC
    assert interval_of(ts, LONDON, 15).start == datetime(2026, 6, 1, 4, 30, tzinfo=UTC)


def test_rejects_naive_instants_and_odd_lengths() -> None:
    with pytest.raises(ValueError, match="naive"):
        interval_of(datetime(2026, 6, 1, 10), LONDON, 15)
    with pytest.raises(ValueError, match="divide"):
        interval_of(utc(2026, 6, 1, 10), LONDON, 7)
