"""Structured logs: one JSON object per line with the ``extra`` fields of the call."""

from __future__ import annotations

import io
import logging

import orjson

from stitchboard.telemetry import JsonFormatter


def test_json_lines_carry_level_logger_message_and_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("stitchboard.test_json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("sink resumed", extra={"sink_epoch": 7, "step_id": "stitchboard.clickhouse"})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("insert failed", extra={"table": "conversations"})
    finally:
        logger.removeHandler(handler)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["level"], line["logger"], line["msg"]) for line in lines] == [
        ("info", "stitchboard.test_json", "sink resumed"),
        ("error", "stitchboard.test_json", "insert failed"),
    ]
    assert (lines[0]["sink_epoch"], lines[0]["step_id"]) == (7, "stitchboard.clickhouse")
    assert lines[1]["table"] == "conversations" and "ValueError: boom" in lines[1]["exc"]
    assert lines[0]["ts"].endswith("+00:00")
