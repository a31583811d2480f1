"""Issue #13, deliver 1: a record a step cannot process becomes a dead letter, never an exception.

A failure is injected into each stateful step in turn (the domain call it makes raises for one
chosen record), and the real flow runs a generated day into chDB. It must finish; the record must
be dead-lettered (``internal_error``, the exception named) with its bytes and origin, or past the
stitcher, with its origin and what the step held of it; and every other figure must be exact: equal
to a run in which the record was never sent, or, where the record was already partly taken (its
conversation stitched before the book failed), to the full run minus exactly that part.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client
from prometheus_client import REGISTRY

from stitchboard import adapters, deliveries, shards
from stitchboard.app.runner import make_flow
from stitchboard.contributions import TenantFeed
from stitchboard.deadletters import INTERNAL_ERROR
from stitchboard.events import CanonicalEvent
from stitchboard.flows import steps
from stitchboard.interval_book import IntervalBook
from stitchboard.intervals import interval_of
from stitchboard.journeys import TenantJourneys
from stitchboard.reconcile import Figures, read_figures
from stitchboard.replay_file import write_records
from stitchboard.rows import ConversationRow
from stitchboard.settings import ClickHouseSettings, Settings
from stitchboard.sinks import clickhouse_sink
from stitchboard.sinks.clickhouse import init_db
from stitchboard.stitching.stitch import stitch_group
from stitchboard.synthetic.dataset import FaultProfile, build_dataset

DAY = date(2026, 3, 10)
ZONE = "Europe/London"
CLEAN = FaultProfile(duplicate_rate=0, reorder_window_seconds=0, late_rate=0, malformed_rate=0)


class Injected(RuntimeError):
    """The failure a test injects."""


@dataclass(frozen=True)
class Day:
    """The input, and the records failures are injected for."""

    settings: Settings
    records: list[bytes]
    times: list[datetime]  # when each was delivered
    later: int  # a record of a conversation with records before and after it, moving its figures
    conversation: str  # a conversation whose every row fails (conversation row, journeys, sink)
    agent: int  # an agent presence record

    def without(self, indexes: set[int]) -> list[int]:
        return [i for i in range(len(self.records)) if i not in indexes]

    @property
    def every(self) -> list[int]:
        return list(range(len(self.records)))

    def write(self, indexes: list[int], path: Path) -> None:
        write_records(path, [(self.times[i], self.records[i]) for i in indexes])

    def of(self, conversation: str) -> set[int]:
        return {i for i, raw in enumerate(self.records) if conversation.encode() in raw}


@dataclass(frozen=True)
class Tables:
    conversations: set[tuple[Any, ...]]
    daily: Figures
    quarter: Figures
    engagements: set[tuple[Any, ...]]
    paths: set[tuple[Any, ...]]
    agent_states: set[tuple[Any, ...]]
    letters: list[tuple[str, str, bytes, str, str]]  # reason, detail, raw, origin, part


@pytest.fixture(scope="module")
def day() -> Day:
    data = build_dataset({"acme": ZONE}, DAY, seed=3, scale=0.05, faults=CLEAN)
    pairs = data.delivery.pairs()
    records = [raw for _, raw in pairs]
    conversations: dict[str, list[int]] = {}
    agents: list[int] = []
    for index, raw in enumerate(records):
        events = adapters.normalise(raw)
        assert isinstance(events, list)
        ids = {event.conversation_id for event in events if event.conversation_id is not None}
        if not ids:
            agents.append(index)
        for conversation in ids:
            conversations.setdefault(conversation, []).append(index)
    later, of = _later_record_with_figures(records, conversations, data.settings)
    chosen = next(c for c in conversations if c != of)
    return Day(data.settings, records, [at for at, _ in pairs], later, chosen, agents[len(agents) // 2])


def _later_record_with_figures(
    records: list[bytes], conversations: dict[str, list[int]], settings: Settings
) -> tuple[int, str]:
    """A record that is neither the first nor the last of its conversation and moves its figures."""
    for conversation, indexes in conversations.items():
        state = None
        for position, index in enumerate(indexes[:-1]):
            events = adapters.normalise(records[index])
            assert isinstance(events, list)
            outcome = stitch_group(state, events, settings.tenant("acme"))
            state = outcome.state
            if position and outcome.deltas:
                return index, conversation
    raise AssertionError("no later record moves a figure")


def run(day: Day, indexes: list[int], client: Client, dsn: str, tmp: Path) -> Tables:
    """The flow over the records at ``indexes`` into a fresh database; what it wrote."""
    events = tmp / "events.jsonl"
    day.write(indexes, events)
    database = f"steps_{uuid.uuid4().hex[:10]}"
    init_db(client, database)
    settings = day.settings.model_copy(
        update={"clickhouse": ClickHouseSettings(dsn=dsn, database=database), "metrics_port": None}
    )
    try:
        run_main(make_flow(settings, replay=events, drain_at_eof=True))
        return read(client, database)
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{database}`")


def rows(client: Client, sql: str) -> set[tuple[Any, ...]]:
    """Rows as a set (array columns as tuples)."""
    return {
        tuple(tuple(value) if isinstance(value, list) else value for value in row)
        for row in client.query(sql).result_rows
    }


def read(client: Client, db: str) -> Tables:
    letters = [
        (reason, detail, bytes.fromhex(raw), origin, part)
        for reason, detail, raw, origin, part in client.query(
            f"SELECT reason, detail, hex(raw), origin, part FROM {db}.dead_letters FINAL"
        ).result_rows
    ]
    return Tables(
        conversations=rows(client, f"SELECT * EXCEPT updated_at FROM {db}.conversations FINAL"),
        daily=read_figures(client, db, 1440),
        quarter=read_figures(client, db, 15),
        engagements=rows(
            client,
            f"SELECT engagement_id, customer_key, intent, conversation_ids, contacts, fcr, status"
            f" FROM {db}.engagements FINAL WHERE deleted = 0",
        ),
        paths=rows(client, f"SELECT * FROM {db}.conversation_paths FINAL"),
        agent_states=rows(client, f"SELECT * FROM {db}.agent_states FINAL"),
        letters=letters,
    )


@pytest.fixture(scope="module")
def runs(
    day: Day, chdb_client: Client, chdb_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Tables]]:
    tmp = tmp_path_factory.mktemp("baselines")
    yield {
        "full": run(day, day.every, chdb_client, chdb_dsn, tmp),
        "without later": run(day, day.without({day.later}), chdb_client, chdb_dsn, tmp),
        "without conversation": run(day, day.without(day.of(day.conversation)), chdb_client, chdb_dsn, tmp),
        "without agent": run(day, day.without({day.agent}), chdb_client, chdb_dsn, tmp),
    }


def raising_for(call: Callable[..., Any], hit: Callable[..., bool]) -> Callable[..., Any]:
    """``call``, raising ``Injected`` after it (its state changes made) when ``hit`` says so."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = call(*args, **kwargs)
        if hit(*args, **kwargs):
            raise Injected("injected failure for one record")
        return result

    return wrapped


