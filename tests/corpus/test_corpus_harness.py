"""The corpus harness checked on a tiny corpus of its own, so it cannot pass silently.

The tiny corpus is written to a temporary directory from the synthetic fixtures
(tests/fixtures/genesys, tests/fixtures/connect) with figures computed by hand below, and goes
through the same functions as the real corpus: it must pass, and deliberately wrong expectations
or broken manifests must be reported naming the case, subject, field, expected and actual value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from corpus_harness import (
    Corpus,
    Mismatch,
    Observed,
    Replay,
    accounting_problems,
    check_case,
    load_corpus,
    observe,
    replay_corpus,
    run_flow,
    snapshot,
    snapshot_changes,
    summary,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TRANSFERRED = "3f6e2b1a-8c4d-4e5f-9a7b-1c2d3e4f5a6b"
CHAT = "c0ffee00-1111-4222-8333-444455556666"
IVR = "5a5a5a5a-0000-4000-8000-000000000001"
PROVENANCE = {
    "source": "stitchboard tests/fixtures (synthetic, written for the adapter tests)",
    "derived": "copied; organizationId / Tags.tenant set to the case tenant",
    "pii": "none: synthetic values only",
}
ZERO_HANDLING = {"talk_ms": 0, "hold_ms": 0, "acw_ms": 0, "handle_ms": 0}

# voice_ivr_transfer (Genesys) and voice_leg1_transferred + voice_leg2_answered (Connect) are the
# same call: IVR 08:00:00-08:00:40; billing queued 08:00:40, answered 08:00:55 (wait 15 s) by
# ann.lee, hold 08:01:10-08:01:40 (30 s), blind transfer 08:03:20 (talk 145 s - 30 s hold = 115 s),
# ACW 08:03:20-08:03:50 (30 s), handle 115 + 30 + 30 = 175 s; tech queued 08:03:20, answered
# 08:03:32 (wait 12 s) by bob.ray, customer hangs up 08:08:20 (talk 288 s), ACW 08:08:20-08:09:20
# (60 s), handle 288 + 60 = 348 s, QA 88, wrap-up "resolved". The conversation ends with the last
# ACW, 08:09:20.
TRANSFER_CONVERSATION = {
    "status": "ended",
    "ended_at": "2026-03-29T08:09:20.000Z",
    "answered": True,
    "abandoned": False,
    "legs": 2,
    "transfers": 1,
    "wait_ms": 15_000 + 12_000,
    "talk_ms": 115_000 + 288_000,
    "hold_ms": 30_000,
    "acw_ms": 30_000 + 60_000,
    "handle_ms": 175_000 + 348_000,
    "channel": "voice",
    "direction": "inbound",
    "first_queue": "billing",
    "agents": ["ann.lee", "bob.ray"],
    "ivr_outcome": "queued",
    "wrapup_code": "resolved",
    "qa_score": 88,
    "started_at": "2026-03-29T08:00:00Z",
}
TRANSFER_INTERVALS = {
    "billing": {
        "offered": 1,
        "answered": 1,
        "abandoned": 0,
        "answer_wait_ms": 15_000,
        "transferred_out": 1,
        "handled": 1,
        "talk_ms": 115_000,
        "hold_ms": 30_000,
        "acw_ms": 30_000,
        "handle_ms": 175_000,
        "answered_in_sl": 1,  # 15 s <= 20 s
        "holds": 1,
        "contacts": 1,  # conversation figures land in the first queue
        "contacts_answered": 1,
        "contacts_transferred": 1,
    },
    "tech": {
        "offered": 1,
        "answered": 1,
        "abandoned": 0,
        "answer_wait_ms": 12_000,
        "transferred_out": 0,
        "handled": 1,
        "talk_ms": 288_000,
        "hold_ms": 0,
        "acw_ms": 60_000,
        "handle_ms": 348_000,
        "answered_in_sl": 1,  # 12 s <= 20 s
        "qa_scored": 1,
        "qa_score_sum": 88,
    },
}


def _payload(group_dir: Path, source: str, name: str, tenant: str) -> None:
    """Copy a synthetic fixture into the tiny corpus, owned by the case's tenant."""
    payload = orjson.loads((FIXTURES / source / name).read_bytes())
    if source == "genesys":
        payload["organizationId"] = tenant
    else:
        payload["Tags"] = {"tenant": tenant}
    group_dir.mkdir(parents=True, exist_ok=True)
    (group_dir / name).write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))


