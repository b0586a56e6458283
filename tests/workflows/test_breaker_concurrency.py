"""Fifty environments on one Breakers table (moto, through the offline runtime)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from resilience.breaker import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    DynamoDBBreakerStore,
)
from resilience.breaker.store import StateChange
from resilience.errors import RetryableError

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = 50


@pytest.fixture
def store():
    from local_runtime import LocalRuntime

    with LocalRuntime(ROOT / "template.yaml") as runtime:
        yield DynamoDBBreakerStore("BreakersTable", runtime.client("dynamodb"))


def policy(**overrides) -> BreakerPolicy:
    base = {"refresh_interval": 0, "recovery_timeout": 15, "is_failure": lambda e: isinstance(e, RetryableError)}
    return BreakerPolicy(**{**base, **overrides})


def run_together(work) -> None:
    barrier = threading.Barrier(ENVIRONMENTS)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            work(index)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(ENVIRONMENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors[:3]


def test_HalfOpenAdmitsExactlyOneProbeAcrossFiftyEnvironments(store):
    import time

    now = time.time()
    store.change(
        "apigateway.postToConnection",
        StateChange(BreakerState.OPEN, opened_at=now - 60, next_attempt_at=now - 1, at=now - 60),
        expected_version=0,
    )
    fleet = [CircuitBreaker("apigateway.postToConnection", store, policy()) for _ in range(ENVIRONMENTS)]
    probes: list[int] = []
    refused: list[int] = []
    everyone_tried = threading.Event()
    lock = threading.Lock()

    def probe(index: int) -> str:
        with lock:
            probes.append(index)
        # Stay in flight until every other environment has had its chance.
        everyone_tried.wait(timeout=30)
        return "delivered"

    def attempt(index: int) -> None:
        try:
            fleet[index].call(probe, index)
        except CircuitOpenError:
            with lock:
                refused.append(index)
                if len(refused) == ENVIRONMENTS - 1:
                    everyone_tried.set()

    run_together(attempt)

    assert len(probes) == 1
    assert len(refused) == ENVIRONMENTS - 1
    record = store.get("apigateway.postToConnection")
    assert record is not None
    assert record.state is BreakerState.HALF_OPEN
    assert record.half_open_successes == 1


def test_NoCounterUpdateIsLostUnderConcurrency(store):
    never_trips = policy(
        failure_threshold=10_000, failure_rate_threshold=100, minimum_calls=10_000, window_seconds=3600
    )

    def hammer(index: int) -> None:
        breaker = CircuitBreaker("dynamodb.putMessage", store, never_trips)

        def down() -> None:
            raise RetryableError("throttled")

        for _ in range(10):
            breaker.call(lambda: None)
            with pytest.raises(RetryableError):
                breaker.call(down)
        breaker.flush()

    run_together(hammer)

    stats = CircuitBreaker("dynamodb.putMessage", store, never_trips).stats()
    assert (stats.calls, stats.failures) == (ENVIRONMENTS * 20, ENVIRONMENTS * 10)
    assert stats.state is BreakerState.CLOSED
