"""Per-conversation state: de-duplication, event-time ordering and the stitched `Conversation`.

The state is pickled into every Bytewax snapshot, so it keeps each event as a small tuple of ints
and (shared) strings rather than a pydantic object, and rebuilds the `Conversation` summary from
scratch in event-time order whenever it is asked. Rebuilding instead of patching incrementally is
what makes out-of-order delivery give exactly the same result as in-order delivery.
"""

from __future__ import annotations

import bisect
import struct
import sys
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from hashlib import blake2b
from typing import Literal

import orjson

from stitchboard.contributions import ContributionKey, Contributions, Delta
from stitchboard.deadletters import DeadLetter
from stitchboard.events import CanonicalEvent, Channel, Direction, EventType
from stitchboard.metrics import METRIC_INDEX, METRIC_NAMES, ValueKey, contribution_values
from stitchboard.paths import conversation_path
from stitchboard.rows import ConversationRow
from stitchboard.settings import TenantSettings

TransferKind = Literal["blind", "consult"]
IvrOutcome = Literal["", "queued", "contained", "abandoned"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_TYPES: tuple[EventType, ...] = tuple(EventType)  # declaration order = lifecycle order, used for ties
_TYPE_INDEX: dict[EventType, int] = {kind: index for index, kind in enumerate(_TYPES)}
_CHANNELS: tuple[Channel, ...] = tuple(Channel)
_DIRECTIONS: tuple[Direction, ...] = tuple(Direction)
_CHANNEL_INDEX: dict[Channel, int] = {channel: index for index, channel in enumerate(_CHANNELS)}
_CHANNEL_VALUE_INDEX: dict[str, int] = {channel.value: index for index, channel in enumerate(_CHANNELS)}
_DIRECTION_INDEX: dict[Direction, int] = {direction: index for index, direction in enumerate(_DIRECTIONS)}
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
_AFTERMATH_INDEXES: frozenset[int] = frozenset(_TYPE_INDEX[kind] for kind in _AFTERMATH)
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
CONFLICT_REASON = "event_conflict"


def to_micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (no float rounding)."""
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _ms_between(start: datetime, end: datetime) -> int:
    return (end - start) // timedelta(milliseconds=1)


def _intern(value: str | None) -> str | None:
    """Shared string objects are written once per pickle, which keeps snapshots small."""
    return None if value is None else sys.intern(value)


class AddResult(StrEnum):
    APPLIED = "applied"  # new event, or a higher sequence replacing an earlier version
    DUPLICATE = "duplicate"  # same id, same sequence, same content: ignored
    CONFLICT = "conflict"  # same id, same sequence, different content: the caller dead-letters it
    STALE = "stale"  # lower sequence than already seen: ignored
    SUPERSEDED = "superseded"  # provisional, and the complete record of its scope is stored: ignored


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
        return max(0, _ms_between(start, self.answered_at))

    @property
    def abandon_wait_ms(self) -> int | None:
        if self.abandoned_at is None or self.answered_at is not None:
            return None
        start = self.queued_at or self.abandoned_at
        return max(0, _ms_between(start, self.abandoned_at))

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
        return max(0, _ms_between(self.answered_at, self.talk_end) - self.hold_ms)

    @property
    def acw_ms(self) -> int:
        if self.acw_end is None:
            return 0
        start = self.acw_start or self.talk_end or self.acw_end
        return max(0, _ms_between(start, self.acw_end))

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
        "leg_id",
        "qa_score",
        "queue",
        "queued_at",
        "talk_end",
        "transfer_at",
        "transfer_kind",
        "transfer_target",
        "wrapup_code",
    )

    def __init__(self, leg_id: str) -> None:
        self.leg_id = leg_id
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
            self.hold_ms += max(0, _ms_between(self.hold_open_at, at))
            self.hold_open_at = None

    def freeze(self) -> Leg:
        if self.talk_end is None and self.answered_at is not None and self.acw_start is not None:
            self.end_talk(self.acw_start)
        return Leg(
            leg_id=self.leg_id,
            queue=self.queue,
            queued_at=self.queued_at,
            answered_at=self.answered_at,
            abandoned_at=self.abandoned_at,
            agent=self.agent,
            hold_ms=self.hold_ms,
            holds=self.holds,
            talk_end=self.talk_end,
            transfer_kind=self.transfer_kind,
            transfer_at=self.transfer_at,
            transfer_target=self.transfer_target,
            acw_start=self.acw_start,
            acw_end=self.acw_end,
            wrapup_code=self.wrapup_code,
            qa_score=self.qa_score,
        )


def _fingerprint(event: CanonicalEvent) -> int:
    """A 32-bit digest of what an event says (not when it was received), to tell conflicts apart.

    JSON keeps value types apart (``1``, ``1.0``, ``true``, ``"1"``); the event time is taken as
    an instant, so the same moment written in another zone is the same content.
    """
    customer = event.customer
    content = (
        event.source,
        event.conversation_id,
        event.leg_id,
        event.channel,
        event.direction,
        event.event_type,
        to_micros(event.event_time),
        event.queue,
        event.agent,
        (customer.phone_hash, customer.email_hash, customer.account_hash, customer.cookie_hash),
        event.intent,
        event.attributes,
    )
    return zlib.crc32(orjson.dumps(content, option=orjson.OPT_SORT_KEYS))


def _id_hash(event_id: str) -> int:
    """64-bit stand-in for the event id: ids are long, and ~10 of them per state add up."""
    return int.from_bytes(blake2b(event_id.encode("utf-8"), digest_size=8).digest(), "little")


# A stored event is one fixed-width entry: (event time µs since the epoch, type index, id hash,
# sequence, fingerprint, flags) — the first three are the replay order — then the positions in the
# conversation's table of values of its leg id, queue, agent, the one attribute its type uses,
# (intent, customer keys) and its scope. Position 0 is None. The flags byte is channel*8+direction
# (below 64) plus ``_PROVISIONAL``. Packed, an event costs 42 bytes of state (plus each distinct
# value once) instead of ~250 as a tuple in a dict.
_NUMBERS = struct.Struct("<qBQqIBHHHHHH")
_KEY_OFFSET = 9  # where the id hash starts in an entry
_FLAGS_OFFSET = 29  # where the flags byte is in an entry
_PROVISIONAL = 0x80  # flags bit: the event came from a live stream (`CanonicalEvent.provisional`)
_CHANNEL_DIRECTION = 0x3F  # flags bits: channel*8+direction
_SCOPE = 11  # index of the scope's table position in an unpacked entry
# An emitted contribution: (queue's table position, time µs since the epoch, metric index, value).
_EMITTED = struct.Struct("<HqBq")


def _order(entry: tuple[int, ...]) -> tuple[int, int, int]:
    return (entry[0], entry[1], entry[2])


def _has_provisional(numbers: bytes) -> bool:
    """Any provisional entry: one slice of the flags bytes, no unpacking (channel*8+direction < 64)."""
    return bool(numbers) and max(numbers[_FLAGS_OFFSET :: _NUMBERS.size]) >= _PROVISIONAL


def _without_provisional(numbers: bytes, scope: int) -> bytes:
    """``numbers`` without the provisional entries whose scope is the table position ``scope``."""
    size = _NUMBERS.size
    return b"".join(
        numbers[at : at + size]
        for at, entry in zip(range(0, len(numbers), size), _NUMBERS.iter_unpack(numbers), strict=True)
        if not (entry[5] & _PROVISIONAL and entry[_SCOPE] == scope)
    )


# What a snapshot keeps of a `ConversationState`, in order (everything but the ``ended`` cache).
_PICKLED = ("tenant", "conversation_id", "_numbers", "_table", "_version", "_emitted", "touched_at")


class ConversationState:
    """Everything the stitcher keeps for one (tenant, conversation): small and picklable.

    Events are known by a 64-bit hash of their id (ids are long; the hash keeps state small) and kept
    packed, in replay order: event time, then lifecycle order of the event type (`EventType`
    declaration order), then that id hash — deterministic whatever the delivery order.
    """

    __slots__ = (
        "_emitted",
        "_ended",
        "_numbers",
        "_table",
        "_version",
        "conversation_id",
        "tenant",
        "touched_at",
    )

    def __init__(self, tenant: str, conversation_id: str) -> None:
        self.tenant = tenant
        self.conversation_id = conversation_id
        self._numbers = b""  # entries of ``_NUMBERS``, in replay order
        self._table: tuple[object, ...] = (None,)  # distinct values the entries refer to
        self._version = 0
        self._emitted = b""  # channel index, then ``_EMITTED`` entries in order: what was last emitted
        self._ended: bool | None = None  # of the last summary; not pickled
        self.touched_at = 0.0  # system time of the last delivery, for retention (``stitchboard.shards``)

    def __getstate__(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _PICKLED)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        for name, value in zip(_PICKLED, state, strict=True):
            setattr(self, name, value)
        self._ended = None

    @classmethod
    def for_event(cls, event: CanonicalEvent) -> ConversationState:
        if event.conversation_id is None:
            raise ValueError(f"{event.event_type.value} has no conversation")
        return cls(event.tenant, event.conversation_id)

    def __len__(self) -> int:
        return len(self._numbers) // _NUMBERS.size

    @property
    def version(self) -> int:
        return self._version

    def add(self, event: CanonicalEvent) -> AddResult:
        """Record an event unless it is a duplicate, a stale version or a conflicting re-send.

        The complete record wins: an event that is not provisional drops the stored provisional
        events of its scope, and a provisional event whose scope's complete record is stored is
        ignored (`AddResult.SUPERSEDED`). The summary is rebuilt from what is stored and deltas are
        diffs of contributions, so what the provisional events contributed is retracted exactly.
        """
        if event.tenant != self.tenant or event.conversation_id != self.conversation_id:
            raise ValueError(
                f"event {event.event_id} is for {event.tenant}/{event.conversation_id}, "
                f"not {self.tenant}/{self.conversation_id}"
            )
        provisional, scope = event.provisional, event.scope
        if provisional and scope is not None and self._completes(scope):
            return AddResult.SUPERSEDED
        key = _id_hash(event.event_id)
        fingerprint = _fingerprint(event)
        numbers, size = self._numbers, _NUMBERS.size
        known = self._find(key)
        if known is not None:
            known_sequence, known_fingerprint = _NUMBERS.unpack_from(numbers, known * size)[3:5]
            if event.sequence < known_sequence:
                return AddResult.STALE
            if event.sequence == known_sequence:
                return AddResult.DUPLICATE if fingerprint == known_fingerprint else AddResult.CONFLICT
            numbers = numbers[: known * size] + numbers[(known + 1) * size :]  # a newer version replaces it
        where = 0 if scope is None else self._position(scope, shared=False)
        if not provisional and where and _has_provisional(numbers):
            numbers = _without_provisional(numbers, where)  # the complete record wins
        moment = to_micros(event.event_time)
        kind = event.event_type
        value = event.attributes.get(_VALUE_ATTRIBUTE.get(kind, "")) if event.attributes else None
        if kind is EventType.HOLD and isinstance(value, int):
            count = event.attributes.get("count", 1)
            value = (value, count if isinstance(count, int) and not isinstance(count, bool) else 1)
        flags = _CHANNEL_INDEX[event.channel] * 8 + _DIRECTION_INDEX[event.direction]
        if provisional:
            flags |= _PROVISIONAL
        extra = None
        customer_keys = tuple(event.customer.keys())
        if event.intent is not None or customer_keys:
            extra = (event.intent, customer_keys)
        entry = (
            moment,
            _TYPE_INDEX[kind],
            key,
            event.sequence,
            fingerprint,
            flags,
            0 if event.leg_id is None else self._position(event.leg_id, shared=False),
            0 if event.queue is None else self._position(event.queue),
            0 if event.agent is None else self._position(event.agent),
            0 if value is None else self._position(value),
            0 if extra is None else self._position(extra),
            where,
        )
        packed = _NUMBERS.pack(*entry)
        count = len(numbers) // size
        if not count or _order(entry) > _order(_NUMBERS.unpack_from(numbers, (count - 1) * size)):
            at = count  # the common case: later than every stored event
        else:
            at = bisect.bisect([_order(known) for known in _NUMBERS.iter_unpack(numbers)], _order(entry))
        self._numbers = numbers[: at * size] + packed + numbers[at * size :]
        self._version += 1
        self._ended = None
        return AddResult.APPLIED

    def _position(self, value: object, *, shared: bool = True) -> int:
        """Where ``value`` is in the table, adding it if new (same type and value: ``1`` is not ``True``).

        ``shared`` strings (queues, agents, IVR nodes, codes) are interned: conversations then hold
        one copy. A leg id belongs to one conversation only; interning it would just add an entry
        to the interpreter's table of interned strings (~50 bytes per conversation at 100k).
        """
        if value is None:
            return 0
        if value == self.conversation_id:
            value = self.conversation_id  # a scope equal to the conversation: the state's own string
        table = self._table
        try:
            first = table.index(value)
        except ValueError:
            first = -1
        if first >= 0:
            if type(table[first]) is type(value):  # the common case; else 1 may have matched True
                return first
            for position, known in enumerate(table):
                if known == value and type(known) is type(value):
                    return position
        if len(table) > 0xFFFF:
            raise ValueError(f"conversation {self.conversation_id} has more than 65535 distinct values")
        self._table = (*table, _intern(value) if shared and isinstance(value, str) else value)
        return len(table)

    def _find(self, key: int) -> int | None:
        """The index of the stored event with id hash ``key``."""
        needle, numbers, size = key.to_bytes(8, "little"), self._numbers, _NUMBERS.size
        at = numbers.find(needle)
        while at != -1:
            if at % size == _KEY_OFFSET:
                return at // size
            at = numbers.find(needle, at + 1)
        return None

    def _completes(self, scope: str) -> bool:
        """Whether an event that is not provisional, of scope ``scope``, is stored.

        (A string equals no other type of table value, so ``index`` finds the scope itself.)
        """
        try:
            where = self._table.index(scope)
        except ValueError:
            return False
        return any(
            entry[_SCOPE] == where and not entry[5] & _PROVISIONAL
            for entry in _NUMBERS.iter_unpack(self._numbers)
        )

    @property
    def awaiting_record(self) -> bool:
        """Whether provisional events are stored: the complete record of their scope is still due."""
        return _has_provisional(self._numbers)

    @property
    def ended(self) -> bool:
        """Whether the conversation has ended; remembered from the last summary until the next event,
        because eviction timers ask every open conversation again and again."""
        if self._ended is None:
            self._ended = self.conversation().ended
        return self._ended

    def conversation(self) -> Conversation:
        """Replay the stored events in event-time order into the stitched summary."""
        if not self._numbers:
            raise ValueError(f"conversation {self.conversation_id} has no events yet")
        table = self._table
        first: tuple[int, ...] | None = None
        legs: dict[str, _LegBuilder] = {}
        arrived_at: datetime | None = None
        disconnected_at: datetime | None = None
        ivr_abandoned_at: datetime | None = None
        self_served = False
        ivr_steps: list[tuple[str, datetime]] = []
        reopened: list[datetime] = []
        customer_keys: set[str] = set()
        intent: str | None = None
        conferences = 0
        anchored = False
        for entry in _NUMBERS.iter_unpack(self._numbers):
            moment, kind_index = entry[0], entry[1]
            leg_id, queue, agent = table[entry[6]], table[entry[7]], table[entry[8]]
            value, extra = table[entry[9]], table[entry[10]]
            if first is None:
                first = entry
            kind = _TYPES[kind_index]
            at = from_micros(moment)
            anchored = anchored or kind_index not in _AFTERMATH_INDEXES
            if extra is not None:
                event_intent, keys = extra  # type: ignore[misc]
                customer_keys.update(keys)
                intent = intent or event_intent
            leg = _leg_for(legs, kind, leg_id, queue, agent) if kind in _LEG_LEVEL else None
            if kind is EventType.ABANDONED and (leg_id is not None or queue is not None):
                leg = _leg_for(legs, kind, leg_id, queue, agent)
            if kind is EventType.ARRIVED:
                arrived_at = arrived_at or at
            elif kind is EventType.IVR_STEP:
                ivr_steps.append((str(value) if value is not None else "", at))
            elif kind is EventType.CONFERENCE:
                conferences += 1
            elif kind is EventType.TICKET_REOPENED:
                reopened.append(at)
            elif kind is EventType.DISCONNECTED:
                disconnected_at = at
                self_served = value is True
                targets = [legs[leg_id]] if leg_id in legs else list(legs.values())
                for target in targets:
                    if target.answered_at is not None and target.answered_at <= at:
                        target.end_talk(at)
            elif kind is EventType.ABANDONED and leg is None:
                ivr_abandoned_at = ivr_abandoned_at or at
            elif leg is not None:
                _apply_to_leg(leg, kind, at, queue, agent, value)
        frozen = tuple(leg.freeze() for leg in legs.values())
        frozen = tuple(sorted(frozen, key=lambda leg: (_leg_start(leg) is None, _leg_start(leg) or _EPOCH)))
        assert first is not None
        started_at = arrived_at or from_micros(first[0])
        ivr_outcome, ivr_outcome_at = _ivr_outcome(
            frozen, ivr_steps, disconnected_at, ivr_abandoned_at, self_served
        )
        customer_end = _customer_end(frozen, disconnected_at, ivr_abandoned_at)
        ended_at = None
        if customer_end is not None and all(
            leg.acw_end is not None or leg.acw_start is None for leg in frozen if leg.answered_at is not None
        ):
            ended_at = max([customer_end, *(leg.acw_end for leg in frozen if leg.acw_end is not None)])
        channel_direction = first[5] & _CHANNEL_DIRECTION
        self._ended = ended_at is not None
        return Conversation(
            tenant=self.tenant,
            conversation_id=self.conversation_id,
            channel=_CHANNELS[channel_direction // 8],
            direction=_DIRECTIONS[channel_direction % 8],
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
            version=self._version,
        )

    def emitted(self) -> Contributions:
        """The contributions last emitted for this conversation (what the next delta starts from)."""
        channel, values = self._emitted_values()
        return Contributions(
            {
                ContributionKey(queue, channel, metric, at): value
                for (queue, metric, at), value in values.items()
            }
        )

    def _emitted_values(self) -> tuple[str, dict[ValueKey, int]]:
        values: dict[ValueKey, int] = {}
        emitted = self._emitted
        if not emitted:
            return "", values
        table, last_moment, at = self._table, None, _EPOCH
        for position, moment, metric, value in _EMITTED.iter_unpack(memoryview(emitted)[1:]):
            if moment != last_moment:
                last_moment, at = moment, from_micros(moment)
            values[(str(table[position]), METRIC_NAMES[metric], at)] = value
        return _CHANNELS[emitted[0]].value, values

    def remember(self, channel: str, values: dict[ValueKey, int]) -> tuple[Contributions, Contributions]:
        """Keep ``values`` (see `contribution_values`) as the last emitted ones.

        Returns (before, after) restricted to the keys whose value changed, both empty when nothing
        did: comparing compact forms first keeps events that move no figure (holds, IVR steps) cheap,
        and diffing only changed keys avoids sorting the whole set.
        """
        compact = self._compact(channel, values)
        if compact == self._emitted:
            return Contributions(), Contributions()
        old_channel, old = self._emitted_values()
        self._emitted = compact
        before, after = Contributions(), Contributions()
        for key in old.keys() | values.keys():
            previous, current = old.get(key, 0), values.get(key, 0)
            if previous != current or old_channel != channel:
                queue, metric, at = key
                if previous:
                    before[ContributionKey(queue, old_channel, metric, at)] = previous
                if current:
                    after[ContributionKey(queue, channel, metric, at)] = current
        return before, after

    def deltas(self, tenant: str, channel: str, values: dict[ValueKey, int], reason: str) -> list[Delta]:
        """Remember ``values`` and return the deltas from the last emitted ones, in key order.

        The same deltas as ``diff(tenant, *self.remember(channel, values), reason)``, built from
        plain tuples: sorting `ContributionKey` dataclasses per event costs more than the rest.
        """
        compact = self._compact(channel, values)
        if compact == self._emitted:
            return []
        old_channel, old = self._emitted_values()
        self._emitted = compact
        changes: list[tuple[str, str, str, datetime, int]] = []
        if old_channel == channel:
            for key, current in values.items():
                previous = old.pop(key, 0)
                if previous != current:
                    changes.append((key[0], channel, key[1], key[2], current - previous))
            changes.extend((key[0], channel, key[1], key[2], -value) for key, value in old.items() if value)
        else:
            changes.extend(
                (key[0], old_channel, key[1], key[2], -value) for key, value in old.items() if value
            )
            changes.extend((key[0], channel, key[1], key[2], value) for key, value in values.items() if value)
        changes.sort()
        return [
            Delta(tenant, ContributionKey(queue, chan, metric, at), value, reason)
            for queue, chan, metric, at, value in changes
        ]

    def _compact(self, channel: str, values: dict[ValueKey, int]) -> bytes:
        """A canonical, packed form: the channel's index, then sorted ``_EMITTED`` entries."""
        if not values:
            return b""
        position = self._position
        positions: dict[str, int] = {}
        micros: dict[datetime, int] = {}
        entries = []
        for (queue, metric, at), value in values.items():
            where = positions.get(queue)
            if where is None:
                where = positions[queue] = position(queue)
            moment = micros.get(at)
            if moment is None:
                moment = micros[at] = to_micros(at)
            entries.append((where, moment, METRIC_INDEX[metric], value))
        entries.sort()
        return bytes((_CHANNEL_VALUE_INDEX[channel],)) + b"".join(_EMITTED.pack(*entry) for entry in entries)


def _leg_for(
    legs: dict[str, _LegBuilder], kind: EventType, leg_id: str | None, queue: str | None, agent: str | None
) -> _LegBuilder:
    """The leg an event belongs to; without a leg id: by queue for queue events, by agent for the
    agent's handling events (streams that name the agent but not the queue visit), else the latest leg.

    An agent's event that matches none of the agent's answered legs goes to a leg of its own, which
    is neither queued nor answered and so counts nothing (an offer the agent never answered).
    """
    if leg_id is not None:
        known = legs.get(leg_id)
        if known is None:
            known = legs[leg_id] = _LegBuilder(leg_id)
        return known
    if kind in (EventType.QUEUED, EventType.ANSWERED, EventType.ABANDONED) and queue is not None:
        for leg in reversed(legs.values()):
            if leg.queue == queue and leg.talk_end is None and leg.abandoned_at is None:
                return leg
        key = f"{queue}#{len(legs)}"
        return legs.setdefault(key, _LegBuilder(key))
    if agent is not None and kind is not EventType.ANSWERED:
        for leg in reversed(legs.values()):
            if leg.agent == agent and leg.answered_at is not None:
                return leg
        key = f"agent:{agent}"
        return legs.setdefault(key, _LegBuilder(key))
    answered = [leg for leg in legs.values() if leg.answered_at is not None]
    if answered:
        return answered[-1]
    if legs:
        return next(reversed(legs.values()))
    return legs.setdefault("", _LegBuilder(""))


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


def _distinct(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value for value in values if value))


