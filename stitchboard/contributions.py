"""The unit of metric attribution: a value of one metric, at one instant, for one queue and channel.

The stitcher turns a conversation into contributions (``stitchboard.metrics``); when the
conversation changes it emits the difference as deltas, one ``TenantFeed`` per stitched delivery;
the interval book sums deltas into intervals. A retraction is a negative delta, so late and mutated
data correct figures instead of duplicating them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from stitchboard.deadletters import RecordRef


@dataclass(frozen=True, slots=True, order=True)
class ContributionKey:
    """Where a value lands: (queue, channel, metric) at an attribution instant (UTC)."""

    queue: str
    channel: str
    metric: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Delta:
    """A change to one contribution, with why it changed (used as the restatement reason)."""

    tenant: str
    key: ContributionKey
    value: int
    reason: str


Contributions = Counter[ContributionKey]


def diff(tenant: str, before: Contributions, after: Contributions, reason: str) -> list[Delta]:
    """Deltas turning ``before`` into ``after``; empty when nothing changed."""
    keys: Iterable[ContributionKey] = sorted(set(before) | set(after))
    return [
        Delta(tenant, key, after.get(key, 0) - before.get(key, 0), reason)
        for key in keys
        if after.get(key, 0) != before.get(key, 0)
    ]


@dataclass(frozen=True, slots=True)
class TenantFeed:
    """What a tenant's interval book needs from one stitched delivery, with its arrival number.

    A delivery the stitcher failed on still has its feed (the book releases arrival numbers in
    order), with no deltas and no event times: it moves nothing. ``record`` names the record the
    delivery came from (its origin, digest and receive time), not its bytes: feeds cross a worker
    exchange and wait in the book's arrival-order buffer, which is snapshotted.
    """

    tenant: str
    arrival: int
    earliest: datetime | None  # event times of the delivery: the watermark observes the latest,
    latest: datetime | None  # lateness is judged on the earliest; None when nothing was stitched
    deltas: list[Delta]
    conversation_id: str = ""
    record: RecordRef | None = None
