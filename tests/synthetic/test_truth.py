"""Ground truth, hand-checked on tiny conversations, and consistent on a generated day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

from stitchboard.events import Channel, CustomerIds, Direction
from stitchboard.settings import INTERVAL_MINUTES, TenantSettings
from stitchboard.synthetic.generator import generate_day
from stitchboard.synthetic.scenario import SimConversation, SimHold, SimLeg
from stitchboard.synthetic.truth import (
    METRICS,
    conversation_truth,
    engagement_truth,
    interval_truth,
    interval_truth_as_of,
    totals,
    write_truth,
)

SETTINGS = TenantSettings(service_level_seconds=20, service_level_seconds_by_queue={"support": 60})


def t(hour: int, minute: int, second: int = 0, day: int = 30) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


def conversation(
    cid: str, channel: Channel, start: datetime, end: datetime, **kwargs: object
) -> SimConversation:
    return SimConversation(
        tenant="acme",
        conversation_id=cid,
        shape="genesys",
        channel=channel,
        direction=Direction.INBOUND,
        started_at=start,
        ended_at=end,
        customer=kwargs.pop("customer", CustomerIds(phone_hash="aa")),  # type: ignore[arg-type]
        intent=kwargs.pop("intent", "payment"),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def transferred_call() -> SimConversation:
    """Sales answers in 15 s, holds 30 s, blind-transfers to support, which answers in 40 s."""
    sales = SimLeg(
        "l1", "sales", t(10, 0, 0), "answered", t(10, 0, 15), agent="a1",
        holds=[SimHold(t(10, 1, 0), t(10, 1, 30))], transfer="blind", ended_at=t(10, 5, 0),
        acw_end=t(10, 16, 0), wrapup_code="info_given", wrapup_set_at=t(10, 6, 0),
    )  # fmt: skip
    support = SimLeg(
        "l2", "support", t(10, 5, 0), "answered", t(10, 5, 40), agent="a2", ended_at=t(10, 12, 0),
        wrapup_code="resolved", wrapup_set_at=t(10, 13, 0),
    )  # fmt: skip
    steps = [("welcome", t(9, 59, 30))]
    legs = [sales, support]
    return conversation(
        "transfer", Channel.VOICE, t(9, 59, 30), t(10, 12), ivr_steps=steps, ivr_outcome="queued", legs=legs
    )


def at(book: dict, queue: str, channel: str, start: datetime) -> dict[str, int]:
    return book[("acme", queue, channel, start)]


def test_a_transfer_counts_once_in_contacts_and_once_per_queue_in_offered() -> None:
    book = interval_truth([transferred_call()], SETTINGS, 15)
    assert set(book) == {
        ("acme", "sales", "voice", t(9, 45)),
        ("acme", "sales", "voice", t(10, 0)),
        ("acme", "sales", "voice", t(10, 15)),
        ("acme", "support", "voice", t(10, 0)),
    }
    assert at(book, "sales", "voice", t(9, 45)) == dict.fromkeys(METRICS, 0) | {"contacts": 1}
    sales = at(book, "sales", "voice", t(10, 0))
    assert {m: v for m, v in sales.items() if v} == {
        "offered": 1,
        "answered": 1,
        "answered_in_sl": 1,
        "answer_wait_ms": 15_000,
        "transferred_out": 1,
        "contacts_answered": 1,
        "contacts_transferred": 1,
        "contacts_resolved": 1,  # support's final code, attributed to the first queue at the end
    }
    handled = at(book, "sales", "voice", t(10, 15))  # handling ends when ACW ends at 10:16
    assert {m: v for m, v in handled.items() if v} == {
        "handled": 1,
        "talk_ms": 255_000,
        "hold_ms": 30_000,
        "holds": 1,
        "acw_ms": 660_000,
        "handle_ms": 945_000,
    }
    support = at(book, "support", "voice", t(10, 0))
    assert {m: v for m, v in support.items() if v} == {
        "offered": 1,
        "answered": 1,
        "answered_in_sl": 1,  # support's own 60 s threshold
        "answer_wait_ms": 40_000,
        "handled": 1,
        "talk_ms": 380_000,
        "handle_ms": 380_000,
    }
    assert totals(book)["contacts"] == 1 and totals(book)["offered"] == 2


def test_conversation_facts_of_a_transfer() -> None:
    facts = conversation_truth(transferred_call(), SETTINGS)
    assert (facts.first_queue, facts.last_queue, facts.queues) == ("sales", "support", ("sales", "support"))
    assert (facts.answered, facts.abandoned, facts.transfers, facts.legs) == (True, False, 1, 2)
    assert (facts.talk_ms, facts.hold_ms, facts.acw_ms, facts.handle_ms) == (
        635_000,
        30_000,
        660_000,
        1_325_000,
    )
    assert (facts.wait_ms, facts.final_wrapup, facts.resolved, facts.agents) == (
        55_000,
        "resolved",
        True,
        ("a1", "a2"),
    )


def test_a_direct_call_adds_handling_figures_only() -> None:
    """#11 class 8: a leg with queue "" was never offered, so it is neither offered nor answered."""
    leg = SimLeg(
        "d1", "", t(10, 0, 5), "answered", t(10, 0, 5), agent="a4",
        holds=[SimHold(t(10, 1, 0), t(10, 1, 30))], ended_at=t(10, 3, 20), acw_end=t(10, 4, 0),
        wrapup_code="resolved", wrapup_set_at=t(10, 4, 30),
    )  # fmt: skip
    direct = conversation("direct", Channel.VOICE, t(10, 0), t(10, 3, 20), legs=[leg])
    figures = at(interval_truth([direct], SETTINGS, 15), "", "voice", t(10, 0))
    assert {m: v for m, v in figures.items() if v} == {
        "handled": 1,
        "talk_ms": 165_000,  # 10:00:05 to 10:03:20, less the 30 s hold
        "hold_ms": 30_000,
        "holds": 1,
        "acw_ms": 40_000,
        "handle_ms": 235_000,
        "contacts": 1,
        "contacts_answered": 1,
        "contacts_resolved": 1,
    }
    facts = conversation_truth(direct, SETTINGS)
    assert (facts.first_queue, facts.queues, facts.legs) == ("", (), 1)
    assert (facts.answered, facts.wait_ms) == (True, 0)


