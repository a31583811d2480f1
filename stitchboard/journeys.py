"""Customer journeys: contacts → customers (identity) → engagements, with FCR and restatements.

An *engagement* is a customer's conversations about one intent that start within the window
(default 7 days) of the engagement's first conversation, across channels; the next one after the
window starts a new engagement. A conversation without an identifier or without an intent is an
engagement of its own. First-contact resolution (FCR): one contact, resolved (its final wrap-up code
is in the tenant's resolved set). FCR is provisional until the window closes, then final.

``TenantJourneys`` holds one tenant's identity graph and the contacts of customers whose window is
still open. Each conversation row (any version) updates its contact and recomputes the engagements
of the customers it touches from scratch, then publishes only what changed: recomputing instead of
patching is what makes late links, changed intents and out-of-order versions come out the same.
Customers whose last contact started more than the window before the point the watermark says is
complete (``complete_before``: event-time watermark minus allowed lateness) are
finalised and evicted, identifiers included, so state stays bounded.

State per open conversation is kept small (it is held for the whole window): published engagements
are remembered as the held contacts they were computed from (``Published``), not as rows; a path as
a digest; and a contact without identifiers, a customer of its own, is stored only as its contact.

Why one module of about 500 lines: identity, held contacts, published engagements and deadlines
are one state recomputed together on every row; split, each part would reach into the others'.
"""

from __future__ import annotations

import heapq
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import pairwise

from stitchboard.conversation_paths import FrustrationThresholds, path_digest, path_row
from stitchboard.identity import IdentityGraph, Merge, customer_key
from stitchboard.rows import (
    ConversationRow,
    CustomerLinkRow,
    EngagementRestatementRow,
    EngagementRow,
    EngagementStatus,
    JourneyRow,
)
from stitchboard.settings import JourneySettings, TenantSettings, TimingSettings
from stitchboard.watermark import bounded_event_time, complete_before, event_time_watermark

UNLINKED = "conversation:"  # customer handle prefix of a contact that is an engagement of its own
IDENTITY_MERGE = "identity_merge"
LATE_CHANGE = "late_change"


def frustration_thresholds(journeys: JourneySettings) -> FrustrationThresholds:
    return FrustrationThresholds(
        1000 * journeys.long_duration_seconds, journeys.many_transfers, journeys.many_steps
    )


@dataclass(frozen=True, slots=True)
class Contact:
    """What journeys need of one conversation (its latest version)."""

    conversation_id: str
    version: int
    channel: str
    started_at: datetime
    ended_at: datetime | None
    intent: str
    resolved: bool
    wrapup_code: str
    agents: tuple[str, ...]
    customer_keys: tuple[str, ...]

    @classmethod
    def from_row(cls, row: ConversationRow, tenant: TenantSettings, held: Contact | None = None) -> Contact:
        """Held for the window, so it shares what it can: the few distinct channels, intents, codes
        and agents (rows that crossed workers arrive with copies), and the id and unchanged start of
        the version ``held`` before it, which the deadline heap and dict keys keep anyway."""
        started_at = row.started_at
        if held is not None and _same_moment(held.started_at, started_at):
            started_at = held.started_at
        return cls(
            conversation_id=row.conversation_id if held is None else held.conversation_id,
            version=row.version,
            channel=sys.intern(row.channel),
            started_at=started_at,
            ended_at=row.ended_at,
            intent=sys.intern(row.intent),
            resolved=row.wrapup_code in tenant.resolved_wrapup_codes,
            wrapup_code=sys.intern(row.wrapup_code),
            agents=tuple(sys.intern(agent) for agent in row.agents),
            customer_keys=row.customer_keys,
        )


def _same_moment(a: datetime, b: datetime) -> bool:
    """Equal and in the same zone object, so either can stand for the other in published rows."""
    return a == b and a.tzinfo is b.tzinfo


