"""Worked examples for every metric in the catalogue, from hand-built canonical events."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from support.events import T0, event

from stitchboard.contributions import Contributions
from stitchboard.conversation import Conversation
from stitchboard.events import CanonicalEvent, Channel, EventType
from stitchboard.metrics import (
    CATALOGUE,
    DERIVED,
    DERIVED_NAMES,
    METRIC_NAMES,
    SERVICE_LEVEL_DENOMINATORS,
    contributions,
    service_level,
)
from stitchboard.settings import TenantSettings
from stitchboard.stitching.store import ConversationState

TENANT = TenantSettings(service_level_seconds=20, short_abandon_seconds=10)
ROOT = Path(__file__).resolve().parents[2]
Figures = dict[tuple[str, str, float], int]


def stitched(events: list[CanonicalEvent]) -> Conversation:
    state = ConversationState.for_event(events[0])
    for item in events:
        state.add(item)
    return state.conversation()


def figures(found: Contributions) -> Figures:
    """Contributions as {(queue, metric, seconds after T0): value} for readable expectations."""
    return {(key.queue, key.metric, (key.at - T0).total_seconds()): value for key, value in found.items()}


E = EventType


def answered_voice() -> list[CanonicalEvent]:
    """IVR, 15 s wait, 30 s hold, disconnect at 300 s, 60 s ACW, resolved, QA 85 an hour later."""
    return [
        event(E.ARRIVED, 0),
        event(E.IVR_STEP, 5, node="menu"),
        event(E.QUEUED, 30, leg="l1", queue="sales"),
        event(E.ALERTING, 40, leg="l1", agent="ann"),
        event(E.ANSWERED, 45, leg="l1", queue="sales", agent="ann"),
        event(E.HOLD, 100, leg="l1"),
        event(E.RESUME, 130, leg="l1"),
        event(E.DISCONNECTED, 300),
        event(E.ACW_START, 300, leg="l1"),
        event(E.ACW_END, 360, leg="l1"),
        event(E.WRAPUP_SET, 400, leg="l1", code="resolved"),
        event(E.QA_SCORE_SET, 3600, leg="l1", score=85),
    ]


def test_answered_voice_with_hold_acw_wrapup_and_qa() -> None:
    conversation = stitched(answered_voice())
    assert figures(contributions(conversation, TENANT)) == {
        ("sales", "contacts", 0): 1,
        ("sales", "offered", 30): 1,
        ("sales", "answered", 45): 1,
        ("sales", "answered_in_sl", 45): 1,
        ("sales", "answer_wait_ms", 45): 15_000,
        ("sales", "contacts_answered", 45): 1,
        ("sales", "contacts_resolved", 300): 1,
        ("sales", "handled", 360): 1,
        ("sales", "talk_ms", 360): 225_000,  # 300 - 45 s, less 30 s hold
        ("sales", "hold_ms", 360): 30_000,
        ("sales", "holds", 360): 1,
        ("sales", "acw_ms", 360): 60_000,
        ("sales", "handle_ms", 360): 315_000,
        ("sales", "qa_scored", 360): 1,
        ("sales", "qa_score_sum", 360): 85,
    }
    assert conversation.ended_at == T0 + timedelta(seconds=360)
    assert conversation.ivr_outcome == "queued"
    assert conversation.ivr_steps == (("menu", T0 + timedelta(seconds=5)),)


def test_hold_reported_as_total_duration() -> None:
    conversation = stitched(
        [
            event(E.QUEUED, 0, leg="l1", queue="sales"),
            event(E.ANSWERED, 10, leg="l1", queue="sales", agent="ann"),
            event(E.HOLD, 10, leg="l1", duration_ms=42_500),
            event(E.DISCONNECTED, 200),
        ]
    )
    found = figures(contributions(conversation, TENANT))
    assert found[("sales", "hold_ms", 200)] == 42_500
    assert found[("sales", "talk_ms", 200)] == 190_000 - 42_500
    assert found[("sales", "handle_ms", 200)] == 190_000


@pytest.mark.parametrize(
    ("wait", "short", "in_sl"),
    [(5, 1, 1), (9.999, 1, 1), (10, 0, 1), (20, 0, 1), (20.001, 0, 0), (40, 0, 0)],
)
def test_abandoned_short_and_long(wait: float, short: int, in_sl: int) -> None:
    conversation = stitched(
        [
            event(E.QUEUED, 0, leg="l1", queue="sales"),
            event(E.ABANDONED, wait, leg="l1", queue="sales"),
        ]
    )
    expected = {
        ("sales", "contacts", 0): 1,
        ("sales", "offered", 0): 1,
        ("sales", "abandoned", wait): 1,
        ("sales", "abandon_wait_ms", wait): round(wait * 1000),
        ("sales", "contacts_abandoned", wait): 1,
        ("sales", "abandoned_short", wait): short,
        ("sales", "abandoned_in_sl", wait): in_sl,
    }
    assert figures(contributions(conversation, TENANT)) == {k: v for k, v in expected.items() if v}
    assert conversation.ended_at == T0 + timedelta(seconds=wait)


def test_service_level_threshold_per_queue() -> None:
    tenant = TenantSettings(service_level_seconds=20, service_level_seconds_by_queue={"vip": 10})
    conversation = stitched(
        [
            event(E.QUEUED, 0, leg="l1", queue="vip"),
            event(E.ANSWERED, 15, leg="l1", queue="vip", agent="ann"),
        ]
    )
    found = figures(contributions(conversation, tenant))
    assert ("vip", "answered_in_sl", 15) not in found
    assert found[("vip", "answered", 15)] == 1
    assert figures(contributions(conversation, TENANT))[("vip", "answered_in_sl", 15)] == 1


def direct_call() -> list[CanonicalEvent]:
    """Dialled straight to an agent (no queue): answered 5, hold 60-90, disconnect 200, ACW to 230."""
    return [
        event(E.ARRIVED, 0, conversation="d"),
        event(E.ANSWERED, 5, conversation="d", leg="d1", agent="ann"),
        event(E.HOLD, 60, conversation="d", leg="d1"),
        event(E.RESUME, 90, conversation="d", leg="d1"),
        event(E.DISCONNECTED, 200, conversation="d"),
        event(E.ACW_START, 200, conversation="d", leg="d1"),
        event(E.ACW_END, 230, conversation="d", leg="d1"),
        event(E.WRAPUP_SET, 240, conversation="d", leg="d1", code="resolved"),
        event(E.QA_SCORE_SET, 3600, conversation="d", leg="d1", score=80),
    ]


def test_an_unqueued_agent_leg_contributes_only_handling_figures() -> None:
    """#11 class 8: a leg never offered to a queue is neither offered nor answered (no SL, no ASA);
    its handling lands in queue "", and the conversation is still an answered contact."""
    conversation = stitched(direct_call())
    assert figures(contributions(conversation, TENANT)) == {
        ("", "contacts", 0): 1,
        ("", "contacts_answered", 5): 1,
        ("", "contacts_resolved", 200): 1,
        ("", "handled", 230): 1,
        ("", "talk_ms", 230): 165_000,  # 200 - 5 s, less 30 s hold
        ("", "hold_ms", 230): 30_000,
        ("", "holds", 230): 1,
        ("", "acw_ms", 230): 30_000,
        ("", "handle_ms", 230): 225_000,
        ("", "qa_scored", 230): 1,
        ("", "qa_score_sum", 230): 80,
    }


def test_a_direct_call_leaves_tenant_service_level_and_asa_alone() -> None:
    """Tenant roll-up (what ``summary`` sums) of one direct call and one call answered after 30 s."""
    queued = [
        event(E.QUEUED, 0, conversation="q", leg="q1", queue="sales"),
        event(E.ANSWERED, 30, conversation="q", leg="q1", queue="sales", agent="bob"),
        event(E.DISCONNECTED, 100, conversation="q"),
    ]
    rolled: dict[str, int] = {}
    for conversation in (stitched(direct_call()), stitched(queued)):
        for key, value in contributions(conversation, TENANT).items():
            rolled[key.metric] = rolled.get(key.metric, 0) + value
    assert (rolled["offered"], rolled["answered"], rolled.get("answered_in_sl", 0)) == (1, 1, 0)
    assert rolled["answer_wait_ms"] // rolled["answered"] == 30_000  # ASA
    assert (rolled["contacts"], rolled["contacts_answered"], rolled["handled"]) == (2, 2, 2)


def test_a_direct_call_transferred_to_a_queue_is_offered_there_only() -> None:
    conversation = stitched(
        [
            event(E.ANSWERED, 5, leg="d1", agent="ann"),
            event(E.TRANSFER_BLIND, 100, leg="d1", target_queue="sales"),
            event(E.QUEUED, 100, leg="l2", queue="sales"),
            event(E.ANSWERED, 110, leg="l2", queue="sales", agent="bob"),
            event(E.DISCONNECTED, 300),
        ]
    )
    assert figures(contributions(conversation, TENANT)) == {
        ("", "handled", 100): 1,
        ("", "talk_ms", 100): 95_000,
        ("", "handle_ms", 100): 95_000,
        ("sales", "contacts", 5): 1,
        ("sales", "contacts_answered", 5): 1,
        ("sales", "contacts_transferred", 100): 1,
        ("sales", "offered", 100): 1,
        ("sales", "answered", 110): 1,
        ("sales", "answered_in_sl", 110): 1,
        ("sales", "answer_wait_ms", 110): 10_000,
        ("sales", "handled", 300): 1,
        ("sales", "talk_ms", 300): 190_000,
        ("sales", "handle_ms", 300): 190_000,
    }


def transfer_blind() -> list[CanonicalEvent]:
    return [
        event(E.ARRIVED, 0),
        event(E.QUEUED, 10, leg="l1", queue="sales"),
        event(E.ANSWERED, 20, leg="l1", queue="sales", agent="ann"),
        event(E.TRANSFER_BLIND, 200, leg="l1", target_queue="support"),
        event(E.QUEUED, 200, leg="l2", queue="support"),
        event(E.ANSWERED, 230, leg="l2", queue="support", agent="bob"),
        event(E.DISCONNECTED, 500),
    ]


def test_blind_transfer_counts_offered_in_each_queue_and_one_contact() -> None:
    conversation = stitched(transfer_blind())
    assert figures(contributions(conversation, TENANT)) == {
        ("sales", "contacts", 0): 1,
        ("sales", "offered", 10): 1,
        ("sales", "answered", 20): 1,
        ("sales", "answered_in_sl", 20): 1,
        ("sales", "answer_wait_ms", 20): 10_000,
        ("sales", "contacts_answered", 20): 1,
        ("sales", "transferred_out", 200): 1,
        ("sales", "contacts_transferred", 200): 1,
        ("sales", "handled", 200): 1,
        ("sales", "talk_ms", 200): 180_000,
        ("sales", "handle_ms", 200): 180_000,
        ("support", "offered", 200): 1,
        ("support", "answered", 230): 1,
        ("support", "answer_wait_ms", 230): 30_000,
        ("support", "handled", 500): 1,
        ("support", "talk_ms", 500): 270_000,
        ("support", "handle_ms", 500): 270_000,
    }
    assert [leg.transfer_kind for leg in conversation.legs] == ["blind", None]
    assert conversation.legs[0].transfer_target == "support"


def test_consult_transfer_with_consult_hold_and_acw_on_both_legs() -> None:
    conversation = stitched(
        [
            event(E.QUEUED, 0, leg="l1", queue="sales"),
            event(E.ANSWERED, 5, leg="l1", queue="sales", agent="ann"),
            event(E.HOLD, 100, leg="l1"),
            event(E.TRANSFER_CONSULT, 150, leg="l1", target_queue="billing"),
            event(E.ACW_START, 150, leg="l1"),
            event(E.ACW_END, 180, leg="l1"),
            event(E.QUEUED, 150, leg="l2", queue="billing"),
            event(E.ANSWERED, 152, leg="l2", queue="billing", agent="bob"),
            event(E.DISCONNECTED, 400),
            event(E.ACW_START, 400, leg="l2"),
            event(E.ACW_END, 430, leg="l2"),
        ]
    )
    found = figures(contributions(conversation, TENANT))
    assert conversation.legs[0].transfer_kind == "consult"
    # The open consult hold closes at the transfer: 50 s hold, 95 s talk, 30 s ACW.
    assert found[("sales", "hold_ms", 180)] == 50_000
    assert found[("sales", "talk_ms", 180)] == 95_000
    assert found[("sales", "acw_ms", 180)] == 30_000
    assert found[("sales", "handle_ms", 180)] == 175_000
    assert found[("sales", "transferred_out", 150)] == 1
    assert found[("billing", "offered", 150)] == 1
    assert found[("billing", "handle_ms", 430)] == 248_000 + 30_000
    assert sum(v for (_, metric, _), v in found.items() if metric == "contacts") == 1
    assert sum(v for (_, metric, _), v in found.items() if metric == "offered") == 2
    assert conversation.ended_at == T0 + timedelta(seconds=430)


def test_ivr_contained() -> None:
    conversation = stitched(
        [
            event(E.ARRIVED, 0),
            event(E.IVR_STEP, 1, node="welcome"),
            event(E.IVR_STEP, 20, node="balance"),
            event(E.DISCONNECTED, 60, self_served=True),
        ]
    )
    assert figures(contributions(conversation, TENANT)) == {
        ("", "contacts", 0): 1,
        ("", "contacts_ivr_contained", 60): 1,
    }
    assert conversation.ivr_outcome == "contained"
    assert conversation.ended_at == T0 + timedelta(seconds=60)


@pytest.mark.parametrize(
    "ending",
    [event(E.ABANDONED, 30), event(E.DISCONNECTED, 30), event(E.DISCONNECTED, 30, self_served=False)],
    ids=["ivr_abandon", "disconnect", "disconnect_not_self_served"],
)
def test_ivr_abandoned(ending: CanonicalEvent) -> None:
    conversation = stitched([event(E.ARRIVED, 0), event(E.IVR_STEP, 5, node="menu"), ending])
    assert figures(contributions(conversation, TENANT)) == {
        ("", "contacts", 0): 1,
        ("", "contacts_ivr_abandoned", 30): 1,
    }
    assert conversation.ended


def test_ivr_then_queue_is_neither_contained_nor_ivr_abandoned() -> None:
    conversation = stitched(
        [
            event(E.IVR_STEP, 0, node="menu"),
            event(E.QUEUED, 10, leg="l1", queue="sales"),
            event(E.ABANDONED, 50, leg="l1", queue="sales"),
            event(E.DISCONNECTED, 50),
        ]
    )
    found = figures(contributions(conversation, TENANT))
    assert conversation.ivr_outcome == "queued"
    assert found[("sales", "contacts_abandoned", 50)] == 1
    assert not {metric for (_, metric, _) in found} & {"contacts_ivr_contained", "contacts_ivr_abandoned"}


def test_chat_answered_outside_service_level() -> None:
    chat = Channel.CHAT
    conversation = stitched(
        [
            event(E.QUEUED, 0, channel=chat, leg="l1", queue="web"),
            event(E.ANSWERED, 90, channel=chat, leg="l1", queue="web", agent="cid"),
            event(E.DISCONNECTED, 900, channel=chat),
            event(E.WRAPUP_SET, 910, channel=chat, leg="l1", code="info_given"),
        ]
    )
    found = contributions(conversation, TENANT)
    assert {key.channel for key in found} == {"chat"}
    assert figures(found) == {
        ("web", "contacts", 0): 1,
        ("web", "offered", 0): 1,
        ("web", "answered", 90): 1,
        ("web", "answer_wait_ms", 90): 90_000,
        ("web", "contacts_answered", 90): 1,
        ("web", "handled", 900): 1,
        ("web", "talk_ms", 900): 810_000,
        ("web", "handle_ms", 900): 810_000,
        ("web", "contacts_resolved", 900): 1,
    }


def test_email_reopened_counts_each_reopen_at_its_own_time() -> None:
    mail = Channel.EMAIL
    day = 86_400
    conversation = stitched(
        [
            event(E.QUEUED, 0, channel=mail, leg="l1", queue="mail"),
            event(E.ANSWERED, 3600, channel=mail, leg="l1", queue="mail", agent="dee"),
            event(E.DISCONNECTED, 4000, channel=mail),
            event(E.WRAPUP_SET, 4000, channel=mail, leg="l1", code="resolved"),
            event(E.TICKET_REOPENED, 2 * day, channel=mail),
            event(E.TICKET_REOPENED, 3 * day, channel=mail),
        ]
    )
    found = figures(contributions(conversation, TENANT))
    assert found[("mail", "tickets_reopened", 2 * day)] == 1
    assert found[("mail", "tickets_reopened", 3 * day)] == 1
    assert found[("mail", "contacts_resolved", 4000)] == 1
    assert found[("mail", "answer_wait_ms", 3600)] == 3_600_000
    assert conversation.reopened_at == (T0 + timedelta(days=2), T0 + timedelta(days=3))


def test_resolution_uses_the_last_answered_leg() -> None:
    events = [
        *transfer_blind(),
        event(E.WRAPUP_SET, 210, leg="l1", code="resolved"),
        event(E.WRAPUP_SET, 510, leg="l2", code="escalated"),
    ]
    assert "contacts_resolved" not in {
        metric for (_, metric, _) in figures(contributions(stitched(events), TENANT))
    }
    tenant = TenantSettings(resolved_wrapup_codes=frozenset({"escalated"}))
    assert figures(contributions(stitched(events), tenant))[("sales", "contacts_resolved", 500)] == 1


def test_aftermath_only_conversation_is_not_a_new_contact() -> None:
    """A QA score arriving after the live part was evicted must not count a second contact."""
    conversation = stitched([event(E.QA_SCORE_SET, 9000, leg="l1", score=70)])
    assert figures(contributions(conversation, TENANT)) == {}


def test_partial_conversations_give_partial_contributions() -> None:
    events = answered_voice()
    metrics_after = [
        {metric for (_, metric, _) in figures(contributions(stitched(events[: n + 1]), TENANT))}
        for n in range(len(events))
    ]
    assert metrics_after[2] == {"contacts", "offered"}  # queued
    assert "answered" in metrics_after[4] and "handled" not in metrics_after[4]
    assert "handled" in metrics_after[7]  # disconnect without known ACW: handled at talk end
    assert "handled" not in metrics_after[8]  # ACW started: not handled until it ends
    assert "handled" in metrics_after[9]
    assert figures(contributions(stitched(events), TENANT)) == figures(
        contributions(stitched(list(reversed(events))), TENANT)
    )


def test_catalogue_matches_the_documented_tables_in_order() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    section = text.split("## Leg-scope metrics", 1)[1].split("## Derived figures", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `")]
    documented = [(re.findall(r"`([a-z_]+)`", row[1])[0], row[2].strip()) for row in rows]
    assert documented == [(metric.name, metric.unit) for metric in CATALOGUE]
    assert {metric.scope for metric in CATALOGUE[:17]} == {"leg"}
    assert {metric.scope for metric in CATALOGUE[17:]} == {"conversation"}


def test_every_metric_and_derived_figure_is_documented() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    missing = [name for name in (*METRIC_NAMES, *DERIVED_NAMES) if f"`{name}`" not in text]
    assert missing == []
    assert all(derived.expression in text for derived in DERIVED)


def test_derived_expressions_use_only_stored_columns() -> None:
    for derived in DERIVED:
        words = set(re.findall(r"[A-Za-z_]+", derived.expression)) - {"nullIf"}
        assert words <= set(METRIC_NAMES), derived.name
    assert service_level().aggregated() == (
        "sum(answered_in_sl) / nullIf(sum(offered) - sum(abandoned_short), 0)"
    )


@pytest.mark.parametrize(
    ("denominator", "expected"),
    [("offered", 8 / 12), ("offered_minus_short", 8 / 10), ("answered_plus_abandoned_after_sl", 8 / 10)],
)
def test_service_level_variants_worked_example(denominator: str, expected: float) -> None:
    """12 offered: 9 answered (8 within SL), 3 abandoned (2 short, both within SL)."""
    row = {"offered": 12, "answered": 9, "answered_in_sl": 8, "abandoned": 3, "abandoned_short": 2}
    row["abandoned_in_sl"] = 2
    derived = service_level(denominator)  # type: ignore[arg-type]
    value = eval(derived.expression, {"nullIf": lambda a, b: None if a == b else a}, row)
    assert value == pytest.approx(expected)
    assert SERVICE_LEVEL_DENOMINATORS[denominator] in derived.expression  # type: ignore[index]
