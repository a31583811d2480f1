"""The replay file format: the records a feed delivered, one per line, exactly as received.

Chosen because raw records may be non-UTF-8: JSON Lines, one delivered record per line in delivery
order, each line ``{"delivered_at": "2026-03-29T08:00:01Z", "raw": "<base64 of the exact bytes>"}``.
The generator writes it (``stitchboard.synthetic``), the flow's replay source reads it
(``stitchboard.flows.sources``), and the demo, benchmarks and tests replay through it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import orjson


class Delivered(Protocol):
    """Anything with a delivery time and the exact bytes delivered (e.g. a generated record)."""

    @property
    def delivered_at(self) -> datetime: ...

    @property
    def raw(self) -> bytes: ...


Record = Delivered | tuple[datetime, bytes]


def to_jsonl(records: Sequence[Record]) -> bytes:
    """The file form of delivered records, in the order given."""
    lines = []
    for record in records:
        at, raw = record if isinstance(record, tuple) else (record.delivered_at, record.raw)
        line = {"delivered_at": at, "raw": base64.b64encode(raw).decode("ascii")}
        lines.append(orjson.dumps(line, option=orjson.OPT_UTC_Z))
    return b"".join(line + b"\n" for line in lines)


def write_records(path: Path, records: Sequence[Record]) -> int:
    """Write records to ``path``; returns the number written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_jsonl(records))
    return len(records)


def decode_line(line: bytes) -> tuple[datetime, bytes]:
    """One line of the file: (delivered_at, exact raw bytes)."""
    item = orjson.loads(line)
    return datetime.fromisoformat(item["delivered_at"]), base64.b64decode(item["raw"])


def read_records(path: Path) -> Iterator[tuple[datetime, bytes]]:
    """Read a file written by ``write_records``: (delivered_at, exact raw bytes) in file order."""
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield decode_line(line)
