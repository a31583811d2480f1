"""Rows the flow publishes; one dataclass per ClickHouse table (DDL in ``stitchboard.tables``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

IntervalStatus = Literal["provisional", "final", "restated"]


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """Current state of one stitched conversation (ReplacingMergeTree by ``version``)."""

    tenant: str
    conversation_id: str
    version: int
    status: Literal["open", "ended"]
    channel: str
    direction: str
    started_at: datetime
    ended_at: datetime | None
    first_queue: str
    last_queue: str
    queues: tuple[str, ...]
    agents: tuple[str, ...]
    legs: int
    transfers: int
    answered: bool
    abandoned: bool
    ivr_outcome: str
    wait_ms: int
    talk_ms: int
    hold_ms: int
    acw_ms: int
    handle_ms: int
    wrapup_code: str
    qa_score: int | None
    reopened: int
    intent: str
    customer_keys: tuple[str, ...]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IntervalRow:
    """Figures of one (tenant, queue, channel, interval): provisional, final or restated."""

    tenant: str
    queue: str
    channel: str
    interval_minutes: int
    interval_start: datetime  # UTC
    interval_end: datetime  # UTC (23/25 h for a daily interval on a DST day)
    local_start: str  # ISO wall time with offset, e.g. "2026-03-29T02:00:00+01:00"
    local_date: date
    time_zone: str
    status: IntervalStatus
    version: int  # strictly increasing per interval; replays reproduce it
    metrics: dict[str, int] = field(default_factory=dict)  # every catalogue metric, 0 if none


@dataclass(frozen=True, slots=True)
class RestatementRow:
    """A dated, explicit change to a finalised figure: as published, corrected, delta, why."""

    tenant: str
    queue: str
    channel: str
    interval_minutes: int
    interval_start: datetime
    time_zone: str
    metric: str
    published: int  # the figure in the final row
    previous: int  # the figure before this restatement (published, or the last restatement)
    corrected: int
    delta: int  # corrected - previous
    reason: str
    restatement_seq: int  # 1, 2, ... per interval; replays reproduce it
    watermark: datetime  # event-time watermark when restated
    restated_at: datetime  # wall-clock time when restated


@dataclass(frozen=True, slots=True)
class AgentStateRow:
    """One agent presence change (the basis of occupancy)."""

    tenant: str
    agent: str
    state: str
    at: datetime
    event_id: str
