"""A conversation's summary, rebuilt from its stored events in replay order.

Rebuilding from scratch instead of patching incrementally is what makes out-of-order delivery give
exactly the same result as in-order delivery. The store (``stitchboard.stitching.store``) keeps what
this module needs of each event (``event_value`` says which attribute) and hands the events over as
``StoredEvent`` tuples in replay order: event time, then lifecycle order of the type, then id.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from datetime import datetime

from stitchboard.conversation import Conversation, IvrOutcome, Leg, TransferKind, ms_between
from stitchboard.events import CanonicalEvent, Channel, Direction, EventType
from stitchboard.stitching.instants import EPOCH, from_micros

TYPES: tuple[EventType, ...] = tuple(EventType)  # declaration order = lifecycle order, used for ties
TYPE_INDEX: dict[EventType, int] = {kind: index for index, kind in enumerate(TYPES)}
# (event time µs since the epoch, index of its type in ``TYPES``, leg id, queue, agent, its
# ``event_value``, (intent, customer keys) or None)
StoredEvent = tuple[
    int, int, str | None, str | None, str | None, object, tuple[str | None, tuple[str, ...]] | None
]

_VALUE_ATTRIBUTE: dict[EventType, str] = {
    EventType.IVR_STEP: "node",
    EventType.HOLD: "duration_ms",
    EventType.TRANSFER_BLIND: "target_queue",
    EventType.TRANSFER_CONSULT: "target_queue",
    EventType.DISCONNECTED: "self_served",
    EventType.WRAPUP_SET: "code",
    EventType.QA_SCORE_SET: "score",
}
# Events that happen to a contact after the fact; a conversation made only of these (its live part
# already evicted) is not counted as a new contact.
_AFTERMATH: frozenset[EventType] = frozenset(
    {
        EventType.ACW_START,
        EventType.ACW_END,
        EventType.WRAPUP_SET,
        EventType.QA_SCORE_SET,
        EventType.TICKET_REOPENED,
    }
)
_AFTERMATH_INDEXES: frozenset[int] = frozenset(TYPE_INDEX[kind] for kind in _AFTERMATH)
# What can set a leg's queue, answer or agent: the events after which `_Legs.index` looks at it.
_INDEXED: frozenset[int] = frozenset(
    TYPE_INDEX[kind] for kind in (EventType.QUEUED, EventType.ANSWERED, EventType.ABANDONED)
)
_LEG_LEVEL: frozenset[EventType] = frozenset(
    {
        EventType.QUEUED,
        EventType.ANSWERED,
        EventType.HOLD,
        EventType.RESUME,
        EventType.TRANSFER_BLIND,
        EventType.TRANSFER_CONSULT,
        EventType.ACW_START,
        EventType.ACW_END,
        EventType.WRAPUP_SET,
        EventType.QA_SCORE_SET,
    }
)


def event_value(event: CanonicalEvent) -> object:
    """The one attribute the summary reads of an event of its type (None when it reads none);
    a reported hold total is ``(duration_ms, number of holds)``."""
    kind = event.event_type
    value = event.attributes.get(_VALUE_ATTRIBUTE.get(kind, "")) if event.attributes else None
    if kind is EventType.HOLD and isinstance(value, int):
        count = event.attributes.get("count", 1)
        return (value, count if isinstance(count, int) and not isinstance(count, bool) else 1)
    return value


class _LegBuilder:
    """Mutable accumulator used only while replaying events into a `Leg`."""

    __slots__ = (
        "abandoned_at",
        "acw_end",
        "acw_start",
        "agent",
        "answered_at",
        "hold_ms",
        "hold_open_at",
        "holds",
        "indexed_agent",
        "indexed_queue",
        "leg_id",
        "order",
        "qa_score",
        "queue",
        "queued_at",
        "talk_end",
        "talking",
        "transfer_at",
        "transfer_kind",
        "transfer_target",
        "wrapup_code",
    )

    def __init__(self, leg_id: str, order: int) -> None:
        self.leg_id = leg_id
        self.order = order  # creation order among the conversation's legs
        self.indexed_queue = False  # bookkeeping of `_Legs`
        self.indexed_agent: str | None = None
        self.talking = False
        self.queue = ""
        self.queued_at: datetime | None = None
        self.answered_at: datetime | None = None
        self.abandoned_at: datetime | None = None
        self.agent: str | None = None
        self.hold_ms = 0
        self.holds = 0
        self.hold_open_at: datetime | None = None
        self.talk_end: datetime | None = None
        self.transfer_kind: TransferKind | None = None
        self.transfer_at: datetime | None = None
        self.transfer_target: str | None = None
        self.acw_start: datetime | None = None
        self.acw_end: datetime | None = None
        self.wrapup_code: str | None = None
        self.qa_score: int | None = None

    def end_talk(self, at: datetime) -> None:
        if self.talk_end is None:
            self.talk_end = at
            self.close_hold(at)

    def close_hold(self, at: datetime) -> None:
        if self.hold_open_at is not None:
            self.hold_ms += max(0, ms_between(self.hold_open_at, at))
            self.hold_open_at = None

    def freeze(self, started_at: datetime, known_until: datetime) -> Leg:
        """The leg, its figures consistent whatever its records disagreed on: holds within the talk
        (the talk so far, up to ``known_until``, while it lasts; none without an answer), after-call
        work from the conversation's start at the earliest. (After-call work may overlap the end of
        the talk: real Genesys records start the wrap-up a few hundred ms before the call ends, and
        count both in full.)"""
        if self.talk_end is None and self.answered_at is not None and self.acw_start is not None:
            self.end_talk(self.acw_start)
        hold_ms = 0
        if self.answered_at is not None:
            talk_span = ms_between(self.answered_at, self.talk_end or known_until)
            hold_ms = max(0, min(self.hold_ms, talk_span))
        acw_start = self.acw_start
        if acw_start is not None:
            acw_start = max(acw_start, started_at)
        return Leg(
            leg_id=self.leg_id,
            queue=self.queue,
            queued_at=self.queued_at,
            answered_at=self.answered_at,
            abandoned_at=self.abandoned_at,
            agent=self.agent,
            hold_ms=hold_ms,
            holds=self.holds,
            talk_end=self.talk_end,
            transfer_kind=self.transfer_kind,
            transfer_at=self.transfer_at,
            transfer_target=self.transfer_target,
            acw_start=acw_start,
            acw_end=self.acw_end,
            wrapup_code=self.wrapup_code,
            qa_score=self.qa_score,
        )


def summarise(
    tenant: str,
    conversation_id: str,
    version: int,
    channel: Channel,
    direction: Direction,
    events: Iterable[StoredEvent],
) -> Conversation:
    """Replay stored events (in replay order, at least one) into the stitched summary.

    Records of one conversation may disagree (each is checked only on its own), so the summary
    never trusts one record's times against another's: the conversation starts at its earliest
    live event (its arrival, unless a record says something happened before it) and ends no
    earlier than anything that happened to one of its legs, and each leg's figures are bounded by
    `_LegBuilder.freeze`: every duration lies between 0 and the conversation's span, in any
    delivery order (docs/architecture.md, "Records that disagree").
    """
    first_at: datetime | None = None
    first_live: datetime | None = None  # the first event's that is not an aftermath one
    last_at = EPOCH
    legs = _Legs()
    disconnected_at: datetime | None = None
    ivr_abandoned_at: datetime | None = None
    self_served = False
    ivr_steps: list[tuple[str, datetime]] = []
    reopened: list[datetime] = []
    customer_keys: set[str] = set()
    intent: str | None = None
    conferences = 0
    for entry in events:
        moment, kind_index, leg_id, queue, agent, value, extra = entry
        kind = TYPES[kind_index]
        at = last_at = from_micros(moment)
        if first_at is None:
            first_at = at
        if first_live is None and kind_index not in _AFTERMATH_INDEXES:
            first_live = at
        if extra is not None:
            event_intent, keys = extra
            customer_keys.update(keys)
            intent = intent or event_intent
        leg = legs.find(kind, leg_id, queue, agent) if kind in _LEG_LEVEL else None
        if kind is EventType.ABANDONED and (leg_id is not None or queue is not None):
            leg = legs.find(kind, leg_id, queue, agent)
        if kind is EventType.IVR_STEP:
            ivr_steps.append((str(value) if value is not None else "", at))
        elif kind is EventType.CONFERENCE:
            conferences += 1
        elif kind is EventType.TICKET_REOPENED:
            reopened.append(at)
        elif kind is EventType.DISCONNECTED:
            disconnected_at = at
            self_served = value is True
            target = None if leg_id is None else legs.get(leg_id)
            if target is None:
                legs.end_talk(at)
            elif target.answered_at is not None:
                target.end_talk(at)
        elif kind is EventType.ABANDONED and leg is None:
            ivr_abandoned_at = ivr_abandoned_at or at
        elif leg is not None:
            _apply_to_leg(leg, kind, at, queue, agent, value)
            if kind_index in _INDEXED:
                legs.index(leg)
    if first_at is None:
        raise ValueError(f"conversation {conversation_id} has no events yet")
    anchored = first_live is not None
    started_at = first_live or first_at
    frozen = tuple(leg.freeze(started_at, last_at) for leg in legs.by_id.values())
    frozen = tuple(sorted(frozen, key=lambda leg: (_leg_start(leg) is None, _leg_start(leg) or EPOCH)))
    ivr_outcome, ivr_outcome_at = _ivr_outcome(
        frozen, ivr_steps, disconnected_at, ivr_abandoned_at, self_served
    )
    customer_end = _customer_end(frozen, disconnected_at, ivr_abandoned_at)
    ended_at = None
    if customer_end is not None and all(
        leg.acw_end is not None or leg.acw_start is None for leg in frozen if leg.answered_at is not None
    ):
        ended_at = max([customer_end, *_leg_moments(frozen)])
    return Conversation(
        tenant=tenant,
        conversation_id=conversation_id,
        channel=channel,
        direction=direction,
        started_at=started_at,
        ended_at=ended_at,
        disconnected_at=customer_end,
        customer_keys=tuple(sorted(customer_keys)),
        intent=intent,
        ivr_steps=tuple(ivr_steps),
        ivr_outcome=ivr_outcome,
        ivr_outcome_at=ivr_outcome_at,
        legs=frozen,
        reopened_at=tuple(reopened),
        conferences=conferences,
        anchored=anchored,
        version=version,
    )


class _Legs:
    """The legs of a conversation being replayed, and what `find` looks legs up by, kept indexed.

    Without an index, finding the leg of an event without a leg id looked through every leg, and a
    disconnect ended the talk of every leg: time quadratic in the legs of a long conversation. Each
    index is a list in creation order whose entries only ever stop matching (a leg's queue is set
    once, a closed leg never reopens, an answer is never undone; a changed agent is indexed again),
    so entries that no longer match are dropped from the end for good: constant time per event.
    """

    __slots__ = ("_by_agent", "_by_queue", "_latest_answered", "_talking", "by_id")

    def __init__(self) -> None:
        self.by_id: dict[str, _LegBuilder] = {}
        self._by_queue: dict[str, list[_LegBuilder]] = {}  # legs of the queue
        self._by_agent: dict[str, list[_LegBuilder]] = {}  # answered legs of the agent
        self._latest_answered: _LegBuilder | None = None
        self._talking: list[_LegBuilder] = []  # answered legs, until a disconnect ends their talk

    def get(self, leg_id: str) -> _LegBuilder | None:
        return self.by_id.get(leg_id)

    def find(self, kind: EventType, leg_id: str | None, queue: str | None, agent: str | None) -> _LegBuilder:
        """The leg an event belongs to; without a leg id: by queue for queue events, by agent for the
        agent's handling events (streams that name the agent but not the queue visit), else the
        latest answered leg, else the latest leg.

        An agent's event that matches none of the agent's answered legs goes to a leg of its own,
        which is neither queued nor answered and so counts nothing (an offer the agent never answered).
        """
        if leg_id is not None:
            return self._leg(leg_id)
        if kind in (EventType.QUEUED, EventType.ANSWERED, EventType.ABANDONED) and queue is not None:
            open_leg = _latest(self._by_queue.get(queue), _is_open)
            return open_leg or self._leg(f"{queue}#{len(self.by_id)}")
        if agent is not None and kind is not EventType.ANSWERED:
            handled = _latest(self._by_agent.get(agent), lambda leg: leg.agent == agent)
            return handled or self._leg(f"agent:{agent}")
        if self._latest_answered is not None:
            return self._latest_answered
        if self.by_id:
            return next(reversed(self.by_id.values()))
        return self._leg("")

    def index(self, leg: _LegBuilder) -> None:
        """Index what an event just set on ``leg`` (its queue, its answer and agent)."""
        if leg.queue and not leg.indexed_queue:
            leg.indexed_queue = True
            _insert(self._by_queue, leg.queue, leg)
        if leg.answered_at is None:
            return
        if leg.agent is not None and leg.indexed_agent != leg.agent:
            leg.indexed_agent = leg.agent
            _insert(self._by_agent, leg.agent, leg)
        if self._latest_answered is None or leg.order > self._latest_answered.order:
            self._latest_answered = leg
        if not leg.talking:
            leg.talking = True
            self._talking.append(leg)

    def end_talk(self, at: datetime) -> None:
        """A disconnect that names no known leg ends the talk of every leg answered so far (in replay
        order every answer so far came at or before it)."""
        for leg in self._talking:
            leg.end_talk(at)
        self._talking.clear()

    def _leg(self, key: str) -> _LegBuilder:
        known = self.by_id.get(key)
        if known is None:
            known = self.by_id[key] = _LegBuilder(key, len(self.by_id))
        return known


def _is_open(leg: _LegBuilder) -> bool:
    return leg.talk_end is None and leg.abandoned_at is None


def _latest(legs: list[_LegBuilder] | None, matches: Callable[[_LegBuilder], bool]) -> _LegBuilder | None:
    """The latest leg of ``legs`` that ``matches``, dropping the ones after it that no longer do."""
    while legs:
        if matches(legs[-1]):
            return legs[-1]
        legs.pop()
    return None


def _insert(index: dict[str, list[_LegBuilder]], key: str, leg: _LegBuilder) -> None:
    """Add ``leg`` to ``index[key]`` in creation order (nearly always at the end)."""
    legs = index.get(key)
    if not legs:
        index[key] = [leg]
    elif legs[-1].order < leg.order:
        legs.append(leg)
    else:
        bisect.insort(legs, leg, key=lambda known: known.order)


def _apply_to_leg(
    leg: _LegBuilder, kind: EventType, at: datetime, queue: str | None, agent: str | None, value: object
) -> None:
    if queue and not leg.queue and kind in (EventType.QUEUED, EventType.ANSWERED, EventType.ABANDONED):
        leg.queue = queue
    if kind is EventType.QUEUED:
        leg.queued_at = leg.queued_at or at
    elif kind is EventType.ANSWERED:
        leg.answered_at = leg.answered_at or at
        leg.agent = agent or leg.agent
    elif kind is EventType.ABANDONED:
        if leg.answered_at is None:
            leg.abandoned_at = leg.abandoned_at or at
    elif kind is EventType.HOLD:
        if isinstance(value, tuple):  # a total reported by the source: (duration_ms, number of holds)
            leg.hold_ms += max(0, value[0])
            leg.holds += max(0, value[1])
        elif leg.hold_open_at is None and leg.talk_end is None:
            leg.hold_open_at = at
            leg.holds += 1
    elif kind is EventType.RESUME:
        leg.close_hold(at)
    elif kind in (EventType.TRANSFER_BLIND, EventType.TRANSFER_CONSULT):
        if leg.transfer_at is None:
            leg.transfer_kind = "blind" if kind is EventType.TRANSFER_BLIND else "consult"
            leg.transfer_at = at
            leg.transfer_target = str(value) if value is not None else None
        leg.end_talk(at)
    elif kind is EventType.ACW_START:
        leg.acw_start = leg.acw_start or at
    elif kind is EventType.ACW_END:
        leg.acw_end = at
    elif kind is EventType.WRAPUP_SET:
        leg.wrapup_code = str(value) if value is not None else None
    elif kind is EventType.QA_SCORE_SET and isinstance(value, int) and not isinstance(value, bool):
        leg.qa_score = value


def _leg_moments(legs: tuple[Leg, ...]) -> list[datetime]:
    """The instants the legs' figures are measured between."""
    return [
        moment
        for leg in legs
        for moment in (
            leg.queued_at,
            leg.answered_at,
            leg.abandoned_at,
            leg.talk_end,
            leg.transfer_at,
            leg.acw_end,
        )
        if moment is not None
    ]


