"""The per-tenant interval book: sums contribution deltas into local-time intervals and publishes
provisional, final and restated figures.

Its protocol is three calls, each returning a ``Publication`` (rows and dead letters to publish):
``receive`` one stitched delivery's deltas (``TenantFeed``, in arrival order) at system time
``now``, ``tick`` on a timer, and ``end_of_input``. A stream step only hosts them (keyed by
tenant, with arrival order restored by ``stitchboard.ordering``); ``observe``, ``apply``,
``flush``, ``drain`` and ``evict`` are the finer steps they are made of.

A bucket is one (interval length, queue, channel, interval start). It is open until the tenant
watermark reaches ``end + allowed_lateness``; then it is published once as ``final`` and its figures
are frozen as published. A delta that lands in a final bucket later (within the restatement horizon)
becomes a correction, published at the next flush as a full ``restated`` row plus one
``RestatementRow`` per changed metric. Deltas whose instant is older than ``watermark - horizon`` are
dropped, counted and handed back in ``Flushed.dropped``; the protocol publishes each as a dead
letter (``beyond_horizon``), so no correction is dropped silently.

Choices worth knowing:

* Very late data for an interval nobody saw (its bucket is created after its finalisation time) is
  published as ``final`` with that data at the next flush, not as a restatement of nothing. The same
  holds for a bucket that netted to zero before it was ever published: it is forgotten at
  finalisation, and later data re-creates it.
* A bucket that has published anything keeps publishing (also all-zero figures), so a stale
  provisional row in ClickHouse is always overwritten; a bucket that never had figures is never
  published.
* Versions order the phases: provisional rows get 1, 2, …; the final row ``2**32``; restatement *k*
  ``(k + 1) * 2**32``. A final row therefore outranks any provisional row in a
  ReplacingMergeTree(version), also when a recovery replays provisional rows with other counts, and
  the same sequence of calls reproduces the same versions.

State is plain and bounded: final buckets are evicted once their interval ended more than the
restatement horizon before the watermark; ``snapshot``/``restore`` round-trip it for Bytewax.

Why one module of about 500 lines: the buckets, their heaps, the pending corrections and the
watermark are one state whose invariants every operation keeps (the protocol included); split,
each part would reach into the others' private state.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from stitchboard.contributions import ContributionKey, Delta, TenantFeed
from stitchboard.deadletters import DeadLetter
from stitchboard.intervals import interval_of
from stitchboard.rows import IntervalRow, IntervalStatus, PublishedRow, RestatementRow
from stitchboard.settings import TenantSettings, TimingSettings
from stitchboard.watermark import TenantWatermark, complete_before

BucketKey = tuple[int, str, str, datetime]  # (interval minutes, queue, channel, interval start UTC)
Spans = tuple[tuple[int, datetime, datetime], ...]  # (interval minutes, start, end) of each length
Planned = tuple[Delta, int, Spans]  # a delta, its metric's index, the intervals it lands in
FINAL_VERSION = 1 << 32
SNAPSHOT_FORMAT = 1
BEYOND_HORIZON = "beyond_restatement_horizon"  # the dead-letter reason of a too-old correction


def restated_version(restatement_seq: int) -> int:
    """Version of the ``restated`` row of restatement ``restatement_seq`` (1, 2, …)."""
    return (restatement_seq + 1) * FINAL_VERSION


@dataclass(frozen=True, slots=True)
class Flushed:
    """What one flush publishes; ``dropped`` are deltas beyond the restatement horizon."""

    provisional: list[IntervalRow] = field(default_factory=list)
    final: list[IntervalRow] = field(default_factory=list)
    restated: list[IntervalRow] = field(default_factory=list)
    restatements: list[RestatementRow] = field(default_factory=list)
    dropped: list[Delta] = field(default_factory=list)

    @property
    def interval_rows(self) -> list[IntervalRow]:
        return [*self.provisional, *self.final, *self.restated]


@dataclass(frozen=True, slots=True)
class Publication:
    """What one call of the book's protocol publishes; ``flushed`` is None when nothing was due."""

    flushed: Flushed | None = None
    dead_letters: list[DeadLetter] = field(default_factory=list)  # corrections beyond the horizon
    late: bool = False  # the delivery's earliest event was older than watermark - allowed lateness

    @property
    def rows(self) -> list[PublishedRow]:
        """Everything to write: interval rows, restatements, dead letters."""
        if self.flushed is None:
            return list(self.dead_letters)
        return [*self.flushed.interval_rows, *self.flushed.restatements, *self.dead_letters]