def test_short_and_long_abandons() -> None:
    short = conversation("short", Channel.CHAT, t(9, 0), t(9, 0, 7),
                         legs=[SimLeg("s1", "billing", t(9, 0), "abandoned", t(9, 0, 7))])  # fmt: skip
    long = conversation("long", Channel.CHAT, t(9, 1), t(9, 1, 25),
                        legs=[SimLeg("s2", "billing", t(9, 1), "abandoned", t(9, 1, 25))])  # fmt: skip
    figures = at(interval_truth([short, long], SETTINGS, 30), "billing", "chat", t(9, 0))
    assert {m: v for m, v in figures.items() if v} == {
        "offered": 2,
        "abandoned": 2,
        "abandoned_short": 1,
        "abandoned_in_sl": 1,
        "abandon_wait_ms": 32_000,
        "contacts": 2,
        "contacts_abandoned": 2,
    }
    stricter = TenantSettings(short_abandon_seconds=5)
    assert at(interval_truth([short], stricter, 30), "billing", "chat", t(9, 0))["abandoned_short"] == 0


def test_ivr_outcomes_count_at_disconnect_under_the_empty_queue() -> None:
    steps = [("welcome", t(7, 58)), ("balance", t(7, 59))]
    contained = conversation(
        "ivr1", Channel.VOICE, t(7, 58), t(8, 2), ivr_steps=steps, ivr_outcome="contained"
    )
    dropped = conversation(
        "ivr2", Channel.VOICE, t(7, 58), t(7, 59, 10), ivr_steps=steps, ivr_outcome="abandoned"
    )
    book = interval_truth([contained, dropped], SETTINGS, 15)
    assert {m: v for m, v in at(book, "", "voice", t(7, 45)).items() if v} == {
        "contacts": 2,
        "contacts_ivr_abandoned": 1,
    }
    assert {m: v for m, v in at(book, "", "voice", t(8, 0)).items() if v} == {"contacts_ivr_contained": 1}
    facts = conversation_truth(contained, SETTINGS)
    assert (facts.ivr_outcome, facts.first_queue, facts.answered, facts.legs) == ("contained", "", False, 0)


