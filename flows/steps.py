"""Bytewax hosting of Stitchboard's pure rules: small mapper functions and two stateful steps.

Everything decided here is about *when* to call the rules (system time, end of input, eviction);
*what* they decide lives in ``stitchboard.stitching`` and ``stitchboard.finalisation``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulBatchLogic

from flows.sources import RawRecord
from stitchboard import adapters, telemetry
from stitchboard.contributions import Delta
from stitchboard.deadletters import DeadLetter
from stitchboard.events import CanonicalEvent, EventType
from stitchboard.finalisation import Flushed, IntervalBook
from stitchboard.metrics import METRIC_NAMES
from stitchboard.ordering import ArrivalOrder, ReorderState
from stitchboard.rows import AgentStateRow
from stitchboard.settings import Settings
from stitchboard.stitching import AddResult, Conversation, ConversationState, stitch, to_row

SINK_KEY = "clickhouse"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TenantFeed:
    """What the interval book of one tenant needs from one stitched event, with its arrival number."""

    tenant: str
    arrival: int
    event_time: datetime
    deltas: list[Delta]


Numbered = tuple[int, CanonicalEvent]


def normalise(record: RawRecord | DeadLetter) -> list[CanonicalEvent] | DeadLetter:
    """Adapt one raw record, counting it as accepted or dead-lettered (never both, never neither)."""
    result = (
        record
        if isinstance(record, DeadLetter)
        else adapters.normalise(record.value, record.origin, record.received_at)
    )
    telemetry.RECORDS_IN.labels("raw").inc()
    if isinstance(result, DeadLetter):
        telemetry.RECORDS_DEAD_LETTERED.labels(result.reason).inc()
    else:
        telemetry.RECORDS_ACCEPTED.inc()
    return result


def is_event_batch(item: object) -> bool:
    return isinstance(item, list)


def is_agent_state(event: CanonicalEvent) -> bool:
    return event.event_type is EventType.AGENT_STATE_CHANGED


def agent_state_row(event: CanonicalEvent) -> AgentStateRow:
    return AgentStateRow(
        tenant=event.tenant,
        agent=event.agent or "",
        state=str(event.attributes.get("state", "")),
        at=event.event_time,
        event_id=event.event_id,
    )


def event_tenant(event: CanonicalEvent) -> str:
    return event.tenant


def number(next_arrival: int | None, event: CanonicalEvent) -> tuple[int, Numbered]:
    """Give each of a tenant's events its arrival number (see ``stitchboard.ordering``)."""
    arrival = next_arrival or 0
    return arrival + 1, (arrival, event)


def numbered_conversation_key(item: Numbered) -> str:
    event = item[1]
    return f"{event.tenant}\x1f{event.conversation_id}"


def is_tenant_feed(item: object) -> bool:
    return isinstance(item, TenantFeed)


def is_dead_letter(item: object) -> bool:
    return isinstance(item, DeadLetter)


def feed_tenant(feed: TenantFeed) -> str:
    return feed.tenant


def sink_key(_row: object) -> str:
    return SINK_KEY


@functools.cache
def _retention(retention_seconds: int, stale_seconds: int) -> tuple[timedelta, timedelta]:
    return timedelta(seconds=retention_seconds), timedelta(seconds=stale_seconds)


class StitchStep(StatefulBatchLogic[Numbered, Any, ConversationState]):
    """One conversation: stitch each event; forget the conversation once it has been quiet.

    Every event feeds the tenant book (with its arrival number), but a batch of the conversation's
    events publishes one conversation row, the last: rows replace each other by version.

    Retention runs on system time, so late mutations (wrap-up changes, QA scores) within
    ``conversation_retention_seconds`` of the last event still find the conversation.

    There is one instance per open conversation, so it is slotted and shares its durations.
    """

    __slots__ = ("_evict_at", "_retention", "_settings", "_stale_after", "_stale_at", "_state")

    def __init__(self, settings: Settings, resume: ConversationState | None) -> None:
        self._settings = settings
        self._state = resume
        self._retention, self._stale_after = _retention(
            settings.timing.conversation_retention_seconds, settings.timing.stale_conversation_seconds
        )
        self._evict_at: datetime | None = None
        self._stale_at = _now() + self._stale_after

    def on_item(self, value: Numbered) -> tuple[list[Any], bool]:
        """A batch of one event."""
        return self.on_batch([value])

    def on_batch(self, values: list[Numbered]) -> tuple[list[Any], bool]:
        now = _now()
        tenant = self._settings.tenant(values[0][1].tenant)
        out: list[Any] = []
        outcomes: dict[AddResult, int] = {}
        conversation: Conversation | None = None
        for arrival, event in values:
            outcome = stitch(self._state, event, tenant, now, with_row=False)
            self._state = outcome.state
            outcomes[outcome.result] = outcomes.get(outcome.result, 0) + 1
            out.append(TenantFeed(event.tenant, arrival, event.event_time, outcome.deltas))
            if outcome.dead_letter is not None:
                telemetry.DEAD_LETTERS_AFTER_ACCEPTANCE.labels(outcome.dead_letter.reason).inc()
                out.append(outcome.dead_letter)
            if outcome.conversation is not None:
                conversation = outcome.conversation
        for result, count in outcomes.items():
            telemetry.EVENTS.labels(result.value).inc(count)
        if conversation is not None:
            out.append(to_row(conversation, now, tenant))
        self._evict_at = now + self._retention
        self._stale_at = now + self._stale_after
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Any], bool]:
        """Quiet for the retention: forget it if it ended, or if it has been silent far too long."""
        now = _now()
        if self._state is None or self._state.ended or now >= self._stale_at:
            return [], StatefulBatchLogic.DISCARD
        self._evict_at = min(now + self._retention, self._stale_at)
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self._evict_at

    def snapshot(self) -> ConversationState:
        assert self._state is not None
        return self._state