def to_row(
    conversation: Conversation, updated_at: datetime, tenant: TenantSettings | None = None
) -> ConversationRow:
    """The conversation table row; ``tenant`` fills a missing intent from the wrap-up code."""
    legs = conversation.legs
    queued = conversation.queued_legs
    last_answered = conversation.last_answered_leg
    wrapup = (last_answered.wrapup_code if last_answered else None) or ""
    intent = conversation.intent or ""
    if not intent and tenant is not None:
        intent = tenant.intent_by_wrapup_code.get(wrapup, "")
    scored = [leg.qa_score for leg in legs if leg.qa_score is not None]
    return ConversationRow(
        tenant=conversation.tenant,
        conversation_id=conversation.conversation_id,
        version=conversation.version,
        status="ended" if conversation.ended else "open",
        channel=conversation.channel.value,
        direction=conversation.direction.value,
        started_at=conversation.started_at,
        ended_at=conversation.ended_at,
        first_queue=conversation.first_queue,
        last_queue=queued[-1].queue if queued else "",
        queues=_distinct(leg.queue for leg in queued),
        agents=_distinct(leg.agent for leg in legs),
        legs=sum(1 for leg in legs if leg.queue or leg.answered_at is not None),
        transfers=sum(1 for leg in legs if leg.transfer_at is not None),
        answered=last_answered is not None,
        abandoned=bool(queued) and queued[-1].abandoned_at is not None,
        ivr_outcome=conversation.ivr_outcome,
        wait_ms=sum((leg.answer_wait_ms or 0) + (leg.abandon_wait_ms or 0) for leg in legs),
        talk_ms=sum(leg.talk_ms for leg in legs),
        hold_ms=sum(leg.hold_ms for leg in legs),
        acw_ms=sum(leg.acw_ms for leg in legs),
        handle_ms=sum(leg.handle_ms for leg in legs),
        wrapup_code=wrapup,
        qa_score=scored[-1] if scored else None,
        reopened=len(conversation.reopened_at),
        intent=intent,
        customer_keys=conversation.customer_keys,
        updated_at=updated_at,
        path=conversation_path(conversation),
    )


