"""The hostile corpus through the real flow: every bad record is dead-lettered with its precise
reason, the good records around it are processed, and the books balance exactly.

``corpus/manifest.json`` lists one raw file per case with the expected reason and a fragment of the
detail. Records are counted as records: consumed = accepted + dead-lettered. The "same event id,
different content" case is a record that is *accepted* (it is well-formed) whose event is then
dead-lettered by the stitcher (``event_conflict``), so it shows up in the events' outcome counter
and in the dead-letter table, not in the record counters.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client
from prometheus_client import REGISTRY

from stitchboard.app.runner import make_flow
from stitchboard.replay_file import write_records
from stitchboard.settings import ClickHouseSettings, Settings
from stitchboard.sinks.clickhouse_sink import ClickHouseSink

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
FIXTURES = HERE.parent / "fixtures" / "webhook"
T0 = datetime(2026, 3, 29, 14, tzinfo=UTC)  # delivered after every record was received


def manifest() -> list[dict[str, str]]:
    cases: list[dict[str, str]] = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
    return cases


def good_records() -> list[bytes]:
    """Valid webhook deliveries (the adapter fixtures) in envelopes."""
    records = []
    for path in sorted(FIXTURES.glob("*.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        envelope = {
            "tenant": "acme",
            "source": "webhook",
            "received_at": "2026-03-29T14:00:00Z",  # after the fixtures' last event (13:33:20)
            "payload": payload,
        }
        records.append(orjson.dumps(envelope))
    return records


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot_counters(reasons: set[str]) -> dict[str, float]:
    values = {
        "in": counter("stitchboard_records_in_total", input="raw"),
        "accepted": counter("stitchboard_records_accepted_total"),
        "conflicts": counter("stitchboard_events_total", outcome="conflict"),
        "late_letters": counter("stitchboard_dead_letters_after_acceptance_total", reason="event_conflict"),
    }
    values.update(
        {reason: counter("stitchboard_records_dead_lettered_total", reason=reason) for reason in reasons}
    )
    return values


@pytest.fixture(scope="module")
def cases() -> list[dict[str, str]]:
    return manifest()


def test_corpus_covers_every_hostile_class(cases: list[dict[str, str]]) -> None:
    reasons = {case["reason"] for case in cases}
    assert {
        "invalid_json",
        "bad_envelope",
        "schema",
        "missing_field",
        "bad_timestamp",
        "too_large",
        "too_deep",
        "unknown_channel",
        "unknown_event_type",
        "unknown_source",
        "not_utf8",
        "tenant_mismatch",
        "event_conflict",
    } <= reasons
    assert all((CORPUS / case["file"]).is_file() for case in cases)
    assert len((CORPUS / "19_over_1mb.bin").read_bytes()) > 1024 * 1024


def test_hostile_records_are_dead_lettered_with_reasons_and_the_books_balance(
    cases: list[dict[str, str]], chdb_client: Client, fresh_database: str, tmp_path: Path
) -> None:
    good = good_records()
    hostile = [(case, (CORPUS / case["file"]).read_bytes()) for case in cases]
    stream: list[bytes] = []
    for index, (_, raw) in enumerate(hostile):  # good records between bad ones: the flow keeps going
        stream.append(raw)
        stream.append(good[index % len(good)])
    events = tmp_path / "events.jsonl"
    write_records(events, [(T0 + timedelta(seconds=i), raw) for i, raw in enumerate(stream)])

    record_cases = [case for case, _ in hostile if case["stage"] == "record"]
    expected_reasons = Counter(case["reason"] for case in record_cases)
    before = snapshot_counters(set(expected_reasons))
    settings = Settings(
        metrics_port=None, clickhouse=ClickHouseSettings(dsn="chdb://unused", database=fresh_database)
    )
    sink = ClickHouseSink(lambda: chdb_client, settings.clickhouse)
    run_main(make_flow(settings, replay=events, drain_at_eof=True, sink=sink))
    after = snapshot_counters(set(expected_reasons))
    delta = {key: after[key] - before[key] for key in after}

    consumed = len(stream)
    accepted = consumed - len(record_cases)
    assert delta["in"] == consumed
    assert delta["accepted"] == accepted
    assert {reason: delta[reason] for reason in expected_reasons} == dict(expected_reasons)
    assert delta["in"] == delta["accepted"] + sum(delta[reason] for reason in expected_reasons)
    assert delta["conflicts"] == delta["late_letters"] == 1

    letters = [
        (reason, detail, bytes.fromhex(raw), origin)  # hex: the stored bytes exactly, even non-UTF-8
        for reason, detail, raw, origin in chdb_client.query(
            f"SELECT reason, detail, hex(raw), origin FROM {fresh_database}.dead_letters FINAL"
        ).result_rows
    ]
    by_raw: dict[bytes, list[tuple[Any, ...]]] = {}
    for reason, detail, raw, origin in letters:
        by_raw.setdefault(raw, []).append((reason, detail, origin))
    for case, raw in hostile:
        if case["stage"] != "record":
            continue
        assert case["file"] and by_raw.get(raw), f"{case['file']} was not dead-lettered with its bytes"
        [(reason, detail, origin)] = by_raw[raw]
        assert (case["file"], reason) == (case["file"], case["reason"])
        assert case["detail"] in detail, (case["file"], detail)
        assert origin.startswith("events.jsonl@")
    conflicts = [
        (detail, raw, origin) for reason, detail, raw, origin in letters if reason == "event_conflict"
    ]
    [(detail, raw, origin)] = conflicts
    resend = (CORPUS / "31_conflict_resend.bin").read_bytes()
    assert raw == resend  # the record's bytes, as received (issue #13 seen #7)
    assert origin == f"events.jsonl@{_offset(events, stream.index(resend))}"
    assert orjson.loads(raw)["payload"]["conversation_id"] == "hostile-conv-2"
    assert "sequence" in detail
    assert len(letters) == len(record_cases) + 1  # every dead letter is accounted for, none extra

    queue = chdb_client.query(
        f"SELECT first_queue FROM {fresh_database}.conversations FINAL WHERE conversation_id = 'hostile-conv-2'"
    ).result_rows
    assert queue == [("billing",)]  # the first version stands; the conflicting re-send changed nothing
    stitched = chdb_client.query(f"SELECT count() FROM {fresh_database}.conversations FINAL").result_rows[0][
        0
    ]
    assert stitched >= len({orjson.loads(g)["payload"].get("conversation_id") for g in good} - {None})


def _offset(path: Path, line: int) -> int:
    """The byte offset of line ``line`` of a replay file: the origin the replay source gives it."""
    return sum(len(text) for text in path.read_bytes().splitlines(keepends=True)[:line])
