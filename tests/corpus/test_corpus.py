"""The real-shaped fixture corpus, replayed once through the real flow into chDB.

Every case's hand-computed figures must equal what was stored (``pytest tests/corpus -k <case>``
shows one case); every delivery must be accounted for; a second replay must change nothing.
The format and how to add a case: tests/fixtures/corpus/README.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client
from corpus_harness import (
    CORPUS_ROOT,
    GROUPS,
    Observed,
    Replay,
    accounting_problems,
    check_case,
    load_corpus,
    observe,
    replay_corpus,
    report,
    run_flow,
    snapshot,
    snapshot_changes,
    summary,
)

CORPUS = load_corpus(CORPUS_ROOT)


@pytest.fixture(scope="module")
def corpus_replay(
    tmp_path_factory: pytest.TempPathFactory, chdb_dsn: str, chdb_client: Client
) -> Iterator[Replay]:
    """The whole corpus replayed once, drained, into a database of its own."""
    assert CORPUS.cases, (
        f"no valid corpus case under {CORPUS_ROOT} (test_corpus_manifests_are_valid says why)"
    )
    replay = replay_corpus(CORPUS, chdb_client, chdb_dsn, tmp_path_factory.mktemp("corpus"))
    yield replay
    chdb_client.command(f"DROP DATABASE IF EXISTS `{replay.database}`")


@pytest.fixture(scope="module")
def corpus_observed(corpus_replay: Replay, chdb_client: Client) -> Observed:
    return observe(chdb_client, corpus_replay.database)


def test_corpus_manifests_are_valid() -> None:
    """Every group of real-shaped payloads is present (issue #11: both vendors, batch and streaming)
    and every manifest is complete; a deleted or emptied group fails here instead of skipping."""
    missing = [group for group in GROUPS if group not in CORPUS.groups()]
    assert not missing, f"no manifest for corpus groups {missing} under {CORPUS_ROOT}"
    empty = [group for group in GROUPS if not any(case.group == group for case in CORPUS.cases)]
    assert not empty, f"corpus groups without a valid case: {empty}"
    problems = CORPUS.problems
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case_name", CORPUS.labels())
def test_corpus_case(case_name: str, request: pytest.FixtureRequest) -> None:
    """Conversation rows, daily queue figures and dead letters of one case equal its hand figures.

    An invalid manifest entry fails here by name, before (and whether or not) the corpus replays.
    """
    problems = CORPUS.invalid.get(case_name)
    if problems is not None:
        pytest.fail(f"case {case_name}: invalid manifest entry, not replayed:\n" + "\n".join(problems))
    replay: Replay = request.getfixturevalue("corpus_replay")
    observed: Observed = request.getfixturevalue("corpus_observed")
    mismatches = check_case(CORPUS.case(case_name), observed, replay.placements)
    assert not mismatches, report(mismatches)


def test_corpus_every_delivery_is_accounted_for(corpus_replay: Replay, corpus_observed: Observed) -> None:
    """records in = accepted + dead-lettered; the per-group table shows with ``-s`` or ``-rA``."""
    print(summary(corpus_replay, corpus_observed))
    problems = accounting_problems(corpus_replay, corpus_observed)
    assert not problems, "\n".join(problems)


def test_corpus_replayed_twice_changes_nothing(corpus_replay: Replay, chdb_client: Client) -> None:
    """Last in the module: it replays the same file into the same database again."""
    before = snapshot(chdb_client, corpus_replay.database)
    again = run_flow(corpus_replay.settings, corpus_replay.path)
    assert again == corpus_replay.counts
    changes = snapshot_changes(before, snapshot(chdb_client, corpus_replay.database))
    assert not changes, "\n".join(changes)
