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
from collections import Counter
from collections.abc import Sequence
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
    REJECTED = "rejected"  # its delivery would break a conversation limit: the caller dead-letters it


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
_INT64_MAX = 2**63 - 1
_TABLE_LIMIT = 0xFFFF  # table positions are 16-bit: at most this many values besides None
_FINDS_BEFORE_INDEX = 8  # id lookups by scanning the packed bytes before a group builds a dict
_TABLE_SCAN = 32  # values looked up by scanning the table before a group builds a dict


class LimitExceeded(ValueError):
    """A delivery would put in a conversation's state what the state cannot or may not hold.

    Raised inside a group only; the caller (``stitchboard.stitching.stitch``) restores the state it
    had before the group and dead-letters the delivery, so it never escapes the stitcher.
    """


def _order(entry: tuple[int, ...]) -> tuple[int, int, int]:
    return (entry[0], entry[1], entry[2])


class _Orders:
    """The replay orders of packed entries as a sequence, unpacked only where ``bisect`` looks."""

    __slots__ = ("_numbers",)

    def __init__(self, numbers: bytes) -> None:
        self._numbers = numbers

    def __len__(self) -> int:
        return len(self._numbers) // _NUMBERS.size

    def __getitem__(self, index: int) -> tuple[int, int, int]:
        return _order(_NUMBERS.unpack_from(self._numbers, index * _NUMBERS.size))


def _has_provisional(numbers: bytes) -> bool:
    """Any provisional entry: one slice of the flags bytes, no unpacking (channel*8+direction < 64)."""
    return bool(numbers) and max(numbers[_FLAGS_OFFSET :: _NUMBERS.size]) >= _PROVISIONAL


def _index_of(table: Sequence[object], value: object) -> int:
    """Where ``value`` is in ``table`` (same type and value: ``1`` is not ``True``), else -1."""
    if value not in table:
        return -1
    first = table.index(value)
    if type(table[first]) is type(value):  # the common case; else 1 may have matched True
        return first
    for position, known in enumerate(table):
        if known == value and type(known) is type(value):
            return position
    return -1


def _find(numbers: bytes, key: int) -> int | None:
    """The index of the packed entry with id hash ``key``: a scan of the bytes, at C speed."""
    needle, size = key.to_bytes(8, "little"), _NUMBERS.size
    at = numbers.find(needle)
    while at != -1:
        if at % size == _KEY_OFFSET:
            return at // size
        at = numbers.find(needle, at + 1)
    return None


# What a snapshot keeps of a `ConversationState`, in order (everything but the ``ended`` cache).
_PICKLED = ("tenant", "conversation_id", "_numbers", "_table", "_version", "_emitted", "touched_at")
# What `ConversationState.checkpoint` saves: a group that breaks a limit is undone by putting it back.
Checkpoint = tuple[bytes, tuple[object, ...], int, bytes, bool | None]


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
        """`add_all` for one event."""
        return self.add_all((event,))[0]

    def add_all(self, events: Sequence[CanonicalEvent]) -> list[AddResult]:
        """Record each event unless it is a duplicate, a stale version or a conflicting re-send.

        The complete record wins: an event that is not provisional drops the stored provisional
        events of its scope, and a provisional event whose scope's complete record is stored is
        ignored (`AddResult.SUPERSEDED`). The summary is rebuilt from what is stored and deltas are
        diffs of contributions, so what the provisional events contributed is retracted exactly.

        The events are staged (`_Group`) and merged into the packed entries once, so a group costs
        time linear in its size plus the stored entries, not their product. Raises `LimitExceeded`
        (before changing anything stored) for a value the packed entries cannot hold.
        """
        group = _Group(self)
        results = [group.add(event) for event in events]
        group.commit()
        return results

    def checkpoint(self) -> Checkpoint:
        """What `restore` needs to undo the groups applied after it: every stored field is immutable."""
        return (self._numbers, self._table, self._version, self._emitted, self._ended)

    def restore(self, saved: Checkpoint) -> None:
        self._numbers, self._table, self._version, self._emitted, self._ended = saved

    @property
    def distinct_values(self) -> int:
        """Distinct values the entries and the emitted contributions refer to (None not counted)."""
        return len(self._table) - 1

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
        table = _Values(self)
        packed = emitted.pack(channel, values, table.position)
        if packed == self._emitted:
            return Contributions(), Contributions()
        table.store()
        old = emitted.unpack(self._emitted, self._table)
        self._emitted = packed
        return emitted.changes(old, (channel, values))

    def deltas(self, tenant: str, channel: str, values: dict[ValueKey, int], reason: str) -> list[Delta]:
        """Remember ``values`` and return the deltas from the last emitted ones, in key order
        (`emitted.deltas`)."""
        table = _Values(self)
        packed = emitted.pack(channel, values, table.position)
        if packed == self._emitted:
            return []
        table.store()
        old = emitted.unpack(self._emitted, self._table)
        self._emitted = packed
        return emitted.deltas(tenant, old, (channel, values), reason)


