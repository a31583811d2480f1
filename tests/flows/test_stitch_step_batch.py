"""Batches in the stitch and interval steps: a feed per event, one conversation row per batch."""

from __future__ import annotations

from support.events import chat_event as event

from flows.steps import IntervalStep, StitchStep, TenantFeed
from stitchboard.events import CanonicalEvent, EventType
from stitchboard.rows import ConversationRow, IntervalRow
from stitchboard.settings import Settings, TimingSettings


def call() -> list[CanonicalEvent]:
    return [
        event(EventType.QUEUED, 0, queue="sales"),
        event(EventType.ANSWERED, 20, queue="sales", agent="ann"),
        event(EventType.QUEUED, 0, queue="sales"),  # a duplicate: a feed without deltas
        event(EventType.DISCONNECTED, 300),
    ]


def test_a_batch_feeds_every_event_and_publishes_only_its_last_row() -> None:
    out, _ = StitchStep(Settings(), None).on_batch(list(enumerate(call(), start=40)))
    feeds = [item for item in out if isinstance(item, TenantFeed)]
    rows = [item for item in out if isinstance(item, ConversationRow)]
    assert [feed.arrival for feed in feeds] == [40, 41, 42, 43]
    assert feeds[2].deltas == [] and all(feed.deltas for feed in feeds[:2])
    assert [(row.version, row.status, row.answered) for row in rows] == [(3, "ended", True)]


def test_event_by_event_and_in_one_batch_feed_the_book_the_same_deltas() -> None:
    single = StitchStep(Settings(), None)
    one_by_one = [item for pair in enumerate(call()) for item in single.on_item(pair)[0]]
    batched, _ = StitchStep(Settings(), None).on_batch(list(enumerate(call())))

    def feeds(items: list[object]) -> list[tuple[int, object]]:
        return [(item.arrival, item.deltas) for item in items if isinstance(item, TenantFeed)]

    assert feeds(one_by_one) == feeds(batched)
    assert sum(isinstance(item, ConversationRow) for item in one_by_one) == 3


def test_the_interval_step_applies_feeds_in_arrival_order_within_a_batch() -> None:
    settings = Settings(timing=TimingSettings(interval_minutes=(15,)))
    feeds, _ = StitchStep(settings, None).on_batch(list(enumerate(call())))
    ordered = [item for item in feeds if isinstance(item, TenantFeed)]
    step = IntervalStep(settings, None, drain_at_eof=True)
    out, _ = step.on_batch([ordered[3], ordered[1], ordered[0], ordered[2]])
    assert [row.status for rows in out for row in rows if isinstance(row, IntervalRow)] == ["provisional"]
    drained, _ = step.on_eof()
    final = [row for rows in drained for row in rows if isinstance(row, IntervalRow)]
    assert [(row.status, row.metrics["offered"], row.metrics["answered"]) for row in final] == [
        ("final", 1, 1)
    ]
