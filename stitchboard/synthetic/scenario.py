"""What the synthetic generator decides happened: the ground truth, before any source shape.

The generator draws these; renderers turn them into Genesys-, Connect- or webhook-shaped payloads;
the truth module computes expected figures from these objects directly, never from events.
All times are UTC, aware, and on whole seconds (Connect-style sources report whole seconds); the
only sub-second facts are how far a Genesys record's segment boundaries drift apart
(``SimLeg.boundary_gap_ms``), which no figure depends on.

Some facts only shape how a vendor reports a conversation and move no figure: an agent alerted but
not answering (``SimLeg.missed``), a consult with an internal user (``SimLeg.consults``), when the
answering agent was alerted, a record with only the vendor's required fields (``sparse``), where a
Genesys session carries its ``disconnectType``, and stream events sent before the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from stitchboard.events import Channel, CustomerIds, Direction

Shape = Literal["genesys", "connect", "webhook"]
LegOutcome = Literal["answered", "abandoned"]
TransferKind = Literal["blind", "consult", "external"]  # external: to a number outside; no next leg
StreamTiming = Literal["", "before", "around"]  # stream events: none, all before the record, some after
IvrOutcome = Literal["contained", "abandoned", "queued"]


@dataclass(slots=True)
class SimHold:
    start: datetime
    end: datetime


@dataclass(slots=True)
class SimAlert:
    """An agent alerted for a queue visit who did not respond: another agent answered it later,
    or (ending with the visit) the customer hung up while it rang."""

    agent: str
    start: datetime
    end: datetime


@dataclass(slots=True)
class SimConsult:
    """The answering agent consulting an internal user (not routed by a queue) while the customer holds."""

    user: str
    start: datetime
    end: datetime


@dataclass(slots=True)
class SimLeg:
    """One visit to one queue and, when answered, the agent's handling of it."""

    leg_id: str
    queue: str  # "": dialled straight to an agent, never offered to a queue (entered_at == left_at)
    entered_at: datetime  # offered to the queue
    outcome: LegOutcome
    left_at: datetime  # answered_at when answered, abandoned_at when abandoned
    agent: str | None = None
    holds: list[SimHold] = field(default_factory=list)
    transfer: TransferKind | None = (
        None  # this agent leg ended by a transfer (to the next leg unless external)
    )
    ended_at: datetime | None = None  # agent talk ends (transfer or disconnect); None if abandoned
    acw_end: datetime | None = None  # after-call work runs from ended_at to acw_end
    wrapup_code: str | None = None
    wrapup_set_at: datetime | None = None  # arrives minutes after the leg ends
    wrapup_changed_to: str | None = None  # a later correction of the code
    wrapup_changed_at: datetime | None = None
    qa_score: int | None = None  # 0..100, set hours later
    qa_scored_at: datetime | None = None
    alerted_at: datetime | None = None  # the answering agent's alert began (None: answered unalerted)
    boundary_gap_ms: int = 0  # Genesys acd segment end minus the answering agent's interact start
    missed: list[SimAlert] = field(default_factory=list)  # alerted agents who did not respond
    consults: list[SimConsult] = field(default_factory=list)  # each within one of ``holds``

    @property
    def answered_at(self) -> datetime | None:
        return self.left_at if self.outcome == "answered" else None


@dataclass(slots=True)
class SimConversation:
    tenant: str
    conversation_id: str
    shape: Shape
    channel: Channel
    direction: Direction
    started_at: datetime
    ended_at: datetime  # customer disconnect (or last leg end; after an external transfer, that call's end)
    customer: CustomerIds
    intent: str | None
    ivr_steps: list[tuple[str, datetime]] = field(default_factory=list)  # (node, time)
    ivr_outcome: IvrOutcome | None = None  # None: no self-service front end
    legs: list[SimLeg] = field(default_factory=list)
    reopened_at: list[datetime] = field(default_factory=list)
    sparse: bool = False  # the record carries only what the vendor requires (older schema versions)
    disconnect_on_final_segment: bool = False  # Genesys: disconnectType only on a session's last segment
    streamed: StreamTiming = ""  # the platform's stream events are delivered besides the record


@dataclass(slots=True, frozen=True)
class SimAgentState:
    tenant: str
    agent: str
    state: str  # "available", "busy", "away", "offline"
    at: datetime
    shape: Shape