class _Group:
    """A group of events being added to a state: staged, then merged into its entries at once.

    Stored entries are found by scanning the packed bytes (C speed) for the first few lookups and
    through a dict of id hashes after that; values through a dict once the table is not tiny; the
    complete-record bookkeeping (complete and provisional entries per scope) is counted once, only
    when a scoped event needs it, then kept up to date. Nothing stored changes before `commit`, so
    every step costs about the same whatever the size of the group or of the state.
    """

    __slots__ = (
        "_added",
        "_complete",
        "_finds",
        "_ids",
        "_provisional",
        "_removed",
        "_staged_provisional",
        "_state",
        "_stored",
        "_stored_provisional",
        "_values",
        "_version",
    )

    def __init__(self, state: ConversationState) -> None:
        self._state = state
        self._stored = state._numbers
        self._removed: set[int] = set()  # indexes of stored entries dropped
        self._added: dict[int, tuple[tuple[int, ...], bytes]] = {}  # id hash -> (entry, packed)
        self._ids: dict[int, int] | None = None  # id hash -> stored index, once scans got too many
        self._finds = 0
        self._values = _Values(state)
        self._complete: Counter[int] | None = None  # scope position -> complete entries
        self._provisional: Counter[int] | None = None  # scope position -> provisional entries
        self._stored_provisional: bool | None = None
        self._staged_provisional = False
        self._version = state._version

    def add(self, event: CanonicalEvent) -> AddResult:
        state = self._state
        if event.tenant != state.tenant or event.conversation_id != state.conversation_id:
            raise ValueError(
                f"event {event.event_id} is for {event.tenant}/{event.conversation_id}, "
                f"not {state.tenant}/{state.conversation_id}"
            )
        provisional, scope = event.provisional, event.scope
        if provisional and scope is not None:
            known_scope = self._values.position(scope, shared=False, add=False)
            if known_scope and self._counts()[0][known_scope]:
                return AddResult.SUPERSEDED
        key = _id_hash(event.event_id)
        try:
            fingerprint = _fingerprint(event)
        except TypeError as exc:  # orjson: an integer attribute beyond 64 bits (no JSON source sends one)
            raise LimitExceeded(f"event {event.event_id} has an attribute beyond 64 bits") from exc
        known = self._known(key)
        if known is not None:
            entry, at = known
            if event.sequence < entry[3]:
                return AddResult.STALE
            if event.sequence == entry[3]:
                return AddResult.DUPLICATE if fingerprint == entry[4] else AddResult.CONFLICT
            self._drop(key, entry, at)  # a newer version replaces it
        if event.sequence > _INT64_MAX:
            raise LimitExceeded(
                f"event {event.event_id} has sequence {event.sequence}, beyond its 64-bit field"
            )
        position = self._values.position
        where = 0 if scope is None else position(scope, shared=False)
        if not provisional and where and self._holds_provisional() and self._counts()[1][where]:
            self._drop_provisional(where)  # the complete record wins
        value = event_value(event)
        flags = _CHANNEL_INDEX[event.channel] * 8 + _DIRECTION_INDEX[event.direction]
        if provisional:
            flags |= _PROVISIONAL
            self._staged_provisional = True
        extra = None
        customer_keys = tuple(event.customer.keys())
        if event.intent is not None or customer_keys:
            extra = (event.intent, customer_keys)
        entry = (
            to_micros(event.event_time),
            TYPE_INDEX[event.event_type],
            key,
            event.sequence,
            fingerprint,
            flags,
            0 if event.leg_id is None else position(event.leg_id, shared=False),
            0 if event.queue is None else position(event.queue),
            0 if event.agent is None else position(event.agent),
            0 if value is None else position(value),
            0 if extra is None else position(extra),
            where,
        )
        self._added[key] = (entry, _NUMBERS.pack(*entry))
        self._count(entry, 1)
        self._version += 1
        return AddResult.APPLIED

    def commit(self) -> None:
        """Merge the staged entries into the stored ones, in replay order, and store the result."""
        state, size = self._state, _NUMBERS.size
        if self._version == state._version:
            return
        kept = self._stored
        if self._removed:
            pieces, start = [], 0
            for index in sorted(self._removed):
                pieces.append(kept[start * size : index * size])
                start = index + 1
            pieces.append(kept[start * size :])
            kept = b"".join(pieces)
        staged = list(self._added.values())
        if len(staged) > 1:
            staged.sort(key=lambda item: _order(item[0]))
        if (
            not staged
            or not kept
            or _order(_NUMBERS.unpack_from(kept, len(kept) - size)) < _order(staged[0][0])
        ):
            # the common case: everything staged comes after what is stored
            numbers = kept + (staged[0][1] if len(staged) == 1 else b"".join(packed for _, packed in staged))
        else:
            orders = _Orders(kept)
            pieces, start = [], 0
            for entry, packed in staged:
                at = bisect.bisect(orders, _order(entry), lo=start)
                pieces += (kept[start * size : at * size], packed)
                start = at
            pieces.append(kept[start * size :])
            numbers = b"".join(pieces)
        state._numbers = numbers
        self._values.store()
        state._version = self._version
        state._ended = None

    def _known(self, key: int) -> tuple[tuple[int, ...], int] | None:
        """The entry with id hash ``key`` and its stored index (-1 when staged), if there is one."""
        staged = self._added.get(key)
        if staged is not None:
            return staged[0], -1
        if not self._stored:
            return None
        if self._ids is None and self._finds < _FINDS_BEFORE_INDEX:
            self._finds += 1
            at = _find(self._stored, key)
        else:
            if self._ids is None:
                self._ids = {
                    entry[2]: index for index, entry in enumerate(_NUMBERS.iter_unpack(self._stored))
                }
            at = self._ids.get(key)
        if at is None or at in self._removed:
            return None
        return _NUMBERS.unpack_from(self._stored, at * _NUMBERS.size), at

    def _drop(self, key: int, entry: tuple[int, ...], at: int) -> None:
        if at < 0:
            del self._added[key]
        else:
            self._removed.add(at)
        self._count(entry, -1)

    def _holds_provisional(self) -> bool:
        """Whether any provisional entry is stored or staged (the stored bytes are looked at once)."""
        if self._stored_provisional is None:
            self._stored_provisional = _has_provisional(self._stored)
        return self._stored_provisional or self._staged_provisional

    def _counts(self) -> tuple[Counter[int], Counter[int]]:
        """(complete, provisional) entries per scope position, counted on first use."""
        if self._complete is None or self._provisional is None:
            self._complete, self._provisional = Counter(), Counter()
            for index, entry in enumerate(_NUMBERS.iter_unpack(self._stored)):
                if index not in self._removed:
                    self._count(entry, 1)
            for entry, _ in self._added.values():
                self._count(entry, 1)
        return self._complete, self._provisional

    def _count(self, entry: tuple[int, ...], change: int) -> None:
        if self._complete is None or self._provisional is None or not entry[_SCOPE]:
            return
        (self._provisional if entry[5] & _PROVISIONAL else self._complete)[entry[_SCOPE]] += change

    def _drop_provisional(self, scope: int) -> None:
        """Drop every stored and staged provisional entry of the scope at table position ``scope``."""
        for index, entry in enumerate(_NUMBERS.iter_unpack(self._stored)):
            if entry[5] & _PROVISIONAL and entry[_SCOPE] == scope and index not in self._removed:
                self._drop(entry[2], entry, index)
        for key, (entry, _) in list(self._added.items()):
            if entry[5] & _PROVISIONAL and entry[_SCOPE] == scope:
                self._drop(key, entry, -1)


