"""Ground truth computed directly from scenario objects, independently of the stitcher and metrics.

This module deliberately re-implements the metric catalogue of docs/architecture.md in the most
literal way it can, from ``SimConversation`` objects rather than events, so that tests comparing
the flow's output with it catch bugs in ``stitchboard.stitching`` and ``stitchboard.metrics``. It
must never import either. Interval boundaries come from ``stitchboard.intervals``.

Queue figures (offered, answered, answered_in_sl, answer_wait_ms, abandon figures,
transferred_out) count only legs offered to a queue. A leg with queue ``""`` was dialled straight
to an agent: it adds only handling figures (handled, talk, hold, ACW, handle, QA) under queue
``""``; its conversation is still a contact, answered (and transferred) when its agent answered.

What vendors report besides (module docstring of ``stitchboard.synthetic.generator``) moves no
figure, by these rules: a leg is answered when its answering agent's talk starts, however far the
queue's own end drifts from it; an agent alerted who never answered and an internal user consulted
on hold are neither legs nor agents of the conversation; a hold open when the call ends counts
up to the end; an external transfer is a transfer out of its leg, and the conversation ends when
the customer's call with the outside party does.

"As of" a cut-off: wrap-up codes (initial and changed), QA scores and ticket reopens count only
when their own time is at or before the cut-off; everything else about a conversation counts
in full. That is the state a flow should converge to once it has seen every record up to the
cut-off plus the conversations themselves.

Engagements (issue-5 preview): conversations of one tenant are linked into customers when they
share any identifier key (transitively); within a customer, conversations with the same intent form
one engagement while they start within ``window_days`` of the engagement's first conversation. The
intent is the conversation's intent, else the tenant's ``intent_by_wrapup_code`` of its final code;
a conversation with neither (or no identifiers) is an engagement of its own.

Paths (issue 5): a conversation with IVR or bot steps is self-service; it *opted out* when its
self-service outcome is ``queued`` (it left for a person), at its last self-service node; it was
*contained* when the outcome is ``contained``.

Why one module of over 500 lines: it is the independent second reading of every figure (intervals,
conversations, engagements, paths), kept in one place so it can be read against docs/metrics.md
line by line, and sharing no code with the flow on purpose.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson

from stitchboard.intervals import interval_of
from stitchboard.settings import INTERVAL_MINUTES, Settings, TenantSettings
from stitchboard.synthetic.generator import Day
from stitchboard.synthetic.scenario import SimConversation, SimLeg

LEG_METRICS: tuple[str, ...] = (
    "offered",
    "answered",
    "answered_in_sl",
    "answer_wait_ms",
    "abandoned",
    "abandoned_short",
    "abandoned_in_sl",
    "abandon_wait_ms",
    "transferred_out",
    "handled",
    "talk_ms",
    "hold_ms",
    "holds",
    "acw_ms",
    "handle_ms",
    "qa_scored",
    "qa_score_sum",
)
CONVERSATION_METRICS: tuple[str, ...] = (
    "contacts",
    "contacts_answered",
    "contacts_abandoned",
    "contacts_transferred",
    "contacts_ivr_contained",
    "contacts_ivr_abandoned",
    "contacts_resolved",
    "tickets_reopened",
)
METRICS: tuple[str, ...] = LEG_METRICS + CONVERSATION_METRICS

IntervalKey = tuple[str, str, str, datetime]  # (tenant, queue, channel, interval start UTC)
SettingsSource = TenantSettings | Settings | Mapping[str, TenantSettings]
Sources = Day | Iterable[Day] | Iterable[SimConversation]


@dataclass(frozen=True, slots=True)
class ConversationTruth:
    """What a correctly stitched conversation must say (durations in integer ms)."""

    tenant: str
    conversation_id: str
    channel: str
    started_at: datetime
    ended_at: datetime
    first_queue: str
    last_queue: str
    queues: tuple[str, ...]
    agents: tuple[str, ...]
    legs: int
    answered: bool
    abandoned: bool  # the last leg was abandoned
    transfers: int
    ivr_outcome: str  # "" when there was no self-service front end
    wait_ms: int  # sum of queue waits over all legs (answered and abandoned)
    talk_ms: int
    hold_ms: int
    holds: int
    acw_ms: int
    handle_ms: int
    final_wrapup: str  # final code of the last answered leg, "" if none (as of the cut-off)
    resolved: bool
    qa_score: int | None  # QA score of the last scored leg (as of the cut-off)
    reopened: int
    intent: str
    customer_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Engagement:
    tenant: str
    intent: str
    conversation_ids: tuple[str, ...]  # in start order
    channels: tuple[str, ...]
    first_contact_resolved: bool
    channel_switches: int


@dataclass(frozen=True, slots=True)
class EngagementTruth:
    """Per-tenant engagement figures and the engagements behind them."""

    engagements: int
    contacts: int
    repeat_contacts: int  # contacts after the first of their engagement
    first_contact_resolutions: int
    channel_switches: int  # consecutive contacts of an engagement on different channels
    contacts_per_engagement: dict[int, int]  # size -> number of engagements
    detail: tuple[Engagement, ...]


@dataclass(frozen=True, slots=True)
class PathTruth:
    """Per-tenant self-service figures: containment and opt-outs by (channel, last node)."""

    self_service: int
    contained: int
    opt_outs: int
    opt_outs_by_last_step: dict[tuple[str, str], int]


def tenant_settings_of(settings: SettingsSource, tenant: str) -> TenantSettings:
    if isinstance(settings, TenantSettings):
        return settings
    if isinstance(settings, Settings):
        return settings.tenant(tenant)
    return settings.get(tenant, TenantSettings())


def conversations_of(sources: Sources) -> list[SimConversation]:
    if isinstance(sources, Day):
        return list(sources.conversations)
    found: list[SimConversation] = []
    for item in sources:
        found.extend(item.conversations if isinstance(item, Day) else [item])
    return found


def _ms(later: datetime, earlier: datetime) -> int:
    return round((later - earlier).total_seconds() * 1000)


def _hold_ms(leg: SimLeg) -> int:
    return sum(_ms(h.end, h.start) for h in leg.holds)


def _talk_ms(leg: SimLeg) -> int:
    assert leg.ended_at is not None and leg.answered_at is not None
    return _ms(leg.ended_at, leg.answered_at) - _hold_ms(leg)


def _acw_ms(leg: SimLeg) -> int:
    assert leg.ended_at is not None
    return _ms(leg.acw_end, leg.ended_at) if leg.acw_end is not None else 0


def _queued(conv: SimConversation) -> list[SimLeg]:
    """The legs offered to a queue (a leg with queue "" went straight to an agent)."""
    return [leg for leg in conv.legs if leg.queue]


def _handling_end(leg: SimLeg) -> datetime:
    end = leg.acw_end or leg.ended_at
    assert end is not None
    return end


def wrapup_as_of(leg: SimLeg, as_of: datetime | None) -> str | None:
    """The leg's wrap-up code known at ``as_of`` (the latest change wins)."""
    if leg.wrapup_changed_to is not None and _known(leg.wrapup_changed_at, as_of):
        return leg.wrapup_changed_to
    if leg.wrapup_code is not None and _known(leg.wrapup_set_at, as_of):
        return leg.wrapup_code
    return None


