"""Contribution bookkeeping: what a conversation last published, and the deltas from it.

A conversation's state keeps the contributions it last emitted packed (``pack``): the channel's
index, then one ``(queue's table position, instant µs, metric index, value)`` entry per value,
sorted, so equal contributions pack to equal bytes and "nothing changed" is one comparison. Queue
names are positions in the conversation's own table of values (``stitchboard.stitching.store``),
which ``pack`` is handed as ``position`` and ``unpack`` as ``table``. Deltas retract exactly what
was published, even if rules or settings changed in between.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from datetime import datetime

from stitchboard.contributions import ContributionKey, Contributions, Delta
from stitchboard.events import Channel
from stitchboard.metrics import METRIC_INDEX, METRIC_NAMES, ValueKey
from stitchboard.stitching.instants import EPOCH, from_micros, to_micros

_ENTRY = struct.Struct("<HqBq")
_CHANNELS: tuple[Channel, ...] = tuple(Channel)
_CHANNEL_VALUE_INDEX: dict[str, int] = {channel.value: index for index, channel in enumerate(_CHANNELS)}
Emitted = tuple[str, dict[ValueKey, int]]  # (channel, values): see `contribution_values`


def pack(channel: str, values: dict[ValueKey, int], position: Callable[[str], int]) -> bytes:
    """The canonical packed form of ``values`` (empty for none); ``position`` places a queue name."""
    if not values:
        return b""
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
    return bytes((_CHANNEL_VALUE_INDEX[channel],)) + b"".join(_ENTRY.pack(*entry) for entry in entries)


def unpack(packed: bytes, table: Sequence[object]) -> Emitted:
    """(channel, values) of a packed form; ``("", {})`` for nothing emitted yet."""
    values: dict[ValueKey, int] = {}
    if not packed:
        return "", values
    last_moment, at = None, EPOCH
    for position, moment, metric, value in _ENTRY.iter_unpack(memoryview(packed)[1:]):
        if moment != last_moment:
            last_moment, at = moment, from_micros(moment)
        values[(str(table[position]), METRIC_NAMES[metric], at)] = value
    return _CHANNELS[packed[0]].value, values


def as_contributions(emitted: Emitted) -> Contributions:
    channel, values = emitted
    return Contributions(
        {ContributionKey(queue, channel, metric, at): value for (queue, metric, at), value in values.items()}
    )


def changes(old: Emitted, new: Emitted) -> tuple[Contributions, Contributions]:
    """(before, after) restricted to the keys whose value changed (or all, if the channel did)."""
    old_channel, old_values = old
    channel, values = new
    before, after = Contributions(), Contributions()
    for key in old_values.keys() | values.keys():
        previous, current = old_values.get(key, 0), values.get(key, 0)
        if previous != current or old_channel != channel:
            queue, metric, at = key
            if previous:
                before[ContributionKey(queue, old_channel, metric, at)] = previous
            if current:
                after[ContributionKey(queue, channel, metric, at)] = current
    return before, after


def deltas(tenant: str, old: Emitted, new: Emitted, reason: str) -> list[Delta]:
    """The deltas turning ``old`` into ``new``, in key order.

    The same deltas as ``diff(tenant, *changes(old, new), reason)``, built from plain tuples:
    sorting `ContributionKey` dataclasses per event costs more than the rest. Consumes ``old``.
    """
    old_channel, old_values = old
    channel, values = new
    found: list[tuple[str, str, str, datetime, int]] = []
    if old_channel == channel:
        for key, current in values.items():
            previous = old_values.pop(key, 0)
            if previous != current:
                found.append((key[0], channel, key[1], key[2], current - previous))
        found.extend((key[0], channel, key[1], key[2], -value) for key, value in old_values.items() if value)
    else:
        found.extend(
            (key[0], old_channel, key[1], key[2], -value) for key, value in old_values.items() if value
        )
        found.extend((key[0], channel, key[1], key[2], value) for key, value in values.items() if value)
    found.sort()
    return [
        Delta(tenant, ContributionKey(queue, chan, metric, at), value, reason)
        for queue, chan, metric, at, value in found
    ]