def _case(name: str, deliveries: list[tuple[str, str, str]], **expected: Any) -> dict[str, Any]:
    return {
        "name": name,
        "tenant": f"selftest-{name}",
        "provenance": PROVENANCE,
        "exercises": f"harness self-test: {name}",
        "deliveries": [{"source": s, "file": f, "received_at": at} for s, f, at in deliveries],
        "dead_letters": expected.pop("dead_letters", []),
        "expected": {"conversations": expected["conversations"], "intervals": expected["intervals"]},
    }


def write_tiny_corpus(root: Path) -> None:
    """Two groups, four cases, seven deliveries (one re-delivered, one genuinely malformed)."""
    genesys = root / "genesys_records"
    _payload(genesys, "genesys", "voice_ivr_transfer.json", "selftest-genesys-transfer")
    _payload(genesys, "genesys", "chat_abandoned.json", "selftest-genesys-chat-abandoned")
    chat = {
        "status": "ended",
        "ended_at": "2026-03-29T08:00:06.000Z",  # the customer left the queue
        "answered": False,
        "abandoned": True,
        "legs": 1,
        "transfers": 0,
        "wait_ms": 6_000,  # queued 08:00:00, abandoned 08:00:06
        **ZERO_HANDLING,
        "channel": "chat",
        "first_queue": "support",
        "agents": [],
    }
    support = {
        "offered": 1,
        "answered": 0,
        "abandoned": 1,
        "answer_wait_ms": 0,
        "transferred_out": 0,
        "handled": 0,
        **ZERO_HANDLING,
        "abandon_wait_ms": 6_000,
        "abandoned_short": 1,  # 6 s < 10 s (the default short-abandon threshold)
        "abandoned_in_sl": 1,
        "contacts": 1,
        "contacts_abandoned": 1,
    }
    genesys_cases = [
        _case(
            "genesys-transfer",
            [("genesys", "voice_ivr_transfer.json", "2026-03-29T10:00:05Z")],
            conversations={TRANSFERRED: TRANSFER_CONVERSATION},
            intervals=TRANSFER_INTERVALS,
        ),
        _case(
            "genesys-chat-abandoned",
            [("genesys", "chat_abandoned.json", "2026-03-29T08:00:07+00:00")],
            conversations={CHAT: chat},
            intervals={"support": support},
        ),
    ]
    (genesys / "manifest.json").write_bytes(
        orjson.dumps({"cases": genesys_cases}, option=orjson.OPT_INDENT_2)
    )

    connect = root / "connect_records"
    chain = "selftest-connect-transfer-chain"
    _payload(connect, "connect", "voice_leg1_transferred.json", chain)
    _payload(connect, "connect", "voice_leg2_answered.json", chain)
    mixed = "selftest-connect-ivr-and-malformed"
    _payload(connect, "connect", "ivr_contained.json", mixed)
    (connect / "no_contact_id.json").write_bytes(
        (connect / "ivr_contained.json").read_bytes().replace(b'"ContactId"', b'"ContactIdentifier"')
    )
    ivr = {
        "status": "ended",
        "ended_at": "2026-03-29T08:01:35.000Z",
        "answered": False,
        "abandoned": False,
        "legs": 0,
        "transfers": 0,
        "wait_ms": 0,
        **ZERO_HANDLING,
        "ivr_outcome": "contained",  # no queue, DisconnectReason CONTACT_FLOW_DISCONNECT
        "first_queue": "",
    }
    never_queued = {
        "offered": 0,
        "answered": 0,
        "abandoned": 0,
        "answer_wait_ms": 0,
        "transferred_out": 0,
        "handled": 0,
        **ZERO_HANDLING,
        "contacts": 1,
        "contacts_ivr_contained": 1,
    }
    connect_cases = [
        _case(
            "connect-transfer-chain",
            [
                ("connect", "voice_leg1_transferred.json", "2026-03-29T08:03:51Z"),
                ("connect", "voice_leg2_answered.json", "2026-03-29T10:00:01Z"),
                ("connect", "voice_leg2_answered.json", "2026-03-29T10:05:00Z"),  # re-delivered
            ],
            conversations={TRANSFERRED: TRANSFER_CONVERSATION},
            intervals=TRANSFER_INTERVALS,
        ),
        _case(
            "connect-ivr-and-malformed",
            [
                ("connect", "no_contact_id.json", "2026-03-29T08:01:36Z"),
                ("connect", "ivr_contained.json", "2026-03-29T08:01:36Z"),
            ],
            dead_letters=[
                {"file": "no_contact_id.json", "reason": "missing_field", "why": "ContactId renamed away"}
            ],
            conversations={IVR: ivr},
            intervals={"": never_queued},
        ),
    ]
    (connect / "manifest.json").write_bytes(
        orjson.dumps({"cases": connect_cases}, option=orjson.OPT_INDENT_2)
    )


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("tiny_corpus")
    write_tiny_corpus(root)
    return load_corpus(root)


