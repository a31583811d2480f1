"""Delivery faults: what a real feed does to records between the source and the flow.

``deliver`` takes rendered records with their natural delivery time and returns them in the order
a consumer would see them, with faults drawn from one ``random.Random(seed)``:

* reordering: each record is delayed by 0..``reorder_window_seconds``, so records overtake each
  other within that window;
* late records: a share is delayed by a further 60 s..``late_max_seconds`` (minutes to hours);
* duplicates: exact re-sends of the same bytes, delivered 1 s..5 min after the original;
* malformed records, injected *in addition to* the originals (so the ground truth is unchanged):
  ``truncated_json`` (a strict prefix of the record), ``wrong_types`` (an envelope field with the
  wrong JSON type: tenant or received_at a number, payload an array), ``missing_ids`` (every
  payload key named ``id``/``...Id``/``..._id`` removed at any depth, conversation records only;
  an agent-state record drawn for it gets ``wrong_types``), ``non_utf8`` (bytes
  that are not UTF-8 inside the record). Each is meant to be dead-lettered, so a consumer of a
  delivery reconciles as ``accepted + dead_lettered == consumed`` with ``dead_lettered ==
  malformed``.

The envelope bytes are never rewritten for delay: a late or duplicated record carries the
``received_at`` it was rendered with, and the delivery time lives beside it. Delivered records are
written to a file with ``stitchboard.replay_file``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

MalformedKind = Literal["truncated_json", "wrong_types", "missing_ids", "non_utf8"]
MALFORMED_KINDS: tuple[MalformedKind, ...] = ("truncated_json", "wrong_types", "missing_ids", "non_utf8")
RecordKind = Literal["original", "duplicate", "malformed"]

CONVERSATION_ID_KEYS: tuple[str, ...] = ("conversationId", "ContactId", "conversation_id")
_ID_KEY = re.compile(r"(^id$|Id$|_id$|ID$)")
_DUPLICATE_DELAY_SECONDS = (1, 300)
_LATE_MIN_SECONDS = 60


@dataclass(frozen=True, slots=True)
class DeliveredRecord:
    """One record as the consumer sees it; ``index`` is its position in the input list."""

    delivered_at: datetime
    raw: bytes
    kind: RecordKind
    index: int
    malformed_kind: MalformedKind | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """The delivered stream and exact counts of every injected fault."""

    records: list[DeliveredRecord]
    originals: int
    duplicates: int
    late: int
    malformed_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def consumed(self) -> int:
        return len(self.records)

    @property
    def malformed(self) -> int:
        return sum(self.malformed_by_kind.values())

    def pairs(self) -> list[tuple[datetime, bytes]]:
        return [(r.delivered_at, r.raw) for r in self.records]


def deliver(
    records: Sequence[tuple[datetime, bytes]],
    seed: int,
    *,
    duplicate_rate: float = 0.0,
    reorder_window_seconds: int = 0,
    late_rate: float = 0.0,
    late_max_seconds: int = 0,
    malformed_rate: float = 0.0,
) -> Delivery:
    """Records in delivery order with faults; the same input and seed give the same delivery."""
    if late_rate > 0 and late_max_seconds < _LATE_MIN_SECONDS:
        raise ValueError(f"late_max_seconds must be at least {_LATE_MIN_SECONDS} when late_rate > 0")
    rng = random.Random(seed)
    out: list[DeliveredRecord] = []
    late = duplicates = 0
    malformed: Counter[str] = Counter()
    for index, (natural, raw) in enumerate(records):
        delay = rng.randint(0, reorder_window_seconds) if reorder_window_seconds > 0 else 0
        if rng.random() < late_rate:
            delay += rng.randint(_LATE_MIN_SECONDS, late_max_seconds)
            late += 1
        at = natural + timedelta(seconds=delay)
        out.append(DeliveredRecord(at, raw, "original", index))
        if rng.random() < duplicate_rate:
            again = at + timedelta(seconds=rng.randint(*_DUPLICATE_DELAY_SECONDS))
            out.append(DeliveredRecord(again, raw, "duplicate", index))
            duplicates += 1
        if rng.random() < malformed_rate:
            kind = rng.choice(MALFORMED_KINDS)
            broken, kind = corrupt(raw, kind, rng)
            jitter = timedelta(seconds=rng.randint(0, max(reorder_window_seconds, 0)))
            out.append(DeliveredRecord(natural + jitter, broken, "malformed", index, kind))
            malformed[kind] += 1
    order = {"original": 0, "duplicate": 1, "malformed": 2}
    out.sort(key=lambda r: (r.delivered_at, r.index, order[r.kind]))
    by_kind: dict[str, int] = {kind: malformed[kind] for kind in MALFORMED_KINDS}
    return Delivery(out, len(records), duplicates, late, by_kind)


def corrupt(raw: bytes, kind: MalformedKind, rng: random.Random) -> tuple[bytes, MalformedKind]:
    """A broken variant of one record that no adapter may accept, and the kind actually applied.

    ``missing_ids`` applies to conversation records only (a payload with a top-level
    ``conversationId``, ``ContactId`` or ``conversation_id``: what the Genesys, Connect and webhook
    adapters require); agent-state records identify their agent by other fields, so they get
    ``wrong_types`` instead.
    """
    if kind == "truncated_json":
        body = raw.rstrip()
        return body[: rng.randint(1, max(len(body) - 1, 1))], kind
    if kind == "non_utf8":
        cut = rng.randint(0, len(raw))
        return raw[:cut] + b"\xff\xfe\xc3\x28" + raw[cut:], kind
    envelope = orjson.loads(raw)
    if kind == "missing_ids":
        payload = envelope.get("payload")
        if isinstance(payload, dict) and any(key in payload for key in CONVERSATION_ID_KEYS):
            envelope["payload"] = _without_ids(payload)
            return orjson.dumps(envelope), kind
    field_name = rng.choice(("tenant", "received_at", "payload"))
    envelope[field_name] = [envelope.get(field_name)] if field_name == "payload" else 20260329
    return orjson.dumps(envelope), "wrong_types"


def _without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if not _ID_KEY.search(k)}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value
