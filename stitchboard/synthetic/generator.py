"""A deterministic, realistic contact-centre day for one tenant, drawn as scenario objects.

Everything is drawn from ``random.Random`` streams seeded from (tenant, day, seed), so the same
inputs always give the same day, and two tenants with the same seed still differ. No wall clock is
read.

What the day looks like:

* arrivals follow a local time-of-day curve (quiet night, morning ramp, lunch dip, afternoon peak)
  in the tenant's zone; the local day may be 23 or 25 hours long on DST days;
* three queues (sales, support, billing) and seven channels with a fixed channel mix; every
  conversation has an intent and its queue follows from the intent;
* voice goes through an IVR (contained, abandoned, or queued); the ``bot`` channel through a bot
  (contained, abandoned, or opt-out to a queue);
* voice and callback legs are assigned to agents by a small queue simulation: an agent takes one
  voice contact at a time, only on shift and not on a break, for the whole of talk, holds and
  after-call work; the queue wait is the time until such an agent is free, and a caller whose
  patience runs out first abandons (about one in ten patience draws is under 10 s). Chat,
  messaging, email, bot and web-form work is concurrent (an agent handles several at once), so those
  legs draw their waits and only pick an agent on shift;
* answered legs may have holds, end in a blind or consult transfer to another queue, and have
  after-call work; wrap-up codes arrive 0-5 minutes after the talk, ~3 % are changed 30 min-6 h
  later; ~10 % of answered legs get a QA score 1-8 h later; some email, messaging and web-form
  tickets are reopened hours later;
* customers come from a per-tenant pool whose pseudonymous hashes depend only on (tenant, customer
  number), so days generated with different seeds share customers; ~12 % of contacts are follow-ups
  of an earlier contact that day by the same customer with the same intent, often on another
  channel, and channels carry different identifiers (phone, email, account, cookie) so linking a
  customer is transitive;
* agent presence (available, busy, away, offline) follows shifts, breaks and voice handling. The
  night shift runs 22:00-06:30 local: its morning part is the tail of the previous day's shift, so
  the day emits its ``offline`` but not its log-on.

Each conversation carries the source ``shape`` its events are rendered in: by default the tenant's
primary platform (Genesys or Connect, picked from the tenant name) for voice, callback, chat and bot,
and the offline-reporting webhook for messaging, email and web forms.

Real-world variations (``Variations``; issue #11): what real vendors send besides the facts, drawn
from a random stream of their own so that a share never reshuffles the rest of the day. Default
shares, all on:

* ``sparse_records`` 10 % of Genesys and Connect conversations: records with only what the vendor
  requires (Genesys: no ``originatingDirection``, participant names or divisions, like older API
  responses; Connect: fields that do not apply left out rather than null, informational ones gone);
* ``alerts`` 85 % of answered legs: the answering agent was alerted first (a Genesys ``alert``
  segment, 2-12 s for voice, 1-20 s for digital work);
* ``boundary_gaps`` 90 % of answered legs: the Genesys acd segment ends 1-999 ms off the agent's
  interact start (mostly under 40 ms, mostly before it), as real boundaries do;
* ``disconnect_on_final_segment`` 50 % of Genesys conversations: ``disconnectType`` only on each
  session's last ended segment (a wrap-up, a hold); otherwise also on the segment the talk ended in;
* ``missed_alerts`` 6 % of legs where the wait leaves room: an agent alerted for 6-15 s who did not
  respond before another agent answered, or who was ringing when the customer hung up (Genesys
  alert-only agent participants; Connect ``AgentConnectionAttempts``);
* ``internal_consults`` 15 % of answered legs with holds: the agent consults an internal user during
  a hold (a Genesys ``purpose: user`` participant);
* ``trailing_holds`` 10 % of answered legs with holds: the call ends while the customer is on hold;
* ``external_transfers`` 20 % of Connect voice transfers: to a number outside Connect, with no next
  contact; the customer talks on for 1-15 min and the conversation ends when that call does;
* ``streamed`` 12 % of Genesys and Connect conversations: the platform's stream events (Genesys
  detail events, Connect contact events) arrive besides the records, each within its second; for
  ``streamed_after`` 25 % of those the tail (from the customer's end on) arrives 30-300 s late,
  after the record.

None of them moves a final figure; ``stitchboard.synthetic.truth`` states the rules it applies.
``NO_VARIATIONS`` turns them all off.

Why one module of over 500 lines: one day's drawing, with every documented variation share next
to the draw it changes, from one seeded random stream per concern.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from stitchboard.events import Channel, CustomerIds, Direction
from stitchboard.synthetic.scenario import (
    IvrOutcome,
    Shape,
    SimAgentState,
    SimAlert,
    SimConsult,
    SimConversation,
    SimHold,
    SimLeg,
    StreamTiming,
    TransferKind,
)
from stitchboard.synthetic.streams import streamable

BASE_DAILY_CONVERSATIONS = (2200, 2800)
BASE_ROSTER = 36
CUSTOMER_POOL = 30_000
FOLLOW_UP_SHARE = 0.12
SHORT_PATIENCE_SHARE = 0.06
WRAPUP_CHANGE_SHARE = 0.03
QA_SHARE = 0.10

QUEUES: tuple[str, ...] = ("sales", "support", "billing")
INTENTS_BY_QUEUE: dict[str, tuple[str, ...]] = {
    "sales": ("new_purchase", "upgrade"),
    "support": ("technical_issue", "how_to", "outage"),
    "billing": ("payment", "invoice_query", "refund"),
}
QUEUE_OF_INTENT: dict[str, str] = {i: q for q, intents in INTENTS_BY_QUEUE.items() for i in intents}
INTENTS: tuple[str, ...] = tuple(QUEUE_OF_INTENT)
INTENT_WEIGHTS: tuple[float, ...] = (14, 8, 20, 12, 4, 14, 16, 6)
WRAPUP_CODES_BY_QUEUE: dict[str, tuple[tuple[str, float], ...]] = {
    "sales": (("sale", 40), ("info_given", 35), ("callback_required", 15), ("escalated", 10)),
    "support": (("resolved", 55), ("info_given", 15), ("escalated", 15), ("callback_required", 15)),
    "billing": (("resolved", 50), ("info_given", 30), ("escalated", 10), ("callback_required", 10)),
}
TRANSFER_WRAPUP_CODES: tuple[str, ...] = ("escalated", "info_given")

CHANNEL_MIX: dict[Channel, float] = {
    Channel.VOICE: 45,
    Channel.CALLBACK: 5,
    Channel.CHAT: 18,
    Channel.MESSAGING: 10,
    Channel.EMAIL: 11,
    Channel.BOT: 7,
    Channel.WEB_FORM: 4,
}
VOICE_LIKE: frozenset[Channel] = frozenset({Channel.VOICE, Channel.CALLBACK})
TICKET_CHANNELS: frozenset[Channel] = frozenset({Channel.MESSAGING, Channel.EMAIL, Channel.WEB_FORM})
ASYNC_CHANNELS: frozenset[Channel] = TICKET_CHANNELS
SHORT_PATIENCE_CHANNELS: frozenset[Channel] = frozenset({Channel.VOICE, Channel.CHAT, Channel.BOT})

# Relative arrivals per local hour 00..23: quiet night, morning ramp, lunch dip, afternoon peak.
HOURLY_CURVE: tuple[float, ...] = (
    0.40, 0.25, 0.20, 0.15, 0.15, 0.30, 0.80, 2.0, 4.5, 6.5, 7.5, 7.2,
    5.5, 5.2, 7.0, 7.8, 7.0, 5.5, 3.8, 2.8, 2.0, 1.4, 0.9, 0.6,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChannelProfile:
    """How one channel behaves in a queue: waits, patience, handling and transfer habits (seconds)."""

    wait_median: float  # drawn waits of concurrent channels; voice-like waits come from agents
    wait_max: int
    patience_median: float
    abandon_cap: int  # no abandon after this wait (tickets effectively never abandon)
    talk_median: float
    talk_max: int
    hold_share: float
    acw_share: float
    transfer_share: float


PROFILES: dict[Channel, ChannelProfile] = {
    Channel.VOICE: ChannelProfile(0, 0, 150, 1800, 270, 2400, 0.25, 0.7, 0.09),
    Channel.CALLBACK: ChannelProfile(0, 0, 900, 3600, 240, 1800, 0.15, 0.6, 0.05),
    Channel.CHAT: ChannelProfile(45, 1200, 300, 1800, 600, 3600, 0.0, 0.5, 0.07),
    Channel.BOT: ChannelProfile(40, 1200, 240, 1800, 480, 3000, 0.0, 0.5, 0.05),
    Channel.MESSAGING: ChannelProfile(400, 7200, 14400, 14400, 900, 5400, 0.0, 0.4, 0.0),
    Channel.EMAIL: ChannelProfile(3600, 8 * 3600, 10**9, 10**9, 300, 1800, 0.0, 0.3, 0.0),
    Channel.WEB_FORM: ChannelProfile(3000, 8 * 3600, 10**9, 10**9, 240, 1500, 0.0, 0.3, 0.0),
}


@dataclass(frozen=True, slots=True)
class ShiftTemplate:
    """A shift in local wall-clock minutes since midnight, with breaks; ``end`` may pass 24:00."""

    name: str
    start: int
    end: int
    breaks: tuple[tuple[int, int], ...]
    share: float


SHIFTS: tuple[ShiftTemplate, ...] = (
    ShiftTemplate("early", 6 * 60, 14 * 60 + 30, ((510, 525), (660, 690), (780, 795)), 0.20),
    ShiftTemplate("day", 8 * 60, 16 * 60 + 30, ((600, 615), (720, 750), (870, 885)), 0.30),
    ShiftTemplate("mid", 10 * 60, 18 * 60 + 30, ((720, 735), (810, 840), (960, 975)), 0.25),
    ShiftTemplate("late", 13 * 60 + 30, 22 * 60, ((930, 945), (1050, 1080), (1200, 1215)), 0.20),
)
NIGHT_TAIL_END = 6 * 60 + 30
NIGHT_BREAK = (2 * 60, 2 * 60 + 30)
NIGHT_START = 22 * 60


@dataclass(frozen=True, slots=True)
class Variations:
    """Shares of the real-world ways vendors report contacts (module docstring); 0 turns one off.

    Drawn from a random stream of their own, so changing a share never reshuffles the rest of the
    day (only an external transfer, which ends a conversation early, changes what follows it).
    """

    sparse_records: float = 0.10  # of Genesys/Connect conversations: only the vendor's required fields
    alerts: float = 0.85  # of answered legs: the answering agent was alerted first
    boundary_gaps: float = 0.90  # of answered legs: acd segment end and interact start differ by ms
    disconnect_on_final_segment: float = 0.50  # of Genesys conversations
    missed_alerts: float = 0.06  # of answered legs: an agent alerted before did not respond
    internal_consults: float = 0.15  # of answered legs with holds: a consult with an internal user
    trailing_holds: float = 0.10  # of answered legs with holds: the call ends while on hold
    external_transfers: float = 0.20  # of Connect voice transfers: to a number outside Connect
    streamed: float = 0.12  # of Genesys/Connect conversations: stream events besides the record
    streamed_after: float = 0.25  # of streamed conversations: some stream events after the record


NO_VARIATIONS = Variations(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


@dataclass(slots=True)
class Day:
    """One tenant's generated day: conversations (sorted by start) and agent presence changes."""

    tenant: str
    day: date
    zone: ZoneInfo
    seed: int
    shapes: dict[Channel, Shape]
    conversations: list[SimConversation] = field(default_factory=list)
    agent_states: list[SimAgentState] = field(default_factory=list)