@pytest.fixture(scope="module")
def tiny_replay(
    tiny_corpus: Corpus, tmp_path_factory: pytest.TempPathFactory, chdb_dsn: str, chdb_client: Client
) -> Iterator[Replay]:
    replay = replay_corpus(tiny_corpus, chdb_client, chdb_dsn, tmp_path_factory.mktemp("tiny_replay"))
    yield replay
    chdb_client.command(f"DROP DATABASE IF EXISTS `{replay.database}`")


@pytest.fixture(scope="module")
def tiny_observed(tiny_replay: Replay, chdb_client: Client) -> Observed:
    return observe(chdb_client, tiny_replay.database)


def test_the_tiny_corpus_is_valid(tiny_corpus: Corpus) -> None:
    assert tiny_corpus.problems == ()
    assert tiny_corpus.labels() == [  # groups in name order, cases in manifest order
        "connect-transfer-chain",
        "connect-ivr-and-malformed",
        "genesys-transfer",
        "genesys-chat-abandoned",
    ]


def test_the_harness_passes_a_correct_corpus(
    tiny_corpus: Corpus, tiny_replay: Replay, tiny_observed: Observed
) -> None:
    for case in tiny_corpus.cases:
        assert check_case(case, tiny_observed, tiny_replay.placements) == [], case.name
    assert (tiny_replay.counts.records_in, tiny_replay.counts.dead_lettered) == (7, 1)
    assert accounting_problems(tiny_replay, tiny_observed) == []
    table = summary(tiny_replay, tiny_observed)
    print(table)
    rows = [line.split() for line in table.splitlines()]
    assert ["connect_records", "2", "5", "4", "1", "80.0%"] in rows
    assert ["genesys_records", "2", "2", "2", "0", "100.0%"] in rows
    assert ["total", "4", "7", "6", "1", "85.7%"] in rows
    assert "groups without a manifest: genesys_events, connect_events" in table


def _mismatches(case: Any, observed: Observed, replay: Replay) -> list[tuple[str, str, Any, Any]]:
    found: list[Mismatch] = check_case(case, observed, replay.placements)
    assert all(m.case == case.name for m in found)
    return [(m.subject, m.field, m.expected, m.actual) for m in found]


