"""Bytewax hosting of Stitchboard's pure rules: small mapper functions and two stateful steps.

Everything decided here is about *when* to call the rules (system time, end of input, eviction)
and what to count for telemetry; *what* they decide lives in ``stitchboard.shards`` (stitching)
and ``stitchboard.interval_book`` (its protocol: ``receive``, ``tick``, ``end_of_input``).

One rule for every step (issue #13): an item a step cannot process becomes an ``internal_error``
dead letter (the exception's type and message, the record's bytes or, past the stitcher, its
origin and digest) and the step goes on with the next item, its state as before that item.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from bytewax.operators import StatefulBatchLogic

from stitchboard import adapters, telemetry
from stitchboard.contributions import TenantFeed
from stitchboard.deadletters import DeadLetter, RecordRef, held_bytes, internal_error
from stitchboard.deliveries import Delivery, split_record
from stitchboard.events import CanonicalEvent
from stitchboard.flows.journey_step import JourneyInput
from stitchboard.flows.sources import RawRecord
from stitchboard.interval_book import SNAPSHOT_FORMAT, IntervalBook, Publication, correction
from stitchboard.metrics import METRIC_NAMES
from stitchboard.ordering import ArrivalOrder, ReorderState
from stitchboard.rows import AgentStateRow, ConversationRow, PublishedRow
from stitchboard.settings import Settings
from stitchboard.shards import ConversationShard, shard_of
from stitchboard.state_version import StateSchema, Versioned, is_tuple_of, unchanged
from stitchboard.stitching.row import conversation_row

SINK_KEY = "clickhouse"
INTERVAL_STEP = "intervals"  # names the step in the dead letter of a feed the interval book failed on
_log = logging.getLogger("stitchboard.flow")


def _now() -> datetime:
    return datetime.now(UTC)


Numbered = tuple[int, Delivery]

# The layouts of this module's snapshots (``stitchboard.state_version``). Version 0 is what was
# written before snapshots were versioned: the same payloads, without the envelope.
ARRIVAL_STATE = StateSchema[int](
    "arrival_number", 1, {0: unchanged}, lambda s: isinstance(s, int) and not isinstance(s, bool)
)
STITCH_STATE = StateSchema[ConversationShard](
    "stitch", 1, {0: unchanged}, lambda s: isinstance(s, ConversationShard)
)


@dataclass(frozen=True, slots=True)
class AcceptedRecord:
    """A record the adapters accepted: its events, and its bytes and origin for any later letter."""

    events: list[CanonicalEvent]
    raw: bytes
    origin: str
    transport_at: datetime | None  # the transport's time for it (broker timestamp), if any


def normalise(settings: Settings, record: RawRecord | DeadLetter) -> AcceptedRecord | DeadLetter:
    """Adapt one raw record under the tenant allow-list and bounds of ``settings``, counting it as
    accepted or dead-lettered (never both, never neither)."""
    if isinstance(record, DeadLetter):
        result: AcceptedRecord | DeadLetter = record
    else:
        adapted = adapters.normalise(record.value, record.origin, record.received_at, settings)
        result = (
            adapted
            if isinstance(adapted, DeadLetter)
            else AcceptedRecord(adapted, record.value, record.origin, record.received_at)
        )
    telemetry.RECORDS_IN.labels("raw").inc()
    if isinstance(result, DeadLetter):
        telemetry.RECORDS_DEAD_LETTERED.labels(result.reason).inc()
    else:
        telemetry.RECORDS_ACCEPTED.inc()
    return result


def is_accepted(item: AcceptedRecord | DeadLetter) -> TypeGuard[AcceptedRecord]:
    return isinstance(item, AcceptedRecord)


def is_dead_letter(item: object) -> TypeGuard[DeadLetter]:
    return isinstance(item, DeadLetter)


def _failed(
    exc: Exception, step: str, raw: bytes, origin: str, events: Sequence[CanonicalEvent], part: str = ""
) -> DeadLetter:
    """The ``internal_error`` letter of an accepted record (or one of its deliveries) a step failed on."""
    first = events[0] if events else None
    letter = internal_error(
        exc,
        step,
        raw,
        _now() if first is None else first.ingest_time,
        tenant="" if first is None else first.tenant,
        source="" if first is None else first.source,
        origin=origin,
        part=part,
    )
    telemetry.DEAD_LETTERS_AFTER_ACCEPTANCE.labels(letter.reason).inc()
    return letter


def split(record: AcceptedRecord) -> list[AgentStateRow | Delivery | DeadLetter]:
    """A record's agent presence rows and deliveries (``split_record``), or its dead letter when
    they cannot be made: then nothing of the record goes on."""
    try:
        return list(split_record(record.events, record.raw, record.origin, record.transport_at))
    except Exception as exc:
        return [_failed(exc, "split_records", record.raw, record.origin, record.events)]


def is_delivery(item: AgentStateRow | Delivery) -> TypeGuard[Delivery]:
    return isinstance(item, Delivery)


def delivery_tenant(delivery: Delivery) -> str:
    return delivery.tenant


def number(next_arrival: int | None, delivery: Delivery) -> tuple[int, Numbered]:
    """Give each of a tenant's deliveries its arrival number (see ``stitchboard.ordering``)."""
    arrival = next_arrival or 0
    return arrival + 1, (arrival, delivery)


