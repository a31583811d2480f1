"""``python -m bytewax.run flows/production.py`` finds the production flow, imported as ``stitchboard.…``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from bytewax.dataflow import Dataflow
from bytewax.run import _locate_dataflow, _prepare_import

ENTRY = Path(__file__).resolve().parents[2] / "flows" / "production.py"


def test_bytewax_launcher_locates_the_production_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("STITCHBOARD_CONFIG", raising=False)
    monkeypatch.delenv("STITCHBOARD_SECRETS_DIR", raising=False)
    module, attribute = _prepare_import(f"{ENTRY}:flow")  # what ``bytewax.run`` does with its argument
    try:
        flow = _locate_dataflow(module, attribute)
    finally:
        sys.modules.pop(module, None)
    assert (module, attribute) == ("production", "flow")
    assert isinstance(flow, Dataflow)
    assert flow.flow_id == "stitchboard"
    steps = {step.step_id for step in flow.substeps}
    assert {
        "stitchboard.kafka_in",
        "stitchboard.stitch",
        "stitchboard.intervals",
        "stitchboard.clickhouse",
    } <= steps