def internal_errors(tables: Tables) -> list[tuple[str, str, bytes, str, str]]:
    return [letter for letter in tables.letters if letter[0] == INTERNAL_ERROR]


def counted() -> float:
    labels = {"reason": INTERNAL_ERROR}
    return REGISTRY.get_sample_value("stitchboard_dead_letters_after_acceptance_total", labels) or 0.0


def origins_of(day: Day, tmp: Path) -> list[str]:
    """Each record's origin in the replay file ``run`` writes (``name@byte offset``)."""
    events = tmp / "origins.jsonl"
    day.write(day.every, events)
    lines = events.read_bytes().splitlines(keepends=True)
    return [f"events.jsonl@{sum(len(line) for line in lines[:i])}" for i in range(len(lines))]


def same_except_letters(got: Tables, want: Tables, *, daily: Figures | None = None) -> None:
    assert got.conversations == want.conversations
    assert got.daily == (want.daily if daily is None else daily)
    assert got.engagements == want.engagements
    assert got.paths == want.paths
    assert got.agent_states == want.agent_states
    assert [letter for letter in got.letters if letter[0] != INTERNAL_ERROR] == [
        letter for letter in want.letters if letter[0] != INTERNAL_ERROR
    ]


@pytest.mark.parametrize("step", ["split_records", "arrival_number", "stitch", "agent_states"])
def test_a_record_a_step_fails_on_is_dead_lettered_whole_and_changes_nothing_else(
    step: str,
    day: Day,
    runs: dict[str, Tables],
    chdb_client: Client,
    chdb_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = day.agent if step == "agent_states" else day.later
    record = day.records[index]
    if step == "split_records":
        monkeypatch.setattr(
            steps, "split_record", raising_for(deliveries.split_record, lambda _e, raw, *_: raw == record)
        )
    elif step == "arrival_number":
        monkeypatch.setattr(steps, "number", raising_for(steps.number, lambda _n, d: d.raw == record))
    elif step == "stitch":  # raises after the events were added: the state before them must come back
        monkeypatch.setattr(
            shards, "stitch_group", raising_for(shards.stitch_group, lambda *_a, raw, **_k: raw == record)
        )
    else:
        ids = {event.event_id for event in adapters.normalise(record)}  # type: ignore[union-attr]

        def hit(event: CanonicalEvent) -> bool:
            return event.event_id in ids

        monkeypatch.setattr(deliveries, "agent_state_row", raising_for(deliveries.agent_state_row, hit))
    before = counted()
    got = run(day, day.every, chdb_client, chdb_dsn, tmp_path)
    same_except_letters(got, runs["without agent" if step == "agent_states" else "without later"])
    assert got.quarter == runs["without agent" if step == "agent_states" else "without later"].quarter
    [(_, detail, raw, origin, _)] = internal_errors(got)
    assert raw == record
    assert origin == origins_of(day, tmp_path)[index]
    assert detail.startswith(f"{'split_records' if step == 'agent_states' else step}: Injected: ")
    assert counted() - before == 1


def test_a_feed_the_interval_book_fails_on_leaves_the_book_as_it_was(
    day: Day,
    runs: dict[str, Tables],
    chdb_client: Client,
    chdb_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stitched, the record's conversation row stands; only its deltas are missing from intervals."""
    origin = origins_of(day, tmp_path)[day.later]

    def hit(_book: IntervalBook, feed: TenantFeed, _now: datetime) -> bool:
        return feed.record is not None and feed.record.origin == origin

    monkeypatch.setattr(IntervalBook, "receive", _before(IntervalBook.receive, hit))
    got = run(day, day.every, chdb_client, chdb_dsn, tmp_path)
    [(_, detail, raw, where, _)] = internal_errors(got)
    assert where == origin and detail.startswith("intervals: Injected: ")
    corrections = orjson.loads(raw)
    assert corrections and {c["record_sha256"] for c in corrections} == {
        hashlib.sha256(day.records[day.later]).hexdigest()
    }
    expected: Figures = {key: dict(figures) for key, figures in runs["full"].daily.items()}
    for c in corrections:  # the full run minus exactly the record's deltas
        start = interval_of(datetime.fromisoformat(c["at"]), ZoneInfo(ZONE), 1440).start
        expected[("acme", c["queue"], c["channel"], start)][c["metric"]] -= c["value"]
    same_except_letters(got, runs["full"], daily=expected)


def _before(call: Callable[..., Any], hit: Callable[..., bool]) -> Callable[..., Any]:
    """``call``, raising ``Injected`` before it when ``hit`` says so."""

    def wrapped(*args: Any) -> Any:
        if hit(*args):
            raise Injected("injected failure for one record")
        return call(*args)

    return wrapped


@pytest.mark.parametrize("step", ["conversation_row", "journeys", "clickhouse_sink"])
def test_a_conversation_row_a_step_fails_on_is_dead_lettered_and_the_rest_is_exact(
    step: str,
    day: Day,
    runs: dict[str, Tables],
    chdb_client: Client,
    chdb_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conversation = day.conversation
    if step == "conversation_row":

        def row_hit(conversation_: Any, *_: Any) -> bool:
            return bool(conversation_.conversation_id == conversation)

        monkeypatch.setattr(steps, "conversation_row", _before(steps.conversation_row, row_hit))
    elif step == "journeys":

        def journey_hit(_state: TenantJourneys, row: ConversationRow, *_: Any) -> bool:
            return row.conversation_id == conversation

        monkeypatch.setattr(TenantJourneys, "apply", _before(TenantJourneys.apply, journey_hit))
    else:

        def sink_hit(_table: str, row: object) -> bool:
            return isinstance(row, ConversationRow) and row.conversation_id == conversation

        monkeypatch.setattr(clickhouse_sink, "to_columns", _before(clickhouse_sink.to_columns, sink_hit))
    got = run(day, day.every, chdb_client, chdb_dsn, tmp_path)
    full, without = runs["full"], runs["without conversation"]
    letters = internal_errors(got)
    assert letters and all(detail.startswith(f"{step}: Injected: ") for _, detail, _, _, _ in letters)
    origins = origins_of(day, tmp_path)
    mine = {origins[i] for i in day.of(conversation)}
    if step == "conversation_row":  # the stitcher holds the record: its bytes
        assert {(raw, where) for _, _, raw, where, _ in letters} <= {
            (day.records[i], origins[i]) for i in day.of(conversation)
        }
    elif step == "journeys":  # journeys hold the row, and the origin of its last record
        assert {orjson.loads(raw)["conversation_id"] for _, _, raw, _, _ in letters} == {conversation}
        assert {where for _, _, _, where, _ in letters} <= mine
    else:
        assert {orjson.loads(raw)["row"]["conversation_id"] for _, _, raw, _, _ in letters} == {conversation}
    assert got.daily == full.daily and got.quarter == full.quarter
    assert got.agent_states == full.agent_states
    assert got.conversations == (full.conversations if step == "journeys" else without.conversations)
    journeys_like = full if step == "clickhouse_sink" else without
    assert got.engagements == journeys_like.engagements
    assert got.paths == journeys_like.paths
    assert Counter(letter[0] for letter in got.letters if letter[0] != INTERNAL_ERROR) == Counter(
        letter[0] for letter in full.letters
    )