def arrival_number(
    state: object | None, delivery: Delivery
) -> tuple[Versioned | None, Numbered | DeadLetter]:
    """``number`` on the versioned state (``ARRIVAL_STATE``), or the delivery's dead letter; a
    delivery that fails takes no number, so the interval book never waits for it. A snapshot this
    release cannot read stops the flow (``StateVersionError``): it is not the record's fault."""
    next_arrival = ARRIVAL_STATE.restore(state)
    try:
        following, numbered = number(next_arrival, delivery)
        return ARRIVAL_STATE.wrap(following), numbered
    except Exception as exc:
        part = f"conversation {delivery.conversation_id}"
        return None if next_arrival is None else ARRIVAL_STATE.wrap(next_arrival), _failed(
            exc, "arrival_number", delivery.raw, delivery.origin, delivery.events, part
        )


def is_numbered(item: Numbered | DeadLetter) -> TypeGuard[Numbered]:
    return isinstance(item, tuple)


def shard_key(shards: int, item: Numbered) -> str:
    delivery = item[1]
    return f"{delivery.tenant}\x1f{shard_of(delivery.conversation_id, shards)}"


def sink_key(_row: object) -> str:
    return SINK_KEY


@dataclass(frozen=True, slots=True)
class StitchedBatch:
    """What one shard publishes for one batch: feeds for the tenant's book, rows, dead letters.

    ``records`` names, for each row, the record of its conversation's last delivery: journeys
    bound the watermark by its receive time and name it in a dead letter.
    """

    tenant: str
    feeds: list[TenantFeed]
    rows: list[ConversationRow]
    dead_letters: list[DeadLetter]
    records: list[RecordRef]  # one per row


def tenant_feeds(batch: StitchedBatch) -> tuple[str, list[TenantFeed]] | None:
    return (batch.tenant, batch.feeds) if batch.feeds else None


def tenant_rows(batch: StitchedBatch) -> tuple[str, list[JourneyInput]] | None:
    if not batch.rows:
        return None
    return batch.tenant, list(zip(batch.rows, batch.records, strict=True))


def batch_rows(batch: StitchedBatch) -> list[ConversationRow]:
    return batch.rows


def batch_dead_letters(batch: StitchedBatch) -> list[DeadLetter]:
    return batch.dead_letters


class StitchStep(StatefulBatchLogic[Numbered, StitchedBatch, Versioned]):
    """One shard of a tenant's conversations (``stitchboard.shards``).

    A batch of deliveries publishes one row per changed conversation (the last: rows replace each
    other by version) and one feed per delivery, in the order given; a timer forgets conversations
    whose retention has passed.
    """

    def __init__(self, settings: Settings, resume: object | None) -> None:
        self._settings = settings
        timing = settings.timing
        restored = STITCH_STATE.restore(resume)
        self._shard = (
            ConversationShard(timing.conversation_retention_seconds, timing.stale_conversation_seconds)
            if restored is None
            else restored
        )

    def on_batch(self, values: list[Numbered]) -> tuple[list[StitchedBatch], bool]:
        now = time.time()
        tenant = values[0][1].tenant
        tenant_settings = self._settings.tenant(tenant)
        stitched = self._shard.apply(values, tenant_settings, now, self._settings.conversation_limits)
        for result, count in stitched.results.items():
            telemetry.EVENTS.labels(result.value).inc(count)
        for letter in stitched.dead_letters:
            telemetry.DEAD_LETTERS_AFTER_ACCEPTANCE.labels(letter.reason).inc()
        updated_at = datetime.fromtimestamp(now, UTC)
        rows: list[ConversationRow] = []
        records: list[RecordRef] = []
        letters = stitched.dead_letters
        for conversation_id, conversation in stitched.conversations.items():
            delivery = stitched.delivered[conversation_id]
            try:
                rows.append(conversation_row(conversation, updated_at, tenant_settings))
            except Exception as exc:
                part = f"conversation {conversation_id}"
                letters.append(
                    _failed(exc, "conversation_row", delivery.raw, delivery.origin, delivery.events, part)
                )
                continue
            records.append(stitched.records[conversation_id])
        return [StitchedBatch(tenant, stitched.feeds, rows, letters, records)], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[StitchedBatch], bool]:
        self._shard.evict(time.time())
        return [], (StatefulBatchLogic.RETAIN if len(self._shard) else StatefulBatchLogic.DISCARD)

    def notify_at(self) -> datetime | None:
        due = self._shard.next_eviction()
        return None if due is None else datetime.fromtimestamp(due, UTC)

    def snapshot(self) -> Versioned:
        return STITCH_STATE.wrap(self._shard)


