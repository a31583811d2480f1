"""Bytewax hosting of Stitchboard's pure rules: small mapper functions and two stateful steps.

Everything decided here is about *when* to call the rules (system time, end of input, eviction)
and what to count for telemetry; *what* they decide lives in ``stitchboard.shards`` (stitching)
and ``stitchboard.interval_book`` (its protocol: ``receive``, ``tick``, ``end_of_input``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from bytewax.operators import StatefulBatchLogic

from stitchboard import adapters, telemetry
from stitchboard.contributions import TenantFeed
from stitchboard.deadletters import DeadLetter
from stitchboard.deliveries import Delivery
from stitchboard.events import CanonicalEvent
from stitchboard.flows.sources import RawRecord
from stitchboard.interval_book import BEYOND_HORIZON, IntervalBook, Publication
from stitchboard.metrics import METRIC_NAMES
from stitchboard.ordering import ArrivalOrder, ReorderState
from stitchboard.rows import AgentStateRow, ConversationRow, PublishedRow
from stitchboard.settings import Settings
from stitchboard.shards import ConversationShard, shard_of
from stitchboard.stitching.row import conversation_row

SINK_KEY = "clickhouse"


def _now() -> datetime:
    return datetime.now(UTC)


Numbered = tuple[int, Delivery]


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


def is_event_batch(item: list[CanonicalEvent] | DeadLetter) -> TypeGuard[list[CanonicalEvent]]:
    return isinstance(item, list)


def is_delivery(item: AgentStateRow | Delivery) -> TypeGuard[Delivery]:
    return isinstance(item, Delivery)


def delivery_tenant(delivery: Delivery) -> str:
    return delivery.tenant


def number(next_arrival: int | None, delivery: Delivery) -> tuple[int, Numbered]:
    """Give each of a tenant's deliveries its arrival number (see ``stitchboard.ordering``)."""
    arrival = next_arrival or 0
    return arrival + 1, (arrival, delivery)


def shard_key(shards: int, item: Numbered) -> str:
    delivery = item[1]
    return f"{delivery.tenant}\x1f{shard_of(delivery.conversation_id, shards)}"


def sink_key(_row: object) -> str:
    return SINK_KEY


@dataclass(frozen=True, slots=True)
class StitchedBatch:
    """What one shard publishes for one batch: feeds for the tenant's book, rows, dead letters."""

    tenant: str
    feeds: list[TenantFeed]
    rows: list[ConversationRow]
    dead_letters: list[DeadLetter]


def tenant_feeds(batch: StitchedBatch) -> tuple[str, list[TenantFeed]] | None:
    return (batch.tenant, batch.feeds) if batch.feeds else None


def tenant_rows(batch: StitchedBatch) -> tuple[str, list[ConversationRow]] | None:
    return (batch.tenant, batch.rows) if batch.rows else None


def batch_rows(batch: StitchedBatch) -> list[ConversationRow]:
    return batch.rows


def batch_dead_letters(batch: StitchedBatch) -> list[DeadLetter]:
    return batch.dead_letters


class StitchStep(StatefulBatchLogic[Numbered, StitchedBatch, ConversationShard]):
    """One shard of a tenant's conversations (``stitchboard.shards``).

    A batch of deliveries publishes one row per changed conversation (the last: rows replace each
    other by version) and one feed per delivery, in the order given; a timer forgets conversations
    whose retention has passed.
    """

    def __init__(self, settings: Settings, resume: ConversationShard | None) -> None:
        self._settings = settings
        timing = settings.timing
        self._shard = resume or ConversationShard(
            timing.conversation_retention_seconds, timing.stale_conversation_seconds
        )

    def on_batch(self, values: list[Numbered]) -> tuple[list[StitchedBatch], bool]:
        now = time.time()
        tenant = values[0][1].tenant
        tenant_settings = self._settings.tenant(tenant)
        stitched = self._shard.apply(values, tenant_settings, now)
        for result, count in stitched.results.items():
            telemetry.EVENTS.labels(result.value).inc(count)
        for letter in stitched.dead_letters:
            telemetry.DEAD_LETTERS_AFTER_ACCEPTANCE.labels(letter.reason).inc()
        updated_at = datetime.fromtimestamp(now, UTC)
        rows = [
            conversation_row(conversation, updated_at, tenant_settings)
            for conversation in stitched.conversations.values()
        ]
        return [StitchedBatch(tenant, stitched.feeds, rows, stitched.dead_letters)], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[StitchedBatch], bool]:
        self._shard.evict(time.time())
        return [], (StatefulBatchLogic.RETAIN if len(self._shard) else StatefulBatchLogic.DISCARD)

    def notify_at(self) -> datetime | None:
        due = self._shard.next_eviction()
        return None if due is None else datetime.fromtimestamp(due, UTC)

    def snapshot(self) -> ConversationShard:
        return self._shard


