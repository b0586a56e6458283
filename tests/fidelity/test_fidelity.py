"""ASL conformance: the runtime never does worse than plain moto, and passes every case but its known gaps.

The cases (tests/fidelity/cases.py) carry what AWS records and where that comes
from; bench/fidelity.py runs them on both sides and prints the table.
"""

from __future__ import annotations

import logging

import pytest

from bench.fidelity import compare
from tests.fidelity.cases import CASES, Case, app_files

KNOWN_GAPS = [item for item in CASES if item.known_gap]


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[list[str], list[str]]]:
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    return {item.name: (moto, runtime) for item, moto, runtime in compare(CASES)}


def test_FixtureAppMatchesTheCases():
    stale = [str(path) for path, text in app_files().items() if not path.exists() or path.read_text() != text]
    assert not stale, "run `python -m tests.fidelity.cases` to regenerate: " + ", ".join(stale)


def test_KnownGapsAreListedWithAReason():
    for item in KNOWN_GAPS:
        assert item.known_gap, item.name
        assert len(item.known_gap) > 10, item.name
    print("known gaps:", *(f"{item.name}: {item.known_gap}" for item in KNOWN_GAPS), sep="\n  ")


@pytest.mark.parametrize("case", CASES, ids=lambda item: item.name)
def test_RuntimeNeverWorseThanPlainMoto(case: Case, results):
    moto, runtime = results[case.name]
    assert not (runtime and not moto), f"plain moto conforms, the runtime does not: {runtime}"


@pytest.mark.parametrize("case", CASES, ids=lambda item: item.name)
def test_RuntimeMatchesAws(case: Case, results):
    _, runtime = results[case.name]
    if case.known_gap and runtime:
        pytest.xfail(f"known gap: {case.known_gap}")
    assert not runtime, f"{case.source}: {runtime}"