IntervalState = tuple[dict[str, Any], ReorderState]
INTERVAL_STATE = StateSchema[IntervalState](
    "intervals",
    1,
    {0: unchanged},
    lambda s: is_tuple_of(s, dict, tuple) and s[0].get("format") == SNAPSHOT_FORMAT,  # type: ignore[index]
)


class IntervalStep(StatefulBatchLogic[list[TenantFeed], list[PublishedRow], Versioned]):
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
        self, settings: Settings, snapshot: object | None, drain_at_eof: bool | Callable[[], bool]
    ) -> None:
        self._settings = settings
        resume = INTERVAL_STATE.restore(snapshot)
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
                self._book = IntervalBook.restore(
                    tenant, tenant_settings, timing, METRIC_NAMES, self._resume, _now()
                )
                if self._book.watermark_repaired:
                    _log.warning(
                        "restored watermark was ahead of the clock; repaired",
                        extra={"tenant": tenant, "watermark": str(self._book.watermark)},
                    )
            else:
                self._book = IntervalBook(tenant, tenant_settings, timing, METRIC_NAMES)
        return self._book

    def _publish(self, book: IntervalBook, publication: Publication) -> list[PublishedRow]:
        """Count what the book published for telemetry; the rows to write."""
        if publication.late:
            telemetry.LATE_DELIVERIES.labels(book.tenant).inc()
        for letter in publication.dead_letters:
            telemetry.DEAD_LETTERS_AFTER_ACCEPTANCE.labels(letter.reason).inc()
        flushed = publication.flushed
        if flushed is None:
            return publication.rows
        self._next_flush = _now() + self._every
        telemetry.FINAL_ROWS.inc(len(flushed.final))
        telemetry.RESTATEMENTS.inc(len(flushed.restatements))
        if flushed.restated:
            telemetry.RESTATED_INTERVALS.labels(book.tenant).inc(len(flushed.restated))
        if book.watermark is not None:
            telemetry.record_watermark(book.tenant, book.watermark)
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
                    rows = self._receive(book, feed, now)
                    if rows:
                        out.append(rows)
        return out, StatefulBatchLogic.RETAIN

    def _receive(self, book: IntervalBook, feed: TenantFeed, now: datetime) -> list[PublishedRow]:
        """The book's ``receive``; a feed it fails on becomes a dead letter (the book is left as it
        was: ``receive`` checks and places a feed's deltas before changing anything)."""
        try:
            publication = book.receive(feed, now)
        except Exception as exc:
            return [self._failed(exc, feed, now)]
        return self._publish(book, publication)

    @staticmethod
    def _failed(exc: Exception, feed: TenantFeed, now: datetime) -> DeadLetter:
        """A feed carries its record's name, not its bytes: the letter holds its deltas as JSON."""
        record = feed.record
        letter = internal_error(
            exc,
            INTERVAL_STEP,
            held_bytes(lambda: [correction(delta, feed) for delta in feed.deltas]),
            now if record is None else record.received_at,
            tenant=feed.tenant,
            source="" if record is None else record.source,
            origin="" if record is None else record.origin,
            part=f"conversation {feed.conversation_id}",
        )
        telemetry.DEAD_LETTERS_AFTER_ACCEPTANCE.labels(letter.reason).inc()
        return letter

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

    def snapshot(self) -> Versioned:
        book = self._book.snapshot() if self._book is not None else self._resume
        assert book is not None
        return INTERVAL_STATE.wrap((book, self._order.snapshot()))
