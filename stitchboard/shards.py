"""Conversations held in shards: what one keyed stitching step owns, and when it forgets them.

Keying the stitcher by conversation would make the stream processor hold (and route, and time) one
piece of state per open conversation; a shard holds a slice of a tenant's conversations in plain
dicts instead, so the per-conversation cost is the conversation's own state and nothing else, and a
batch of deliveries costs one call. Shards are fixed by a stable hash of the conversation id, so a
restored snapshot finds its conversations where it left them.

Retention runs on system time: late mutations (wrap-up changes, QA scores) arriving within the
retention of a conversation's last delivery still find it; an ended conversation is forgotten after
it, an open one only once it has been silent for the (much longer) stale period. A conversation
still holding provisional (live-stream) events is kept like an open one even once it has ended: its
complete record is still due, and must find the provisional figures it replaces.

A live stream reports events within seconds, so a delivery of provisional events only that would
open a new conversation although it was received more than the retention after its events happened
is a leftover of a conversation already completed and forgotten (a re-delivery, a replayed backlog):
it is ignored as superseded rather than counted as a new contact.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from stitchboard.contributions import TenantFeed
from stitchboard.conversation import Conversation
from stitchboard.deadletters import DeadLetter, RecordRef, internal_error
from stitchboard.deliveries import Delivery
from stitchboard.settings import ConversationLimits, TenantSettings
from stitchboard.stitching.stitch import DEFAULT_LIMITS, stitch_group
from stitchboard.stitching.store import AddResult, ConversationState


def shard_of(conversation_id: str, shards: int) -> int:
    """Stable across processes and restarts (unlike ``hash``), so recovery finds the same shard."""
    return zlib.crc32(conversation_id.encode("utf-8")) % shards


STITCH_STEP = "stitch"  # names the step in the dead letter of a delivery the stitcher failed on


@dataclass(slots=True)
class Stitched:
    """The outcome of one batch of deliveries in one shard."""

    feeds: list[TenantFeed] = field(default_factory=list)
    conversations: dict[str, Conversation] = field(default_factory=dict)  # last summary of each changed one
    delivered: dict[str, Delivery] = field(default_factory=dict)  # the last delivery of each changed one
    records: dict[str, RecordRef] = field(default_factory=dict)  # and the record it came from
    dead_letters: list[DeadLetter] = field(default_factory=list)
    results: Counter[AddResult] = field(default_factory=Counter)


def _copy(state: ConversationState) -> ConversationState:
    """A snapshot of a conversation's state: every field is immutable, so this is a few references."""
    copied = ConversationState.__new__(ConversationState)
    copied.__setstate__(state.__getstate__())
    return copied