IntervalState = tuple[dict[str, Any], ReorderState]


class IntervalStep(StatefulBatchLogic[list[TenantFeed], list[PublishedRow], IntervalState]):
    """One tenant's interval book (``stitchboard.interval_book``), hosted.

    Stitched deliveries reach the step grouped by shard; they are handed to the book's ``receive``
    in arrival order (``stitchboard.ordering``), so finalisation and restatements follow the input
    exactly and a replay of the same input groups corrections identically. A timer calls ``tick``
    every ``provisional_every_seconds`` after the last publication, which keeps an idle tenant's
    watermark (and its wallboard) moving; the end of input calls ``end_of_input``, draining when
    ``drain_at_eof`` is (or, a function, returns) true: asked then, because an input ended by a
    stop request (SIGTERM) is not the end of the data and must not finalise anything.
    """

    def __init__(
        self, settings: Settings, resume: IntervalState | None, drain_at_eof: bool | Callable[[], bool]
    ) -> None:
        self._settings = settings
        self._resume = resume[0] if resume is not None else None
        self._order: ArrivalOrder[TenantFeed] = ArrivalOrder(resume[1] if resume is not None else None)
        self._book: IntervalBook | None = None
        self._drain_at_eof = drain_at_eof
        self._every = timedelta(seconds=settings.timing.provisional_every_seconds)
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

    def _publish(self, book: IntervalBook, publication: Publication) -> list[PublishedRow]:
        """Count what the book published for telemetry; the rows to write."""
        if publication.late:
            telemetry.LATE_DELIVERIES.labels(book.tenant).inc()
        flushed = publication.flushed
        if flushed is None:
            return []
        self._next_flush = _now() + self._every
        telemetry.FINAL_ROWS.inc(len(flushed.final))
        telemetry.RESTATEMENTS.inc(len(flushed.restatements))
        if flushed.restated:
            telemetry.RESTATED_INTERVALS.labels(book.tenant).inc(len(flushed.restated))
        if book.watermark is not None:
            telemetry.record_watermark(book.tenant, book.watermark)
        if publication.dead_letters:
            telemetry.DEAD_LETTERS_AFTER_ACCEPTANCE.labels(BEYOND_HORIZON).inc(len(publication.dead_letters))
        return publication.rows

    def _batches(self, rows: list[PublishedRow]) -> tuple[list[list[PublishedRow]], bool]:
        return ([rows] if rows else []), StatefulBatchLogic.RETAIN

    def on_batch(self, values: list[list[TenantFeed]]) -> tuple[list[list[PublishedRow]], bool]:
        now = _now()
        book = self._book_for(values[0][0].tenant)
        out: list[list[PublishedRow]] = []
        for feeds in values:
            for value in feeds:
                for feed in self._order.push(value.arrival, value):
                    rows = self._publish(book, book.receive(feed, now))
                    if rows:
                        out.append(rows)
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[list[PublishedRow]], bool]:
        if self._book is None:
            return [], StatefulBatchLogic.RETAIN
        return self._batches(self._publish(self._book, self._book.tick(_now())))

    def on_eof(self) -> tuple[list[list[PublishedRow]], bool]:
        if self._book is None:
            return [], StatefulBatchLogic.RETAIN
        drain = self._drain_at_eof() if callable(self._drain_at_eof) else self._drain_at_eof
        publication = self._book.end_of_input(_now(), drain=drain)
        return self._batches(self._publish(self._book, publication))

    def notify_at(self) -> datetime | None:
        return self._next_flush

    def snapshot(self) -> IntervalState:
        book = self._book.snapshot() if self._book is not None else self._resume
        assert book is not None
        return (book, self._order.snapshot())
