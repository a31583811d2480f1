"""Conversation shards: grouping a record's events, stable shard keys, and retention on system time."""

from __future__ import annotations

import pickle
import zlib
from collections import Counter

import pytest
from support.events import event

from stitchboard import shards as shards_module
from stitchboard.contributions import ContributionKey
from stitchboard.deliveries import Delivery, deliveries
from stitchboard.events import EventType
from stitchboard.settings import TenantSettings
from stitchboard.shards import ConversationShard, shard_of
from stitchboard.stitching.stitch import stitch, stitch_group
from stitchboard.stitching.store import AddResult, ConversationState

TENANT = TenantSettings()


def call(conversation: str = "c1") -> tuple:
    return (
        event(EventType.ARRIVED, 0, conversation=conversation),
        event(EventType.QUEUED, 5, conversation=conversation, leg="l1", queue="sales"),
        event(EventType.ANSWERED, 25, conversation=conversation, leg="l1", queue="sales", agent="ann"),
        event(EventType.DISCONNECTED, 300, conversation=conversation, leg="l1"),
    )


def test_a_record_is_grouped_by_conversation_in_order_of_first_appearance() -> None:
    a, b = call("a"), call("b")
    grouped = deliveries([b[0], a[0], b[1], a[1]])
    assert [(d.conversation_id, [e.event_type for e in d.events]) for d in grouped] == [
        ("b", [EventType.ARRIVED, EventType.QUEUED]),
        ("a", [EventType.ARRIVED, EventType.QUEUED]),
    ]


def test_agent_presence_is_not_a_delivery() -> None:
    presence = event(EventType.AGENT_STATE_CHANGED, 0, agent="ann", state="available")
    with pytest.raises(ValueError, match="belongs to no conversation"):
        deliveries([presence])


def test_the_shard_of_a_conversation_is_stable_across_processes() -> None:
    assert shard_of("conversation-42", 16) == zlib.crc32(b"conversation-42") % 16
    assert {shard_of(f"c{n}", 16) for n in range(200)} == set(range(16))


def test_a_group_nets_the_same_deltas_and_summary_as_its_events_one_by_one() -> None:
    grouped = stitch_group(None, call(), TENANT)
    state: ConversationState | None = None
    net: Counter[ContributionKey] = Counter()
    for one in call():
        outcome = stitch(state, one, TENANT)
        state = outcome.state
        for delta in outcome.deltas:
            net[delta.key] += delta.value
    assert {d.key: d.value for d in grouped.deltas} == {key: value for key, value in net.items() if value}
    assert grouped.conversation is not None and state is not None
    assert grouped.conversation == state.conversation()
    assert {d.reason for d in grouped.deltas} == {"answered,arrived,disconnected,queued"}
    assert grouped.results == [AddResult.APPLIED] * 4


def test_a_group_reports_each_event_and_applies_nothing_twice() -> None:
    first = stitch_group(None, call(), TENANT)
    again = stitch_group(first.state, call(), TENANT)
    assert again.results == [AddResult.DUPLICATE] * 4
    assert again.deltas == [] and again.conversation is None


def test_the_shard_feeds_every_delivery_in_the_order_given() -> None:
    shard = ConversationShard(retention_seconds=60, stale_seconds=3600)
    out = shard.apply(
        [(3, Delivery("acme", "a", call("a"))), (4, Delivery("acme", "b", call("b")[:2]))], TENANT, now=0.0
    )
    assert [(feed.arrival, feed.earliest, feed.latest) for feed in out.feeds] == [
        (3, call()[0].event_time, call()[3].event_time),
        (4, call()[0].event_time, call()[1].event_time),
    ]
    assert sorted(out.conversations) == ["a", "b"] and out.results[AddResult.APPLIED] == 6
    assert len(shard) == 2


def test_ended_conversations_go_after_retention_and_open_ones_only_when_stale() -> None:
    shard = ConversationShard(retention_seconds=60, stale_seconds=600)
    shard.apply([(0, Delivery("acme", "ended", call("ended")))], TENANT, now=0.0)
    shard.apply([(1, Delivery("acme", "open", call("open")[:2]))], TENANT, now=10.0)
    assert shard.next_eviction() == 60.0
    assert shard.evict(59.0) == 0 and len(shard) == 2
    assert shard.evict(70.0) == 1 and shard.get("ended") is None and shard.get("open") is not None
    assert shard.next_eviction() == 610.0
    shard.apply([(2, Delivery("acme", "open", call("open")[2:3]))], TENANT, now=500.0)  # news: active again
    assert shard.next_eviction() == 560.0  # the delivery's retention, not the stale period's end
    assert shard.evict(610.0) == 0
    assert shard.evict(1100.0) == 1 and len(shard) == 0 and shard.next_eviction() is None


def test_a_quiet_open_conversation_that_ends_is_forgotten_after_the_retention() -> None:
    shard = ConversationShard(retention_seconds=1, stale_seconds=600)
    shard.apply([(0, Delivery("acme", "c1", call()[:2]))], TENANT, now=0.0)
    assert shard.evict(5.0) == 0  # open: kept, quiet
    shard.apply([(1, Delivery("acme", "c1", call()[2:]))], TENANT, now=10.0)  # it ends
    due = shard.next_eviction()
    assert due == 11.0
    assert shard.evict(due) == 1 and len(shard) == 0


def test_a_restored_shard_keeps_its_conversations_and_their_retention() -> None:
    shard = ConversationShard(retention_seconds=60, stale_seconds=600)
    shard.apply([(0, Delivery("acme", "a", call("a")[:2]))], TENANT, now=100.0)
    restored = pickle.loads(pickle.dumps(shard))
    assert restored.next_eviction() == 160.0
    again = restored.apply([(1, Delivery("acme", "a", call("a")))], TENANT, now=120.0)
    assert again.results == Counter({AddResult.DUPLICATE: 2, AddResult.APPLIED: 2})
    assert again.conversations["a"].ended


def test_a_delivery_the_stitcher_fails_on_is_dead_lettered_and_its_conversation_kept_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #13 deliver 1: the failure comes after the events were added; the state before them
    comes back, the record is dead-lettered with its bytes and its feed moves nothing."""
    events = call()
    shard = ConversationShard(3600, 86400)
    shard.apply([(0, Delivery("acme", "c1", events[:2], b"first", "raw/0/1"))], TENANT, now=0.0)
    real = shards_module.stitch_group

    def failing(*args: object, **kwargs: object) -> object:
        real(*args, **kwargs)  # type: ignore[arg-type]
        raise RuntimeError("boom")

    monkeypatch.setattr(shards_module, "stitch_group", failing)
    out = shard.apply([(1, Delivery("acme", "c1", events[2:], b"second", "raw/0/2"))], TENANT, now=5.0)
    [letter] = out.dead_letters
    assert (letter.reason, letter.raw, letter.origin, letter.part) == (
        "internal_error",
        b"second",
        "raw/0/2",
        "stitch conversation c1",
    )
    assert letter.detail == "stitch: RuntimeError: boom"
    [feed] = out.feeds
    assert (feed.arrival, feed.earliest, feed.latest, feed.deltas) == (1, None, None, [])
    assert out.conversations == {}
    state = shard.get("c1")
    assert state is not None and len(state) == 2 and state.touched_at == 5.0  # its events as before
    monkeypatch.setattr(shards_module, "stitch_group", real)
    again = shard.apply([(2, Delivery("acme", "c1", events[2:], b"second", "raw/0/3"))], TENANT, now=6.0)
    assert again.dead_letters == [] and again.feeds[0].deltas  # the same record, re-sent, applies