class ConversationShard:
    """The conversations of one (tenant, shard), in order of their last delivery.

    ``_active`` holds conversations delivered to within the retention, oldest delivery first, so
    eviction only looks at the front; an open conversation quiet for longer moves to ``_quiet``
    (same order) where only the stale period can end it. A new delivery moves a conversation back
    to the end of ``_active``. Times are system-time seconds since the epoch.
    """

    __slots__ = ("_active", "_due_at", "_quiet", "retention_seconds", "stale_seconds")

    def __init__(self, retention_seconds: float, stale_seconds: float) -> None:
        self.retention_seconds = retention_seconds
        self.stale_seconds = stale_seconds
        self._active: dict[str, ConversationState] = {}
        self._quiet: dict[str, ConversationState] = {}
        self._due_at: float | None = None

    def __len__(self) -> int:
        return len(self._active) + len(self._quiet)

    def __getstate__(self) -> tuple[object, ...]:
        return (self.retention_seconds, self.stale_seconds, self._active, self._quiet)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        self.retention_seconds, self.stale_seconds, self._active, self._quiet = state  # type: ignore[assignment]
        self._due_at = self._earliest_due()

    def get(self, conversation_id: str) -> ConversationState | None:
        return self._active.get(conversation_id) or self._quiet.get(conversation_id)

    def apply(
        self,
        numbered: Sequence[tuple[int, Delivery]],
        tenant: TenantSettings,
        now: float,
        limits: ConversationLimits = DEFAULT_LIMITS,
    ) -> Stitched:
        """Stitch each delivery in the order given; one feed per delivery, in that order.

        A delivery refused for a conversation limit (`stitch_group`) leaves its conversation as it
        was; one that would have opened a conversation leaves none behind. A delivery the stitcher
        fails on (a bug, a value no rule foresaw) becomes an ``internal_error`` dead letter with its
        record's bytes; its conversation keeps the state it had before, and its feed carries
        nothing, so the flow goes on as if it had not been sent.
        """
        out = Stitched()
        active, quiet = self._active, self._quiet
        for arrival, delivery in numbered:
            conversation_id = delivery.conversation_id
            record = RecordRef.of(delivery.raw, delivery.origin, delivery.received_at, delivery.source)
            state = active.pop(conversation_id, None) or quiet.pop(conversation_id, None)
            before = None if state is None else _copy(state)
            try:
                times = [event.event_time for event in delivery.events]
                earliest, latest = min(times), max(times)
                if state is None and self._stale_stream(delivery, latest):
                    out.results[AddResult.SUPERSEDED] += len(delivery.events)
                    out.feeds.append(
                        TenantFeed(delivery.tenant, arrival, earliest, latest, [], conversation_id, record)
                    )
                    continue
                outcome = stitch_group(
                    state, delivery.events, tenant, limits, raw=delivery.raw, origin=delivery.origin
                )
            except Exception as exc:
                if before is not None:
                    before.touched_at = now
                    active[conversation_id] = before
                out.dead_letters.append(self._failed(exc, delivery))
                out.feeds.append(
                    TenantFeed(delivery.tenant, arrival, None, None, [], conversation_id, record)
                )
                continue
            state = outcome.state
            if len(state):
                state.touched_at = now
                active[conversation_id] = state
            out.results.update(outcome.results)
            out.dead_letters.extend(outcome.dead_letters)
            if outcome.conversation is not None:
                out.conversations[conversation_id] = outcome.conversation
                out.delivered[conversation_id] = delivery
                out.records[conversation_id] = record
            out.feeds.append(
                TenantFeed(
                    delivery.tenant, arrival, earliest, latest, outcome.deltas, conversation_id, record
                )
            )
        if numbered:
            due = now + self.retention_seconds  # what was delivered to is due then at the latest
            if self._due_at is None or due < self._due_at:
                self._due_at = due
        return out

    @staticmethod
    def _failed(exc: Exception, delivery: Delivery) -> DeadLetter:
        return internal_error(
            exc,
            STITCH_STEP,
            delivery.raw,
            delivery.events[0].ingest_time,
            tenant=delivery.tenant,
            source=delivery.source,
            origin=delivery.origin,
            part=f"conversation {delivery.conversation_id}",
        )

    def _stale_stream(self, delivery: Delivery, latest: datetime) -> bool:
        """Provisional events only, received more than the retention after the latest of them."""
        received = delivery.events[0].ingest_time
        return (
            all(event.provisional for event in delivery.events)
            and (received - latest).total_seconds() > self.retention_seconds
        )

    def evict(self, now: float) -> int:
        """Forget ended conversations quiet for the retention and any silent for the stale period;
        an ended one still awaiting its complete record is kept until the stale period."""
        forgotten = 0
        due: list[str] = []
        for conversation_id, state in self._active.items():
            if now - state.touched_at < self.retention_seconds:
                break
            due.append(conversation_id)
        for conversation_id in due:
            state = self._active.pop(conversation_id)
            if (state.ended and not state.awaiting_record) or now - state.touched_at >= self.stale_seconds:
                forgotten += 1
            else:
                self._quiet[conversation_id] = state
        due.clear()
        for conversation_id, state in self._quiet.items():
            if now - state.touched_at < self.stale_seconds:
                break
            due.append(conversation_id)
        for conversation_id in due:
            del self._quiet[conversation_id]
        self._due_at = self._earliest_due()
        return forgotten + len(due)

    def next_eviction(self) -> float | None:
        """When `evict` next has something to look at (possibly early); None when empty."""
        return self._due_at

    def _earliest_due(self) -> float | None:
        candidates: list[float] = []
        for states, after in ((self._active, self.retention_seconds), (self._quiet, self.stale_seconds)):
            for state in states.values():
                candidates.append(state.touched_at + after)
                break
        return min(candidates) if candidates else None
