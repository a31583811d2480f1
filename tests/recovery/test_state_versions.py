"""Versioned recovery state: a snapshot written before versioning is restored and the steps go on
with exact figures; a layout this release cannot read stops with one line naming step and versions.

The "previous layout" snapshots are built as the pre-versioning code built them: its
``snapshot()`` methods returned the bare payloads (``StitchStep``: the shard; ``IntervalStep``: the
book's snapshot and the arrival order's; ``JourneyStep``: the ``TenantJourneys``; the arrival
numbering: the next number; the sink: ``(epoch, token, pickled staged rows)``), pickled by Bytewax.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from support.events import chat_event as event

from stitchboard.app.errors import RUNTIME, SettingsOrigin, describe
from stitchboard.deliveries import Delivery
from stitchboard.events import CanonicalEvent, EventType
from stitchboard.flows.journey_step import JourneyStep
from stitchboard.flows.sources import REPLAY_STATE
from stitchboard.flows.steps import (
    ARRIVAL_STATE,
    INTERVAL_STATE,
    IntervalStep,
    StitchedBatch,
    StitchStep,
    arrival_number,
)
from stitchboard.rows import IntervalRow
from stitchboard.settings import Settings, TimingSettings
from stitchboard.sinks.clickhouse_sink import SINK_STATE, _staged
from stitchboard.state_version import MARK, StateSchema, StateVersionError, unchanged

SETTINGS = Settings(timing=TimingSettings(interval_minutes=(15,)))
EVENTS = [
    event(EventType.QUEUED, 0, queue="sales"),
    event(EventType.ANSWERED, 20, queue="sales", agent="ann"),
    event(EventType.QUEUED, 0, queue="sales"),  # a duplicate re-send
    event(EventType.DISCONNECTED, 300),
]
FIX = "start on an empty recovery volume (recovery_dir; see docs/operations.md, section Upgrades)"


def delivered(arrival: int, *events: CanonicalEvent) -> tuple[int, Delivery]:
    return arrival, Delivery("acme", "c1", events)


def as_bytewax_stores(payload: object) -> Any:
    """What Bytewax hands back on resume: the snapshot, pickled and unpickled."""
    return pickle.loads(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))


def stitched(step: StitchStep, first: int, last: int) -> StitchedBatch:
    [batch], _ = step.on_batch([delivered(i, EVENTS[i]) for i in range(first, last)])
    return batch


def finals(book: IntervalStep, batch: StitchedBatch) -> list[tuple[str, int, int]]:
    book.on_batch([batch.feeds])
    drained, _ = book.on_eof()
    rows = [row for rows in drained for row in rows if isinstance(row, IntervalRow)]
    return [(row.status, row.metrics["offered"], row.metrics["answered"]) for row in rows]


def test_stitch_and_interval_snapshots_of_the_previous_layout_resume_with_exact_figures() -> None:
    straight_stitch, straight_book = StitchStep(SETTINGS, None), IntervalStep(SETTINGS, None, True)
    straight_book.on_batch([stitched(straight_stitch, 0, 2).feeds])
    straight_rest = stitched(straight_stitch, 2, 4)
    expected = finals(straight_book, straight_rest)
    assert expected == [("final", 1, 1)]

    stitch, book = StitchStep(SETTINGS, None), IntervalStep(SETTINGS, None, True)
    book.on_batch([stitched(stitch, 0, 2).feeds])
    old_stitch = as_bytewax_stores(stitch._shard)  # the pre-versioning StitchStep.snapshot()
    assert book._book is not None
    old_book = as_bytewax_stores((book._book.snapshot(), book._order.snapshot()))  # IntervalStep's

    resumed_stitch = StitchStep(SETTINGS, old_stitch)
    rest = stitched(resumed_stitch, 2, 4)
    assert [(r.version, r.status, r.answered) for r in rest.rows] == [(3, "ended", True)]
    assert [(r.version, r.status, r.answered) for r in straight_rest.rows] == [(3, "ended", True)]
    assert finals(IntervalStep(SETTINGS, old_book, True), rest) == expected

    # and what they write now is versioned, and restores the same way
    assert resumed_stitch.snapshot()[:3] == (MARK, "stitch", 1)
    again = IntervalStep(SETTINGS, as_bytewax_stores(INTERVAL_STATE.wrap(old_book)), True)
    assert finals(again, rest) == expected


def test_a_journeys_snapshot_of_the_previous_layout_resumes_with_the_same_rows() -> None:
    stitch = StitchStep(SETTINGS, None)
    first, rest = stitched(stitch, 0, 2), stitched(stitch, 2, 4)
    straight = JourneyStep(SETTINGS, SETTINGS.journeys, None)
    step = JourneyStep(SETTINGS, SETTINGS.journeys, None)
    for subject in (straight, step):
        subject.on_item([(row, None) for row in first.rows])
    old = as_bytewax_stores(step._state)  # the pre-versioning JourneyStep.snapshot()
    resumed = JourneyStep(SETTINGS, SETTINGS.journeys, old)
    expected, _ = straight.on_item([(row, None) for row in rest.rows])
    assert expected and resumed.on_item([(row, None) for row in rest.rows])[0] == expected
    assert resumed.snapshot()[:3] == (MARK, "journeys", 1)


def test_arrival_numbers_continue_from_an_unversioned_next_number() -> None:
    state, numbered = arrival_number(41, Delivery("acme", "c1", (EVENTS[0],)))
    assert numbered[0] == 41 and state == (MARK, "arrival_number", 1, 42)
    state, numbered = arrival_number(state, Delivery("acme", "c1", (EVENTS[1],)))
    assert numbered[0] == 42 and ARRIVAL_STATE.unwrap(state) == 43


def test_sink_and_replay_positions_of_the_previous_layout() -> None:
    staged = {3: {"dead_letters": []}}
    old = as_bytewax_stores((3, "token", pickle.dumps(staged)))
    epoch, token, rows = SINK_STATE.unwrap(old)
    assert (epoch, token, _staged(rows)) == (3, "token", staged)
    assert REPLAY_STATE.unwrap(as_bytewax_stores(1234)) == 1234


@pytest.mark.parametrize(
    ("snapshot", "found"),
    [
        ((MARK, "stitch", 2, None), "version 2"),
        ((MARK, "journeys", 1, None), "the state of step 'journeys'"),
        (
            {"shard": "a layout nobody wrote"},
            "unversioned (written before versioning) in a layout not known: dict",
        ),
    ],
)
def test_a_state_this_release_cannot_read_stops_with_one_line(snapshot: object, found: str) -> None:
    message = (
        f"the recovery state of step 'stitch' is {found}; this release restores versions 0, 1 of it: {FIX}"
    )
    with pytest.raises(StateVersionError) as raised:
        StitchStep(SETTINGS, snapshot)
    assert str(raised.value) == message + " or run the release that wrote it"
    assert "\n" not in str(raised.value)
    # Bytewax raises its own error from the step's: the command line still names the step's
    wrapped = RuntimeError("error calling `StatefulBatchLogic` builder")
    wrapped.__cause__ = raised.value
    failure = describe(wrapped, SettingsOrigin())
    assert (failure.exit_status, failure.message, failure.unexpected) == (RUNTIME, str(raised.value), False)


def test_older_versions_are_migrated_in_order_and_a_gap_is_refused() -> None:
    schema = StateSchema[list[str]](
        "demo",
        3,
        {0: lambda p: [*p, "0>1"], 1: lambda p: [*p, "1>2"], 2: lambda p: [*p, "2>3"]},
        lambda s: isinstance(s, list),
    )
    assert schema.supported == (0, 1, 2, 3)
    assert schema.unwrap(["v0"]) == ["v0", "0>1", "1>2", "2>3"]
    assert schema.unwrap((MARK, "demo", 2, ["v2"])) == ["v2", "2>3"]
    assert schema.unwrap(schema.wrap(["now"])) == ["now"]
    gap = StateSchema[int]("demo", 3, {2: unchanged})
    assert gap.supported == (2, 3)
    with pytest.raises(StateVersionError, match="is version 1; this release restores versions 2, 3 of it"):
        gap.unwrap((MARK, "demo", 1, 0))
    with pytest.raises(StateVersionError, match="unversioned"):
        gap.unwrap(7)