def qa_as_of(leg: SimLeg, as_of: datetime | None) -> int | None:
    return leg.qa_score if leg.qa_score is not None and _known(leg.qa_scored_at, as_of) else None


def _known(at: datetime | None, as_of: datetime | None) -> bool:
    return as_of is None or (at is not None and at <= as_of)


def final_wrapup(conv: SimConversation, as_of: datetime | None = None) -> str | None:
    answered = [leg for leg in conv.legs if leg.outcome == "answered"]
    return wrapup_as_of(answered[-1], as_of) if answered else None


def conversation_truth(
    conv: SimConversation, settings: SettingsSource, as_of: datetime | None = None
) -> ConversationTruth:
    tenant = tenant_settings_of(settings, conv.tenant)
    answered = [leg for leg in conv.legs if leg.outcome == "answered"]
    code = final_wrapup(conv, as_of)
    scores = [score for leg in answered if (score := qa_as_of(leg, as_of)) is not None]
    talk = sum(_talk_ms(leg) for leg in answered)
    hold = sum(_hold_ms(leg) for leg in answered)
    acw = sum(_acw_ms(leg) for leg in answered)
    queued = _queued(conv)
    queues = tuple(dict.fromkeys(leg.queue for leg in queued))
    return ConversationTruth(
        tenant=conv.tenant,
        conversation_id=conv.conversation_id,
        channel=conv.channel.value,
        started_at=conv.started_at,
        ended_at=conv.ended_at,
        first_queue=queued[0].queue if queued else "",
        last_queue=queued[-1].queue if queued else "",
        queues=queues,
        agents=tuple(dict.fromkeys(leg.agent for leg in answered if leg.agent is not None)),
        legs=len(conv.legs),
        answered=bool(answered),
        abandoned=bool(queued) and queued[-1].outcome == "abandoned",
        transfers=sum(1 for leg in conv.legs if leg.transfer is not None),
        ivr_outcome=conv.ivr_outcome or "",
        wait_ms=sum(_ms(leg.left_at, leg.entered_at) for leg in queued),
        talk_ms=talk,
        hold_ms=hold,
        holds=sum(len(leg.holds) for leg in answered),
        acw_ms=acw,
        handle_ms=talk + hold + acw,
        final_wrapup=code or "",
        resolved=code is not None and code in tenant.resolved_wrapup_codes,
        qa_score=scores[-1] if scores else None,
        reopened=sum(1 for at in conv.reopened_at if _known(at, as_of)),
        intent=conv.intent or "",
        customer_keys=tuple(conv.customer.keys()),
    )


