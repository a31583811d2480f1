"""Rows the flow publishes: one dataclass per ClickHouse table, and ``PublishedRow``, their union
(dead letters included). ``stitchboard.tables`` holds the DDL and routes each row to its table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from stitchboard.deadletters import DeadLetter

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
    path: tuple[str, ...] = ()  # ordered steps, see ``stitchboard.conversation_paths``


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


EngagementStatus = Literal["provisional", "final"]


@dataclass(frozen=True, slots=True)
class EngagementRow:
    """One engagement: a customer's contacts about one intent within the window (highest version wins).

    ``deleted`` retracts an engagement id that no longer exists (its contacts moved to another
    engagement after an identity merge or a changed intent); ``FINAL`` reads skip it.
    """

    tenant: str
    engagement_id: str  # the id of its first conversation
    customer_key: str  # "" for an unlinked contact (no identifier, or no intent)
    intent: str
    first_conversation_id: str
    last_conversation_id: str
    conversation_ids: tuple[str, ...]  # in start order
    first_started_at: datetime
    last_started_at: datetime
    contacts: int
    repeat_contacts: int
    channels: tuple[str, ...]  # channel of each contact, in start order
    first_channel: str
    last_channel: str
    channel_switches: int
    resolved: bool  # the last contact's final wrap-up code is a resolved one
    fcr: bool  # resolved in one conversation with no repeat in the window
    status: EngagementStatus  # provisional until the window closes, then final
    time_to_resolution_ms: int | None  # first start -> end of the resolving (last) contact
    agents: tuple[str, ...]  # in order of first involvement
    resolving_agent: str  # last agent of the resolving contact ("" when unresolved)
    last_wrapup_code: str
    window_end: datetime
    version: int
    deleted: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CustomerLinkRow:
    """An identity merge: a contact carried identifiers of two known customers."""

    tenant: str
    survivor_customer_key: str
    absorbed_customer_key: str
    via_identifiers: tuple[str, ...]  # typed pseudonymous keys of the linking contact
    conversation_id: str  # the linking contact
    at: datetime  # the linking contact's start (event time)
    link_seq: int  # 1, 2, ... per tenant; replays reproduce it
    linked_at: datetime  # wall-clock time


@dataclass(frozen=True, slots=True)
class EngagementRestatementRow:
    """A dated change to published first-contact resolution, with why (e.g. an identity merge)."""

    tenant: str
    engagement_id: str  # the engagement as it is now
    customer_key: str
    intent: str
    previous_engagement_ids: tuple[str, ...]  # the published engagements its contacts belonged to
    previous_fcr: int  # first-contact resolutions among those
    corrected_fcr: int
    delta: int
    previous_contacts: int
    corrected_contacts: int
    reason: str  # identity_merge | late_change
    restatement_seq: int  # 1, 2, ... per tenant; replays reproduce it
    watermark: datetime | None  # the journeys' ``complete_before`` (watermark - allowed lateness)
    restated_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationPathRow:
    """The ordered steps of one conversation and what they say (highest version wins)."""

    tenant: str
    conversation_id: str
    version: int
    channel: str
    intent: str
    started_at: datetime
    steps: tuple[str, ...]
    step_count: int
    first_step: str
    last_step: str
    self_service: bool
    opted_out: bool  # left self-service for a queue
    last_self_service_step: str
    contained: bool
    transfers: int
    duration_ms: int | None
    long_duration: bool
    many_transfers: bool
    many_steps: bool
    frustrated: bool


JourneyRow = EngagementRow | CustomerLinkRow | EngagementRestatementRow | ConversationPathRow
# Everything the flow hands the ClickHouse sink (``stitchboard.tables.tables_for`` routes it).
PublishedRow = ConversationRow | IntervalRow | RestatementRow | DeadLetter | AgentStateRow | JourneyRow