def wrapup_changed() -> SimConversation:
    leg = SimLeg(
        "w1", "billing", t(11, 0), "answered", t(11, 0, 30), agent="a3", ended_at=t(11, 4), acw_end=t(11, 5),
        wrapup_code="callback_required", wrapup_set_at=t(11, 6), wrapup_changed_to="resolved",
        wrapup_changed_at=t(13, 0), qa_score=85, qa_scored_at=t(15, 0),
    )  # fmt: skip
    return conversation("wrap", Channel.EMAIL, t(11, 0), t(11, 4), legs=[leg], reopened_at=[t(16, 30)])


def test_a_wrapup_change_and_a_qa_score_converge_as_of_their_times() -> None:
    conv = [wrapup_changed()]

    def figures(cutoff: datetime | None) -> tuple[int, int, int, int]:
        book = interval_truth(conv, SETTINGS, 60, as_of=cutoff)
        eleven = at(book, "billing", "email", t(11, 0))
        reopened = sum(v["tickets_reopened"] for v in book.values())
        return eleven["contacts_resolved"], eleven["qa_scored"], eleven["qa_score_sum"], reopened

    assert figures(t(11, 5)) == (0, 0, 0, 0)  # no code yet
    assert figures(t(12, 0)) == (0, 0, 0, 0)  # callback_required is not resolved
    assert figures(t(14, 0)) == (1, 0, 0, 0)  # changed to resolved at 13:00
    assert figures(t(15, 0)) == (1, 1, 85, 0)  # QA lands in the handling-end interval, not at 15:00
    assert figures(None) == (1, 1, 85, 1)
    assert interval_truth_as_of(conv, SETTINGS, 60, t(12, 0)) == interval_truth(
        conv, SETTINGS, 60, as_of=t(12, 0)
    )
    assert at(interval_truth(conv, SETTINGS, 60), "billing", "email", t(16, 0))["tickets_reopened"] == 1
    assert conversation_truth(conv[0], SETTINGS, t(12, 0)).final_wrapup == "callback_required"
    assert conversation_truth(conv[0], SETTINGS).final_wrapup == "resolved"


def test_intervals_follow_the_tenant_zone() -> None:
    kolkata = TenantSettings(time_zone="Asia/Kolkata")
    book = interval_truth([transferred_call()], kolkata, 60)
    # 09:59:30 UTC is 15:29:30 IST: the local hour 15:00 IST starts at 09:30 UTC.
    assert at(book, "sales", "voice", t(9, 30))["contacts"] == 1
    daily = interval_truth([transferred_call()], kolkata, 1440)
    assert set(daily) == {
        ("acme", q, "voice", datetime(2026, 3, 29, 18, 30, tzinfo=UTC)) for q in ("sales", "support")
    }