def correction(delta: Delta, feed: TenantFeed | None = None) -> dict[str, object]:
    """A correction as plain data: the delta, its conversation and the SHA-256 of its record."""
    key = delta.key
    return {
        "tenant": delta.tenant,
        "conversation_id": "" if feed is None else feed.conversation_id,
        "queue": key.queue,
        "channel": key.channel,
        "metric": key.metric,
        "at": key.at.isoformat(),
        "value": delta.value,
        "reason": delta.reason,
        "record_sha256": "" if feed is None or feed.record is None else feed.record.sha256,
    }


def beyond_horizon(delta: Delta, now: datetime, feed: TenantFeed | None = None) -> DeadLetter:
    """A correction too old to restate is not dropped silently: it becomes a dead letter.

    Its bytes are the correction as JSON (``correction``), not the record's: the book receives
    feeds, which name their record (origin, SHA-256, receive time) rather than carry its bytes, so
    that every record's bytes need not cross to the book and wait in its arrival-order buffer for
    a letter that is rare. The origin says where to read the record back; the digest proves it.
    """
    key = delta.key
    record = None if feed is None else feed.record
    conversation = "" if feed is None else feed.conversation_id
    detail = (
        f"{key.metric} {delta.value:+d} for queue {key.queue!r} channel {key.channel} at "
        f"{key.at.isoformat()} is older than the restatement horizon"
    )
    if record is not None:
        detail += f" (conversation {conversation}, record sha256 {record.sha256})"
    return DeadLetter(
        reason=BEYOND_HORIZON,
        detail=detail,
        raw=orjson.dumps(correction(delta, feed)),
        received_at=now if record is None else record.received_at,
        tenant=delta.tenant,
        source="" if record is None else record.source,
        origin="" if record is None else record.origin,
        part=f"conversation {conversation} {key.metric} {key.queue} {key.channel} {key.at.isoformat()}",
    )


@dataclass(slots=True)
class _Bucket:
    end: datetime
    figures: list[int] | None  # open: current figures; final: corrected figures awaiting restatement
    provisional_rows: int = 0
    emitted: bool = False
    published: tuple[int, ...] | None = None  # the final row's figures; None while open
    last: tuple[int, ...] | None = None  # figures of the last final/restated row
    restatements: int = 0
    reasons: set[str] = field(default_factory=set)


_SPANS_KEPT = 4096