def primary_shape(tenant: str) -> Shape:
    """The tenant's contact-centre platform, stable per tenant name."""
    return "genesys" if _digest(f"primary|{tenant}")[0] % 2 == 0 else "connect"


def default_shapes(tenant: str) -> dict[Channel, Shape]:
    """Primary platform for live channels; the offline-reporting webhook for ticket channels."""
    primary = primary_shape(tenant)
    return {channel: ("webhook" if channel in TICKET_CHANNELS else primary) for channel in Channel}


def identity_hash(tenant: str, kind: str, customer: int) -> str:
    """A pseudonymous identifier (hex) of a synthetic customer; stable across days and seeds."""
    return hashlib.blake2b(f"{tenant}|{kind}|{customer}".encode(), digest_size=16).hexdigest()


def generate_day(
    tenant: str,
    day: date,
    zone: ZoneInfo,
    seed: int,
    *,
    scale: float = 1.0,
    shapes: Mapping[Channel, Shape] | None = None,
    variations: Variations | None = None,
) -> Day:
    """Draw one tenant's local calendar day; identical inputs give an identical ``Day``."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    chosen = default_shapes(tenant) | dict(shapes or {})
    rng = random.Random(int.from_bytes(_digest(f"{tenant}|{day.isoformat()}|{seed}")[:8], "big"))
    varied = random.Random(int.from_bytes(_digest(f"{tenant}|{day.isoformat()}|{seed}|vary")[:8], "big"))
    builder = _DayBuilder(tenant, day, zone, seed, scale, chosen, rng)
    builder.vary = _Varier(variations or Variations(), varied)
    return builder.build()


@dataclass(slots=True)
class _Agent:
    """An agent's skills and the intervals (epoch seconds) when it cannot take a voice contact."""

    agent_id: str
    queues: frozenset[str]
    on_shift: list[tuple[int, int]]
    blocked_starts: list[int] = field(default_factory=list)
    blocked_ends: list[int] = field(default_factory=list)
    away_starts: list[int] = field(default_factory=list)
    away_ends: list[int] = field(default_factory=list)
    voice_legs: list[tuple[int, int]] = field(default_factory=list)

    def block(self, start: int, end: int) -> None:
        index = bisect.bisect_left(self.blocked_starts, start)
        self.blocked_starts.insert(index, start)
        self.blocked_ends.insert(index, end)

    def away(self, start: int, end: int) -> None:
        self.block(start, end)
        index = bisect.bisect_left(self.away_starts, start)
        self.away_starts.insert(index, start)
        self.away_ends.insert(index, end)

    def earliest_free(self, start: int, duration: int, give_up: int) -> int | None:
        """First instant >= start with [instant, instant + duration) clear, or None after give_up."""
        index = max(bisect.bisect_right(self.blocked_starts, start) - 1, 0)
        candidate = start
        while candidate <= give_up:
            if index >= len(self.blocked_starts) or self.blocked_starts[index] >= candidate + duration:
                return candidate
            if self.blocked_ends[index] > candidate:
                candidate = max(candidate, self.blocked_ends[index])
            index += 1
        return None

    def available_at(self, instant: int) -> bool:
        if not any(start <= instant < end for start, end in self.on_shift):
            return False
        index = bisect.bisect_right(self.away_starts, instant) - 1
        return index < 0 or self.away_ends[index] <= instant