def contributions_of(
    conv: SimConversation, settings: SettingsSource, as_of: datetime | None = None
) -> list[tuple[str, str, str, datetime, int]]:
    """Every (queue, channel, metric, at, value) the catalogue attributes for one conversation."""
    tenant = tenant_settings_of(settings, conv.tenant)
    channel = conv.channel.value
    out: list[tuple[str, str, str, datetime, int]] = []

    def add(queue: str, metric: str, at: datetime, value: int) -> None:
        out.append((queue, channel, metric, at, value))

    for leg in conv.legs:
        queue, sl_ms = leg.queue, tenant.service_level_ms(leg.queue)
        wait = _ms(leg.left_at, leg.entered_at)
        if queue:  # a leg dialled straight to an agent was never offered: handling figures only
            add(queue, "offered", leg.entered_at, 1)
        if leg.outcome == "abandoned":
            assert queue, "only a leg offered to a queue can be abandoned"
            add(queue, "abandoned", leg.left_at, 1)
            add(queue, "abandoned_short", leg.left_at, int(wait < tenant.short_abandon_ms()))
            add(queue, "abandoned_in_sl", leg.left_at, int(wait <= sl_ms))
            add(queue, "abandon_wait_ms", leg.left_at, wait)
            continue
        assert leg.ended_at is not None
        if queue:
            add(queue, "answered", leg.left_at, 1)
            add(queue, "answered_in_sl", leg.left_at, int(wait <= sl_ms))
            add(queue, "answer_wait_ms", leg.left_at, wait)
            if leg.transfer is not None:
                add(queue, "transferred_out", leg.ended_at, 1)
        end = _handling_end(leg)
        talk, hold, acw = _talk_ms(leg), _hold_ms(leg), _acw_ms(leg)
        add(queue, "handled", end, 1)
        add(queue, "talk_ms", end, talk)
        add(queue, "hold_ms", end, hold)
        add(queue, "holds", end, len(leg.holds))
        add(queue, "acw_ms", end, acw)
        add(queue, "handle_ms", end, talk + hold + acw)
        score = qa_as_of(leg, as_of)
        if score is not None:
            add(queue, "qa_scored", end, 1)
            add(queue, "qa_score_sum", end, score)

    queued = _queued(conv)
    first_queue = queued[0].queue if queued else ""
    add(first_queue, "contacts", conv.started_at, 1)
    answered = [leg for leg in conv.legs if leg.outcome == "answered"]
    if answered:  # a direct call answered by an agent is an answered contact too
        add(first_queue, "contacts_answered", answered[0].left_at, 1)
    if queued and queued[-1].outcome == "abandoned":
        add(first_queue, "contacts_abandoned", queued[-1].left_at, 1)
    transferred = [leg for leg in conv.legs if leg.transfer is not None]
    if transferred:
        assert transferred[0].ended_at is not None
        add(first_queue, "contacts_transferred", transferred[0].ended_at, 1)
    if not conv.legs and conv.ivr_outcome == "contained":
        add(first_queue, "contacts_ivr_contained", conv.ended_at, 1)
    if not conv.legs and conv.ivr_outcome == "abandoned":
        add(first_queue, "contacts_ivr_abandoned", conv.ended_at, 1)
    code = final_wrapup(conv, as_of)
    if code is not None and code in tenant.resolved_wrapup_codes:
        add(first_queue, "contacts_resolved", conv.ended_at, 1)
    for at in conv.reopened_at:
        if _known(at, as_of):
            add(first_queue, "tickets_reopened", at, 1)
    return out


