"""Issue 13, Deliver 9: thousands of hostile records, interleaved with valid ones, through the real flow.

The valid records (the real-shaped corpus, the adapter fixtures and a generated day) run once alone and
once with 2,000 mutants of ~45 kinds (``stitchboard.testing.mutator``) among them, each replayed
from a file through the production flow into chDB. Whatever the hostile records are, the flow
finishes, every record is accepted or dead-lettered, no table holds an impossible figure, and the
valid records' figures are what they were alone: exactly, for a tenant that took no hostile record;
every valid conversation unchanged and no figure smaller, for a tenant that took hostile records of
its own. The seeds are fixed, so a failure names the same records every run; ``python -m bench
--only fuzz`` runs the same checks over 100,000 mutants.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from clickhouse_connect.driver.client import Client

from stitchboard.testing import fuzz
from stitchboard.testing.mutator import KINDS, Mutant, Mutator, ValidRecord, same_group, valid_records

SEED = 13
DAY_SCALE = 0.05
MUTANTS = 2_000


@dataclass(frozen=True, slots=True)
class Fuzzed:
    valid: list[ValidRecord]
    same: frozenset[str]
    mutants: list[Mutant]
    baseline: fuzz.Baseline
    mixed: fuzz.Run
    stored: fuzz.Stored


@pytest.fixture(scope="module")
def fuzzed(chdb_client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    workdir = tmp_path_factory.mktemp("fuzz")
    valid = valid_records(SEED, DAY_SCALE)
    same = same_group([record.tenant for record in valid])
    mutator = Mutator(valid, same, SEED)
    mutants = [mutator.next() for _ in range(MUTANTS)]
    alone = fuzz.run_stream(chdb_client, fuzz.interleave(valid, [], SEED), workdir, "valid")
    baseline = fuzz.Baseline(alone, fuzz.read_stored(chdb_client, alone.database))
    mixed = fuzz.run_stream(chdb_client, fuzz.interleave(valid, mutants, SEED), workdir, "mixed")
    yield Fuzzed(valid, same, mutants, baseline, mixed, fuzz.read_stored(chdb_client, mixed.database))
    for database in (alone.database, mixed.database):
        chdb_client.command(f"DROP DATABASE IF EXISTS `{database}`")


def finished(run: fuzz.Run) -> None:
    """Every later check presumes a finished flow: say what stopped it rather than its consequences."""
    if run.error is not None:
        pytest.fail(f"the flow stopped: {run.error}")


def test_the_stream_has_thousands_of_records_of_every_kind_in_both_placements(fuzzed: Fuzzed) -> None:
    kinds = Counter(mutant.kind for mutant in fuzzed.mutants)
    assert set(kinds) == {kind.name for kind in KINDS if kind.weight > 0}
    assert len(kinds) >= 31
    assert {mutant.mode for mutant in fuzzed.mutants} == {"same", "separate"}
    assert len(fuzzed.mixed.origins) >= 3_000
    assert {record.group.partition("/")[0] for record in fuzzed.valid} == {"corpus", "fixtures", "day"}


def test_the_valid_records_alone_are_accepted_and_hold_no_impossible_figure(fuzzed: Fuzzed) -> None:
    run, stored = fuzzed.baseline.run, fuzzed.baseline.stored
    finished(run)
    assert run.counts.records_in == run.counts.accepted == len(fuzzed.valid)
    assert fuzz.impossible_figures(stored) == []
    assert len(stored.conversations) > 300


def test_the_flow_finishes(fuzzed: Fuzzed) -> None:
    finished(fuzzed.mixed)


def test_every_record_is_accepted_or_dead_lettered(fuzzed: Fuzzed) -> None:
    finished(fuzzed.mixed)
    path_name = next(iter(fuzzed.mixed.origins)).partition("@")[0]
    assert fuzz.accounting_problems(fuzzed.mixed, fuzzed.stored, path_name) == []
    assert fuzzed.mixed.counts.dead_lettered > 500  # most kinds are rejected: the counters saw them


def test_no_table_holds_an_impossible_figure(fuzzed: Fuzzed) -> None:
    finished(fuzzed.mixed)
    problems = fuzz.impossible_figures(fuzzed.stored)
    assert not problems, fuzz.suspects(problems, fuzzed.mutants)


def test_the_valid_records_figures_do_not_depend_on_the_hostile_ones(fuzzed: Fuzzed) -> None:
    finished(fuzzed.mixed)
    tenants = {record.tenant for record in fuzzed.valid}
    problems = fuzz.valid_figure_changes(fuzzed.baseline.stored, fuzzed.stored, tenants, fuzzed.same)
    problems += fuzz.valid_letter_changes(
        fuzzed.baseline.run, fuzzed.baseline.stored, fuzzed.mixed, fuzzed.stored
    )
    assert not problems, fuzz.suspects(problems, fuzzed.mutants)


def test_every_rejection_has_a_reason_not_a_caught_exception(fuzzed: Fuzzed) -> None:
    finished(fuzzed.mixed)
    assert fuzz.internal_errors(fuzzed.mixed, fuzzed.stored) == []


def test_the_stream_is_the_same_every_run(fuzzed: Fuzzed) -> None:
    """Fixed seeds: the valid records, the mutants and their places do not vary between runs."""
    valid = valid_records(SEED, DAY_SCALE)
    assert valid == fuzzed.valid
    again = Mutator(valid, same_group([record.tenant for record in valid]), SEED)
    assert [again.next() for _ in range(500)] == fuzzed.mutants[:500]
    lines = fuzz.interleave(valid, fuzzed.mutants, SEED)
    assert [(line.raw, line.valid) for line in lines] == [
        (line.raw, line.valid) for line in fuzzed.mixed.origins.values()
    ]
