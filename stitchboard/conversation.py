"""The stitched conversation: its legs and what is known of it so far.

The shared vocabulary of the stitcher (``stitchboard.stitching`` builds it from stored events), the
metric catalogue (``stitchboard.metrics`` turns it into contributions), the path of a conversation
(``stitchboard.conversation_paths``) and its table row. It imports only the event model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from stitchboard.events import Channel, Direction

TransferKind = Literal["blind", "consult"]
IvrOutcome = Literal["", "queued", "contained", "abandoned"]


def ms_between(start: datetime, end: datetime) -> int:
    """Whole milliseconds from ``start`` to ``end`` (floored; durations are integer ms everywhere)."""
    return (end - start) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Leg:
    """One visit to one queue and, when answered, the agent's handling of it."""

    leg_id: str
    queue: str  # "" when the leg never named a queue
    queued_at: datetime | None
    answered_at: datetime | None
    abandoned_at: datetime | None
    agent: str | None
    hold_ms: int  # closed holds only
    holds: int
    talk_end: datetime | None  # transfer or disconnect (or ACW start when neither was reported)
    transfer_kind: TransferKind | None
    transfer_at: datetime | None
    transfer_target: str | None
    acw_start: datetime | None
    acw_end: datetime | None
    wrapup_code: str | None
    qa_score: int | None

    @property
    def offered_at(self) -> datetime | None:
        """Queue entry; a leg answered or abandoned without a reported queue entry waited zero."""
        if not self.queue:
            return None
        return self.queued_at or self.answered_at or self.abandoned_at

    @property
    def answer_wait_ms(self) -> int | None:
        if self.answered_at is None:
            return None
        start = self.queued_at or self.answered_at
        return max(0, ms_between(start, self.answered_at))

    @property
    def abandon_wait_ms(self) -> int | None:
        if self.abandoned_at is None or self.answered_at is not None:
            return None
        start = self.queued_at or self.abandoned_at
        return max(0, ms_between(start, self.abandoned_at))

    @property
    def handling_end(self) -> datetime | None:
        """When the agent finished with the leg: ACW end if it had ACW, else its talk end."""
        if self.answered_at is None or self.talk_end is None:
            return None
        if self.acw_start is not None or self.acw_end is not None:
            return self.acw_end
        return self.talk_end

    @property
    def talk_ms(self) -> int:
        if self.answered_at is None or self.talk_end is None:
            return 0
        return max(0, ms_between(self.answered_at, self.talk_end) - self.hold_ms)

    @property
    def acw_ms(self) -> int:
        if self.acw_end is None:
            return 0
        start = self.acw_start or self.talk_end or self.acw_end
        return max(0, ms_between(start, self.acw_end))

    @property
    def handle_ms(self) -> int:
        return self.talk_ms + self.hold_ms + self.acw_ms


@dataclass(frozen=True, slots=True)
class Conversation:
    """The stitched summary of one conversation, as far as its events are known."""

    tenant: str
    conversation_id: str
    channel: Channel
    direction: Direction
    started_at: datetime
    ended_at: datetime | None  # None while open
    disconnected_at: datetime | None  # the customer's end: disconnect, last-leg abandon or IVR end
    customer_keys: tuple[str, ...]
    intent: str | None
    ivr_steps: tuple[tuple[str, datetime], ...]
    ivr_outcome: IvrOutcome
    ivr_outcome_at: datetime | None
    legs: tuple[Leg, ...]
    reopened_at: tuple[datetime, ...]
    conferences: int
    anchored: bool  # has a live event (not only wrap-up/QA/ACW/reopen arriving after eviction)
    version: int

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def queued_legs(self) -> tuple[Leg, ...]:
        return tuple(leg for leg in self.legs if leg.queue)

    @property
    def first_queue(self) -> str:
        queued = self.queued_legs
        return queued[0].queue if queued else ""

    @property
    def last_answered_leg(self) -> Leg | None:
        answered = [leg for leg in self.legs if leg.answered_at is not None]
        return answered[-1] if answered else None