def interval_truth(
    sources: Sources, settings: SettingsSource, minutes: int, *, as_of: datetime | None = None
) -> dict[IntervalKey, dict[str, int]]:
    """Expected figures per (tenant, queue, channel, interval start UTC), every metric present.

    A key exists when any contribution (even of value 0) landed in it.
    """
    book: dict[IntervalKey, dict[str, int]] = {}
    for conv in conversations_of(sources):
        zone = tenant_settings_of(settings, conv.tenant).zone()
        for queue, channel, metric, at, value in contributions_of(conv, settings, as_of):
            key = (conv.tenant, queue, channel, interval_of(at, zone, minutes).start)
            figures = book.get(key)
            if figures is None:
                figures = book[key] = dict.fromkeys(METRICS, 0)
            figures[metric] += value
    return book


def interval_truth_as_of(
    sources: Sources, settings: SettingsSource, minutes: int, cutoff: datetime
) -> dict[IntervalKey, dict[str, int]]:
    """Figures knowing only wrap-up codes, QA scores and reopens dated at or before ``cutoff``."""
    return interval_truth(sources, settings, minutes, as_of=cutoff)


def totals(book: Mapping[IntervalKey, Mapping[str, int]]) -> dict[str, int]:
    """Sum of every metric over all keys of an interval book."""
    summed = dict.fromkeys(METRICS, 0)
    for figures in book.values():
        for metric, value in figures.items():
            summed[metric] += value
    return summed


def engagement_truth(
    sources: Sources, settings: SettingsSource, *, window_days: int = 7, as_of: datetime | None = None
) -> dict[str, EngagementTruth]:
    """Engagements per tenant (definition in the module docstring)."""
    by_tenant: dict[str, list[SimConversation]] = defaultdict(list)
    for conv in conversations_of(sources):
        by_tenant[conv.tenant].append(conv)
    return {
        tenant: _engagements(tenant, convs, tenant_settings_of(settings, tenant), window_days, as_of)
        for tenant, convs in sorted(by_tenant.items())
    }


def _engagements(
    tenant: str,
    convs: list[SimConversation],
    settings: TenantSettings,
    window_days: int,
    as_of: datetime | None,
) -> EngagementTruth:
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for conv in convs:
        keys = conv.customer.keys()
        for other in keys[1:]:
            parent[find(other)] = find(keys[0])

    groups: dict[tuple[str, str], list[SimConversation]] = defaultdict(list)
    for conv in convs:
        code = final_wrapup(conv, as_of)
        intent = conv.intent or (settings.intent_by_wrapup_code.get(code, "") if code else "")
        keys = conv.customer.keys()
        if not keys or not intent:
            groups[(f"conversation:{conv.conversation_id}", intent)].append(conv)
        else:
            groups[(find(keys[0]), intent)].append(conv)

    window = timedelta(days=window_days)
    found: list[Engagement] = []
    for (_, intent), members in groups.items():
        members.sort(key=lambda c: (c.started_at, c.conversation_id))
        current: list[SimConversation] = []
        for conv in members:
            if current and conv.started_at - current[0].started_at > window:
                found.append(_engagement(tenant, intent, current, settings, as_of))
                current = []
            current.append(conv)
        found.append(_engagement(tenant, intent, current, settings, as_of))
    found.sort(key=lambda e: e.conversation_ids)
    sizes: dict[int, int] = defaultdict(int)
    for engagement in found:
        sizes[len(engagement.conversation_ids)] += 1
    return EngagementTruth(
        engagements=len(found),
        contacts=len(convs),
        repeat_contacts=sum(len(e.conversation_ids) - 1 for e in found),
        first_contact_resolutions=sum(1 for e in found if e.first_contact_resolved),
        channel_switches=sum(e.channel_switches for e in found),
        contacts_per_engagement=dict(sorted(sizes.items())),
        detail=tuple(found),
    )


