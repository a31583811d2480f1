"""The letters of items a step failed on (issue #13, deliver 1)."""

from __future__ import annotations

from datetime import UTC, datetime

from stitchboard.deadletters import INTERNAL_ERROR, RecordRef, held_bytes, internal_error

AT = datetime(2026, 3, 29, 8, tzinfo=UTC)


def test_an_internal_error_names_the_step_and_the_exception_and_keeps_the_record() -> None:
    letter = internal_error(
        KeyError("leg"),
        "stitch",
        b"{}",
        AT,
        tenant="acme",
        source="webhook",
        origin="raw/0/7",
        part="conversation c1",
    )
    assert (letter.reason, letter.detail, letter.raw, letter.origin, letter.part) == (
        INTERNAL_ERROR,
        "stitch: KeyError: 'leg'",
        b"{}",
        "raw/0/7",
        "stitch conversation c1",
    )
    assert internal_error(ValueError("x" * 5000), "split_records", b"", AT).detail == (
        "split_records: ValueError: " + "x" * 1000
    )


def test_what_a_step_held_is_json_when_it_can_be_and_its_repr_otherwise() -> None:
    assert held_bytes(lambda: {"at": AT, "value": 1}) == b'{"at":"2026-03-29T08:00:00+00:00","value":1}'
    assert held_bytes(lambda: {"hold_ms": 2**70}) == b"{'hold_ms': 1180591620717411303424}"


def test_a_record_is_named_by_origin_digest_and_receive_time() -> None:
    ref = RecordRef.of(b"abc", "raw/0/7", AT, "webhook")
    assert ref.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert (ref.origin, ref.received_at, ref.source) == ("raw/0/7", AT, "webhook")