IntervalState = tuple[dict[str, Any], ReorderState]


class IntervalStep(StatefulBatchLogic[TenantFeed, list[Any], IntervalState]):
    """One tenant's interval book.

    Stitched events are applied in arrival order (``stitchboard.ordering``) and the book is
    flushed after each, so finalisation and restatements follow the input exactly and a replay
    of the same input groups corrections identically (``IntervalBook.due`` makes the flushes that
    would do nothing cheap); provisional rows are
    throttled by the book to one per interval per ``provisional_every_seconds``, and a timer keeps
    an idle tenant's watermark (and its wallboard) moving.
    """

    def __init__(self, settings: Settings, resume: IntervalState | None, drain_at_eof: bool) -> None:
        self._settings = settings
        self._resume = resume[0] if resume is not None else None
        self._order: ArrivalOrder[TenantFeed] = ArrivalOrder(resume[1] if resume is not None else None)
        self._book: IntervalBook | None = None
        self._drain_at_eof = drain_at_eof
        self._every = timedelta(seconds=settings.timing.provisional_every_seconds)
        self._lateness = settings.timing.allowed_lateness
        self._next_flush = _now() + self._every
        if self._resume is not None:  # restore now: a resumed idle tenant still flushes, and drains at EOF
            self._book_for(self._resume["tenant"])

    def _book_for(self, tenant: str) -> IntervalBook:
        if self._book is None:
            tenant_settings = self._settings.tenant(tenant)
            timing = self._settings.timing
            if self._resume is not None:
                self._book = IntervalBook.restore(tenant, tenant_settings, timing, METRIC_NAMES, self._resume)
            else:
                self._book = IntervalBook(tenant, tenant_settings, timing, METRIC_NAMES)
        return self._book

    def _publish(self, flushed: Flushed) -> tuple[list[list[Any]], bool]:
        self._next_flush = _now() + self._every
        if self._book is not None:
            self._book.evict()
        telemetry.FINAL_ROWS.inc(len(flushed.final))
        telemetry.RESTATEMENTS.inc(len(flushed.restatements))
        if self._book is not None:
            if flushed.restated:
                telemetry.RESTATED_INTERVALS.labels(self._book.tenant).inc(len(flushed.restated))
            if self._book.watermark is not None:
                lag = (_now() - self._book.watermark).total_seconds()
                telemetry.WATERMARK_LAG.labels(self._book.tenant).set(lag)
        if flushed.dropped:
            telemetry.DEAD_LETTERS_AFTER_ACCEPTANCE.labels("beyond_restatement_horizon").inc(
                len(flushed.dropped)
            )
        rows: list[Any] = [*flushed.interval_rows, *flushed.restatements]
        rows.extend(_beyond_horizon(delta) for delta in flushed.dropped)
        return ([rows] if rows else []), StatefulBatchLogic.RETAIN

    def on_item(self, value: TenantFeed) -> tuple[list[list[Any]], bool]:
        """A batch of one feed."""
        return self.on_batch([value])

    def on_batch(self, values: list[TenantFeed]) -> tuple[list[list[Any]], bool]:
        now = _now()
        book = self._book_for(values[0].tenant)
        rows: list[list[Any]] = []
        for value in values:
            for feed in self._order.push(value.arrival, value):
                watermark = book.watermark
                if watermark is not None and feed.event_time < watermark - self._lateness:
                    telemetry.LATE_EVENTS.labels(feed.tenant).inc()
                book.observe(feed.event_time, now)
                for delta in feed.deltas:
                    book.apply(delta)
                if book.due(now):
                    rows.extend(self._publish(book.flush(now))[0])
        return rows, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[list[Any]], bool]:
        if self._book is None:
            return [], StatefulBatchLogic.RETAIN
        return self._publish(self._book.flush(_now()))

    def on_eof(self) -> tuple[list[list[Any]], bool]:
        if self._book is None:
            return [], StatefulBatchLogic.RETAIN
        now = _now()
        if self._drain_at_eof:
            return self._publish(self._book.drain(now))
        return self._publish(self._book.flush(now, all_provisional=True))

    def notify_at(self) -> datetime | None:
        return self._next_flush

    def snapshot(self) -> IntervalState:
        book = self._book.snapshot() if self._book is not None else self._resume
        assert book is not None
        return (book, self._order.snapshot())


def _beyond_horizon(delta: Delta) -> DeadLetter:
    """A correction too old to restate is not dropped silently: it becomes a dead letter."""
    key = delta.key
    detail = (
        f"{key.metric} {delta.value:+d} for queue {key.queue!r} channel {key.channel} at "
        f"{key.at.isoformat()} is older than the restatement horizon"
    )
    return DeadLetter(
        reason="beyond_restatement_horizon",
        detail=detail,
        raw=detail.encode("utf-8"),
        received_at=_now(),
        tenant=delta.tenant,
    )
