import pickle
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from stitchboard.contributions import ContributionKey, Delta
from stitchboard.interval_book import FINAL_VERSION, Flushed, IntervalBook, restated_version
from stitchboard.rows import IntervalRow
from stitchboard.settings import TenantSettings, TimingSettings

METRICS = ("offered", "answered", "resolved")
LONDON = TenantSettings(time_zone="Europe/London")
TIMING = TimingSettings(
    out_of_orderness_seconds=60,
    allowed_lateness_seconds=600,
    idle_advance_seconds=30,
    provisional_every_seconds=1.0,
    restatement_horizon_days=2,
)
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # system time of the first flush


def at(hour: int, minute: int = 0, second: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 6, day, hour, minute, second, tzinfo=UTC)


def delta(metric: str, when: datetime, value: int = 1, reason: str = "queued", queue: str = "sales") -> Delta:
    return Delta("acme", ContributionKey(queue, "voice", metric, when), value, reason)


def book(tenant: TenantSettings = LONDON, timing: TimingSettings = TIMING) -> IntervalBook:
    return IntervalBook("acme", tenant, timing, METRICS)


def by_length(rows: list[IntervalRow]) -> dict[int, IntervalRow]:
    assert len({r.interval_minutes for r in rows}) == len(rows)
    return {r.interval_minutes: r for r in rows}


