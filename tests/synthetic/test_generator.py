"""The synthetic day: deterministic, realistic, and internally consistent."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from stitchboard.events import Channel
from stitchboard.synthetic.generator import (
    NO_VARIATIONS,
    QUEUES,
    Day,
    Variations,
    default_shapes,
    generate_day,
    identity_hash,
    primary_shape,
)
from stitchboard.synthetic.scenario import SimConversation, SimLeg

ZONE = ZoneInfo("Europe/London")
DAY = date(2026, 3, 30)
HEX = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def full_day() -> Day:
    return generate_day("acme", DAY, ZONE, seed=11)


def _all_times(conv: SimConversation) -> list[datetime]:
    times = [conv.started_at, conv.ended_at, *(at for _, at in conv.ivr_steps), *conv.reopened_at]
    for leg in conv.legs:
        times += [leg.entered_at, leg.left_at]
        times += [t for h in leg.holds for t in (h.start, h.end)]
        optional = (leg.ended_at, leg.acw_end, leg.wrapup_set_at, leg.wrapup_changed_at, leg.qa_scored_at)
        times += [t for t in optional if t is not None]
    return times


def test_same_seed_gives_an_identical_day() -> None:
    first = generate_day("acme", DAY, ZONE, seed=5, scale=0.2)
    second = generate_day("acme", DAY, ZONE, seed=5, scale=0.2)
    assert repr(first) == repr(second)
    assert repr(generate_day("acme", DAY, ZONE, seed=6, scale=0.2)) != repr(first)
    assert repr(generate_day("other", DAY, ZONE, seed=5, scale=0.2)) != repr(first)


def test_volume_is_a_few_thousand_and_scales_linearly(full_day: Day) -> None:
    count = len(full_day.conversations)
    assert 2200 <= count <= 2800
    assert len(generate_day("acme", DAY, ZONE, seed=11, scale=0.25).conversations) == round(count * 0.25)


def test_conversation_ids_are_unique_and_sorted_by_start(full_day: Day) -> None:
    ids = [c.conversation_id for c in full_day.conversations]
    assert len(set(ids)) == len(ids)
    legs = [leg.leg_id for c in full_day.conversations for leg in c.legs]
    assert len(set(legs)) == len(legs)
    starts = [c.started_at for c in full_day.conversations]
    assert starts == sorted(starts)
    other_day = generate_day("acme", DAY + timedelta(days=1), ZONE, seed=11, scale=0.2)
    assert not set(ids) & {c.conversation_id for c in other_day.conversations}


def test_arrivals_follow_the_local_day_curve(full_day: Day) -> None:
    hours = Counter(c.started_at.astimezone(ZONE).hour for c in full_day.conversations)
    assert hours[15] > 5 * hours[3]
    assert hours[10] > hours[12]  # lunch dip
    assert hours[15] > hours[12]
    local_dates = {c.started_at.astimezone(ZONE).date() for c in full_day.conversations}
    assert local_dates == {DAY}


def test_every_channel_queue_and_outcome_is_present(full_day: Day) -> None:
    convs = full_day.conversations
    assert {c.channel for c in convs} == set(Channel)
    assert {leg.queue for c in convs for leg in c.legs} == set(QUEUES)
    assert {c.ivr_outcome for c in convs if c.channel is Channel.VOICE} == {
        "contained",
        "abandoned",
        "queued",
    }
    assert {c.ivr_outcome for c in convs if c.channel is Channel.BOT} == {"contained", "abandoned", "queued"}
    transfers = Counter(leg.transfer for c in convs for leg in c.legs)
    assert transfers["blind"] > 0 and transfers["consult"] > 0
    assert any(leg.holds for c in convs for leg in c.legs)
    assert any(c.reopened_at for c in convs)


def test_default_shapes_mix_the_primary_platform_with_the_webhook(full_day: Day) -> None:
    primaries = {primary_shape(f"tenant-{n}") for n in range(12)}
    assert primaries == {"genesys", "connect"}
    shapes = default_shapes("acme")
    assert shapes[Channel.EMAIL] == "webhook"
    assert shapes[Channel.VOICE] == primary_shape("acme")
    assert {c.shape for c in full_day.conversations} == {primary_shape("acme"), "webhook"}
    assert all(c.shape == full_day.shapes[c.channel] for c in full_day.conversations)


def test_shapes_can_be_chosen_per_channel() -> None:
    chosen = {Channel.VOICE: "genesys", Channel.CHAT: "connect"}
    day = generate_day("acme", DAY, ZONE, seed=3, scale=0.2, shapes=chosen)
    used = {(c.channel, c.shape) for c in day.conversations}
    assert {(Channel.VOICE, "genesys"), (Channel.CHAT, "connect"), (Channel.EMAIL, "webhook")} <= used
    assert {shape for _, shape in used} == {"genesys", "connect", "webhook"}


def test_abandon_rates_are_plausible(full_day: Day) -> None:
    legs = [leg for c in full_day.conversations if c.channel is Channel.VOICE for leg in c.legs]
    abandoned = [leg for leg in legs if leg.outcome == "abandoned"]
    short = [leg for leg in abandoned if leg.left_at - leg.entered_at < timedelta(seconds=10)]
    assert 0.02 <= len(abandoned) / len(legs) <= 0.20
    assert 0 < len(short) < len(abandoned)
    tickets = [leg for c in full_day.conversations if c.channel is Channel.EMAIL for leg in c.legs]
    assert all(leg.outcome == "answered" for leg in tickets)


def test_times_are_whole_utc_seconds_and_legs_are_consistent(full_day: Day) -> None:
    for conv in full_day.conversations:
        for moment in _all_times(conv):
            assert moment.tzinfo is UTC and moment.microsecond == 0
        assert conv.started_at <= conv.ended_at
        for before, after in zip(conv.legs, conv.legs[1:], strict=False):
            assert before.transfer is not None and after.entered_at == before.ended_at
        for leg in conv.legs:
            assert leg.entered_at <= leg.left_at
            if leg.outcome == "abandoned":
                assert leg.agent is None and leg.ended_at is None and leg.wrapup_code is None
                continue
            assert leg.agent is not None and leg.ended_at is not None and leg.wrapup_set_at is not None
            assert all(
                leg.left_at < h.start < h.end <= leg.ended_at for h in leg.holds
            )  # a call may end on hold
            assert all(a.end <= b.start for a, b in pairwise(leg.holds))
            assert timedelta(0) <= leg.wrapup_set_at - leg.ended_at <= timedelta(minutes=5)
            if leg.wrapup_changed_at is not None:
                gap = leg.wrapup_changed_at - leg.wrapup_set_at
                assert timedelta(minutes=30) <= gap <= timedelta(hours=6)
                assert leg.wrapup_changed_to != leg.wrapup_code
            if leg.qa_scored_at is not None:
                gap = leg.qa_scored_at - (leg.acw_end or leg.ended_at)
                assert timedelta(hours=1) <= gap <= timedelta(hours=8)


def test_mutation_shares_are_near_their_targets(full_day: Day) -> None:
    answered = [leg for c in full_day.conversations for leg in c.legs if leg.outcome == "answered"]
    changed = sum(1 for leg in answered if leg.wrapup_changed_to is not None) / len(answered)
    scored = sum(1 for leg in answered if leg.qa_score is not None) / len(answered)
    assert 0.015 <= changed <= 0.05
    assert 0.07 <= scored <= 0.13


def test_voice_agents_are_never_double_booked(full_day: Day) -> None:
    busy: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for conv in full_day.conversations:
        if conv.channel in (Channel.VOICE, Channel.CALLBACK):
            for leg in conv.legs:
                if leg.agent is not None and leg.ended_at is not None:
                    busy[leg.agent].append((leg.left_at, leg.acw_end or leg.ended_at))
    assert busy
    for spans in busy.values():
        spans.sort()
        assert all(end <= start for (_, end), (start, _) in pairwise(spans))


def test_agent_states_bracket_voice_work(full_day: Day) -> None:
    states = full_day.agent_states
    assert {s.state for s in states} == {"available", "busy", "away", "offline"}
    assert [s.at for s in states] == sorted(s.at for s in states)
    busy_at = {(s.agent, s.at) for s in states if s.state == "busy"}
    for conv in full_day.conversations:
        if conv.channel is Channel.VOICE:
            for leg in conv.legs:
                if leg.agent is not None:
                    assert (leg.agent, leg.left_at) in busy_at
    timeline: dict[str, list[str]] = defaultdict(list)
    for s in states:
        timeline[s.agent].append(s.state)
    for sequence in timeline.values():
        assert all(a != b for a, b in pairwise(sequence))


def test_customers_repeat_with_the_same_intent_across_channels(full_day: Day) -> None:
    by_key: dict[str, list[SimConversation]] = defaultdict(list)
    for conv in full_day.conversations:
        for key in conv.customer.keys():  # noqa: SIM118 (a method of CustomerIds, not a dict)
            assert HEX.match(key.split(":", 1)[1])
            by_key[key].append(conv)
    repeated = [convs for convs in by_key.values() if len(convs) > 1]
    assert len(repeated) > 50
    assert any(
        len({c.intent for c in convs}) == 1 and len({c.channel for c in convs}) > 1 for convs in repeated
    )
    assert all(c.customer.keys() for c in full_day.conversations)


def test_identities_are_shared_across_days_and_seeds() -> None:
    assert identity_hash("acme", "phone", 7) == identity_hash("acme", "phone", 7)
    assert identity_hash("acme", "phone", 7) != identity_hash("acme", "email", 7)
    one = generate_day("acme", DAY, ZONE, seed=1, scale=0.3)
    two = generate_day("acme", DAY + timedelta(days=1), ZONE, seed=2, scale=0.3)

    def all_keys(day: Day) -> set[str]:
        return {key for conv in day.conversations for key in conv.customer.keys()}  # noqa: SIM118

    assert all_keys(one) & all_keys(two)


def test_a_fall_back_day_has_twenty_five_local_hours() -> None:
    day = generate_day("acme", date(2026, 10, 25), ZONE, seed=4, scale=0.5)
    start = datetime(2026, 10, 25, tzinfo=ZONE).astimezone(UTC)
    assert all(start <= c.started_at < start + timedelta(hours=25) for c in day.conversations)
    assert any(c.started_at >= start + timedelta(hours=24) for c in day.conversations)


EVERY_VARIATION = Variations(streamed=0.30)  # the defaults, with more streaming to measure it


def test_every_variation_is_on_by_default() -> None:
    assert all(share > 0 for share in asdict(Variations()).values())
    assert not any(asdict(NO_VARIATIONS).values())


@pytest.fixture(scope="module")
def varied_days() -> dict[str, Day]:
    """A Genesys tenant and a Connect tenant with every variation on at realistic shares."""
    tenants = {"acme": "genesys", "globex": "connect"}
    assert {name: primary_shape(name) for name in tenants} == tenants
    return {name: generate_day(name, DAY, ZONE, seed=11, variations=EVERY_VARIATION) for name in tenants}


def _answered(day: Day) -> list[SimLeg]:
    return [leg for c in day.conversations for leg in c.legs if leg.outcome == "answered"]


def test_variations_appear_at_realistic_shares(varied_days: dict[str, Day]) -> None:
    genesys, connect = varied_days["acme"], varied_days["globex"]
    legs = _answered(genesys)
    share = {
        "alerted": sum(leg.alerted_at is not None for leg in legs) / len(legs),
        "drifted": sum(leg.boundary_gap_ms != 0 for leg in legs) / len(legs),
        "missed": sum(bool(leg.missed) for leg in legs) / len(legs),
    }
    assert 0.8 <= share["alerted"] <= 0.9 and 0.85 <= share["drifted"] <= 0.95
    assert 0.01 <= share["missed"] <= 0.06  # only where the queue wait leaves room for a missed alert
    abandoned = [leg for c in genesys.conversations for leg in c.legs if leg.outcome == "abandoned"]
    assert 0.02 <= sum(bool(leg.missed) for leg in abandoned) / len(abandoned) <= 0.12
    held = [leg for leg in legs if leg.holds]
    trailing = sum(leg.holds[-1].end == leg.ended_at for leg in held) / len(held)
    consulted = sum(bool(leg.consults) for leg in held) / len(held)
    assert 0.05 <= trailing <= 0.16 and 0.05 <= consulted <= 0.2
    platform = [c for c in genesys.conversations if c.shape == "genesys"]
    assert 0.07 <= sum(c.sparse for c in platform) / len(platform) <= 0.13
    assert 0.45 <= sum(c.disconnect_on_final_segment for c in platform) / len(platform) <= 0.55
    streamed = [c for c in platform if c.streamed]
    assert 0.25 <= len(streamed) / len(platform) <= 0.35
    assert 0.15 <= sum(c.streamed == "around" for c in streamed) / len(streamed) <= 0.35
    assert not any(c.sparse or c.streamed for c in genesys.conversations if c.shape == "webhook")
    voice = [leg for c in connect.conversations if c.channel is Channel.VOICE for leg in c.legs]
    transfers = Counter(leg.transfer for leg in voice if leg.transfer is not None)
    assert 0.1 <= transfers["external"] / sum(transfers.values()) <= 0.3
    assert "external" not in {leg.transfer for leg in legs}  # only Connect reports external transfers here


def test_variations_are_consistent_facts(varied_days: dict[str, Day]) -> None:
    for day in varied_days.values():
        for conv in day.conversations:
            for leg in conv.legs:
                if leg.alerted_at is not None:
                    assert leg.entered_at <= leg.alerted_at < leg.left_at
                assert abs(leg.boundary_gap_ms) < 1000
                offered_until = leg.alerted_at or leg.left_at
                for missed in leg.missed:
                    assert missed.agent != leg.agent and leg.entered_at <= missed.start < missed.end
                    if leg.outcome == "abandoned":  # rang until the customer hung up
                        assert missed.end == leg.left_at
                    else:
                        assert missed.end < offered_until
                for consult in leg.consults:
                    assert any(h.start < consult.start < consult.end < h.end for h in leg.holds)
                if leg.transfer == "external":
                    assert conv.shape == "connect" and conv.channel is Channel.VOICE and leg is conv.legs[-1]
                    assert leg.ended_at is not None and conv.ended_at > leg.ended_at


def test_a_variation_never_reshuffles_the_day() -> None:
    """Without external transfers (which end a conversation early) every variation is drawn apart."""
    no_external = Variations(**{**asdict(EVERY_VARIATION), "external_transfers": 0.0})

    def skeleton(variations: Variations) -> list[tuple[str, list[tuple[datetime, datetime, str | None]]]]:
        day = generate_day("globex", DAY, ZONE, seed=3, scale=0.3, variations=variations)
        return [
            (c.conversation_id, [(g.entered_at, g.left_at, g.agent) for g in c.legs])
            for c in day.conversations
        ]

    assert skeleton(no_external) == skeleton(NO_VARIATIONS)
    plain = generate_day("acme", DAY, ZONE, seed=3, scale=0.3, variations=NO_VARIATIONS)
    assert not any(
        leg.alerted_at or leg.boundary_gap_ms or leg.missed or leg.consults or leg.transfer == "external"
        for c in plain.conversations
        for leg in c.legs
    )
    assert not any(c.sparse or c.disconnect_on_final_segment or c.streamed for c in plain.conversations)