class IntervalBook:
    """Interval figures of ONE tenant, for every configured interval length."""

    def __init__(
        self,
        tenant: str,
        tenant_settings: TenantSettings,
        timing: TimingSettings,
        metric_names: tuple[str, ...],
    ) -> None:
        if len(set(metric_names)) != len(metric_names):
            raise ValueError("metric names must be unique")
        self.tenant = tenant
        self._zone = tenant_settings.zone()
        self._lengths = tuple(timing.interval_minutes)
        self._lateness = timing.allowed_lateness
        self._horizon = timedelta(days=timing.restatement_horizon_days)
        if self._horizon <= self._lateness:
            raise ValueError("the restatement horizon must exceed the allowed lateness")
        self._provisional_every = timedelta(seconds=timing.provisional_every_seconds)
        self._metric_names = tuple(metric_names)
        self._index = {name: i for i, name in enumerate(self._metric_names)}
        self._watermark = TenantWatermark.from_timing(timing)
        self._buckets: dict[BucketKey, _Bucket] = {}
        self._open: list[tuple[datetime, BucketKey]] = []  # heap by interval end
        self._closed: list[tuple[datetime, BucketKey]] = []  # heap by interval end
        self._dirty: dict[BucketKey, None] = {}  # ordered set: open buckets changed since last row
        self._pending: dict[BucketKey, None] = {}  # ordered set: final buckets with corrections
        self._dropped: list[Delta] = []
        self._dropped_total = 0
        self._last_provisional_at: datetime | None = None
        self._spans_at: dict[datetime, Spans] = {}
        self.watermark_repaired = False  # set by ``restore``

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self._metric_names

    @property
    def watermark(self) -> datetime | None:
        return self._watermark.value

    @property
    def dropped_beyond_horizon(self) -> int:
        """Deltas dropped because their instant was older than the restatement horizon."""
        return self._dropped_total

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    @property
    def open_bucket_count(self) -> int:
        return len(self._open)

    def receive(self, feed: TenantFeed, now: datetime) -> Publication:
        """One stitched delivery, in arrival order, at system time ``now``.

        Lateness is judged on the delivery's earliest event time against the watermark before it
        (a late delivery is counted, and still applied); its latest event time moves the watermark;
        its deltas are applied; then whatever is due is published. Flushing after every delivery
        keeps finalisation and restatements a function of the input order alone.

        The delivery's deltas are checked and placed before anything changes, so a delivery the
        book cannot take raises with the book as it was (the hosting step dead-letters it). Its
        corrections beyond the horizon are published as dead letters naming its record.
        """
        planned = self._plan(feed.deltas)
        watermark = self._watermark.value
        late = (
            watermark is not None
            and feed.earliest is not None
            and feed.earliest < complete_before(watermark, self._lateness)
        )
        if feed.latest is not None:
            self.observe(feed.latest, now, None if feed.record is None else feed.record.received_at)
        letters = [beyond_horizon(delta, now, feed) for delta in self._commit(planned)]
        if not self.due(now):
            return Publication(dead_letters=letters, late=late)
        return self._publication(self.flush(now), now, late, letters)

    def tick(self, now: datetime) -> Publication:
        """A timer: an idle tenant's watermark moves on, and throttled provisional rows go out."""
        return self._publication(self.flush(now), now)

    def end_of_input(self, now: datetime, *, drain: bool) -> Publication:
        """The input ended: ``drain`` finalises every interval (a bounded replay); otherwise every
        pending provisional change is published now."""
        return self._publication(self.drain(now) if drain else self.flush(now, all_provisional=True), now)

    def _publication(
        self, flushed: Flushed, now: datetime, late: bool = False, letters: list[DeadLetter] | None = None
    ) -> Publication:
        self.evict()
        dropped = [beyond_horizon(delta, now) for delta in flushed.dropped]
        return Publication(flushed, [*(letters or ()), *dropped], late)

    def observe(self, event_time: datetime, now: datetime, received_at: datetime | None = None) -> None:
        """Feed an event time (seen at system time ``now``, of a record received at ``received_at``)
        to the tenant watermark, which bounds it by that receive time (``stitchboard.watermark``)."""
        self._watermark.observe(event_time, now, received_at)

    def apply(self, delta: Delta) -> None:
        """Add ``delta`` to the bucket of every interval length that contains its instant."""
        self.apply_all((delta,))

    def apply_all(self, deltas: Iterable[Delta]) -> None:
        """`apply` each delta in order (one delivery's deltas at once: the checks are shared);
        corrections beyond the horizon are kept for the next flush's ``dropped``."""
        self._dropped.extend(self._commit(self._plan(deltas)))

    def _plan(self, deltas: Iterable[Delta]) -> list[Planned]:
        """Check each delta and find its intervals, changing nothing: (delta, metric index, spans)."""
        planned: list[Planned] = []
        index_of, spans = self._index, self._spans
        for delta in deltas:
            if delta.tenant != self.tenant:
                raise ValueError(f"delta for tenant {delta.tenant!r} given to the book of {self.tenant!r}")
            index = index_of.get(delta.key.metric)
            if index is None:
                raise ValueError(f"unknown metric {delta.key.metric!r}")
            if delta.value:
                planned.append((delta, index, spans(delta.key.at)))
        return planned

    def _commit(self, planned: list[Planned]) -> list[Delta]:
        """Add planned deltas to their buckets; returns those beyond the restatement horizon."""
        cutoff = self._cutoff()
        buckets, width = self._buckets, len(self._metric_names)
        dropped: list[Delta] = []
        for delta, index, placed in planned:
            contribution, value = delta.key, delta.value
            if cutoff is not None and contribution.at < cutoff:
                dropped.append(delta)
                self._dropped_total += 1
                continue
            for minutes, start, end in placed:
                key = (minutes, contribution.queue, contribution.channel, start)
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = _Bucket(end=end, figures=[0] * width)
                    heapq.heappush(self._open, (end, key))
                if bucket.published is None:
                    bucket.figures[index] += value  # type: ignore[index]  # open buckets have figures
                    self._dirty[key] = None
                else:
                    if bucket.figures is None:
                        assert bucket.last is not None
                        bucket.figures = list(bucket.last)
                    bucket.figures[index] += value
                    bucket.reasons.update(delta.reason.split(","))
                    self._pending[key] = None
        return dropped

    def _spans(self, at: datetime) -> Spans:
        """(length, start, end) of every interval containing ``at``; a delivery's deltas share a
        few instants, so recent answers are kept (zone maths costs more than the lookup)."""
        spans = self._spans_at.get(at)
        if spans is None:
            if len(self._spans_at) >= _SPANS_KEPT:
                self._spans_at.clear()
            spans = self._spans_at[at] = tuple(
                (minutes, interval.start, interval.end)
                for minutes in self._lengths
                for interval in (interval_of(at, self._zone, minutes),)
            )
        return spans

    def flush(self, now: datetime, *, all_provisional: bool = False) -> Flushed:
        """Finalise what the watermark allows, publish provisional changes and restatements, evict.

        Provisional rows are throttled to one batch per ``provisional_every_seconds`` unless
        ``all_provisional`` (end of an input) asks for every pending change now.
        """
        watermark = self._watermark.advance(now)
        final = [] if watermark is None else self._finalise(complete_before(watermark, self._lateness))
        provisional: list[IntervalRow] = []
        last = self._last_provisional_at
        due = all_provisional or last is None or now - last >= self._provisional_every
        if self._dirty and due:
            provisional = self._provisional_rows()
            self._last_provisional_at = now
        restated, restatements = self._restate(now)
        self.evict()
        return Flushed(provisional, final, restated, restatements, self._take_dropped())

    def due(self, now: datetime) -> bool:
        """Whether ``flush(now)`` would publish, finalise, restate, drop or evict anything.

        Flushing after every event keeps finalisation exact; this check makes the many flushes
        that would do nothing cost almost nothing. It advances the watermark as ``flush`` would.
        """
        if self._pending or self._dropped:
            return True
        watermark = self._watermark.advance(now)
        if watermark is not None:
            if self._open and self._open[0][0] <= complete_before(watermark, self._lateness):
                return True
            if self._closed and self._closed[0][0] <= watermark - self._horizon:
                return True
        if self._dirty:
            last = self._last_provisional_at
            return last is None or now - last >= self._provisional_every
        return False

    def drain(self, now: datetime) -> Flushed:
        """End of input (bounded replay): finalise every open bucket and publish pending corrections."""
        self._watermark.advance(now)
        final = self._finalise(None)
        restated, restatements = self._restate(now)
        return Flushed([], final, restated, restatements, self._take_dropped())

    def evict(self) -> int:
        """Forget final buckets whose interval ended more than the horizon before the watermark."""
        cutoff = self._cutoff()
        if cutoff is None:
            return 0
        evicted = 0
        kept: list[tuple[datetime, BucketKey]] = []
        while self._closed and self._closed[0][0] <= cutoff:
            item = heapq.heappop(self._closed)
            if item[1] in self._pending:  # publish the correction first; never lose it silently
                kept.append(item)
                continue
            del self._buckets[item[1]]
            evicted += 1
        for item in kept:
            heapq.heappush(self._closed, item)
        return evicted

    def snapshot(self) -> dict[str, Any]:
        """Plain data (tuples, ints, strings, datetimes) for Bytewax recovery snapshots."""
        return {
            "format": SNAPSHOT_FORMAT,
            "tenant": self.tenant,
            "metric_names": self._metric_names,
            "watermark": self._watermark.snapshot(),
            "buckets": [
                (
                    *key,
                    b.end,
                    None if b.figures is None else tuple(b.figures),
                    b.provisional_rows,
                    b.emitted,
                    b.published,
                    b.last,
                    b.restatements,
                    tuple(sorted(b.reasons)),
                )
                for key, b in self._buckets.items()
            ],
            "dirty": list(self._dirty),
            "pending": list(self._pending),
            "dropped": [
                (d.key.queue, d.key.channel, d.key.metric, d.key.at, d.value, d.reason) for d in self._dropped
            ],
            "dropped_total": self._dropped_total,
            "last_provisional_at": self._last_provisional_at,
        }

    @classmethod
    def restore(
        cls,
        tenant: str,
        tenant_settings: TenantSettings,
        timing: TimingSettings,
        metric_names: tuple[str, ...],
        state: dict[str, Any],
        now: datetime | None = None,
    ) -> IntervalBook:
        """Rebuild a book from ``snapshot()``; figures are re-aligned by name if the catalogue changed.

        A watermark that ran ahead of the clock (a snapshot written before event times were bounded
        by receive time) is repaired as of system time ``now`` (``TenantWatermark.restore``);
        ``watermark_repaired`` says whether it was.
        """
        if state.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported interval book snapshot format {state.get('format')!r}")
        if state["tenant"] != tenant:
            raise ValueError(f"snapshot of tenant {state['tenant']!r} restored as {tenant!r}")
        book = cls(tenant, tenant_settings, timing, metric_names)
        old_index = {name: i for i, name in enumerate(state["metric_names"])}

        def align(values: tuple[int, ...] | None) -> tuple[int, ...] | None:
            if values is None:
                return None
            return tuple(values[old_index[n]] if n in old_index else 0 for n in book._metric_names)

        book.watermark_repaired = book._watermark.restore(state["watermark"], now)
        for row in state["buckets"]:
            minutes, queue, channel, start, end, figures, prov, emitted, published, last, seq, reasons = row
            key: BucketKey = (minutes, queue, channel, start)
            aligned = align(figures)
            book._buckets[key] = _Bucket(
                end=end,
                figures=None if aligned is None else list(aligned),
                provisional_rows=prov,
                emitted=emitted,
                published=align(published),
                last=align(last),
                restatements=seq,
                reasons=set(reasons),
            )
            (book._open if published is None else book._closed).append((end, key))
        heapq.heapify(book._open)
        heapq.heapify(book._closed)
        book._dirty = dict.fromkeys(tuple(k) for k in state["dirty"])
        book._pending = dict.fromkeys(tuple(k) for k in state["pending"])
        book._dropped = [
            Delta(tenant, ContributionKey(queue, channel, metric, at), value, reason)
            for queue, channel, metric, at, value, reason in state["dropped"]
        ]
        book._dropped_total = state["dropped_total"]
        book._last_provisional_at = state["last_provisional_at"]
        return book

    def _cutoff(self) -> datetime | None:
        watermark = self._watermark.value
        return None if watermark is None else watermark - self._horizon

    def _take_dropped(self) -> list[Delta]:
        dropped, self._dropped = self._dropped, []
        return dropped

    def _finalise(self, ended_by: datetime | None) -> list[IntervalRow]:
        """Publish open buckets whose interval ended by ``ended_by`` (all of them when ``None``).

        Every bucket that received a delta is published, even when its figures net to zero: whether
        a provisional row went out first depends on system time, and what is final must not.
        """
        rows: list[IntervalRow] = []
        while self._open and (ended_by is None or self._open[0][0] <= ended_by):
            end, key = heapq.heappop(self._open)
            bucket = self._buckets[key]
            self._dirty.pop(key, None)
            assert bucket.figures is not None
            figures = tuple(bucket.figures)
            bucket.published = bucket.last = figures
            bucket.figures = None
            bucket.emitted = True
            heapq.heappush(self._closed, (end, key))
            rows.append(self._row(key, "final", FINAL_VERSION, figures))
        return rows

    def _provisional_rows(self) -> list[IntervalRow]:
        rows: list[IntervalRow] = []
        for key in self._dirty:
            bucket = self._buckets[key]
            assert bucket.figures is not None
            figures = tuple(bucket.figures)
            if not bucket.emitted and not any(figures):
                continue
            bucket.provisional_rows += 1
            bucket.emitted = True
            rows.append(self._row(key, "provisional", bucket.provisional_rows, figures))
        self._dirty.clear()
        return rows

    def _restate(self, now: datetime) -> tuple[list[IntervalRow], list[RestatementRow]]:
        restated: list[IntervalRow] = []
        restatements: list[RestatementRow] = []
        watermark = self._watermark.value or now
        for key in self._pending:
            bucket = self._buckets[key]
            assert bucket.figures is not None and bucket.last is not None and bucket.published is not None
            corrected, previous, published = tuple(bucket.figures), bucket.last, bucket.published
            reason = ",".join(sorted(bucket.reasons))
            bucket.figures = None
            bucket.reasons = set()
            if corrected == previous:
                continue
            bucket.restatements += 1
            bucket.last = corrected
            row = self._row(key, "restated", restated_version(bucket.restatements), corrected)
            restated.append(row)
            restatements.extend(
                RestatementRow(
                    tenant=self.tenant,
                    queue=row.queue,
                    channel=row.channel,
                    interval_minutes=row.interval_minutes,
                    interval_start=row.interval_start,
                    time_zone=row.time_zone,
                    metric=name,
                    published=published[i],
                    previous=previous[i],
                    corrected=corrected[i],
                    delta=corrected[i] - previous[i],
                    reason=reason,
                    restatement_seq=bucket.restatements,
                    watermark=watermark,
                    restated_at=now,
                )
                for i, name in enumerate(self._metric_names)
                if corrected[i] != previous[i]
            )
        self._pending.clear()
        return restated, restatements

    def _row(
        self, key: BucketKey, status: IntervalStatus, version: int, figures: tuple[int, ...]
    ) -> IntervalRow:
        minutes, queue, channel, start = key
        interval = interval_of(start, self._zone, minutes)
        return IntervalRow(
            tenant=self.tenant,
            queue=queue,
            channel=channel,
            interval_minutes=minutes,
            interval_start=interval.start,
            interval_end=interval.end,
            local_start=interval.local_start_iso,
            local_date=interval.local_date,
            time_zone=interval.time_zone,
            status=status,
            version=version,
            metrics=dict(zip(self._metric_names, figures, strict=True)),
        )
