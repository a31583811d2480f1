"""One conversation's state: its events stored packed, de-duplicated and versioned.

The state is pickled into every Bytewax snapshot, so it keeps each event as a fixed-width packed
entry of ints and positions in a small per-conversation table of (shared) values rather than a
pydantic object, and asks ``stitchboard.stitching.summary`` to rebuild the summary from scratch in
replay order whenever it is needed. What the conversation last published is kept packed too
(``stitchboard.stitching.emitted``).
"""

from __future__ import annotations

import bisect
import struct
import sys
import zlib
from enum import StrEnum
from hashlib import blake2b

import orjson

from stitchboard.contributions import Contributions, Delta
from stitchboard.conversation import Conversation
from stitchboard.events import CanonicalEvent, Channel, Direction
from stitchboard.metrics import ValueKey
from stitchboard.stitching import emitted
from stitchboard.stitching.instants import to_micros
from stitchboard.stitching.summary import TYPE_INDEX, StoredEvent, event_value, summarise

_CHANNELS: tuple[Channel, ...] = tuple(Channel)
_DIRECTIONS: tuple[Direction, ...] = tuple(Direction)
_CHANNEL_INDEX: dict[Channel, int] = {channel: index for index, channel in enumerate(_CHANNELS)}
_DIRECTION_INDEX: dict[Direction, int] = {direction: index for index, direction in enumerate(_DIRECTIONS)}


def _intern(value: str | None) -> str | None:
    """Shared string objects are written once per pickle, which keeps snapshots small."""
    return None if value is None else sys.intern(value)


class AddResult(StrEnum):
    APPLIED = "applied"  # new event, or a higher sequence replacing an earlier version
    DUPLICATE = "duplicate"  # same id, same sequence, same content: ignored
    CONFLICT = "conflict"  # same id, same sequence, different content: the caller dead-letters it
    STALE = "stale"  # lower sequence than already seen: ignored
    SUPERSEDED = "superseded"  # provisional, and the complete record of its scope is stored: ignored


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
        self._emitted = b""  # what was last emitted, packed (``stitchboard.stitching.emitted``)
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
        value = event_value(event)
        flags = _CHANNEL_INDEX[event.channel] * 8 + _DIRECTION_INDEX[event.direction]
        if provisional:
            flags |= _PROVISIONAL
        extra = None
        customer_keys = tuple(event.customer.keys())
        if event.intent is not None or customer_keys:
            extra = (event.intent, customer_keys)
        entry = (
            moment,
            TYPE_INDEX[kind],
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
        """Replay the stored events in replay order into the stitched summary."""
        numbers = self._numbers
        if not numbers:
            raise ValueError(f"conversation {self.conversation_id} has no events yet")
        table = self._table
        events: list[StoredEvent] = [
            (
                entry[0],
                entry[1],
                table[entry[6]],
                table[entry[7]],
                table[entry[8]],
                table[entry[9]],
                table[entry[10]],
            )
            for entry in _NUMBERS.iter_unpack(numbers)
        ]
        channel_direction = numbers[_FLAGS_OFFSET] & _CHANNEL_DIRECTION  # the first event's
        conversation = summarise(
            self.tenant,
            self.conversation_id,
            self._version,
            _CHANNELS[channel_direction // 8],
            _DIRECTIONS[channel_direction % 8],
            events,
        )
        self._ended = conversation.ended
        return conversation

    def emitted(self) -> Contributions:
        """The contributions last emitted for this conversation (what the next delta starts from)."""
        return emitted.as_contributions(emitted.unpack(self._emitted, self._table))

    def remember(self, channel: str, values: dict[ValueKey, int]) -> tuple[Contributions, Contributions]:
        """Keep ``values`` (see `contribution_values`) as the last emitted ones.

        Returns (before, after) restricted to the keys whose value changed, both empty when nothing
        did: comparing packed forms first keeps events that move no figure (holds, IVR steps) cheap,
        and diffing only changed keys avoids sorting the whole set.
        """
        packed = emitted.pack(channel, values, self._position)
        if packed == self._emitted:
            return Contributions(), Contributions()
        old = emitted.unpack(self._emitted, self._table)
        self._emitted = packed
        return emitted.changes(old, (channel, values))

    def deltas(self, tenant: str, channel: str, values: dict[ValueKey, int], reason: str) -> list[Delta]:
        """Remember ``values`` and return the deltas from the last emitted ones, in key order
        (`emitted.deltas`)."""
        packed = emitted.pack(channel, values, self._position)
        if packed == self._emitted:
            return []
        old = emitted.unpack(self._emitted, self._table)
        self._emitted = packed
        return emitted.deltas(tenant, old, (channel, values), reason)