@dataclass(frozen=True, slots=True)
class Engagement:
    """Contacts of one customer about one intent within the window, in start order."""

    intent: str
    contacts: tuple[Contact, ...]
    window: timedelta

    @property
    def engagement_id(self) -> str:
        return self.contacts[0].conversation_id

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(contact.channel for contact in self.contacts)

    @property
    def channel_switches(self) -> int:
        return sum(1 for a, b in pairwise(self.channels) if a != b)

    @property
    def resolved(self) -> bool:
        return self.contacts[-1].resolved

    @property
    def first_contact_resolved(self) -> bool:
        return len(self.contacts) == 1 and self.contacts[0].resolved

    @property
    def window_end(self) -> datetime:
        return self.contacts[0].started_at + self.window

    @property
    def time_to_resolution_ms(self) -> int | None:
        last = self.contacts[-1]
        if not last.resolved or last.ended_at is None:
            return None
        return (last.ended_at - self.contacts[0].started_at) // timedelta(milliseconds=1)

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(agent for contact in self.contacts for agent in contact.agents if agent))

    @property
    def resolving_agent(self) -> str:
        last = self.contacts[-1]
        return last.agents[-1] if last.resolved and last.agents else ""


def build_engagements(contacts: Iterable[Contact], window: timedelta) -> list[Engagement]:
    """One customer's engagements: same intent, starting within ``window`` of the first; by id order.

    Contacts without an intent are engagements of their own.
    """
    by_intent: dict[str, list[Contact]] = defaultdict(list)
    alone: list[Engagement] = []
    for contact in contacts:
        if contact.intent:
            by_intent[contact.intent].append(contact)
        else:
            alone.append(Engagement("", (contact,), window))
    found = alone
    for intent, members in by_intent.items():
        members.sort(key=lambda c: (c.started_at, c.conversation_id))
        current: list[Contact] = []
        for contact in members:
            if current and contact.started_at - current[0].started_at > window:
                found.append(Engagement(intent, tuple(current), window))
                current = []
            current.append(contact)
        found.append(Engagement(intent, tuple(current), window))
    return sorted(found, key=lambda e: e.engagement_id)


@dataclass(frozen=True, slots=True)
class Published:
    """What was last published of one engagement, in a few references rather than a whole row.

    The row is a function of its contacts, status and customer, so it is rebuilt when needed: to
    compare with a recomputed one, or to repeat it as a retraction. The contacts are normally the
    held ones (shared, not copied); ``root`` is the identity root it was published under ('' for an
    unlinked contact), kept because a merge moves engagements to another customer.
    """

    contacts: tuple[Contact, ...]
    status: EngagementStatus
    root: str

    @property
    def engagement_id(self) -> str:
        return self.contacts[0].conversation_id

    @property
    def conversation_ids(self) -> tuple[str, ...]:
        return tuple(contact.conversation_id for contact in self.contacts)

    @property
    def fcr(self) -> bool:
        return len(self.contacts) == 1 and self.contacts[0].resolved


