"""THE metric catalogue: every stored metric, every derived figure, and how a conversation contributes.

Tables, dashboards and docs derive from these definitions, so a metric is defined exactly once.
Attribution follows the Genesys convention: each figure lands in the interval of its own event
(offered at queue entry, answered at connect, handle time when handling ends). Contributions of a
conversation that is still open are partial but never wrong, so provisional figures converge to
the final ones.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from stitchboard.contributions import ContributionKey, Contributions
from stitchboard.conversation import Conversation
from stitchboard.settings import TenantSettings

Scope = Literal["leg", "conversation"]
Unit = Literal["count", "ms", "score"]
DerivedUnit = Literal["ratio", "ms", "score"]
ValueKey = tuple[str, str, datetime]  # (queue, metric, at)
ServiceLevelDenominator = Literal["offered", "offered_minus_short", "answered_plus_abandoned_after_sl"]


@dataclass(frozen=True, slots=True)
class MetricDef:
    """A stored, additive metric: summed per (tenant, queue, channel, interval)."""

    name: str
    scope: Scope
    unit: Unit
    attributed_at: str
    description: str


@dataclass(frozen=True, slots=True)
class DerivedDef:
    """A ratio or average computed in SQL from stored columns; never stored itself."""

    name: str
    unit: DerivedUnit
    expression: str  # over one row's columns, e.g. ``answer_wait_ms / nullIf(answered, 0)``
    description: str

    def aggregated(self) -> str:
        """The expression over many rows: every metric column wrapped in ``sum()``."""
        return _METRIC_WORD.sub(lambda match: f"sum({match.group(0)})", self.expression)


CATALOGUE: tuple[MetricDef, ...] = (
    MetricDef("offered", "leg", "count", "queued", "1 per leg that entered a queue."),
    MetricDef(
        "answered", "leg", "count", "answered", "1 per leg offered to a queue and connected to an agent."
    ),
    MetricDef(
        "answered_in_sl",
        "leg",
        "count",
        "answered",
        "1 if an answered queued leg's wait ≤ the queue's service-level threshold.",
    ),
    MetricDef("answer_wait_ms", "leg", "ms", "answered", "answered - queued, per answered queued leg."),
    MetricDef(
        "abandoned",
        "leg",
        "count",
        "abandoned",
        "1 per queued leg the customer left unanswered (short included).",
    ),
    MetricDef(
        "abandoned_short",
        "leg",
        "count",
        "abandoned",
        "1 if the abandon wait < the short-abandon threshold (default 10 s).",
    ),
    MetricDef(
        "abandoned_in_sl", "leg", "count", "abandoned", "1 if the abandon wait ≤ the service-level threshold."
    ),
    MetricDef("abandon_wait_ms", "leg", "ms", "abandoned", "abandoned - queued, per abandoned leg."),
    MetricDef(
        "transferred_out", "leg", "count", "transfer", "1 if an answered queued leg ended by a transfer."
    ),
    MetricDef(
        "handled",
        "leg",
        "count",
        "handling end",
        "1 per answered leg, queued or direct, whose handling ended (talk ended, and ACW ended or absent).",
    ),
    MetricDef("talk_ms", "leg", "ms", "handling end", "talk end - answered - hold."),
    MetricDef("hold_ms", "leg", "ms", "handling end", "Sum of the leg's holds."),
    MetricDef("holds", "leg", "count", "handling end", "Number of holds on the leg."),
    MetricDef("acw_ms", "leg", "ms", "handling end", "acw_end - acw_start."),
    MetricDef("handle_ms", "leg", "ms", "handling end", "talk + hold + acw."),
    MetricDef("qa_scored", "leg", "count", "handling end", "1 when the leg has a QA score."),
    MetricDef("qa_score_sum", "leg", "score", "handling end", "The leg's QA score (0..100)."),
    MetricDef("contacts", "conversation", "count", "conversation start", "1 per conversation."),
    MetricDef(
        "contacts_answered",
        "conversation",
        "count",
        "first answer",
        "1 if an agent answered any leg, queued or direct.",
    ),
    MetricDef(
        "contacts_abandoned",
        "conversation",
        "count",
        "that abandon",
        "1 if the last queued leg was abandoned.",
    ),
    MetricDef(
        "contacts_transferred",
        "conversation",
        "count",
        "first transfer",
        "1 if any answered leg, queued or direct, was transferred.",
    ),
    MetricDef(
        "contacts_ivr_contained",
        "conversation",
        "count",
        "disconnect",
        "1 if it ended in self-service with self_served.",
    ),
    MetricDef(
        "contacts_ivr_abandoned",
        "conversation",
        "count",
        "disconnect / IVR abandon",
        "1 if it ended in self-service without self_served.",
    ),
    MetricDef(
        "contacts_resolved",
        "conversation",
        "count",
        "conversation end (disconnect)",
        "1 if the final wrap-up code of the last answered leg is in the tenant's resolved set.",
    ),
    MetricDef("tickets_reopened", "conversation", "count", "each reopen", "Number of reopen events."),
)
METRIC_NAMES: tuple[str, ...] = tuple(metric.name for metric in CATALOGUE)
# Append new metrics at the end: stitcher snapshots store metric positions, not names.
METRIC_INDEX: dict[str, int] = {name: index for index, name in enumerate(METRIC_NAMES)}
METRICS: dict[str, MetricDef] = {metric.name: metric for metric in CATALOGUE}
_METRIC_WORD = re.compile(r"\b(?:" + "|".join(sorted(METRIC_NAMES, key=len, reverse=True)) + r")\b")

SERVICE_LEVEL_DENOMINATORS: dict[ServiceLevelDenominator, str] = {
    "offered": "offered",
    "offered_minus_short": "offered - abandoned_short",
    "answered_plus_abandoned_after_sl": "answered + abandoned - abandoned_in_sl",
}
DEFAULT_SERVICE_LEVEL_DENOMINATOR: ServiceLevelDenominator = "offered_minus_short"


def service_level(denominator: ServiceLevelDenominator = DEFAULT_SERVICE_LEVEL_DENOMINATOR) -> DerivedDef:
    """Service level with one of the documented denominators (docs/metrics.md)."""
    suffix = "" if denominator == DEFAULT_SERVICE_LEVEL_DENOMINATOR else f"_{denominator}"
    return DerivedDef(
        f"service_level{suffix}",
        "ratio",
        f"answered_in_sl / nullIf({SERVICE_LEVEL_DENOMINATORS[denominator]}, 0)",
        f"Share answered within the threshold; denominator {denominator}.",
    )


DERIVED: tuple[DerivedDef, ...] = (
    service_level(),
    service_level("offered"),
    service_level("answered_plus_abandoned_after_sl"),
    DerivedDef("abandon_rate", "ratio", "abandoned / nullIf(offered, 0)", "Share of offered legs abandoned."),
    DerivedDef(
        "abandon_rate_excluding_short",
        "ratio",
        "(abandoned - abandoned_short) / nullIf(offered - abandoned_short, 0)",
        "Abandon rate ignoring short abandons in numerator and denominator.",
    ),
    DerivedDef(
        "transfer_rate",
        "ratio",
        "transferred_out / nullIf(answered, 0)",
        "Share of answered legs transferred out.",
    ),
    DerivedDef("asa_ms", "ms", "answer_wait_ms / nullIf(answered, 0)", "Average speed of answer."),
    DerivedDef("aht_ms", "ms", "handle_ms / nullIf(handled, 0)", "Average handle time (talk + hold + ACW)."),
    DerivedDef("avg_talk_ms", "ms", "talk_ms / nullIf(handled, 0)", "Average talk time per handled leg."),
    DerivedDef("avg_hold_ms", "ms", "hold_ms / nullIf(handled, 0)", "Average hold time per handled leg."),
    DerivedDef("avg_acw_ms", "ms", "acw_ms / nullIf(handled, 0)", "Average after-call work per handled leg."),
    DerivedDef(
        "avg_qa_score", "score", "qa_score_sum / nullIf(qa_scored, 0)", "Average QA score of scored legs."
    ),
    DerivedDef(
        "containment_rate",
        "ratio",
        "contacts_ivr_contained / nullIf(contacts, 0)",
        "Share of contacts that ended contained in self-service.",
    ),
    DerivedDef(
        "resolution_rate",
        "ratio",
        "contacts_resolved / nullIf(contacts_answered, 0)",
        "Share of answered contacts whose final wrap-up code is a resolved code.",
    ),
)
DERIVED_NAMES: tuple[str, ...] = tuple(derived.name for derived in DERIVED)


def contributions(conversation: Conversation, tenant: TenantSettings) -> Contributions:
    """Every metric value the conversation contributes, keyed by queue, channel and instant.

    Leg scope lands in each leg's queue; conversation scope in the first queue ("" when the
    conversation never queued). Zero values are left out.
    """
    channel = conversation.channel.value
    return Counter(
        {
            ContributionKey(queue, channel, metric, at): value
            for (queue, metric, at), value in contribution_values(conversation, tenant).items()
        }
    )


def contribution_values(conversation: Conversation, tenant: TenantSettings) -> dict[ValueKey, int]:
    """`contributions` keyed by plain (queue, metric, at) tuples; the channel is the conversation's.

    The stitcher compares these on every event, and plain tuples hash far faster than dataclass keys.
    """
    out: dict[ValueKey, int] = {}

    def add(queue: str, metric: str, at: datetime | None, value: int) -> None:
        if at is not None and value != 0:
            key = (queue, metric, at)
            out[key] = out.get(key, 0) + value

    for leg in conversation.legs:
        queue = leg.queue
        # Queue figures only for legs offered to a queue: a direct call to an agent (no queue) has
        # no queue wait, so counting it as answered would inflate service level and dilute ASA.
        if leg.offered_at is not None:
            sl_ms = tenant.service_level_ms(queue)
            add(queue, "offered", leg.offered_at, 1)
            answer_wait = leg.answer_wait_ms
            if answer_wait is not None:
                add(queue, "answered", leg.answered_at, 1)
                add(queue, "answered_in_sl", leg.answered_at, int(answer_wait <= sl_ms))
                add(queue, "answer_wait_ms", leg.answered_at, answer_wait)
                add(queue, "transferred_out", leg.transfer_at, 1)
            abandon_wait = leg.abandon_wait_ms
            if abandon_wait is not None:
                add(queue, "abandoned", leg.abandoned_at, 1)
                add(queue, "abandoned_short", leg.abandoned_at, int(abandon_wait < tenant.short_abandon_ms()))
                add(queue, "abandoned_in_sl", leg.abandoned_at, int(abandon_wait <= sl_ms))
                add(queue, "abandon_wait_ms", leg.abandoned_at, abandon_wait)
        end = leg.handling_end
        if end is not None:
            add(queue, "handled", end, 1)
            add(queue, "talk_ms", end, leg.talk_ms)
            add(queue, "hold_ms", end, leg.hold_ms)
            add(queue, "holds", end, leg.holds)
            add(queue, "acw_ms", end, leg.acw_ms)
            add(queue, "handle_ms", end, leg.handle_ms)
            if leg.qa_score is not None:
                add(queue, "qa_scored", end, 1)
                add(queue, "qa_score_sum", end, leg.qa_score)

    queued = conversation.queued_legs
    first_queue = queued[0].queue if queued else ""
    if conversation.anchored:
        add(first_queue, "contacts", conversation.started_at, 1)
    answers = [leg.answered_at for leg in conversation.legs if leg.answered_at is not None]
    add(first_queue, "contacts_answered", min(answers, default=None), 1)
    if queued and queued[-1].abandon_wait_ms is not None:
        add(first_queue, "contacts_abandoned", queued[-1].abandoned_at, 1)
    transfers = [leg.transfer_at for leg in conversation.legs if leg.transfer_at and leg.answered_at]
    add(first_queue, "contacts_transferred", min(transfers, default=None), 1)
    if conversation.ivr_outcome == "contained":
        add(first_queue, "contacts_ivr_contained", conversation.ivr_outcome_at, 1)
    elif conversation.ivr_outcome == "abandoned":
        add(first_queue, "contacts_ivr_abandoned", conversation.ivr_outcome_at, 1)
    last_answered = conversation.last_answered_leg
    if last_answered is not None and last_answered.wrapup_code in tenant.resolved_wrapup_codes:
        add(first_queue, "contacts_resolved", conversation.disconnected_at, 1)
    for reopened_at in conversation.reopened_at:
        add(first_queue, "tickets_reopened", reopened_at, 1)
    return out