def test_engagements_link_customers_transitively_within_seven_days() -> None:
    def contact(
        cid: str, channel: Channel, day: int, ids: CustomerIds, intent: str, code: str
    ) -> SimConversation:
        leg = SimLeg(f"{cid}-l", "billing", t(9, 0, day=day), "answered", t(9, 1, day=day), agent="a",
                     ended_at=t(9, 5, day=day), wrapup_code=code, wrapup_set_at=t(9, 6, day=day))  # fmt: skip
        return conversation(cid, channel, t(9, 0, day=day), t(9, 5, day=day), customer=ids, intent=intent,
                            legs=[leg])  # fmt: skip

    convs = [
        contact(
            "a",
            Channel.VOICE,
            2,
            CustomerIds(phone_hash="p1", account_hash="k1"),
            "payment",
            "callback_required",
        ),
        contact(
            "b", Channel.CHAT, 3, CustomerIds(cookie_hash="c1", account_hash="k1"), "payment", "info_given"
        ),
        contact("c", Channel.EMAIL, 4, CustomerIds(cookie_hash="c1", email_hash="e1"), "payment", "resolved"),
        contact("d", Channel.VOICE, 10, CustomerIds(phone_hash="p1"), "payment", "resolved"),
        contact("e", Channel.VOICE, 4, CustomerIds(phone_hash="p1"), "refund", "resolved"),
        contact("f", Channel.EMAIL, 4, CustomerIds(email_hash="e9"), "payment", "escalated"),
    ]
    result = engagement_truth(convs, SETTINGS)["acme"]
    assert sorted(e.conversation_ids for e in result.detail) == [("a", "b", "c"), ("d",), ("e",), ("f",)]
    assert (result.engagements, result.contacts, result.repeat_contacts) == (4, 6, 2)
    assert result.first_contact_resolutions == 2  # d and e; f is not resolved, a's engagement had repeats
    assert result.channel_switches == 2  # voice -> chat -> email
    assert result.contacts_per_engagement == {1: 3, 3: 1}


def test_a_generated_day_is_consistent_across_interval_lengths() -> None:
    zone = ZoneInfo("Australia/Adelaide")
    day = generate_day("acme", date(2026, 4, 5), zone, seed=2, scale=0.3)  # a fall-back day, +10:30 zone
    settings = TenantSettings(time_zone="Australia/Adelaide")
    books = {minutes: interval_truth(day, settings, minutes) for minutes in INTERVAL_MINUTES}
    summed = {minutes: totals(book) for minutes, book in books.items()}
    assert summed[15] == summed[30] == summed[60] == summed[1440]
    figures = summed[15]
    assert figures["contacts"] == len(day.conversations)
    assert figures["offered"] == figures["answered"] + figures["abandoned"]
    assert figures["handled"] == figures["answered"]
    assert figures["handle_ms"] == figures["talk_ms"] + figures["hold_ms"] + figures["acw_ms"]
    assert 0 < figures["abandoned_short"] < figures["abandoned"]
    assert 0 < figures["contacts_resolved"] < figures["contacts_answered"]
    starts = {key[3] for key in books[60]}
    assert all(s.astimezone(zone).minute == 0 for s in starts)
    assert len({key[3] for key in books[1440]}) >= 2  # late work spills into the next local day


def test_write_truth_is_deterministic_json(tmp_path: Path) -> None:
    day = generate_day("acme", date(2026, 3, 30), ZoneInfo("Europe/London"), seed=8, scale=0.05)
    settings = TenantSettings(time_zone="Europe/London")
    first, second = tmp_path / "a" / "truth.json", tmp_path / "b" / "truth.json"
    document = write_truth(first, day, settings, extra={"seed": 8})
    write_truth(second, day, settings, extra={"seed": 8})
    assert first.read_bytes() == second.read_bytes()
    loaded = orjson.loads(first.read_bytes())
    assert loaded["seed"] == 8 and len(loaded["conversations"]) == len(day.conversations)
    assert set(loaded["intervals"]) == {str(m) for m in INTERVAL_MINUTES}
    daily = sum(row["metrics"]["contacts"] for row in loaded["intervals"]["1440"])
    assert daily == len(day.conversations) == document["engagements"]["acme"]["contacts"]
    assert loaded["intervals"]["15"][0]["interval_start"].endswith("Z")
