"""Engagements, FCR, restatement on late links, finalisation and eviction (no Bytewax)."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from support.rows import conversation_row

from stitchboard.journeys import (
    Contact,
    TenantJourneys,
    build_engagements,
)
from stitchboard.rows import (
    ConversationPathRow,
    ConversationRow,
    CustomerLinkRow,
    EngagementRestatementRow,
    EngagementRow,
)
from stitchboard.settings import JourneySettings, TenantSettings, TimingSettings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)  # system time: after every row (as in a replay)
WEEK = timedelta(days=7)
TIMING = TimingSettings(out_of_orderness_seconds=60, allowed_lateness_seconds=600)


def row(
    conversation_id: str,
    start: datetime,
    *,
    channel: str = "voice",
    intent: str = "payment",
    keys: tuple[str, ...] = (),
    wrapup: str = "resolved",
    agents: tuple[str, ...] = ("agent-1",),
    version: int = 5,
    minutes: int = 10,
) -> ConversationRow:
    return conversation_row(
        conversation_id=conversation_id,
        version=version,
        status="ended",
        channel=channel,
        started_at=start,
        ended_at=start + timedelta(minutes=minutes),
        queue="billing",
        agents=agents,
        answered=True,
        wrapup_code=wrapup,
        intent=intent,
        customer_keys=tuple(sorted(keys)),
        updated_at=NOW,
        path=("queue:billing", f"agent:{agents[0]}") if agents else ("queue:billing",),
    )


def contact(conversation_id: str, start: datetime, **kwargs: object) -> Contact:
    return Contact.from_row(row(conversation_id, start, **kwargs), TenantSettings())  # type: ignore[arg-type]


def journeys() -> TenantJourneys:
    return TenantJourneys("acme", TenantSettings(), TIMING, JourneySettings())


def engagements(rows: list[object]) -> list[EngagementRow]:
    return [r for r in rows if isinstance(r, EngagementRow)]


def current(out: list[object]) -> dict[str, EngagementRow]:
    """Latest row per engagement id, deleted ones removed (what ``FINAL`` reads)."""
    latest: dict[str, EngagementRow] = {}
    for r in engagements(out):
        if r.engagement_id not in latest or r.version > latest[r.engagement_id].version:
            latest[r.engagement_id] = r
    return {k: v for k, v in latest.items() if not v.deleted}


def test_same_intent_within_the_window_is_one_engagement_across_channels() -> None:
    found = build_engagements(
        [
            contact("b", T0 + timedelta(days=2), channel="voice", wrapup="resolved"),
            contact("a", T0, channel="chat", wrapup="callback_required", agents=("agent-1",)),
            contact("c", T0 + WEEK, channel="voice", agents=("agent-2",)),  # exactly 7 days: still in
            contact("d", T0 + WEEK + timedelta(seconds=1), channel="email"),  # after: a new engagement
            contact("e", T0 + timedelta(hours=1), intent="refund", wrapup="resolved"),
        ],
        WEEK,
    )
    by_id = {e.engagement_id: e for e in found}
    assert sorted(by_id) == ["a", "d", "e"]
    first = by_id["a"]
    assert [c.conversation_id for c in first.contacts] == ["a", "b", "c"]
    assert first.channels == ("chat", "voice", "voice")
    assert first.channel_switches == 1
    assert first.first_contact_resolved is False
    assert first.resolved is True
    assert first.agents == ("agent-1", "agent-2")
    assert first.resolving_agent == "agent-2"
    assert first.time_to_resolution_ms == (WEEK + timedelta(minutes=10)) // timedelta(milliseconds=1)
    assert first.window_end == T0 + WEEK
    assert by_id["e"].first_contact_resolved is True
    assert by_id["d"].first_contact_resolved is True


def test_contacts_without_intent_are_engagements_of_their_own() -> None:
    found = build_engagements([contact("a", T0, intent=""), contact("b", T0, intent="")], WEEK)
    assert [len(e.contacts) for e in found] == [1, 1]
    unresolved = build_engagements([contact("a", T0, wrapup="escalated")], WEEK)[0]
    assert (unresolved.first_contact_resolved, unresolved.time_to_resolution_ms) == (False, None)
    assert unresolved.resolving_agent == ""


def test_contacts_are_complete_before_the_watermark_minus_the_allowed_lateness() -> None:
    state = journeys()
    assert state.complete_before is None
    state.apply(row("c1", T0), NOW)
    assert state.complete_before == T0 + timedelta(minutes=10) - timedelta(seconds=660)  # from its end


def test_repeat_contact_turns_provisional_fcr_off_and_versions_increase() -> None:
    state = journeys()
    first = state.apply(row("a", T0, keys=("phone:1",)), NOW)
    assert [(r.engagement_id, r.fcr, r.status, r.customer_key != "") for r in engagements(first)] == [
        ("a", True, "provisional", True)
    ]
    assert [type(r) for r in first if not isinstance(r, EngagementRow)] == [ConversationPathRow]
    second = state.apply(row("b", T0 + timedelta(days=1), channel="chat", keys=("phone:1",)), NOW)
    (changed,) = engagements(second)
    assert (changed.contacts, changed.fcr, changed.channels, changed.channel_switches) == (
        2,
        False,
        ("voice", "chat"),
        1,
    )
    assert changed.version > engagements(first)[0].version
    assert not [r for r in second if isinstance(r, EngagementRestatementRow)]  # provisional: no restatement


def test_the_latest_version_wins_and_replays_change_nothing() -> None:
    state = journeys()
    state.apply(row("a", T0, keys=("phone:1",), version=3, wrapup="resolved"), NOW)
    assert state.apply(row("a", T0, keys=("phone:1",), version=3, wrapup="resolved"), NOW) == []
    assert state.apply(row("a", T0, keys=("phone:1",), version=2, wrapup="escalated"), NOW) == []
    newer = state.apply(row("a", T0, keys=("phone:1",), version=4, wrapup="escalated"), NOW)
    assert [r.fcr for r in engagements(newer)] == [False]
    unchanged = state.apply(row("a", T0, keys=("phone:1",), version=5, wrapup="escalated"), NOW)
    assert engagements(unchanged) == []


def test_unlinked_contact_joins_its_customer_once_an_identifier_arrives() -> None:
    state = journeys()
    out = state.apply(row("a", T0, keys=("phone:1",)), NOW)
    out += state.apply(row("b", T0 + timedelta(hours=2), keys=(), version=1), NOW)
    assert sorted(current(out)) == ["a", "b"]
    assert current(out)["b"].customer_key == ""
    out += state.apply(row("b", T0 + timedelta(hours=2), keys=("phone:1",), version=2), NOW)
    now_current = current(out)
    assert sorted(now_current) == ["a"]
    assert now_current["a"].conversation_ids == ("a", "b")


def late_link_inputs() -> list[ConversationRow]:
    """A (phone) and B (email) look like two customers with one resolved contact each; C links them."""
    return [
        row("a", T0, channel="voice", keys=("phone:1",)),
        row("b", T0 + timedelta(days=1), channel="email", keys=("email:1",)),
        row("c", T0 + timedelta(days=2), channel="chat", intent="how_to", keys=("cookie:1",), version=1),
        row("c", T0 + timedelta(days=2), channel="chat", intent="how_to", keys=("cookie:1", "email:1", "phone:1")),
        row("c", T0 + timedelta(days=2), channel="chat", intent="how_to", keys=("cookie:1", "email:1", "phone:1"), version=9),
    ]  # fmt: skip


def test_a_late_link_merges_two_engagements_and_restates_fcr_exactly_once() -> None:
    state = journeys()
    out: list[object] = []
    for item in late_link_inputs()[:3]:
        out += state.apply(item, NOW)
    before = current(out)
    assert sum(e.fcr for e in before.values() if e.intent == "payment") == 2
    for item in late_link_inputs()[3:]:
        out += state.apply(item, NOW)
    after = current(out)
    payment = [e for e in after.values() if e.intent == "payment"]
    assert [(e.engagement_id, e.conversation_ids, e.fcr, e.channel_switches) for e in payment] == [
        ("a", ("a", "b"), False, 1)
    ]
    assert len({e.customer_key for e in after.values()}) == 1
    restatements = [r for r in out if isinstance(r, EngagementRestatementRow)]
    assert [
        (r.engagement_id, r.previous_engagement_ids, r.previous_fcr, r.corrected_fcr, r.delta, r.reason)
        for r in restatements
    ] == [("a", ("a", "b"), 2, 0, -2, "identity_merge")]
    links = [r for r in out if isinstance(r, CustomerLinkRow)]
    assert [(r.conversation_id, r.link_seq) for r in links] == [("c", 1), ("c", 2)]  # three customers → one
    deleted = [r for r in engagements(out) if r.deleted]
    assert [r.engagement_id for r in deleted] == ["b"]


def test_replaying_the_same_input_reproduces_every_version() -> None:
    def run() -> list[tuple[object, ...]]:
        state = journeys()
        out = [r for item in late_link_inputs() for r in state.apply(item, NOW)]
        return [(type(r).__name__, getattr(r, "engagement_id", ""), getattr(r, "version", 0)) for r in out]

    assert run() == run()


def test_windows_close_on_the_watermark_then_customers_are_evicted() -> None:
    state = journeys()
    out: list[object] = []
    for day in range(30):
        start = T0 + timedelta(days=day)
        out += state.apply(row(f"c{day}", start, keys=(f"phone:{day}",)), NOW)
        assert state.customers <= 9  # at most the window's customers plus the lateness margin
    assert len(state.identity) == state.customers
    assert state.contacts == state.customers
    finals = [r for r in engagements(out) if r.status == "final"]
    assert [r.engagement_id for r in finals][:3] == ["c0", "c1", "c2"]
    assert all(r.window_end < (state.complete_before or T0) for r in finals)
    assert {r.engagement_id for r in finals} == {
        f"c{d}" for d in range(30) if T0 + timedelta(days=d) + WEEK < (state.complete_before or T0)
    }
    size = len(pickle.dumps(state))
    for day in range(30, 60):
        state.apply(row(f"c{day}", T0 + timedelta(days=day), keys=(f"phone:{day}",)), NOW)
    assert len(pickle.dumps(state)) <= size + 200  # bounded: twice the input, same state size


def test_rows_of_an_evicted_customer_are_ignored() -> None:
    state = journeys()
    state.apply(row("old", T0, keys=("phone:1",)), NOW)
    state.apply(row("new", T0 + timedelta(days=10), keys=("phone:2",)), NOW)
    assert state.customers == 1
    assert state.apply(row("old", T0, keys=("phone:1",), version=99, wrapup="escalated"), NOW) == []
    assert state.too_late == 1


def test_a_late_change_to_a_final_engagement_is_restated() -> None:
    state = journeys()
    state.apply(row("a", T0, keys=("phone:1",)), NOW)
    out = state.apply(row("z", T0 + WEEK + timedelta(hours=1), keys=("phone:1",), intent="refund"), NOW)
    assert [r.status for r in engagements(out) if r.engagement_id == "a"] == ["final"]
    changed = state.apply(row("a", T0, keys=("phone:1",), version=6, wrapup="escalated"), NOW)
    restated = [r for r in changed if isinstance(r, EngagementRestatementRow)]
    assert [(r.previous_fcr, r.corrected_fcr, r.reason) for r in restated] == [(1, 0, "late_change")]


def test_a_retraction_repeats_the_published_row_and_a_restored_state_continues_the_same() -> None:
    """Published engagements are kept as their contacts, not rows: what is rebuilt must be exact."""
    inputs = [
        row("a", T0, keys=("phone:1",)),
        row("b", T0 + timedelta(hours=2), keys=(), version=1, channel="chat"),
        row("b", T0 + timedelta(hours=2), keys=(), version=2, channel="chat"),  # same path: not republished
        row("b", T0 + timedelta(hours=2), keys=("phone:1",), version=3, channel="chat"),
        *late_link_inputs(),
    ]
    state = journeys()
    published = [r for item in inputs[:3] for r in state.apply(item, NOW)]
    assert [
        r.version for r in published if isinstance(r, ConversationPathRow) and r.conversation_id == "b"
    ] == [1]
    restored = pickle.loads(pickle.dumps(state))
    later = NOW + timedelta(minutes=5)
    rest = [r for item in inputs[3:] for r in state.apply(item, later)]
    assert [r for item in inputs[3:] for r in restored.apply(item, later)] == rest
    retraction = next(r for r in engagements(rest) if r.engagement_id == "b" and r.deleted)
    (before,) = [r for r in engagements(published) if r.engagement_id == "b"]
    assert retraction == replace(before, version=retraction.version, deleted=1, updated_at=later)


def test_a_future_dated_conversation_does_not_close_every_window() -> None:
    """Issue #13 seen #1: a record dated 2099 moves the journeys' watermark only to its receive
    time plus the lead; later contacts of the day are still taken, not dropped as too late."""
    state = journeys()
    state.apply(row("a", T0, keys=("phone:1",)), NOW, T0 + timedelta(minutes=11))
    state.apply(
        row("x", datetime(2099, 6, 1, tzinfo=UTC), keys=("phone:9",)), NOW, T0 + timedelta(minutes=12)
    )
    assert state.complete_before == T0 + timedelta(minutes=12, seconds=60 - 60 - 600)
    out = state.apply(
        row("b", T0 + timedelta(hours=1), keys=("phone:1",)), NOW, T0 + timedelta(hours=1, minutes=11)
    )
    assert state.too_late == 0
    assert current(out)["a"].conversation_ids == ("a", "b")


def test_a_restored_watermark_beyond_the_clock_is_repaired() -> None:
    state = journeys()
    state.apply(
        row("x", datetime(2099, 6, 1, tzinfo=UTC), keys=("phone:9",)), datetime(2099, 7, 1, tzinfo=UTC)
    )
    restored = pickle.loads(pickle.dumps(state))
    del restored.__dict__["_lead"]  # as a snapshot written before the bound holds it
    assert restored.resumed(TIMING, NOW) is True
    assert restored.complete_before == NOW + timedelta(seconds=60 - 60 - 600)
    recent = NOW - timedelta(hours=1)  # a contact of today: taken again once repaired
    restored.apply(row("a", recent, keys=("phone:1",)), NOW, recent + timedelta(minutes=11))
    assert restored.too_late == 0
    assert journeys().resumed(TIMING, NOW) is False
