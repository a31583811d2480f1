"""Bytewax hosting of the stitcher: ended conversations are forgotten after their retention."""

from __future__ import annotations

from bytewax.operators import StatefulLogic
from support.events import chat_event as event

from flows.steps import StitchStep, TenantFeed
from stitchboard.events import EventType
from stitchboard.settings import Settings, TimingSettings


def step(retention: int, stale: int) -> StitchStep:
    timing = TimingSettings(conversation_retention_seconds=retention, stale_conversation_seconds=stale)
    return StitchStep(Settings(timing=timing), None)


def test_every_event_feeds_the_tenant_book_with_its_arrival_number() -> None:
    subject = step(3600, 86400)
    out, keep = subject.on_item((7, event(EventType.QUEUED, 0, queue="sales")))
    feeds = [item for item in out if isinstance(item, TenantFeed)]
    assert keep is StatefulLogic.RETAIN
    assert [(f.arrival, f.tenant) for f in feeds] == [(7, "acme")]
    assert {d.key.metric for d in feeds[0].deltas} == {"offered", "contacts"}
    duplicate, _ = subject.on_item((8, event(EventType.QUEUED, 0, queue="sales")))
    assert [(f.arrival, f.deltas) for f in duplicate if isinstance(f, TenantFeed)] == [(8, [])]


def test_an_ended_conversation_is_discarded_after_its_retention() -> None:
    subject = step(0, 86400)
    subject.on_item((0, event(EventType.QUEUED, 0, queue="sales")))
    subject.on_item((1, event(EventType.ABANDONED, 30, queue="sales")))
    subject.on_item((2, event(EventType.DISCONNECTED, 30)))
    assert subject.notify_at() is not None
    assert subject.on_notify() == ([], StatefulLogic.DISCARD)


def test_an_open_conversation_is_kept_until_it_goes_stale() -> None:
    kept = step(0, 86400)
    kept.on_item((0, event(EventType.QUEUED, 0, queue="sales")))
    assert kept.on_notify() == ([], StatefulLogic.RETAIN)
    stale = step(0, 0)
    stale.on_item((0, event(EventType.QUEUED, 0, queue="sales")))
    assert stale.on_notify() == ([], StatefulLogic.DISCARD)
