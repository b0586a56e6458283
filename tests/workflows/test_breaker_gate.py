"""ASL reads the breaker's item directly: dynamodb:getItem + Choice, no Lambda."""

from __future__ import annotations

import pytest

from resilience.breaker import BreakerPolicy, CircuitBreaker, DynamoDBBreakerStore
from resilience.errors import RetryableError

NAME = "apigateway.postToConnection"


@pytest.fixture
def setup(runtime_factory):
    runtime = runtime_factory()
    store = DynamoDBBreakerStore("BreakersTable", runtime.client("dynamodb"))
    policy = BreakerPolicy(failure_threshold=2, recovery_timeout=15, refresh_interval=0, is_failure=lambda e: True)
    return runtime, CircuitBreaker(NAME, store, policy)


def outcome(runtime) -> str:
    result = runtime.start_sync_execution("GatedFlow", {"breaker": NAME})
    assert result["status"] == "SUCCEEDED", result
    import json

    return str(json.loads(result["output"])["outcome"])


def trip(breaker: CircuitBreaker) -> None:
    def down() -> None:
        raise RetryableError("down")

    for _ in range(2):
        with pytest.raises(RetryableError):
            breaker.call(down)


def test_UnknownBreakerLetsTheCallThrough(setup):
    runtime, _ = setup
    assert outcome(runtime) == "called"


def test_OpenBreakerParksUntilItsNextAttempt(setup):
    runtime, breaker = setup
    trip(breaker)
    assert outcome(runtime) == "parked"
    runtime.clock.advance(16)
    # Past nextAttemptAt the gate lets one call through: the Python breaker elects it as the probe.
    assert outcome(runtime) == "called"


def test_ForcedOpenAndHalfOpenPark(setup):
    runtime, breaker = setup
    breaker.force_open()
    assert outcome(runtime) == "parked"
    breaker.reset()
    assert outcome(runtime) == "called"
    trip(breaker)
    runtime.clock.advance(16)
    breaker._admit()  # an environment takes the probe lease: HALF_OPEN
    assert outcome(runtime) == "parked"