class _Values:
    """A state's table of distinct values while it grows: looked up by scanning while small and
    through a dict after, so a delivery or a set of contributions with many new values (queues,
    agents, nodes) costs the same per value whatever the size of the table. Nothing is stored
    before `store`."""

    __slots__ = ("_added", "_lookup", "_state")

    def __init__(self, state: ConversationState) -> None:
        self._state = state
        self._added: list[object] | None = None  # the state's table and the values added, once one is
        self._lookup: dict[tuple[type, object], int] | None = None

    def position(self, value: object, *, shared: bool = True, add: bool = True) -> int:
        """Where ``value`` is in the table (same type and value: ``1`` is not ``True``), adding it
        if new unless not ``add`` (then 0 when absent).

        ``shared`` strings (queues, agents, IVR nodes, codes) are interned: conversations then hold
        one copy. A leg id belongs to one conversation only; interning it would just add an entry
        to the interpreter's table of interned strings (~50 bytes per conversation at 100k).
        """
        state = self._state
        if value is None:
            return 0
        if value == state.conversation_id:
            value = state.conversation_id  # a scope equal to the conversation: the state's own string
        table = self._added if self._added is not None else state._table
        if self._lookup is None and len(table) > _TABLE_SCAN:
            self._lookup = {}
            for position, known in enumerate(table):
                self._lookup.setdefault((type(known), known), position)
        if self._lookup is not None:
            found = self._lookup.get((type(value), value), -1)
        else:
            found = _index_of(table, value)
        if found >= 0:
            return found
        if not add:
            return 0
        if len(table) > _TABLE_LIMIT:
            raise LimitExceeded(f"more than {_TABLE_LIMIT} distinct values")
        if self._added is None:
            self._added = list(state._table)
        position = len(self._added)
        self._added.append(_intern(value) if shared and isinstance(value, str) else value)
        if self._lookup is not None:
            self._lookup.setdefault((type(value), value), position)
        return position

    def store(self) -> None:
        if self._added is not None:
            self._state._table = tuple(self._added)
