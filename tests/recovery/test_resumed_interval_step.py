"""An interval book restored from a snapshot acts without waiting for new input.

Regression: the book was rebuilt only when the next event arrived, so a flow that crashed after
reading its whole input resumed at end of input, found no book and drained nothing — the final rows
of the last epoch were lost (and an idle tenant's timer did nothing after a restart).
"""

from __future__ import annotations

from datetime import UTC, datetime

from stitchboard.contributions import ContributionKey, Delta, TenantFeed
from stitchboard.flows.steps import IntervalStep
from stitchboard.rows import IntervalRow
from stitchboard.settings import Settings

AT = datetime(2026, 3, 29, 8, 5, tzinfo=UTC)


def resumed_step(settings: Settings) -> IntervalStep:
    first = IntervalStep(settings, None, drain_at_eof=True)
    delta = Delta("acme", ContributionKey("sales", "voice", "offered", AT), 1, "queued")
    first.on_batch([[TenantFeed("acme", 0, AT, AT, [delta])]])
    return IntervalStep(settings, first.snapshot(), drain_at_eof=True)


def test_a_resumed_book_drains_at_end_of_input_without_new_events() -> None:
    rows = [row for batch in resumed_step(Settings()).on_eof()[0] for row in batch]

    finals = [row for row in rows if isinstance(row, IntervalRow) and row.status == "final"]
    assert sorted(row.interval_minutes for row in finals) == [15, 30, 60, 1440]
    assert all(row.metrics["offered"] == 1 for row in finals)