@dataclass(slots=True)
class _Plan:
    """What one arrival will be before its legs are simulated."""

    arrival: int
    channel: Channel
    intent: str
    customer: int
    ids: CustomerIds


class _DayBuilder:
    """Holds the day's random state while conversations are drawn in arrival order."""

    def __init__(
        self,
        tenant: str,
        day: date,
        zone: ZoneInfo,
        seed: int,
        scale: float,
        shapes: dict[Channel, Shape],
        rng: random.Random,
    ) -> None:
        self.tenant = tenant
        self.day = day
        self.zone = zone
        self.seed = seed
        self.scale = scale
        self.shapes = shapes
        self.rng = rng
        self.day_start = _epoch(datetime.combine(day, time(0), zone))
        self.day_end = _epoch(datetime.combine(day + timedelta(days=1), time(0), zone))
        self.agents: list[_Agent] = []
        self.states: list[tuple[int, int, str, str]] = []  # (epoch, priority, agent, state)
        self.vary = _Varier(NO_VARIATIONS, random.Random(0))

    def build(self) -> Day:
        base = self.rng.randint(*BASE_DAILY_CONVERSATIONS)
        self._build_roster()
        plans = self._plan_arrivals(round(base * self.scale))
        conversations = [self._conversation(index, plan) for index, plan in enumerate(plans)]
        for agent in self.agents:
            for answered, free in agent.voice_legs:
                self.states.append((answered, 1, agent.agent_id, "busy"))
                self.states.append((free, 0, agent.agent_id, "available"))
        self.states.sort(key=lambda s: (s[0], s[2], s[1]))
        primary = self.shapes[Channel.VOICE]
        agent_states = [
            SimAgentState(self.tenant, agent, state, _utc(at), primary) for at, _, agent, state in self.states
        ]
        return Day(
            self.tenant, self.day, self.zone, self.seed, dict(self.shapes), conversations, agent_states
        )

    # roster -----------------------------------------------------------------------------------

    def _local(self, minutes: int) -> int:
        """Epoch seconds of a local wall-clock time, ``minutes`` after this day's midnight."""
        return _epoch(datetime.combine(self.day, time(0), self.zone) + timedelta(minutes=minutes))

    def _build_roster(self) -> None:
        size = max(3, round(BASE_ROSTER * self.scale))
        night = max(1, size // 12)
        everyone_skilled = size < 12
        for number in range(size):
            agent_id = f"agent-{number + 1:03d}"
            if number < night:
                self.agents.append(self._night_agent(agent_id))
                continue
            template = self.rng.choices(SHIFTS, weights=[s.share for s in SHIFTS])[0]
            primary = QUEUES[number % len(QUEUES)]
            skills = {primary}
            if everyone_skilled:
                skills = set(QUEUES)
            elif self.rng.random() < 0.4:
                skills.add(self.rng.choice([q for q in QUEUES if q != primary]))
            self.agents.append(self._day_agent(agent_id, frozenset(skills), template))

    def _day_agent(self, agent_id: str, skills: frozenset[str], template: ShiftTemplate) -> _Agent:
        shift = 15 * self.rng.randint(-1, 2)
        start, end = self._local(template.start + shift), self._local(template.end + shift)
        agent = _Agent(agent_id, skills, [(start, end)])
        agent.block(-(2**62), start)
        agent.block(end, 2**62)
        self._state(start, agent_id, "available")
        for break_start, break_end in template.breaks:
            self._break(agent, self._local(break_start + shift), self._local(break_end + shift))
        self._state(end, agent_id, "offline")
        return agent

    def _night_agent(self, agent_id: str) -> _Agent:
        tail_end, evening = self._local(NIGHT_TAIL_END), self._local(NIGHT_START)
        agent = _Agent(agent_id, frozenset(QUEUES), [(self.day_start, tail_end), (evening, 2**62)])
        agent.block(-(2**62), self.day_start)
        agent.block(tail_end, evening)
        self._break(agent, self._local(NIGHT_BREAK[0]), self._local(NIGHT_BREAK[1]))
        self._state(tail_end, agent_id, "offline")
        self._state(evening, agent_id, "available")
        return agent

    def _break(self, agent: _Agent, start: int, end: int) -> None:
        agent.away(start, end)
        self._state(start, agent.agent_id, "away")
        self._state(end, agent.agent_id, "available")

    def _state(self, at: int, agent: str, state: str) -> None:
        self.states.append((at, 0 if state == "available" else 1, agent, state))

    # arrivals ---------------------------------------------------------------------------------

    def _plan_arrivals(self, total: int) -> list[_Plan]:
        rng = self.rng
        slots = list(range(self.day_start, self.day_end, 900))
        live = [HOURLY_CURVE[_utc(s).astimezone(self.zone).hour] for s in slots]
        mean = sum(live) / len(live)
        flatter = [0.5 * w + 0.5 * mean for w in live]
        channels = rng.choices(list(CHANNEL_MIX), weights=list(CHANNEL_MIX.values()), k=total)
        arrivals: list[tuple[int, Channel]] = []
        for channel in channels:
            weights = flatter if channel in ASYNC_CHANNELS else live
            slot = rng.choices(slots, weights=weights)[0]
            arrivals.append((min(slot + rng.randrange(900), self.day_end - 1), channel))
        arrivals.sort(key=lambda a: (a[0], a[1].value))
        pool = max(50, round(CUSTOMER_POOL * self.scale))
        plans: list[_Plan] = []
        for arrival, channel in arrivals:
            earlier = [p for p in plans[-400:] if p.arrival <= arrival - 900]
            if earlier and rng.random() < FOLLOW_UP_SHARE:
                before = rng.choice(earlier)
                customer, intent = before.customer, before.intent
                if rng.random() < 0.6:
                    channel = before.channel if before.channel is not Channel.BOT else Channel.CHAT
            else:
                customer = rng.randrange(pool)
                usual = INTENTS[_digest(f"intent|{self.tenant}|{customer}")[0] % len(INTENTS)]
                intent = usual if rng.random() < 0.6 else rng.choices(INTENTS, weights=INTENT_WEIGHTS)[0]
            plans.append(_Plan(arrival, channel, intent, customer, self._identifiers(channel, customer)))
        return plans

    def _identifiers(self, channel: Channel, customer: int) -> CustomerIds:
        """Which pseudonymous identifiers a channel reveals about a customer."""
        rng = self.rng

        def ident(kind: str) -> str:
            return identity_hash(self.tenant, kind, customer)

        def maybe(kind: str, share: float) -> str | None:
            return ident(kind) if rng.random() < share else None

        if channel in VOICE_LIKE:
            return CustomerIds(phone_hash=ident("phone"), account_hash=maybe("account", 0.5))
        if channel is Channel.MESSAGING:
            return CustomerIds(phone_hash=ident("phone"), account_hash=maybe("account", 0.2))
        if channel is Channel.EMAIL:
            return CustomerIds(email_hash=ident("email"), account_hash=maybe("account", 0.3))
        if channel is Channel.WEB_FORM:
            return CustomerIds(email_hash=ident("email"), account_hash=maybe("account", 0.2))
        if channel is Channel.CHAT:
            return CustomerIds(
                cookie_hash=ident("cookie"),
                email_hash=maybe("email", 0.6),
                account_hash=maybe("account", 0.4),
            )
        return CustomerIds(cookie_hash=ident("cookie"), account_hash=maybe("account", 0.3))

    # conversations ----------------------------------------------------------------------------

    def _conversation(self, index: int, plan: _Plan) -> SimConversation:
        conversation_id = str(uuid.UUID(bytes=_digest(f"{self.tenant}|{self.day}|{self.seed}|{index}")[:16]))
        queue = QUEUE_OF_INTENT[plan.intent]
        steps, outcome, front_end_end = self._front_end(plan)
        conversation = SimConversation(
            tenant=self.tenant,
            conversation_id=conversation_id,
            shape=self.shapes[plan.channel],
            channel=plan.channel,
            direction=Direction.INBOUND,
            started_at=_utc(plan.arrival),
            ended_at=_utc(front_end_end),
            customer=plan.ids,
            intent=plan.intent,
            ivr_steps=[(node, _utc(at)) for node, at in steps],
            ivr_outcome=outcome,
        )
        self.vary.conversation(conversation)
        if outcome in ("contained", "abandoned"):
            return conversation
        entered = front_end_end
        visited = [queue]
        while True:
            leg, ended = self._leg(
                conversation_id, len(conversation.legs), plan.channel, queue, entered, visited
            )
            conversation.legs.append(leg)
            conversation.ended_at = _utc(ended)
            self.vary.leg(conversation, leg, [a.agent_id for a in self.agents if queue in a.queues])
            if leg.transfer == "external":
                conversation.ended_at = _utc(ended + self.vary.external_call_seconds())
                break
            if leg.transfer is None:
                break
            queue = self.rng.choice([q for q in QUEUES if q != queue])
            visited.append(queue)
            entered = ended
        self._reopens(conversation)
        return conversation

    def _front_end(self, plan: _Plan) -> tuple[list[tuple[str, int]], IvrOutcome | None, int]:
        """IVR (voice) or bot (bot channel) steps; returns steps, outcome and when it hands over or ends."""
        rng = self.rng
        if plan.channel is Channel.VOICE:
            nodes, shares = ["welcome", "main_menu", "authenticate", "self_service"], (0.15, 0.05)
        elif plan.channel is Channel.BOT:
            nodes, shares = ["bot_greeting", "bot_intent", "bot_answer", "bot_confirm"], (0.45, 0.20)
        else:
            return [], None, plan.arrival
        draw = rng.random()
        outcome: IvrOutcome = (
            "contained" if draw < shares[0] else "abandoned" if draw < shares[0] + shares[1] else "queued"
        )
        count = {"contained": 4, "abandoned": rng.randint(1, 2), "queued": rng.randint(2, 3)}[outcome]
        steps: list[tuple[str, int]] = []
        at = plan.arrival
        for node in nodes[:count]:
            steps.append((node, at))
            at += rng.randint(5, 25)
        if outcome == "contained":
            return steps, outcome, at + rng.randint(20, 90)
        if outcome == "abandoned":
            return steps, outcome, at + rng.randint(3, 20)
        return steps, outcome, at + rng.randint(2, 10)

    def _leg(
        self,
        conversation_id: str,
        number: int,
        channel: Channel,
        queue: str,
        entered: int,
        visited: list[str],
    ) -> tuple[SimLeg, int]:
        """Simulate one queue visit; returns the leg and when the customer's part of it ended."""
        rng = self.rng
        profile = PROFILES[channel]
        leg_id = str(uuid.UUID(bytes=_digest(f"{conversation_id}|leg|{number}")[:16]))
        if rng.random() < SHORT_PATIENCE_SHARE and channel in SHORT_PATIENCE_CHANNELS:
            patience = rng.randint(1, 9)
        else:
            patience = min(_lognormal(rng, profile.patience_median, 1.0, 10), profile.abandon_cap)
        talk = _lognormal(rng, profile.talk_median, 0.6, 20, profile.talk_max)
        holds = self._hold_lengths(profile, talk)
        acw = rng.randint(10, 180) if rng.random() < profile.acw_share else 0
        transfer: TransferKind | None = None
        if len(visited) < 3 and rng.random() < profile.transfer_share:
            transfer = "blind" if rng.random() < 0.6 else "consult"
        busy_for = talk + sum(holds) + acw
        if channel in VOICE_LIKE:
            answered, agent = self._voice_agent(
                queue, entered + rng.randint(3, 10), busy_for, entered + patience
            )
        else:
            wait = _lognormal(rng, profile.wait_median, 0.9, 5, profile.wait_max)
            answered = entered + wait if wait <= patience else None
            agent = self._digital_agent(queue, answered) if answered is not None else None
        if answered is None or agent is None:
            leg = SimLeg(leg_id, queue, _utc(entered), "abandoned", _utc(entered + patience))
            return leg, entered + patience
        leg = SimLeg(leg_id, queue, _utc(entered), "answered", _utc(answered), agent=agent.agent_id)
        leg.transfer = transfer
        leg.holds = self._place_holds(answered, talk, holds)
        talk_end = answered + talk + sum(holds)
        leg.ended_at = _utc(talk_end)
        leg.acw_end = _utc(talk_end + acw) if acw else None
        if channel in VOICE_LIKE:
            agent.block(answered, talk_end + acw)
            agent.voice_legs.append((answered, talk_end + acw))
        self._wrapup_and_qa(leg, queue, talk_end, talk_end + acw)
        return leg, talk_end

    def _hold_lengths(self, profile: ChannelProfile, talk: int) -> list[int]:
        if self.rng.random() >= profile.hold_share or talk < 60:
            return []
        count = 1 if self.rng.random() < 0.7 else 2
        return [self.rng.randint(15, 240) for _ in range(count)]

    def _place_holds(self, answered: int, talk: int, holds: Sequence[int]) -> list[SimHold]:
        """Interleave holds with talk: talk, hold, talk, ..., each talk part at least one second."""
        cuts = sorted(self.rng.sample(range(1, talk), len(holds)))
        placed: list[SimHold] = []
        at, previous = answered, 0
        for cut, length in zip(cuts, holds, strict=True):
            at += cut - previous
            placed.append(SimHold(_utc(at), _utc(at + length)))
            at += length
            previous = cut
        return placed

    def _voice_agent(
        self, queue: str, earliest: int, busy_for: int, give_up: int
    ) -> tuple[int | None, _Agent | None]:
        """The agent free soonest for the whole contact (ties: roster order from a random offset)."""
        best: tuple[int, _Agent] | None = None
        offset = self.rng.randrange(len(self.agents))
        for agent in self.agents[offset:] + self.agents[:offset]:
            if queue not in agent.queues:
                continue
            free = agent.earliest_free(earliest, busy_for, give_up if best is None else best[0] - 1)
            if free is not None and (best is None or free < best[0]):
                best = (free, agent)
        if best is None:
            return None, None
        return best

    def _digital_agent(self, queue: str, answered: int) -> _Agent:
        """Someone skilled and on shift; concurrent work is not exclusive, so any such agent fits."""
        skilled = [a for a in self.agents if queue in a.queues]
        present = [a for a in skilled if a.available_at(answered)]
        return self.rng.choice(present or skilled)

    def _wrapup_and_qa(self, leg: SimLeg, queue: str, talk_end: int, handling_end: int) -> None:
        rng = self.rng
        if leg.transfer is not None:
            code = rng.choice(TRANSFER_WRAPUP_CODES)
        else:
            codes = WRAPUP_CODES_BY_QUEUE[queue]
            code = rng.choices([c for c, _ in codes], weights=[w for _, w in codes])[0]
        leg.wrapup_code = code
        set_at = talk_end + rng.randint(0, 300)
        leg.wrapup_set_at = _utc(set_at)
        if rng.random() < WRAPUP_CHANGE_SHARE:
            options = sorted({c for c, _ in WRAPUP_CODES_BY_QUEUE[queue]} - {code})
            leg.wrapup_changed_to = rng.choice(options)
            leg.wrapup_changed_at = _utc(set_at + rng.randint(1800, 6 * 3600))
        if rng.random() < QA_SHARE:
            leg.qa_score = min(100, max(0, round(rng.gauss(78, 12))))
            leg.qa_scored_at = _utc(handling_end + rng.randint(3600, 8 * 3600))

    def _reopens(self, conversation: SimConversation) -> None:
        last = conversation.legs[-1]
        if conversation.channel not in TICKET_CHANNELS or last.outcome != "answered":
            return
        if self.rng.random() < 0.07:
            at = _epoch(conversation.ended_at) + self.rng.randint(3600, 12 * 3600)
            conversation.reopened_at.append(_utc(at))
            if self.rng.random() < 0.15:
                conversation.reopened_at.append(_utc(at + self.rng.randint(3600, 12 * 3600)))


class _Varier:
    """Draws the real-world variations (``Variations``) onto a conversation and its answered legs.

    Every call takes the same number of draws whatever the shares and shapes, so one variation's
    share never moves another's draws. Variations a shape cannot show are still drawn as facts
    (an agent alerted, a consult) and simply not rendered there.
    """

    def __init__(self, shares: Variations, rng: random.Random) -> None:
        self.shares = shares
        self.rng = rng

    def conversation(self, conv: SimConversation) -> None:
        sparse, final_segment, streamed, after = (self.rng.random() for _ in range(4))
        platform = conv.shape in ("genesys", "connect")
        conv.sparse = platform and sparse < self.shares.sparse_records
        conv.disconnect_on_final_segment = (
            conv.shape == "genesys" and final_segment < self.shares.disconnect_on_final_segment
        )
        timing: StreamTiming = ""
        if streamable(conv) and streamed < self.shares.streamed:
            timing = "around" if after < self.shares.streamed_after else "before"
        conv.streamed = timing

    def leg(self, conv: SimConversation, leg: SimLeg, skilled: Sequence[str]) -> None:
        """Alert, boundary drift, a missed alert, a consult, a trailing hold, an external transfer;
        an abandoned leg may only have had an agent alerted when the customer hung up."""
        rng, shares = self.rng, self.shares
        draws = [rng.random() for _ in range(6)]
        ring = rng.randint(2, 12) if conv.channel in VOICE_LIKE else rng.randint(1, 20)
        gap = rng.randint(1, 40) if rng.random() < 0.8 else rng.randint(41, 999)
        sign = -1 if rng.random() < 0.7 else 1
        missed_for, missed_agent = rng.randint(6, 15), rng.randrange(1 << 30)
        consult_in, consult_out, consult_user = rng.randint(2, 5), rng.randint(1, 3), rng.randint(1, 12)
        answered, entered = _epoch(leg.left_at), _epoch(leg.entered_at)
        others = sorted(agent for agent in skilled if agent != leg.agent)
        if leg.outcome == "abandoned":
            if draws[2] < shares.missed_alerts and others and answered - entered > 1:
                start = max(entered + 1, answered - ring)
                leg.missed.append(SimAlert(others[missed_agent % len(others)], _utc(start), leg.left_at))
            return
        if draws[0] < shares.alerts:
            leg.alerted_at = _utc(max(entered, answered - ring))
        if draws[1] < shares.boundary_gaps:
            leg.boundary_gap_ms = sign * gap
        offered_until = _epoch(leg.alerted_at) if leg.alerted_at is not None else answered
        if draws[2] < shares.missed_alerts and others and offered_until - entered > missed_for + 1:
            start = offered_until - missed_for - 1
            agent = others[missed_agent % len(others)]
            leg.missed.append(SimAlert(agent, _utc(start), _utc(start + missed_for)))
        if draws[3] < shares.trailing_holds and leg.holds and leg.ended_at is not None:
            _trail(leg)
        if draws[4] < shares.internal_consults:
            long_holds = [h for h in leg.holds if _epoch(h.end) - _epoch(h.start) >= 20]
            if long_holds:
                hold = long_holds[0]
                start, end = _epoch(hold.start) + consult_in, _epoch(hold.end) - consult_out
                leg.consults.append(SimConsult(f"expert-{consult_user:03d}", _utc(start), _utc(end)))
        external = conv.shape == "connect" and conv.channel is Channel.VOICE and leg.transfer is not None
        if external and draws[5] < shares.external_transfers:
            leg.transfer = "external"

    def external_call_seconds(self) -> int:
        """How long the customer talks to the external party after an external transfer."""
        return self.rng.randint(60, 900)


def _trail(leg: SimLeg) -> None:
    """Move the last hold to the end of the talk: the call ends while the customer is on hold."""
    assert leg.ended_at is not None
    last = leg.holds[-1]
    length = last.end - last.start
    tail = leg.ended_at - last.end  # talk after the last hold moves before it
    leg.holds[-1] = SimHold(last.start + tail, leg.ended_at)
    assert leg.holds[-1].end - leg.holds[-1].start == length


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=32).digest()


def _lognormal(rng: random.Random, median: float, sigma: float, low: int, high: int | None = None) -> int:
    value = max(low, round(rng.lognormvariate(0.0, sigma) * median))
    return value if high is None else min(value, high)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
