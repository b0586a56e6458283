"""Where moto's ASL interpreter drifts from AWS, fixed by seams: asserted on what a user sees.

Each test runs a fixture workflow and reads the execution's status, error and cause,
its output and its history events (times in virtual seconds from the start).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


def _at(result, event_type: str) -> list[float]:
    """Virtual seconds after the start at which each ``event_type`` event was recorded."""
    start = result.start.timestamp()
    return [round(e["timestamp"] - start, 3) for e in result.events if e["type"] == event_type]


def _types(result) -> list[str]:
    return [e["type"] for e in result.events]


@pytest.fixture
def moto_logging_off() -> Iterator[None]:
    # Virtual time must not depend on whether moto's error logs are emitted: a log
    # record reads the clock, which used to be what moved a failing Map to its end.
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


# -- TimeoutSeconds ----------------------------------------------------------------------------
def test_TimedOutTaskRecordsNothingItReportsAfterTheTimeout(runtime_factory):
    runtime = runtime_factory()

    result = runtime.run("TimeoutFlow", {"seconds": 10})

    assert result.status == "SUCCEEDED"
    assert result.output == {"source": "fallback", "error": "States.Timeout"}
    types = _types(result)
    # The handler finishes at 10 s, after Step Functions stopped waiting at 3 s.
    assert "LambdaFunctionSucceeded" not in types
    assert _at(result, "LambdaFunctionTimedOut") == [3.0]
    assert types[types.index("LambdaFunctionStarted") + 1] == "LambdaFunctionTimedOut"
    assert max(at for kind in set(types) for at in _at(result, kind)) == pytest.approx(3.0)


# -- Map and Parallel ------------------------------------------------------------------------------
def test_MapIterationTimeoutFailsWithStatesTimeout(runtime_factory):
    runtime = runtime_factory()

    result = runtime.run("MapTimeoutFlow", {"items": [{"seconds": 1}, {"seconds": 10}]})

    assert result.status == "FAILED"
    assert result.error == "States.Timeout"
    assert "MUST NOT begin" not in (result.cause or "")
    assert "LambdaFunctionTimedOut" in _types(result)
    assert _at(result, "MapStateFailed") == [3.0]
    assert result.duration == pytest.approx(3.0)


def test_ParallelBranchTimeoutIsCaughtAsStatesTimeout(runtime_factory):
    runtime = runtime_factory()

    result = runtime.run("ParallelTimeoutFlow", {"first": 1, "second": 10})

    assert result.status == "SUCCEEDED"
    assert result.output == {"source": "fallback", "error": "States.Timeout"}
    assert result.trace().states_visited()[-1] == "Use cached answer"
    assert _at(result, "ParallelStateFailed") == [3.0]
    assert result.duration == pytest.approx(3.0)


def test_FailedMapEndsWhenItsIterationsDo(runtime_factory, moto_logging_off):
    runtime = runtime_factory()

    result = runtime.run("MapTimeoutFlow", {"items": [{"seconds": 1}, {"seconds": 10}]})

    assert result.status == "FAILED"
    assert _at(result, "MapStateFailed") == [3.0]
    assert _at(result, "ExecutionFailed") == [3.0]
    assert result.duration == pytest.approx(3.0)


def test_MapSucceedsWhenItsSlowestIterationDoes(runtime_factory, moto_logging_off):
    runtime = runtime_factory()

    result = runtime.run("MapTimeoutFlow", {"items": [{"seconds": 1}, {"seconds": 2}]})

    assert result.status == "SUCCEEDED"
    assert result.output == [{"slept": 1.0}, {"slept": 2.0}]
    assert _at(result, "MapStateSucceeded") == [2.0]
    assert result.duration == pytest.approx(2.0)


# -- optimised DynamoDB integration ----------------------------------------------------------------
def test_UntypedDynamoItemFailsWithTheServiceValidationError(runtime_factory):
    runtime = runtime_factory()

    result = runtime.run("DynamoFidelityFlow", {"action": "untyped", "key": "k1"})

    assert result.status == "FAILED"
    assert result.error == "DynamoDB.AmazonDynamoDBException"
    cause = result.cause or ""
    assert "Item.pk" in cause
    assert "Status Code: 400; Error Code: ValidationException" in cause
    assert "TaskFailed" in _types(result)
    assert runtime.items("AttemptsTable") == []


def test_UpdateItemOutputHasNoConsumedCapacityUnlessAsked(runtime_factory):
    runtime = runtime_factory()

    plain = runtime.run("DynamoFidelityFlow", {"action": "update", "key": "k1"})
    asked = runtime.run("DynamoFidelityFlow", {"action": "update_capacity", "key": "k1"})

    assert plain.status == "SUCCEEDED"
    assert "ConsumedCapacity" not in plain.output
    assert plain.output["Attributes"]["attempts"] == {"N": "1"}
    assert asked.status == "SUCCEEDED"
    assert asked.output["Attributes"] == {"attempts": {"N": "2"}}
    assert asked.output["ConsumedCapacity"]["TableName"] == "AttemptsTable"
