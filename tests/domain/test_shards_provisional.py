"""Shards and live-stream events: a conversation awaiting its record is kept; stale stream leftovers
never open a new contact (what a re-delivered record still does after eviction, see below)."""

from __future__ import annotations

from support.events import event

from stitchboard.deliveries import Delivery
from stitchboard.events import CanonicalEvent, EventType
from stitchboard.settings import TenantSettings
from stitchboard.shards import ConversationShard
from stitchboard.stitching.store import AddResult

TENANT = TenantSettings()
E = EventType
RETENTION, STALE = 3600.0, 7 * 86400.0


def live(item: CanonicalEvent) -> CanonicalEvent:
    return item.model_copy(update={"provisional": True, "scope": "c1", "event_id": "live:" + item.event_id})


def complete(item: CanonicalEvent) -> CanonicalEvent:
    return item.model_copy(update={"scope": "c1"})


def streamed_call(received: float | None = None) -> Delivery:
    events = [
        live(event(E.QUEUED, 5, leg="l1", queue="sales", received=received)),
        live(event(E.ANSWERED, 25, leg="l1", queue="sales", agent="ann", received=received)),
        live(event(E.DISCONNECTED, 300, received=received)),
    ]
    return Delivery("acme", "c1", tuple(events))


def recorded_call() -> Delivery:
    events = [
        complete(event(E.QUEUED, 5, leg="l1", queue="sales")),
        complete(event(E.ANSWERED, 25, leg="l1", queue="sales", agent="ann")),
        complete(event(E.DISCONNECTED, 300, leg="l1", queue="sales", agent="ann")),
    ]
    return Delivery("acme", "c1", tuple(events))


def test_an_ended_conversation_awaiting_its_record_is_kept_until_the_stale_period() -> None:
    shard = ConversationShard(RETENTION, STALE)
    shard.apply([(1, streamed_call())], TENANT, now=0.0)
    state = shard.get("c1")
    assert state is not None and state.ended and state.awaiting_record
    assert shard.evict(RETENTION + 1) == 0 and shard.get("c1") is state  # kept: its record is due
    late_record = shard.apply([(2, recorded_call())], TENANT, now=RETENTION + 2)
    assert late_record.results[AddResult.APPLIED] == 3 and not state.awaiting_record
    assert (
        sum(d.value for d in late_record.feeds[0].deltas if d.key.metric == "offered") == 0
    )  # replaced, not added
    assert shard.evict(2 * RETENTION + 3) == 1 and shard.get("c1") is None  # complete: the usual retention


def test_a_conversation_never_completed_is_forgotten_after_the_stale_period() -> None:
    shard = ConversationShard(RETENTION, STALE)
    shard.apply([(1, streamed_call())], TENANT, now=0.0)
    shard.evict(RETENTION + 1)
    assert shard.evict(STALE + 1) == 1 and len(shard) == 0


def test_a_stream_leftover_received_after_the_retention_does_not_open_a_contact() -> None:
    """A live event received more than the retention after it happened may belong to a conversation
    already completed and forgotten: it is superseded, with an empty feed (arrival order is kept)."""
    shard = ConversationShard(RETENTION, STALE)
    leftover = streamed_call(received=300 + RETENTION + 1)
    out = shard.apply([(7, leftover)], TENANT, now=0.0)
    assert out.results == {AddResult.SUPERSEDED: 3}
    assert [(feed.arrival, feed.deltas) for feed in out.feeds] == [(7, [])]
    assert len(shard) == 0 and out.conversations == {}
    on_time = shard.apply([(8, streamed_call(received=301))], TENANT, now=0.0)
    assert on_time.results[AddResult.APPLIED] == 3 and shard.get("c1") is not None


def test_a_stream_leftover_for_a_known_conversation_is_judged_by_the_stitcher() -> None:
    shard = ConversationShard(RETENTION, STALE)
    shard.apply([(1, recorded_call())], TENANT, now=0.0)
    out = shard.apply([(2, streamed_call(received=300 + RETENTION + 1))], TENANT, now=10.0)
    assert out.results == {AddResult.SUPERSEDED: 3} and out.feeds[0].deltas == []


def test_a_record_redelivered_after_eviction_still_opens_a_new_conversation() -> None:
    """Today's behaviour for records, documented rather than changed here: a complete record that
    arrives after its conversation was forgotten is stitched as a new conversation (the retention
    after the last delivery must cover re-deliveries). Stream events are no worse (test above)."""
    shard = ConversationShard(RETENTION, STALE)
    shard.apply([(1, recorded_call())], TENANT, now=0.0)
    assert shard.evict(RETENTION + 1) == 1
    again = shard.apply([(2, recorded_call())], TENANT, now=RETENTION + 2)
    assert again.results[AddResult.APPLIED] == 3
    assert sum(d.value for d in again.feeds[0].deltas if d.key.metric == "offered") == 1
