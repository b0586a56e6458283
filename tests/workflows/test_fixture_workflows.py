"""The offline runtime on the fixture app: named scenarios, asserted on what a user sees.

Each test reads the execution outcome, the items in the tables and the trace
(retry delays in virtual time), never private calls.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest


def test_RetryOnRetryableErrorThenSucceed(runtime_factory):
    runtime = runtime_factory()
    started = time.perf_counter()

    result = runtime.run("RetryFlow", {"key": "k1"})

    assert result.status == "SUCCEEDED"
    assert result.output == {"key": "k1", "attempts": 3, "remainingMs": 30_000}
    row = result.trace().row("Call flaky dependency")
    assert row.attempts == 3
    assert row.retry_delays == pytest.approx([1.0, 2.0])
    assert row.status == "retried"
    items = {item["pk"]: item for item in runtime.items("AttemptsTable")}
    assert items["attempts#k1"]["attempts"] == 3
    assert items["request#k1"]["status"] == "succeeded"
    # Three seconds of backoff happen in virtual time only.
    assert result.duration == pytest.approx(3.0)
    assert time.perf_counter() - started < 30


def test_ThrottledPutItemIsRetriedByAslRetry(runtime_factory):
    runtime = runtime_factory(faults=[{"service": "dynamodb", "operation": "PutItem", "throttle": True, "count": 1}])

    result = runtime.run("RetryFlow", {"key": "t1"})

    assert result.status == "SUCCEEDED"
    row = result.trace().row("Record request")
    assert row.attempts == 2
    assert row.retry_delays == pytest.approx([1.0])
    assert row.failures[0]["error"] == "DynamoDB.ProvisionedThroughputExceededException"
    assert [f["error"] for f in result.faults] == ["ProvisionedThroughputExceededException"]


def test_HandlerSdkCallsMeetTheSameFaults(runtime_factory):
    # The handler's own UpdateItem is throttled twice; botocore's retry absorbs it.
    runtime = runtime_factory(faults=[{"service": "dynamodb", "operation": "UpdateItem", "throttle": True, "count": 2}])

    result = runtime.run("RetryFlow", {"key": "h1"})

    assert result.status == "SUCCEEDED"
    assert len(result.faults) == 2
    assert {f["operation"] for f in result.faults} == {"UpdateItem"}
    assert runtime.faults.fired(runtime.faults.rules[0]) == 2


def test_RetriesExhaustedLeadToCatchAndFail(runtime_factory):
    runtime = runtime_factory(parameters={"FlakyFailures": "10"})

    result = runtime.run("RetryFlow", {"key": "x1"})

    assert result.status == "FAILED"
    assert result.error == "DependencyUnavailableError"
    trace = result.trace()
    assert trace.states_visited() == ["Record request", "Call flaky dependency", "Record failure", "Gave up"]
    call = trace.row("Call flaky dependency")
    assert call.attempts == 4
    assert call.retry_delays == pytest.approx([1.0, 2.0, 4.0])
    assert call.status == "caught"
    assert call.error == "RetryableError"
    assert "dependency busy (attempt 4)" in (call.cause or "")
    items = {item["pk"]: item for item in runtime.items("AttemptsTable")}
    assert items["request#x1"] == {"pk": "request#x1", "status": "failed", "error": "RetryableError"}


def test_MaxDelaySecondsCapsTheBackoff(runtime_factory):
    runtime = runtime_factory(parameters={"FlakyFailures": "3"})

    result = runtime.run("BackoffFlow", {"key": "cap", "policy": "capped"})

    assert result.status == "SUCCEEDED"
    # IntervalSeconds 1, BackoffRate 10 => 1, 10, 100, capped at MaxDelaySeconds 5.
    assert result.trace().row("Call with capped backoff").retry_delays == pytest.approx([1.0, 5.0, 5.0])


def test_FullJitterIsBoundedAndReplayableBySeed(runtime_factory, fixture_template):
    from local_runtime import LocalRuntime

    def delays(seed: int) -> list[float]:
        with LocalRuntime(fixture_template, parameters={"FlakyFailures": "3"}, seed=seed) as runtime:
            result = runtime.run("BackoffFlow", {"key": "j", "policy": "jitter"})
            assert result.status == "SUCCEEDED"
            return result.trace().row("Call with full jitter").retry_delays

    first, again, other = delays(1), delays(1), delays(2)
    assert first == again
    assert first != other
    for delay, cap in zip(first, [2.0, 4.0, 8.0], strict=True):
        assert 0.0 <= delay <= cap


def test_SlowHandlerHitsTimeoutSecondsAndFallsBack(runtime_factory):
    runtime = runtime_factory()
    started = time.perf_counter()

    result = runtime.run("TimeoutFlow", {"seconds": 10})

    assert result.status == "SUCCEEDED"
    assert result.output == {"source": "fallback", "error": "States.Timeout"}
    row = result.trace().row("Call slow dependency")
    assert row.status == "caught"
    assert row.error == "States.Timeout"
    assert row.duration == pytest.approx(3.0)
    assert result.duration == pytest.approx(3.0)
    assert time.perf_counter() - started < 30


def test_FastHandlerFinishesWithinTimeoutSeconds(runtime_factory):
    runtime = runtime_factory()

    result = runtime.run("TimeoutFlow", {"seconds": 2})

    assert result.status == "SUCCEEDED"
    assert result.output == {"slept": 2.0}
    assert result.trace().states_visited() == ["Call slow dependency", "Done"]


def test_MapSetsAsideAPoisonItem(runtime_factory):
    runtime = runtime_factory()

    result = runtime.run("MapFlow", {"items": [{"id": 1}, {"id": 2, "fail": True}, {"id": 3}]})

    assert result.status == "SUCCEEDED"
    assert result.output["results"] == [
        {"id": 1, "status": "processed"},
        {"id": 2, "status": "rejected", "error": "ValidationError"},
        {"id": 3, "status": "processed"},
    ]
    trace = result.trace()
    caught = [row for row in trace.rows if row.name == "Process one item" and row.status == "caught"]
    assert len(caught) == 1
    assert caught[0].error == "ValidationError"
    assert trace.row("Set item aside").status == "succeeded"


def test_MapBranchesOverlapInVirtualTime(runtime_factory):
    # Two items sleep 5 s each with MaxConcurrency 2: the Map takes 5 s, not 10 s.
    runtime = runtime_factory()
    runtime.faults.add({"service": "lambda", "operation": "Invoke", "latency": 5})

    result = runtime.run("MapFlow", {"items": [{"id": 1}, {"id": 2}]})

    assert result.status == "SUCCEEDED"
    assert result.trace().row("Process items").duration == pytest.approx(5.0)


def test_WaitTenMinutesInVirtualTime(runtime_factory):
    runtime = runtime_factory()
    started = time.perf_counter()

    result = runtime.run("WaitFlow", {})

    assert result.status == "SUCCEEDED"
    assert result.duration == pytest.approx(600.0)
    woke = next(item for item in runtime.items("AttemptsTable") if item["pk"] == "wake-up")
    entered = datetime.fromisoformat(woke["at"].replace("Z", "+00:00"))
    assert (entered - result.start.astimezone(UTC)).total_seconds() == pytest.approx(600.0, abs=0.01)
    assert time.perf_counter() - started < 10
