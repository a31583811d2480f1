"""A complete synthetic input: several tenants' days, rendered, delivered with faults, plus truth.

The one place that strings generator → renderers → faults together, so the CLI, the demo, the
tests and the benchmarks all replay the same kind of input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from stitchboard.replay_file import write_records
from stitchboard.settings import Settings, TenantSettings
from stitchboard.synthetic.faults import Delivery, deliver
from stitchboard.synthetic.generator import Day, generate_day
from stitchboard.synthetic.render import render_agent_state, render_conversation
from stitchboard.synthetic.truth import write_truth

DEMO_TENANTS: dict[str, str] = {"acme": "Europe/London", "globex": "America/New_York"}


class FaultProfile(BaseModel):
    """How hostile the delivery is. The defaults resemble a bad day on a real feed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duplicate_rate: float = Field(default=0.02, ge=0, le=1)
    reorder_window_seconds: int = Field(default=30, ge=0)
    late_rate: float = Field(default=0.01, ge=0, le=1)
    late_max_seconds: int = Field(default=2 * 3600, ge=60)
    malformed_rate: float = Field(default=0.002, ge=0, le=1)


@dataclass(frozen=True, slots=True)
class Dataset:
    days: list[Day]
    delivery: Delivery
    settings: Settings


def tenant_settings(zones: dict[str, str]) -> Settings:
    """Reporting settings for the generated tenants (their zones; default thresholds)."""
    return Settings(tenants={name: TenantSettings(time_zone=zone) for name, zone in zones.items()})


def build_dataset(
    zones: dict[str, str],
    day: date,
    seed: int,
    *,
    scale: float = 1.0,
    faults: FaultProfile | None = None,
    settings: Settings | None = None,
) -> Dataset:
    """Generate, render and deliver every tenant's day, merged into one delivery order."""
    profile = faults or FaultProfile()
    days = [generate_day(tenant, day, ZoneInfo(zone), seed, scale=scale) for tenant, zone in zones.items()]
    records = [
        record for generated in days for c in generated.conversations for record in render_conversation(c)
    ]
    records += [
        record for generated in days for s in generated.agent_states for record in render_agent_state(s)
    ]
    records.sort(key=lambda record: record[0])
    delivery = deliver(records, seed, **profile.model_dump())
    return Dataset(days, delivery, settings or tenant_settings(zones))


def write_dataset(dataset: Dataset, directory: Path) -> tuple[Path, Path]:
    """Write ``events.jsonl`` (delivery order) and ``truth.json``; returns both paths."""
    events = directory / "events.jsonl"
    truth = directory / "truth.json"
    write_records(events, dataset.delivery.records)
    delivery = dataset.delivery
    write_truth(
        truth,
        dataset.days,
        dataset.settings,
        extra={
            "delivery": {
                "consumed": delivery.consumed,
                "originals": delivery.originals,
                "duplicates": delivery.duplicates,
                "late": delivery.late,
                "malformed": delivery.malformed,
                "malformed_by_kind": delivery.malformed_by_kind,
            }
        },
    )
    return events, truth