@dataclass(frozen=True, slots=True)
class StitchOutcome:
    """What one event did: the (in-place updated) state, and what to publish because of it."""

    state: ConversationState
    result: AddResult
    row: ConversationRow | None
    deltas: list[Delta]
    dead_letter: DeadLetter | None
    conversation: Conversation | None = None  # the summary after an applied event


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """What a group of one conversation's events did, stitched together (see `stitch_group`)."""

    state: ConversationState
    results: list[AddResult]  # one per event, in the order given
    deltas: list[Delta]
    dead_letters: list[DeadLetter]
    conversation: Conversation | None  # the summary after the group, when any event applied


def _conflict_letter(event: CanonicalEvent) -> DeadLetter:
    return DeadLetter(
        reason=CONFLICT_REASON,
        detail=f"event {event.event_id} sequence {event.sequence} was re-sent with different content",
        raw=event.model_dump_json().encode("utf-8"),
        received_at=event.ingest_time,
        tenant=event.tenant,
        source=event.source,
    )


def stitch_group(
    state: ConversationState | None, events: Sequence[CanonicalEvent], tenant: TenantSettings
) -> GroupOutcome:
    """Apply the events one record carries for one conversation, then summarise once.

    The state is updated in place (copying it would cost more than it protects) and returned.
    Deltas are computed against the contributions this state last emitted, so they retract
    exactly what was published even if rules or settings changed in between. One summary and one
    set of deltas per group, not per event, is what keeps stitching linear in a conversation's
    length: a detail record carries a whole conversation. The delta reason names the event types
    that applied (comma-separated, sorted); the interval book decides lateness.
    """
    if not events:
        raise ValueError("stitch_group needs at least one event")
    current = state if state is not None else ConversationState.for_event(events[0])
    results: list[AddResult] = []
    letters: list[DeadLetter] = []
    reasons: set[str] = set()
    for event in events:
        result = current.add(event)
        results.append(result)
        if result is AddResult.APPLIED:
            reasons.add(event.event_type.value)
        elif result is AddResult.CONFLICT:
            letters.append(_conflict_letter(event))
    if not reasons:
        return GroupOutcome(current, results, [], letters, None)
    conversation = current.conversation()
    values = contribution_values(conversation, tenant)
    deltas = current.deltas(current.tenant, conversation.channel.value, values, ",".join(sorted(reasons)))
    return GroupOutcome(current, results, deltas, letters, conversation)


def stitch(
    state: ConversationState | None,
    event: CanonicalEvent,
    tenant: TenantSettings,
    updated_at: datetime | None = None,
    *,
    with_row: bool = True,
) -> StitchOutcome:
    """`stitch_group` for one event, with its conversation row (``with_row``), or a dead letter
    when it conflicts with an earlier version of the same event."""
    outcome = stitch_group(state, [event], tenant)
    conversation = outcome.conversation
    row = None
    if with_row and conversation is not None:
        row = to_row(conversation, updated_at or event.ingest_time, tenant)
    letter = outcome.dead_letters[0] if outcome.dead_letters else None
    return StitchOutcome(outcome.state, outcome.results[0], row, outcome.deltas, letter, conversation)