def tick(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def finalise_day(subject: IntervalBook, now: datetime) -> Flushed:
    """Observe an event late enough that every bucket of 2026-06-01 (London) is final."""
    subject.observe(datetime(2026, 6, 1, 23, 11, tzinfo=UTC), now)  # day ends 23:00 UTC (BST)
    return subject.flush(now)


def test_bucket_assignment_in_local_time() -> None:
    subject = book()
    subject.apply(delta("offered", at(8, 20)))  # 09:20 BST
    rows = by_length(subject.drain(NOW).final)
    assert {m: (r.interval_start, r.interval_end, r.local_start) for m, r in rows.items()} == {
        15: (at(8, 15), at(8, 30), "2026-06-01T09:15:00+01:00"),
        30: (at(8, 0), at(8, 30), "2026-06-01T09:00:00+01:00"),
        60: (at(8, 0), at(9, 0), "2026-06-01T09:00:00+01:00"),
        1440: (datetime(2026, 5, 31, 23, tzinfo=UTC), at(23), "2026-06-01T00:00:00+01:00"),
    }
    assert all(r.local_date == date(2026, 6, 1) and r.time_zone == "Europe/London" for r in rows.values())
    assert all(r.metrics == {"offered": 1, "answered": 0, "resolved": 0} for r in rows.values())
    assert all((r.tenant, r.queue, r.channel) == ("acme", "sales", "voice") for r in rows.values())


def test_kathmandu_hours_start_at_a_quarter_past_utc() -> None:
    subject = book(TenantSettings(time_zone="Asia/Kathmandu"))
    subject.apply(delta("answered", at(10, 10)))  # 15:55 +05:45
    rows = by_length(subject.drain(NOW).final)
    assert (rows[60].interval_start, rows[60].local_start) == (at(9, 15), "2026-06-01T15:00:00+05:45")
    assert rows[1440].interval_start == datetime(2026, 5, 31, 18, 15, tzinfo=UTC)


def test_finalises_exactly_at_end_plus_allowed_lateness() -> None:
    subject = book()
    subject.apply(delta("offered", at(8, 20)))
    subject.observe(at(8, 40, 59), NOW)  # watermark 08:39:59 < 08:30 + 10 min
    early = subject.flush(NOW)
    assert early.final == []
    assert len(early.provisional) == 4
    subject.observe(at(8, 41), tick(1))  # watermark 08:40:00 == 08:30 + 10 min
    on_time = subject.flush(tick(1))
    assert sorted(r.interval_minutes for r in on_time.final) == [15, 30]  # both end at 08:30
    assert all(r.status == "final" and r.version == FINAL_VERSION for r in on_time.final)
    assert on_time.provisional == []
    subject.observe(at(9, 11), tick(2))
    assert [r.interval_minutes for r in subject.flush(tick(2)).final] == [60]


def test_late_delta_restates_each_interval_length_once() -> None:
    subject = book()
    subject.apply(delta("offered", at(8, 20)))
    assert len(finalise_day(subject, NOW).final) == 4
    subject.apply(delta("offered", at(8, 25), reason="late"))
    subject.apply(delta("answered", at(8, 25), reason="answered"))
    out = subject.flush(tick(1))
    assert out.final == [] and out.provisional == []
    assert sorted(r.interval_minutes for r in out.restated) == [15, 30, 60, 1440]
    assert all(r.status == "restated" and r.version == restated_version(1) for r in out.restated)
    assert all(r.metrics == {"offered": 2, "answered": 1, "resolved": 0} for r in out.restated)
    assert len(out.restatements) == 8
    offered = [r for r in out.restatements if r.metric == "offered"]
    assert {(r.published, r.previous, r.corrected, r.delta) for r in offered} == {(1, 1, 2, 1)}
    assert {(r.reason, r.restatement_seq, r.restated_at) for r in out.restatements} == {
        ("answered,late", 1, tick(1))
    }
    assert {r.watermark for r in out.restatements} == {datetime(2026, 6, 1, 23, 10, tzinfo=UTC)}

    subject.apply(delta("offered", at(8, 26), reason="late"))
    second = subject.flush(tick(2))
    assert {
        (r.published, r.previous, r.corrected, r.delta, r.restatement_seq) for r in second.restatements
    } == {(1, 2, 3, 1, 2)}
    assert {r.version for r in second.restated} == {restated_version(2)}


def test_wrapup_change_moving_a_figure_between_hours_restates_both() -> None:
    subject = book()
    subject.apply(delta("resolved", at(8, 20), reason="disconnected"))
    subject.apply(delta("offered", at(9, 20)))  # the target hour was published too
    finalise_day(subject, NOW)
    subject.apply(delta("resolved", at(8, 20), -1, reason="wrapup_set"))
    subject.apply(delta("resolved", at(9, 20), +1, reason="wrapup_set"))
    out = subject.flush(tick(1))
    starts = sorted((r.interval_minutes, r.interval_start, r.metrics["resolved"]) for r in out.restated)
    assert starts == [
        (15, at(8, 15), 0),
        (15, at(9, 15), 1),
        (30, at(8, 0), 0),
        (30, at(9, 0), 1),
        (60, at(8, 0), 0),
        (60, at(9, 0), 1),
    ]  # the daily bucket nets to zero: no restatement
    moved_out = [r for r in out.restatements if r.interval_start == at(8, 0) and r.interval_minutes == 60]
    assert [(r.published, r.previous, r.corrected, r.delta, r.reason) for r in moved_out] == [
        (1, 1, 0, -1, "wrapup_set")
    ]
    moved_in = [r for r in out.restatements if r.interval_start == at(9, 0) and r.interval_minutes == 60]
    assert [(r.published, r.previous, r.corrected, r.delta) for r in moved_in] == [(0, 0, 1, 1)]


def test_a_correction_netting_to_zero_publishes_nothing() -> None:
    subject = book()
    subject.apply(delta("offered", at(8, 20)))
    finalise_day(subject, NOW)
    subject.apply(delta("offered", at(8, 20), -1, reason="wrapup_set"))
    subject.apply(delta("offered", at(8, 21), +1, reason="wrapup_set"))
    out = subject.flush(tick(1))
    assert (out.restated, out.restatements) == ([], [])
    subject.apply(delta("offered", at(8, 22), reason="late"))
    later = subject.flush(tick(2))
    assert {r.restatement_seq for r in later.restatements} == {1}
    assert {r.reason for r in later.restatements} == {"late"}


def test_versions_strictly_increase_per_bucket_and_are_reproducible() -> None:
    def script(subject: IntervalBook) -> list[Flushed]:
        out = []
        subject.apply(delta("offered", at(8, 20)))
        out.append(subject.flush(NOW))
        subject.apply(delta("answered", at(8, 21)))
        out.append(subject.flush(tick(1)))
        out.append(finalise_day(subject, tick(2)))
        for n in range(2):
            subject.apply(delta("offered", at(8, 22), reason="late"))
            out.append(subject.flush(tick(3 + n)))
        return out

    first, second = script(book()), script(book())
    assert first == second
    versions: dict[tuple[int, datetime], list[tuple[str, int]]] = {}
    for flushed in first:
        for row in flushed.interval_rows:
            versions.setdefault((row.interval_minutes, row.interval_start), []).append(
                (row.status, row.version)
            )
    assert versions[(15, at(8, 15))] == [
        ("provisional", 1),
        ("provisional", 2),
        ("final", FINAL_VERSION),
        ("restated", restated_version(1)),
        ("restated", restated_version(2)),
    ]
    for history in versions.values():
        assert [v for _, v in history] == sorted({v for _, v in history})


def test_provisional_rows_only_for_dirty_buckets_and_throttled() -> None:
    subject = book()
    subject.apply(delta("offered", at(8, 20)))
    subject.apply(delta("offered", at(10, 5)))
    assert len(subject.flush(NOW).provisional) == 7  # 2 x (15, 30, 60) + the shared day
    subject.apply(delta("answered", at(10, 6)))
    assert subject.flush(tick(0.5)).provisional == []  # within provisional_every_seconds
    rows = subject.flush(tick(1)).provisional
    assert sorted((r.interval_minutes, r.interval_start) for r in rows) == [
        (15, at(10, 0)),
        (30, at(10, 0)),
        (60, at(10, 0)),
        (1440, datetime(2026, 5, 31, 23, tzinfo=UTC)),
    ]
    assert {r.metrics["answered"] for r in rows} == {1}
    assert subject.flush(tick(5)).provisional == []


def test_end_of_input_publishes_every_pending_provisional_change() -> None:
    subject = book()
    subject.apply(delta("offered", at(8, 20)))
    assert len(subject.flush(NOW).provisional) == 4
    subject.apply(delta("answered", at(8, 21)))
    assert subject.flush(tick(0.1)).provisional == []  # throttled
    rows = subject.flush(tick(0.2), all_provisional=True).provisional
    assert len(rows) == 4
    assert {r.metrics["answered"] for r in rows} == {1}


def test_idle_tenant_still_finalises() -> None:
    subject = book()
    subject.apply(delta("offered", at(8, 20)))
    subject.observe(at(8, 29), NOW)  # watermark 08:28; nothing else arrives
    assert subject.flush(tick(600)).final == []  # idle: 08:28 + 10 min = 08:38 < 08:40
    out = subject.flush(tick(720))  # 08:28 + 12 min = 08:40
    assert sorted(r.interval_minutes for r in out.final) == [15, 30]
    assert subject.watermark == at(8, 40)


def test_data_for_an_interval_nobody_saw_is_published_final_at_once() -> None:
    subject = book()
    finalise_day(subject, NOW)
    subject.apply(delta("offered", at(6, 5), reason="late"))
    out = subject.flush(tick(1))
    assert sorted(r.interval_minutes for r in out.final) == [15, 30, 60, 1440]
    assert (out.provisional, out.restated, out.restatements) == ([], [], [])


def test_buckets_netting_to_zero_are_published_final_whatever_went_out_provisionally() -> None:
    """Finalisation must not depend on system-time throttling: every touched bucket is final, zeros too."""
    subject = book()
    subject.apply(delta("offered", at(8, 20)))
    subject.apply(delta("offered", at(8, 20), -1))
    assert subject.flush(NOW).provisional == []  # nothing to show a wallboard yet
    subject.apply(delta("answered", at(9, 20)))
    assert len(subject.flush(tick(1)).provisional) == 4
    subject.apply(delta("answered", at(9, 20), -1))
    final = finalise_day(subject, tick(2)).final
    assert sorted(r.interval_start for r in final if r.interval_minutes == 15) == [at(8, 15), at(9, 15)]
    assert all(set(r.metrics.values()) == {0} for r in final)
    assert len(final) == 7  # 2 x (15, 30, 60) + the shared day


def test_deltas_beyond_the_horizon_are_dropped_and_surfaced() -> None:
    subject = book()
    subject.observe(at(12, day=4), NOW)  # watermark 11:59 on the 4th; horizon 2 days
    old = delta("offered", at(11, 58, day=2), reason="late")
    subject.apply(old)
    subject.apply(delta("offered", at(12, 0, day=2), reason="late"))
    out = subject.flush(tick(1))
    assert out.dropped == [old]
    assert subject.dropped_beyond_horizon == 1
    assert sorted(r.interval_start for r in out.final if r.interval_minutes == 15) == [at(12, day=2)]
    assert subject.flush(tick(2)).dropped == []


def test_state_stays_bounded_by_the_restatement_horizon() -> None:
    subject = book()
    sizes = []
    for hour in range(10 * 24):
        when = at(0) + timedelta(hours=hour)
        for minute in (5, 20, 35, 50):
            subject.apply(delta("offered", when + timedelta(minutes=minute)))
        subject.observe(when + timedelta(minutes=59), tick(hour))
        subject.flush(tick(hour))
        sizes.append(subject.bucket_count)
    per_day = 96 + 48 + 24 + 1
    assert max(sizes) <= 3 * per_day + 10  # the horizon (2 days), the open day, the open quarters
    assert sizes[-1] == sizes[-25]  # steady state: a day evicted per day added
    cutoff = subject.watermark - timedelta(days=2)
    assert all(row[4] > cutoff for row in subject.snapshot()["buckets"])


def test_eviction_keeps_a_bucket_until_its_pending_correction_is_published() -> None:
    subject = book()
    subject.apply(delta("offered", at(8, 20)))
    finalise_day(subject, NOW)
    subject.apply(delta("offered", at(8, 20), reason="late"))
    subject.observe(at(9, 5, day=3), tick(1))  # the 08:00 hour now ended more than 2 days ago
    assert subject.evict() == 0  # the quarter, half-hour and hour wait for their correction
    assert subject.bucket_count == 4
    out = subject.flush(tick(2))
    assert sorted(r.interval_minutes for r in out.restated) == [15, 30, 60, 1440]
    assert subject.bucket_count == 1  # only the day (ends 23:00 on the 1st) is inside the horizon


def test_drain_finalises_everything_open() -> None:
    subject = book()
    subject.apply(delta("offered", at(8, 20)))
    subject.apply(delta("offered", at(22, 50)))
    subject.observe(at(9, 0), NOW)
    out = subject.drain(tick(1))
    assert sorted((r.interval_minutes, r.interval_start) for r in out.final) == [
        (15, at(8, 15)),
        (15, at(22, 45)),
        (30, at(8, 0)),
        (30, at(22, 30)),
        (60, at(8, 0)),
        (60, at(22, 0)),
        (1440, datetime(2026, 5, 31, 23, tzinfo=UTC)),
    ]
    assert subject.open_bucket_count == 0
    assert subject.drain(tick(2)) == Flushed()


Step = Callable[[IntervalBook], Flushed | None]

SCRIPT: list[Step] = [
    lambda b: b.apply(delta("offered", at(8, 20))),
    lambda b: b.flush(NOW),
    lambda b: b.apply(delta("answered", at(8, 40), queue="billing")),
    lambda b: b.observe(at(8, 45), tick(1)),
    lambda b: b.flush(tick(1)),
    lambda b: b.observe(at(8, 41), tick(5)),
    lambda b: b.apply(delta("offered", at(8, 10), reason="late")),
    lambda b: b.apply(delta("offered", at(2, 0, day=1), -1, reason="late")),
    lambda b: b.observe(at(12, day=4), tick(6)),
    lambda b: b.apply(delta("offered", at(1, 0, day=1), reason="late")),
    lambda b: b.flush(tick(7)),
    lambda b: b.apply(delta("resolved", at(9, 0, day=3), reason="wrapup_set")),
    lambda b: b.flush(tick(60)),
    lambda b: b.apply(delta("resolved", at(9, 0, day=3), reason="wrapup_set")),
    lambda b: b.flush(tick(120)),
    lambda b: b.drain(tick(121)),
]


@pytest.mark.parametrize("split", [1, 3, 7, 11, 13])
def test_restored_book_behaves_identically(split: int) -> None:
    straight, resumed = book(), book()
    straight_out = [step(straight) for step in SCRIPT]
    resumed_out = [step(resumed) for step in SCRIPT[:split]]
    state = pickle.loads(pickle.dumps(resumed.snapshot()))
    resumed = IntervalBook.restore("acme", LONDON, TIMING, METRICS, state)
    resumed_out += [step(resumed) for step in SCRIPT[split:]]
    assert resumed_out == straight_out
    assert resumed.snapshot() == straight.snapshot()
    assert any(isinstance(o, Flushed) and o.restatements for o in straight_out)


def test_restore_realigns_figures_when_the_catalogue_changes() -> None:
    subject = book()
    subject.apply(delta("answered", at(8, 20)))
    grown = ("answered", "transferred_out", "offered", "resolved")
    restored = IntervalBook.restore("acme", LONDON, TIMING, grown, subject.snapshot())
    row = restored.drain(NOW).final[0]
    assert row.metrics == {"answered": 1, "transferred_out": 0, "offered": 0, "resolved": 0}


def test_rejects_foreign_tenants_and_unknown_metrics() -> None:
    subject = book()
    with pytest.raises(ValueError, match="tenant"):
        subject.apply(Delta("other", ContributionKey("q", "voice", "offered", at(8)), 1, "queued"))
    with pytest.raises(ValueError, match="unknown metric"):
        subject.apply(delta("talk_ms", at(8)))
