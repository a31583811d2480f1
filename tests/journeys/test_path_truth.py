"""The independent self-service truth: containment and opt-outs by last node."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stitchboard.events import Channel, CustomerIds, Direction
from stitchboard.synthetic.scenario import IvrOutcome, SimConversation
from stitchboard.synthetic.truth import path_truth

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def conv(name: str, channel: Channel, nodes: list[str], outcome: IvrOutcome | None) -> SimConversation:
    return SimConversation(
        tenant="acme",
        conversation_id=name,
        shape="genesys",
        channel=channel,
        direction=Direction.INBOUND,
        started_at=T0,
        ended_at=T0 + timedelta(minutes=1),
        customer=CustomerIds(),
        intent="payment",
        ivr_steps=[(node, T0 + timedelta(seconds=i)) for i, node in enumerate(nodes)],
        ivr_outcome=outcome,
    )


def test_opt_outs_are_queued_self_service_counted_at_their_last_node() -> None:
    found = path_truth(
        [
            conv("a", Channel.VOICE, ["welcome", "main_menu"], "queued"),
            conv("b", Channel.VOICE, ["welcome", "main_menu"], "queued"),
            conv("c", Channel.BOT, ["bot_greeting", "bot_intent"], "queued"),
            conv("d", Channel.BOT, ["bot_greeting"], "contained"),
            conv("e", Channel.VOICE, ["welcome"], "abandoned"),
            conv("f", Channel.CHAT, [], None),
        ]
    )["acme"]
    assert (found.self_service, found.contained, found.opt_outs) == (5, 1, 3)
    assert found.opt_outs_by_last_step == {("bot", "bot_intent"): 1, ("voice", "main_menu"): 2}
