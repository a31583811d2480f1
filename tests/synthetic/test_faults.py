"""Delivery faults: exact counts, exact re-sends, broken records that cannot parse, stable order."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from stitchboard.adapters import normalise
from stitchboard.deadletters import DeadLetter
from stitchboard.events import Channel
from stitchboard.replay_file import read_records, to_jsonl, write_records
from stitchboard.synthetic.faults import MALFORMED_KINDS, corrupt, deliver
from stitchboard.synthetic.generator import generate_day
from stitchboard.synthetic.render import render_agent_state, render_conversation

START = datetime(2026, 3, 30, 8, 0, tzinfo=UTC)


def _records(count: int = 2000) -> list[tuple[datetime, bytes]]:
    """Envelopes one second apart, shaped like the flow's input."""
    out = []
    for n in range(count):
        at = START + timedelta(seconds=n)
        payload = {"conversationId": f"c-{n // 4}", "participants": [{"participantId": f"p-{n}", "n": n}]}
        envelope = {"tenant": "acme", "source": "genesys", "received_at": at, "payload": payload}
        out.append((at, orjson.dumps(envelope, option=orjson.OPT_UTC_Z)))
    return out


FAULTS = {
    "duplicate_rate": 0.05,
    "reorder_window_seconds": 30,
    "late_rate": 0.02,
    "late_max_seconds": 3 * 3600,
    "malformed_rate": 0.04,
}


def _accepted(raw: bytes) -> bool:
    """A stand-in for the envelope check: valid UTF-8 JSON, typed envelope, ids present."""
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(envelope.get("tenant"), str)
        and isinstance(envelope.get("received_at"), str)
        and isinstance(envelope.get("payload"), dict)
        and "conversationId" in envelope["payload"]
    )


def test_counts_are_exact_and_reconcile() -> None:
    records = _records()
    delivery = deliver(records, 42, **FAULTS)
    kinds = Counter(r.kind for r in delivery.records)
    assert kinds["original"] == delivery.originals == len(records)
    assert kinds["duplicate"] == delivery.duplicates
    assert kinds["malformed"] == delivery.malformed
    assert delivery.consumed == len(records) + delivery.duplicates + delivery.malformed
    assert Counter(r.malformed_kind for r in delivery.records if r.malformed_kind) == Counter(
        {k: v for k, v in delivery.malformed_by_kind.items() if v}
    )
    assert set(delivery.malformed_by_kind) == set(MALFORMED_KINDS)
    assert all(delivery.malformed_by_kind[kind] > 0 for kind in MALFORMED_KINDS)
    assert 40 <= delivery.malformed <= 130 and 50 <= delivery.duplicates <= 160
    accepted = sum(1 for r in delivery.records if _accepted(r.raw))
    dead_lettered = delivery.consumed - accepted
    assert dead_lettered == delivery.malformed


def test_duplicates_are_exact_resends_after_the_original() -> None:
    records = _records(500)
    delivery = deliver(records, 7, **FAULTS)
    originals = {r.index: r for r in delivery.records if r.kind == "original"}
    duplicates = [r for r in delivery.records if r.kind == "duplicate"]
    assert duplicates
    for duplicate in duplicates:
        assert duplicate.raw == records[duplicate.index][1]
        assert duplicate.delivered_at > originals[duplicate.index].delivered_at


def test_reordering_stays_within_its_window_and_late_records_are_late() -> None:
    records = _records()
    delivery = deliver(records, 3, **FAULTS)
    assert [r.delivered_at for r in delivery.records] == sorted(r.delivered_at for r in delivery.records)
    delays = [
        (r.delivered_at - records[r.index][0]).total_seconds()
        for r in delivery.records
        if r.kind == "original"
    ]
    late = [d for d in delays if d > FAULTS["reorder_window_seconds"]]
    assert len(late) == delivery.late > 0
    assert all(60 <= d <= 30 + 3 * 3600 for d in late)
    order = [r.index for r in delivery.records if r.kind == "original"]
    inversions = sum(1 for a, b in pairwise(order) if a > b)
    assert inversions > 100


def test_no_faults_means_natural_order() -> None:
    records = _records(100)
    delivery = deliver(records, 1)
    assert delivery.pairs() == records
    assert delivery.malformed == delivery.duplicates == delivery.late == 0


def test_delivery_is_deterministic_from_the_seed() -> None:
    records = _records(800)
    assert to_jsonl(deliver(records, 9, **FAULTS).records) == to_jsonl(deliver(records, 9, **FAULTS).records)
    assert to_jsonl(deliver(records, 9, **FAULTS).records) != to_jsonl(deliver(records, 10, **FAULTS).records)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_malformed_kind_breaks_the_record(kind: str) -> None:
    _, raw = _records(1)[0]
    broken, applied = corrupt(raw, kind, random.Random(0))  # type: ignore[arg-type]
    assert applied == kind
    assert broken != raw and not _accepted(broken)
    if kind == "non_utf8":
        with pytest.raises(UnicodeDecodeError):
            broken.decode("utf-8")
    if kind == "missing_ids":
        assert b"Id" not in broken and b"acme" in broken


def test_a_payload_without_ids_gets_wrong_types_instead() -> None:
    raw = orjson.dumps({"tenant": "acme", "source": "webhook", "received_at": "x", "payload": {"a": 1}})
    broken, applied = corrupt(raw, "missing_ids", random.Random(0))
    assert applied == "wrong_types" and not _accepted(broken)


def test_records_round_trip_through_the_file_format(tmp_path: Path) -> None:
    records = _records(300)
    delivery = deliver(records, 5, **FAULTS)
    path = tmp_path / "events" / "acme.jsonl"
    assert write_records(path, delivery.records) == delivery.consumed
    assert list(read_records(path)) == delivery.pairs()
    assert len(path.read_bytes().splitlines()) == delivery.consumed
    assert any(b"\xff" in raw for _, raw in read_records(path))


def _rendered(seed: int) -> list[tuple[datetime, bytes]]:
    """A small two-tenant day rendered in all three shapes, in natural order."""
    records: list[tuple[datetime, bytes]] = []
    for tenant, voice in (("acme", "genesys"), ("globex", "connect")):
        shapes = {Channel.VOICE: voice, Channel.CALLBACK: voice, Channel.CHAT: voice, Channel.BOT: voice}
        day = generate_day(
            tenant, date(2026, 3, 30), ZoneInfo("Europe/London"), seed, scale=0.04, shapes=shapes
        )
        records += [r for conv in day.conversations for r in render_conversation(conv)]
        records += [r for state in day.agent_states for r in render_agent_state(state)]
    return sorted(records, key=lambda r: r[0])


def test_rendered_faulty_delivery_is_byte_identical_and_reconciles_with_the_adapters() -> None:
    records = _rendered(4)
    assert records == _rendered(4)
    faults = FAULTS | {"malformed_rate": 0.05}
    delivery = deliver(records, 4, **faults)
    assert to_jsonl(delivery.records) == to_jsonl(deliver(_rendered(4), 4, **faults).records)
    outcomes = [normalise(r.raw, received_at=r.delivered_at) for r in delivery.records]
    dead = [(r, o) for r, o in zip(delivery.records, outcomes, strict=True) if isinstance(o, DeadLetter)]
    assert [r.kind for r, _ in dead] == ["malformed"] * delivery.malformed
    accepted = len(outcomes) - len(dead)
    assert accepted == delivery.originals + delivery.duplicates
    assert accepted + len(dead) == delivery.consumed
    assert delivery.malformed_by_kind["missing_ids"] > 0