def _engagement(
    tenant: str, intent: str, members: list[SimConversation], settings: TenantSettings, as_of: datetime | None
) -> Engagement:
    channels = tuple(c.channel.value for c in members)
    code = final_wrapup(members[0], as_of)
    return Engagement(
        tenant=tenant,
        intent=intent,
        conversation_ids=tuple(c.conversation_id for c in members),
        channels=channels,
        first_contact_resolved=len(members) == 1
        and code is not None
        and code in settings.resolved_wrapup_codes,
        channel_switches=sum(1 for a, b in pairwise(channels) if a != b),
    )


def truth_document(
    sources: Sources,
    settings: SettingsSource,
    *,
    minutes: Iterable[int] = INTERVAL_MINUTES,
    as_of: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-ready ground truth: conversations, interval figures per length, engagements."""
    convs = conversations_of(sources)
    intervals: dict[str, list[dict[str, Any]]] = {}
    for length in minutes:
        book = interval_truth(convs, settings, length, as_of=as_of)
        intervals[str(length)] = [
            {"tenant": t, "queue": q, "channel": c, "interval_start": start, "metrics": figures}
            for (t, q, c, start), figures in sorted(book.items())
        ]
    engagements = {
        tenant: {
            "engagements": e.engagements,
            "contacts": e.contacts,
            "repeat_contacts": e.repeat_contacts,
            "first_contact_resolutions": e.first_contact_resolutions,
            "channel_switches": e.channel_switches,
            "contacts_per_engagement": {str(k): v for k, v in e.contacts_per_engagement.items()},
        }
        for tenant, e in engagement_truth(convs, settings, as_of=as_of).items()
    }
    return {
        "as_of": as_of,
        "metrics": list(METRICS),
        "conversations": [asdict(conversation_truth(c, settings, as_of)) for c in convs],
        "intervals": intervals,
        "engagements": engagements,
        **dict(extra or {}),
    }


def write_truth(
    path: Path,
    sources: Sources,
    settings: SettingsSource,
    *,
    minutes: Iterable[int] = INTERVAL_MINUTES,
    as_of: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``truth_document`` as JSON (UTC times with ``Z``, sorted keys); returns the document."""
    document = truth_document(sources, settings, minutes=minutes, as_of=as_of, extra=extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        orjson.dumps(document, option=orjson.OPT_UTC_Z | orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    )
    return document


def path_truth(sources: Sources) -> dict[str, PathTruth]:
    """Self-service containment and opt-outs per tenant (definition in the module docstring)."""
    by_tenant: dict[str, list[SimConversation]] = defaultdict(list)
    for conv in conversations_of(sources):
        by_tenant[conv.tenant].append(conv)
    found: dict[str, PathTruth] = {}
    for tenant, convs in sorted(by_tenant.items()):
        served = [c for c in convs if c.ivr_steps]
        opted = [c for c in served if c.ivr_outcome == "queued"]
        by_step: dict[tuple[str, str], int] = defaultdict(int)
        for conv in opted:
            by_step[(conv.channel.value, conv.ivr_steps[-1][0])] += 1
        found[tenant] = PathTruth(
            self_service=len(served),
            contained=sum(1 for c in served if c.ivr_outcome == "contained"),
            opt_outs=len(opted),
            opt_outs_by_last_step=dict(sorted(by_step.items())),
        )
    return found
