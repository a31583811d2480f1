"""Webhook records timed *now*, for benchmarks that need live traffic rather than a replayed day.

A replayed day moves event time thousands of times faster than the wall clock; freshness and
memory are about a flow keeping up with the present, so these records carry current timestamps.
Shapes follow docs/webhook-format.md (``contact.*``, ``queue.*``, ``agent.*``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(tenant: str, payload: dict[str, Any], received_at: datetime) -> bytes:
    return orjson.dumps(
        {"tenant": tenant, "source": "webhook", "received_at": _iso(received_at), "payload": payload}
    )


def opened(tenant: str, conversation: str, now: datetime, queue: str = "sales") -> list[bytes]:
    """A call that went through two IVR steps and now waits in ``queue``: open, 4 events."""
    started = now - timedelta(seconds=30)
    contact = {
        "event": "contact.call",
        "id": f"c-{conversation}",
        "tenant": tenant,
        "conversation_id": conversation,
        "direction": "inbound",
        "started_at": _iso(started),
        "ivr": {
            "steps": [
                {"node": "welcome", "at": _iso(started)},
                {"node": "main_menu", "at": _iso(started + timedelta(seconds=10))},
            ],
            "outcome": "queued",
        },
    }
    waiting = {
        "event": "queue.call",
        "id": f"q-{conversation}",
        "tenant": tenant,
        "conversation_id": conversation,
        "direction": "inbound",
        "leg_id": f"{conversation}-1",
        "queue": queue,
        "queued_at": _iso(started + timedelta(seconds=20)),
    }
    return [envelope(tenant, contact, now), envelope(tenant, waiting, now)]


def closed(tenant: str, conversation: str, now: datetime, queue: str = "sales") -> list[bytes]:
    """The agent's side of a call queued 20 s earlier: answered, talked, wrapped up; it ends."""
    answered = now - timedelta(seconds=15)
    agent = {
        "event": "agent.call",
        "id": f"a-{conversation}",
        "tenant": tenant,
        "conversation_id": conversation,
        "direction": "inbound",
        "leg_id": f"{conversation}-1",
        "queue": queue,
        "agent": "agent-007",
        "answered_at": _iso(answered),
        "holds": [],
        "ended_at": _iso(now - timedelta(seconds=5)),
        "end_reason": "customer_disconnect",
        "acw_started_at": _iso(now - timedelta(seconds=5)),
        "acw_ended_at": _iso(now),
        "wrapup": {"code": "resolved", "set_at": _iso(now)},
    }
    return [envelope(tenant, agent, now)]


def conversation(tenant: str, conversation_id: str, now: datetime) -> list[bytes]:
    """A whole call reported at once (open + close records): 10 canonical events."""
    return opened(tenant, conversation_id, now) + closed(tenant, conversation_id, now)


def probe(tenant: str, queue: str, now: datetime) -> bytes:
    """A single ``queued`` event in a queue of its own: its interval row exists only because of it."""
    payload = {
        "event": "queue.call",
        "id": f"p-{queue}",
        "tenant": tenant,
        "conversation_id": f"probe-{queue}",
        "direction": "inbound",
        "leg_id": f"probe-{queue}-1",
        "queue": queue,
        "queued_at": _iso(now),
    }
    return envelope(tenant, payload, now)
