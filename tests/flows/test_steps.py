"""Bytewax hosting of the stitcher: a shard per batch, and forgetting conversations after retention."""

from __future__ import annotations

from bytewax.operators import StatefulLogic
from support.events import chat_event as event

from stitchboard.deliveries import Delivery
from stitchboard.events import CanonicalEvent, EventType
from stitchboard.flows.steps import STITCH_STATE, IntervalStep, StitchedBatch, StitchStep
from stitchboard.rows import IntervalRow
from stitchboard.settings import Settings, TimingSettings


def step(retention: int, stale: int) -> StitchStep:
    timing = TimingSettings(conversation_retention_seconds=retention, stale_conversation_seconds=stale)
    return StitchStep(Settings(timing=timing), None)


def delivered(arrival: int, *events: CanonicalEvent) -> tuple[int, Delivery]:
    return arrival, Delivery("acme", "c1", events)


def one(out: list[StitchedBatch]) -> StitchedBatch:
    [batch] = out
    return batch


def test_each_delivery_feeds_the_tenant_book_with_its_arrival_number() -> None:
    subject = step(3600, 86400)
    out, keep = subject.on_batch([delivered(7, event(EventType.QUEUED, 0, queue="sales"))])
    feeds = one(out).feeds
    assert keep is StatefulLogic.RETAIN
    assert [(f.arrival, f.tenant) for f in feeds] == [(7, "acme")]
    assert {d.key.metric for d in feeds[0].deltas} == {"offered", "contacts"}
    duplicate, _ = subject.on_batch([delivered(8, event(EventType.QUEUED, 0, queue="sales"))])
    assert [(f.arrival, f.deltas) for f in one(duplicate).feeds] == [(8, [])]
    assert one(duplicate).rows == []


def test_a_batch_publishes_one_row_per_changed_conversation_and_a_feed_per_delivery() -> None:
    out, _ = StitchStep(Settings(), None).on_batch(
        [
            delivered(40, event(EventType.QUEUED, 0, queue="sales")),
            delivered(41, event(EventType.ANSWERED, 20, queue="sales", agent="ann")),
            delivered(42, event(EventType.QUEUED, 0, queue="sales")),  # a duplicate: a feed without deltas
            delivered(43, event(EventType.DISCONNECTED, 300)),
        ]
    )
    batch = one(out)
    assert [feed.arrival for feed in batch.feeds] == [40, 41, 42, 43]
    assert batch.feeds[2].deltas == [] and all(feed.deltas for feed in batch.feeds[:2])
    assert [(row.version, row.status, row.answered) for row in batch.rows] == [(3, "ended", True)]


def test_an_ended_conversation_is_discarded_after_its_retention() -> None:
    subject = step(0, 86400)
    subject.on_batch(
        [
            delivered(0, event(EventType.QUEUED, 0, queue="sales")),
            delivered(1, event(EventType.ABANDONED, 30, queue="sales"), event(EventType.DISCONNECTED, 30)),
        ]
    )
    assert subject.notify_at() is not None
    assert subject.on_notify() == ([], StatefulLogic.DISCARD)


def test_an_open_conversation_is_kept_until_it_goes_stale() -> None:
    kept = step(0, 86400)
    kept.on_batch([delivered(0, event(EventType.QUEUED, 0, queue="sales"))])
    assert kept.on_notify() == ([], StatefulLogic.RETAIN)
    assert len(STITCH_STATE.unwrap(kept.snapshot())) == 1
    stale = step(0, 0)
    stale.on_batch([delivered(0, event(EventType.QUEUED, 0, queue="sales"))])
    assert stale.on_notify() == ([], StatefulLogic.DISCARD)


def test_the_interval_step_applies_feeds_in_arrival_order_across_batches() -> None:
    settings = Settings(timing=TimingSettings(interval_minutes=(15,)))
    out, _ = StitchStep(settings, None).on_batch(
        [
            delivered(0, event(EventType.QUEUED, 0, queue="sales")),
            delivered(1, event(EventType.ANSWERED, 20, queue="sales", agent="ann")),
            delivered(2, event(EventType.QUEUED, 0, queue="sales")),
            delivered(3, event(EventType.DISCONNECTED, 300)),
        ]
    )
    feeds = one(out).feeds
    book = IntervalStep(settings, None, drain_at_eof=True)
    first, _ = book.on_batch([[feeds[3], feeds[1]], [feeds[0]]])
    rest, _ = book.on_batch([[feeds[2]]])
    assert [row.status for rows in first + rest for row in rows if isinstance(row, IntervalRow)] == [
        "provisional"
    ]
    drained, _ = book.on_eof()
    final = [row for rows in drained for row in rows if isinstance(row, IntervalRow)]
    assert [(row.status, row.metrics["offered"], row.metrics["answered"]) for row in final] == [
        ("final", 1, 1)
    ]
