"""Shared helpers for adapter tests: fixture loading, clock shorthands, a comparable event summary."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from stitchboard.events import CanonicalEvent

FIXTURES = Path(__file__).parents[1] / "fixtures"


def load(name: str) -> dict[str, Any]:
    """A JSON fixture under tests/fixtures (e.g. ``"genesys/voice_ivr_transfer.json"``)."""
    return orjson.loads((FIXTURES / name).read_bytes())


def corpus_received_at(group: str) -> dict[str, str]:
    """When the corpus group's manifest first delivers each payload file (its ``received_at``)."""
    manifest = orjson.loads((FIXTURES / group / "manifest.json").read_bytes())
    received: dict[str, str] = {}
    for case in manifest["cases"]:
        for delivery in case["deliveries"]:
            received.setdefault(delivery["file"], delivery["received_at"])
    return received


def t(clock: str) -> datetime:
    """An instant on the fixtures' day, 2026-03-29, from ``"HH:MM:SS"`` (UTC)."""
    return datetime.fromisoformat(f"2026-03-29T{clock}+00:00")


def ms(clock: str) -> int:
    return int(t(clock).timestamp() * 1000)


def summary(events: list[CanonicalEvent]) -> list[tuple[Any, ...]]:
    """The fields the adapter tests compare, in a stable order."""
    rows = [
        (e.event_type.value, e.event_time, e.leg_id, e.queue, e.agent, e.attributes, e.sequence)
        for e in events
    ]
    return sorted(rows, key=lambda row: (row[1], row[0], row[2] or ""))