def test_a_wrong_expected_figure_is_reported(
    tiny_corpus: Corpus, tiny_replay: Replay, tiny_observed: Observed
) -> None:
    case = tiny_corpus.case("genesys-transfer")
    subject = f"conversation {TRANSFERRED!r}"
    wrong_talk = dataclasses.replace(
        case, conversations={TRANSFERRED: {**TRANSFER_CONVERSATION, "talk_ms": 403_001}}
    )
    assert _mismatches(wrong_talk, tiny_observed, tiny_replay) == [(subject, "talk_ms", 403_001, 403_000)]
    message = str(check_case(wrong_talk, tiny_observed, tiny_replay.placements)[0])
    assert message == f"case genesys-transfer: {subject}: talk_ms: expected 403001, got 403000"

    late_end = {**TRANSFER_CONVERSATION, "ended_at": "2026-03-29T08:09:20.001Z"}
    assert _mismatches(
        dataclasses.replace(case, conversations={TRANSFERRED: late_end}), tiny_observed, tiny_replay
    ) == [(subject, "ended_at", "2026-03-29T08:09:20.001Z", "2026-03-29T08:09:20.000Z")]
    same_instant = {**TRANSFER_CONVERSATION, "ended_at": "2026-03-29T09:09:20+01:00"}
    assert (
        _mismatches(
            dataclasses.replace(case, conversations={TRANSFERRED: same_instant}), tiny_observed, tiny_replay
        )
        == []
    )

    offered_twice = {**TRANSFER_INTERVALS, "billing": {**TRANSFER_INTERVALS["billing"], "offered": 2}}
    assert _mismatches(dataclasses.replace(case, intervals=offered_twice), tiny_observed, tiny_replay) == [
        ("queue 'billing'", "offered", 2, 1)
    ]
    without_tech = dataclasses.replace(case, intervals={"billing": TRANSFER_INTERVALS["billing"]})
    unlisted = _mismatches(without_tech, tiny_observed, tiny_replay)
    assert ("queue 'tech' (not listed)", "talk_ms", 0, 288_000) in unlisted
    assert {subject for subject, *_ in unlisted} == {"queue 'tech' (not listed)"}

    assert _mismatches(dataclasses.replace(case, conversations={}), tiny_observed, tiny_replay) == [
        (subject, "row", "not expected", "status=ended legs=2 started_at=2026-03-29T08:00:00.000Z")
    ]
    assert _mismatches(
        dataclasses.replace(case, conversations={"no-such-id": TRANSFER_CONVERSATION}),
        tiny_observed,
        tiny_replay,
    ) == [
        ("conversation 'no-such-id'", "row", "stored", "no row in conversations"),
        (subject, "row", "not expected", "status=ended legs=2 started_at=2026-03-29T08:00:00.000Z"),
    ]


def test_a_wrong_dead_letter_expectation_is_reported(
    tiny_corpus: Corpus, tiny_replay: Replay, tiny_observed: Observed
) -> None:
    case = tiny_corpus.case("connect-ivr-and-malformed")
    unexpected = _mismatches(dataclasses.replace(case, dead_letters={}), tiny_observed, tiny_replay)
    assert len(unexpected) == 1
    subject, field, expected, actual = unexpected[0]
    assert (subject, field, expected) == ("delivery #0 no_contact_id.json", "dead_letter", "accepted")
    assert actual.startswith("missing_field (") and "ContactId" in actual
    wrong_reason = dataclasses.replace(case, dead_letters={"no_contact_id.json": "invalid_json"})
    assert [m[2] for m in _mismatches(wrong_reason, tiny_observed, tiny_replay)] == [
        "dead letter invalid_json"
    ]
    expected_rejection = dataclasses.replace(case, dead_letters={"ivr_contained.json": "schema"})
    assert [(m[0], m[3]) for m in _mismatches(expected_rejection, tiny_observed, tiny_replay)] == [
        ("delivery #0 no_contact_id.json", unexpected[0][3]),
        ("delivery #1 ivr_contained.json", "accepted"),
    ]