def _leg_start(leg: Leg) -> datetime | None:
    return leg.queued_at or leg.answered_at or leg.abandoned_at


def _ivr_outcome(
    legs: tuple[Leg, ...],
    ivr_steps: list[tuple[str, datetime]],
    disconnected_at: datetime | None,
    ivr_abandoned_at: datetime | None,
    self_served: bool,
) -> tuple[IvrOutcome, datetime | None]:
    """How self-service ended: queued to a person, contained, or abandoned (with when)."""
    reached_person = any(leg.queue or leg.answered_at is not None for leg in legs)
    if reached_person:
        return ("queued", None) if ivr_steps else ("", None)
    if ivr_abandoned_at is not None:
        return "abandoned", ivr_abandoned_at
    if disconnected_at is not None and self_served:
        return "contained", disconnected_at
    if disconnected_at is not None and ivr_steps:
        return "abandoned", disconnected_at
    return "", None


def _customer_end(
    legs: tuple[Leg, ...], disconnected_at: datetime | None, ivr_abandoned_at: datetime | None
) -> datetime | None:
    if disconnected_at is not None:
        return disconnected_at
    queued = [leg for leg in legs if leg.queue or leg.answered_at is not None]
    if queued and queued[-1].abandoned_at is not None:
        return queued[-1].abandoned_at
    if not queued and ivr_abandoned_at is not None:
        return ivr_abandoned_at
    return None
