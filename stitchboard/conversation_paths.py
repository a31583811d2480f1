"""A conversation's path: its ordered steps, and what they say about self-service and friction.

Steps are short ``kind:value`` strings so path tables group and pair them in plain SQL:

* ``ivr:<node>`` / ``bot:<node>`` — a self-service step (``bot:`` on the bot channel);
* ``queue:<queue>`` — a leg offered to a queue; ``agent:<agent>`` — answered by that agent;
* ``transfer:blind`` / ``transfer:consult`` — the agent leg ended by transfer;
* ``abandoned`` — the customer left a queue unanswered;
* ``contained`` / ``self_service_abandoned`` — how a self-service-only conversation ended.

An *opt-out* is a conversation that started in self-service and then reached a queue (the customer
left self-service for a person); its last self-service step is where they left.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from hashlib import blake2b

import orjson

from stitchboard.conversation import Conversation
from stitchboard.rows import ConversationPathRow, ConversationRow

SELF_SERVICE_KINDS: frozenset[str] = frozenset({"ivr", "bot"})
CONTAINED = "contained"
SELF_SERVICE_ABANDONED = "self_service_abandoned"
ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class FrustrationThresholds:
    """When a conversation counts as frustrating: long, transferred often, or many steps."""

    long_duration_ms: int = 30 * 60 * 1000
    many_transfers: int = 2
    many_steps: int = 10


def conversation_path(conversation: Conversation) -> tuple[str, ...]:
    """The conversation's steps in event-time order; ties keep self-service, leg, lifecycle order."""
    prefix = "bot" if conversation.channel.value == "bot" else "ivr"
    timed: list[tuple[datetime, int, int, str]] = [
        (at, -1, 0, f"{prefix}:{node}") for node, at in conversation.ivr_steps
    ]
    for index, leg in enumerate(conversation.legs):
        offered = leg.offered_at
        if offered is not None:
            timed.append((offered, index, 1, f"queue:{leg.queue}"))
        if leg.answered_at is not None:
            timed.append((leg.answered_at, index, 2, f"agent:{leg.agent or ''}"))
        if leg.transfer_at is not None and leg.transfer_kind is not None:
            timed.append((leg.transfer_at, index, 3, f"transfer:{leg.transfer_kind}"))
        if leg.abandoned_at is not None and leg.answered_at is None:
            timed.append((leg.abandoned_at, index, 3, ABANDONED))
    outcome_at = conversation.ivr_outcome_at
    last = len(conversation.legs)
    if conversation.ivr_outcome == "contained" and outcome_at is not None:
        timed.append((outcome_at, last, 0, CONTAINED))
    elif conversation.ivr_outcome == "abandoned" and outcome_at is not None:
        timed.append((outcome_at, last, 0, SELF_SERVICE_ABANDONED))
    timed.sort(key=lambda step: step[:3])
    return tuple(step for *_, step in timed)


def step_kind(step: str) -> str:
    return step.split(":", 1)[0]


def step_value(step: str) -> str:
    return step.split(":", 1)[1] if ":" in step else ""


def is_self_service(step: str) -> bool:
    return step_kind(step) in SELF_SERVICE_KINDS


def last_self_service_step(path: tuple[str, ...]) -> str:
    """The node of the last self-service step ('' when the path has none)."""
    for step in reversed(path):
        if is_self_service(step):
            return step_value(step)
    return ""


def opted_out(path: tuple[str, ...]) -> bool:
    """Left self-service for a person: a self-service step followed by a queue."""
    seen_self_service = False
    for step in path:
        if is_self_service(step):
            seen_self_service = True
        elif seen_self_service and step_kind(step) == "queue":
            return True
    return False


def path_row(row: ConversationRow, thresholds: FrustrationThresholds) -> ConversationPathRow:
    """The path table row of one conversation version."""
    path = row.path
    duration_ms = (row.ended_at - row.started_at) // timedelta(milliseconds=1) if row.ended_at else None
    long_duration = duration_ms is not None and duration_ms >= thresholds.long_duration_ms
    many_transfers = row.transfers >= thresholds.many_transfers
    many_steps = len(path) >= thresholds.many_steps
    return ConversationPathRow(
        tenant=row.tenant,
        conversation_id=row.conversation_id,
        version=row.version,
        channel=row.channel,
        intent=row.intent,
        started_at=row.started_at,
        steps=path,
        step_count=len(path),
        first_step=path[0] if path else "",
        last_step=path[-1] if path else "",
        self_service=any(is_self_service(step) for step in path),
        opted_out=opted_out(path),
        last_self_service_step=last_self_service_step(path),
        contained=CONTAINED in path,
        transfers=row.transfers,
        duration_ms=duration_ms,
        long_duration=long_duration,
        many_transfers=many_transfers,
        many_steps=many_steps,
        frustrated=long_duration or many_transfers or many_steps,
    )


def path_digest(row: ConversationPathRow) -> int:
    """A 64-bit digest of a path row's content (its version left out), to tell an unchanged path.

    Journeys keep this instead of the row they last published. It is pickled in snapshots, so it is
    computed from the row's JSON (stable across processes), never with ``hash()`` of strings.
    """
    encoded = orjson.dumps(replace(row, version=0))
    return int.from_bytes(blake2b(encoded, digest_size=8).digest(), "little")