def test_a_second_replay_changes_nothing_and_a_change_would_show(
    tiny_replay: Replay, chdb_client: Client
) -> None:
    """The idempotence check of the corpus, on the tiny corpus; last, as it replays again."""
    before = snapshot(chdb_client, tiny_replay.database)
    assert run_flow(tiny_replay.settings, tiny_replay.path) == tiny_replay.counts
    after = snapshot(chdb_client, tiny_replay.database)
    assert snapshot_changes(before, after) == []
    key = ("selftest-genesys-transfer", TRANSFERRED)
    moved = {
        **after,
        "conversations": {**after["conversations"], key: {**after["conversations"][key], "talk_ms": 1}},
    }
    assert snapshot_changes(before, moved) == [f"conversation {key}: talk_ms 403000 -> 1"]
    figures = after["figures"][("corrected", 1440)]
    interval = next(k for k in figures if k[1] == "tech")
    moved_figures = {
        **after["figures"],
        ("corrected", 1440): {**figures, interval: {**figures[interval], "offered": 2}},
    }
    assert snapshot_changes(before, {**after, "figures": moved_figures}) == [
        f"('corrected', 1440) interval {interval}: offered 1 -> 2"
    ]


def test_broken_manifests_are_reported(tmp_path: Path) -> None:
    write_tiny_corpus(tmp_path)
    connect = tmp_path / "connect_records"
    manifest = orjson.loads((connect / "manifest.json").read_bytes())
    chain, mixed = manifest["cases"]
    chain["tenant"] = mixed["tenant"]
    del mixed["provenance"]["pii"]
    mixed["deliveries"][1]["received_at"] = "2026-03-29T08:01:36"
    mixed["deliveries"].append(
        {"source": "avaya", "file": "absent.json", "received_at": "2026-03-29T08:02:00Z"}
    )
    mixed["expected"]["conversations"][IVR]["talk_time"] = 0
    del mixed["expected"]["intervals"][""]["handled"]
    mixed["expected"]["intervals"][""]["offerd"] = 0
    (connect / "manifest.json").write_bytes(orjson.dumps({"cases": [chain, mixed]}))
    (connect / "stray.json").write_bytes(b"{}")
    genesys = tmp_path / "genesys_records" / "manifest.json"
    genesys_manifest = orjson.loads(genesys.read_bytes())
    genesys_manifest["cases"][1]["name"] = "genesys chat abandoned"
    genesys.write_bytes(orjson.dumps(genesys_manifest))
    (tmp_path / "avaya_records").mkdir()
    (tmp_path / "avaya_records" / "manifest.json").write_bytes(b'{"cases": [')

    corpus = load_corpus(tmp_path)
    assert [case.name for case in corpus.cases] == ["genesys-transfer"]
    assert set(corpus.invalid) == {
        "connect-transfer-chain",
        "connect-ivr-and-malformed",
        "genesys chat abandoned",
    }
    expected = [
        "avaya_records/manifest.json: group directory 'avaya_records' is not one of",
        "avaya_records/manifest.json: not valid JSON",
        "connect_records/stray.json: not referenced by any case of connect_records/manifest.json",
        "case connect-transfer-chain: tenant 'selftest-connect-ivr-and-malformed' is used by 2 cases",
        "case connect-ivr-and-malformed: tenant 'selftest-connect-ivr-and-malformed' is used by 2 cases",
        "case connect-ivr-and-malformed: provenance.pii must be a non-empty string",
        "case connect-ivr-and-malformed: deliveries[1].received_at has no time zone",
        "case connect-ivr-and-malformed: deliveries[2].source 'avaya' is not one the adapters know",
        "case connect-ivr-and-malformed: deliveries[2].file 'absent.json' does not exist",
        f"case connect-ivr-and-malformed: expected.conversations['{IVR}'].talk_time is not a conversations column",
        "case connect-ivr-and-malformed: expected.intervals[''] lacks 'handled'",
        "case connect-ivr-and-malformed: expected.intervals[''].offerd is not a catalogue metric",
        "case genesys chat abandoned: name 'genesys chat abandoned' must be letters, digits",
    ]
    for problem in expected:
        assert any(found.startswith(problem) for found in corpus.problems), (problem, corpus.problems)
    assert len(corpus.problems) == len(expected)