class TenantJourneys:
    """One tenant's identity graph and open customers; ``apply`` one conversation row at a time.

    Plain and picklable: it is the Bytewax snapshot of the tenant's journey step.
    """

    def __init__(
        self, tenant: str, settings: TenantSettings, timing: TimingSettings, journeys: JourneySettings
    ) -> None:
        self.tenant = tenant
        self._settings = settings
        self._timing = timing
        self._lead = timedelta(seconds=timing.watermark_lead_seconds)
        self._window = journeys.window(tenant)
        self._thresholds = frustration_thresholds(journeys)
        self.identity = IdentityGraph()
        self._contacts: dict[str, Contact] = {}
        # Linked customers only (identity root -> ...); an unlinked contact is a customer of its own,
        # implicitly: its members are itself and its engagement is its contact (see _published_of).
        self._members: dict[str, list[str]] = {}  # conversation ids (a list: far smaller than a set)
        self._published: dict[str, tuple[Published, ...]] = {}  # in publication order
        self._final_unlinked: set[str] = set()  # unlinked contacts published final (evicted at once)
        self._path_digests: dict[str, int] = {}  # conversation id -> path_digest of its published path
        # (start, conversation id), a heap: a window closes when start + window < complete_before; the
        # start is the contact's own datetime, so an entry costs only its tuple
        self._deadlines: list[tuple[datetime, str]] = []
        self._max_event_time: datetime | None = None
        self._version = 0
        self._restatement_seq = 0
        self._link_seq = 0
        self.too_late = 0  # rows of conversations whose customer's window had already closed

    @property
    def complete_before(self) -> datetime | None:
        """Event time before which the tenant's contacts are taken as complete (``stitchboard.watermark``),
        from the latest event time seen in conversation rows; None before the first."""
        if self._max_event_time is None:
            return None
        watermark = event_time_watermark(self._max_event_time, self._timing.out_of_orderness)
        return complete_before(watermark, self._timing.allowed_lateness)

    @property
    def customers(self) -> int:
        """Customers held (linked and unlinked): every held contact outside a linked one is one."""
        linked_contacts = sum(len(members) for members in self._members.values())
        return len(self._members) + len(self._contacts) - linked_contacts

    @property
    def contacts(self) -> int:
        return len(self._contacts)

    def customer_of(self, conversation_id: str) -> str:
        """The customer handle of a held conversation: its identity root, or its own unlinked handle."""
        contact = self._contacts[conversation_id]
        return self._handle(contact)

    def _handle(self, contact: Contact) -> str:
        if contact.customer_keys:
            root = self.identity.find(contact.customer_keys[0])
            if root is not None:
                return root
        return UNLINKED + contact.conversation_id

    def _members_of(self, customer: str) -> Iterable[str]:
        """Conversation ids of a customer: a linked one's set, or an unlinked contact itself."""
        if not customer.startswith(UNLINKED):
            return self._members.get(customer, ())
        contact = self._contacts.get(customer.removeprefix(UNLINKED))
        return (contact.conversation_id,) if contact is not None and self._handle(contact) == customer else ()

    def _published_of(self, customer: str) -> tuple[Published, ...]:
        """What was last published of a customer's engagements (an unlinked contact: from itself)."""
        if not customer.startswith(UNLINKED):
            return self._published.get(customer, ())
        if not self._members_of(customer):
            return ()
        conversation_id = customer.removeprefix(UNLINKED)
        final = conversation_id in self._final_unlinked
        return (Published((self._contacts[conversation_id],), "final" if final else "provisional", ""),)

    def _remember(self, customer: str, current: tuple[Published, ...]) -> None:
        """Keep what was published; a customer with nothing published any more is forgotten."""
        if customer.startswith(UNLINKED):
            conversation_id = customer.removeprefix(UNLINKED)
            if any(published.status == "final" for published in current):
                self._final_unlinked.add(conversation_id)
            else:
                self._final_unlinked.discard(conversation_id)
        elif current:
            self._published[customer] = current
        else:
            self._published.pop(customer, None)
            self._members.pop(customer, None)

    def apply(
        self, row: ConversationRow, now: datetime, received_at: datetime | None = None
    ) -> list[JourneyRow]:
        """Take a conversation row (any version, any order) whose last record was received at
        ``received_at``; returns the rows to publish. Its times move the watermark only up to that
        receive time plus the lead (``stitchboard.watermark.bounded_event_time``)."""
        if row.tenant != self.tenant:
            raise ValueError(f"row of tenant {row.tenant!r} given to journeys of {self.tenant!r}")
        known = self._contacts.get(row.conversation_id)
        if known is not None and row.version <= known.version:
            return []
        complete = self.complete_before
        if known is None and complete is not None and row.started_at + self._window < complete:
            self.too_late += 1
            return []
        self._observe(row.started_at, now, received_at)
        if row.ended_at is not None:
            self._observe(row.ended_at, now, received_at)
        contact = Contact.from_row(row, self._settings, known)
        out: list[JourneyRow] = []
        affected: dict[str, None] = {}
        # An unlinked customer's published engagement is read from its held contact, so it is taken
        # before the new version replaces that contact (linked ones are read after merges moved them).
        before: dict[str, tuple[Published, ...]] = {}
        if known is not None:
            old = self._handle(known)
            affected[old] = None
            if old.startswith(UNLINKED):
                before[old] = self._published_of(old)
            elif known.conversation_id in (members := self._members.get(old, [])):
                members.remove(known.conversation_id)
        _, merges = self.identity.link(contact.customer_keys)
        for merge in merges:
            self._absorb(merge)
            out.append(self._link_row(merge, contact, now))
        handle = self._handle(contact)
        if handle.startswith(UNLINKED):
            before.setdefault(handle, self._published_of(handle))
        elif contact.conversation_id not in (members := self._members.setdefault(handle, [])):
            members.append(contact.conversation_id)
        self._contacts[contact.conversation_id] = contact
        affected[handle] = None
        if known is None or known.started_at != contact.started_at:
            heapq.heappush(self._deadlines, (contact.started_at, contact.conversation_id))
        for customer in affected:
            out.extend(self._publish(customer, now, merged=bool(merges), before=before.get(customer)))
        path = path_row(row, self._thresholds)
        digest = path_digest(path)
        if self._path_digests.get(row.conversation_id) != digest:
            self._path_digests[row.conversation_id] = digest
            out.append(path)
        out.extend(self.advance(now))
        return out

    def advance(self, now: datetime) -> list[JourneyRow]:
        """Finalise engagements whose window closed and evict customers with no open window."""
        complete = self.complete_before
        out: list[JourneyRow] = []
        if complete is None:
            return out
        seen: set[str] = set()
        horizon = complete - self._window  # start + window < complete <=> start < horizon
        while self._deadlines and self._deadlines[0][0] < horizon:
            _, conversation_id = heapq.heappop(self._deadlines)
            if conversation_id not in self._contacts:
                continue
            customer = self.customer_of(conversation_id)
            if customer in seen:
                continue
            seen.add(customer)
            out.extend(self._publish(customer, now, merged=False))
            members = self._members_of(customer)
            if all(self._contacts[c].started_at + self._window < complete for c in members):
                self._evict(customer)
        return out

    def _observe(self, moment: datetime, now: datetime, received_at: datetime | None) -> None:
        bounded = bounded_event_time(moment, now, received_at, self._lead)
        if self._max_event_time is None or bounded > self._max_event_time:
            self._max_event_time = bounded

    def resumed(self, timing: TimingSettings, now: datetime) -> bool:
        """Continue a restored state under this run's ``timing`` (as the interval book does), and
        clamp a latest event time beyond system time ``now`` plus the lead: a snapshot written
        before event times were bounded may hold a record's 2099. True if it was clamped."""
        self._timing = timing
        self._lead = timedelta(seconds=timing.watermark_lead_seconds)
        limit = now + self._lead
        if self._max_event_time is None or self._max_event_time <= limit:
            return False
        self._max_event_time = limit
        return True

    def _absorb(self, merge: Merge) -> None:
        absorbed = self._members.pop(merge.absorbed, [])  # disjoint: a contact has one customer
        self._members.setdefault(merge.survivor, []).extend(absorbed)
        published = self._published.pop(merge.absorbed, ())
        self._published[merge.survivor] = self._published.get(merge.survivor, ()) + published

    def _evict(self, customer: str) -> None:
        for conversation_id in tuple(self._members_of(customer)):
            self._contacts.pop(conversation_id, None)
            self._path_digests.pop(conversation_id, None)
            self._final_unlinked.discard(conversation_id)
        self._members.pop(customer, None)
        self._published.pop(customer, None)
        if not customer.startswith(UNLINKED):
            self.identity.forget(customer)

    def _publish(
        self, customer: str, now: datetime, *, merged: bool, before: tuple[Published, ...] | None = None
    ) -> list[JourneyRow]:
        """Recompute one customer's engagements and publish what changed (restating FCR if needed).

        ``before`` is what was published of this customer when the caller had to read it earlier.
        """
        members = self._members_of(customer)
        engagements = build_engagements((self._contacts[c] for c in members), self._window)
        root = "" if customer.startswith(UNLINKED) else customer
        key = self._customer_key(root)
        complete = self.complete_before
        out: list[JourneyRow] = []
        published: dict[str, EngagementRow] = {
            record.engagement_id: self._published_row(record, key if record.root == root else None, now)
            for record in (self._published_of(customer) if before is None else before)
        }
        current: list[Published] = []
        for engagement in engagements:
            status: EngagementStatus = (
                "final" if complete is not None and engagement.window_end < complete else "provisional"
            )
            row = self._engagement_row(engagement, key, status, now)
            out.extend(self._restatements(row, published, merged, now))
            if published.get(row.engagement_id) != row:  # both rows: version 0, updated now
                self._version += 1
                out.append(replace(row, version=self._version))
            current.append(Published(engagement.contacts, status, root))
        ids = {record.engagement_id for record in current}
        for engagement_id, old in published.items():
            if engagement_id not in ids:
                self._version += 1
                out.append(replace(old, version=self._version, deleted=1))
        self._remember(customer, tuple(current))
        return out

    def _customer_key(self, root: str) -> str:
        """The published customer key of an identity root ('' for an unlinked contact)."""
        return customer_key(self.tenant, root) if root else ""

    def _published_row(self, record: Published, key: str | None, now: datetime) -> EngagementRow:
        """The row ``record`` was published as (version 0, updated ``now``): its contacts decide it."""
        engagement = Engagement(record.contacts[0].intent, record.contacts, self._window)
        chosen = self._customer_key(record.root) if key is None else key
        return self._engagement_row(engagement, chosen, record.status, now)

    def _restatements(
        self, row: EngagementRow, previous: dict[str, EngagementRow], merged: bool, now: datetime
    ) -> list[EngagementRestatementRow]:
        """A restatement when published engagements merged, or a final one changed, and FCR moved.

        A new contact that simply repeats a provisional engagement is not a restatement: provisional
        figures are expected to change until the window closes.
        """
        members = set(row.conversation_ids)
        overlapping = [old for old in previous.values() if members.intersection(old.conversation_ids)]
        merged_published = merged and len(overlapping) > 1
        if not (merged_published or any(old.status == "final" for old in overlapping)):
            return []
        previous_fcr = sum(int(old.fcr) for old in overlapping)
        if previous_fcr == int(row.fcr):
            return []
        self._restatement_seq += 1
        return [
            EngagementRestatementRow(
                tenant=self.tenant,
                engagement_id=row.engagement_id,
                customer_key=row.customer_key,
                intent=row.intent,
                previous_engagement_ids=tuple(sorted(old.engagement_id for old in overlapping)),
                previous_fcr=previous_fcr,
                corrected_fcr=int(row.fcr),
                delta=int(row.fcr) - previous_fcr,
                previous_contacts=sum(old.contacts for old in overlapping),
                corrected_contacts=row.contacts,
                reason=IDENTITY_MERGE if merged else LATE_CHANGE,
                restatement_seq=self._restatement_seq,
                watermark=self.complete_before,
                restated_at=now,
            )
        ]

    def _engagement_row(
        self, engagement: Engagement, key: str, status: EngagementStatus, now: datetime
    ) -> EngagementRow:
        first, last = engagement.contacts[0], engagement.contacts[-1]
        return EngagementRow(
            tenant=self.tenant,
            engagement_id=engagement.engagement_id,
            customer_key=key,
            intent=engagement.intent,
            first_conversation_id=first.conversation_id,
            last_conversation_id=last.conversation_id,
            conversation_ids=tuple(c.conversation_id for c in engagement.contacts),
            first_started_at=first.started_at,
            last_started_at=last.started_at,
            contacts=len(engagement.contacts),
            repeat_contacts=len(engagement.contacts) - 1,
            channels=engagement.channels,
            first_channel=first.channel,
            last_channel=last.channel,
            channel_switches=engagement.channel_switches,
            resolved=engagement.resolved,
            fcr=engagement.first_contact_resolved,
            status=status,
            time_to_resolution_ms=engagement.time_to_resolution_ms,
            agents=engagement.agents,
            resolving_agent=engagement.resolving_agent,
            last_wrapup_code=last.wrapup_code,
            window_end=engagement.window_end,
            version=0,
            deleted=0,
            updated_at=now,
        )

    def _link_row(self, merge: Merge, contact: Contact, now: datetime) -> CustomerLinkRow:
        self._link_seq += 1
        return CustomerLinkRow(
            tenant=self.tenant,
            survivor_customer_key=customer_key(self.tenant, merge.survivor),
            absorbed_customer_key=customer_key(self.tenant, merge.absorbed),
            via_identifiers=merge.via,
            conversation_id=contact.conversation_id,
            at=contact.started_at,
            link_seq=self._link_seq,
            linked_at=now,
        )
