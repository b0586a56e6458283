"""One store test suite, run against every store: memory and DynamoDB (moto).

The DynamoDB store is exercised on the Breakers table the real template
declares, created by the offline runtime.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience.breaker import BreakerState, Counts, DynamoDBBreakerStore, MemoryBreakerStore
from resilience.breaker.store import BreakerStore, CountUpdate, StateChange
from resilience.errors import BreakerStoreError

ROOT = Path(__file__).resolve().parents[2]
NAME = "apigateway.postToConnection"


@pytest.fixture(params=["memory", "dynamodb"])
def store(request) -> Iterator[BreakerStore]:
    if request.param == "memory":
        yield MemoryBreakerStore()
        return
    from local_runtime import LocalRuntime

    with LocalRuntime(ROOT / "template.yaml") as runtime:
        yield DynamoDBBreakerStore("BreakersTable", runtime.client("dynamodb"))


def counts(calls: int, failures: int = 0, slow: int = 0, **kwargs) -> CountUpdate:
    return CountUpdate(version=0, bucket=100, delta=Counts(calls, failures, slow), at=1000.0, **kwargs)


def test_an_unknown_breaker_has_no_record(store):
    assert store.get(NAME) is None


def test_add_creates_a_closed_record_and_accumulates(store):
    first = store.add(NAME, counts(2, 1))
    second = store.add(NAME, counts(3, 2, 1))
    assert first.state is BreakerState.CLOSED
    assert second.version == 0
    assert second.buckets == {100: Counts(5, 3, 1)}
    assert second.last_failure_at == 1000.0
    assert second.last_success_at == 1000.0
    assert store.get(NAME) == second


def test_failing_environments_mark_and_unmark_themselves(store):
    store.add(NAME, CountUpdate(0, 100, Counts(1, 1), at=1000.0, mark="env-a"))
    both = store.add(NAME, CountUpdate(0, 100, Counts(1, 1), at=1001.0, mark="env-b"))
    assert both.marks == {"env-a": 1000.0, "env-b": 1001.0}
    assert both.failing_environments(now=1002.0, window_seconds=60) == 2
    assert both.failing_environments(now=1060.5, window_seconds=60) == 1  # env-a's mark expired
    recovered = store.add(NAME, CountUpdate(0, 100, Counts(1), at=1003.0, unmark="env-a"))
    assert recovered.marks == {"env-b": 1001.0}


def test_change_is_compare_and_set_on_the_version(store):
    store.add(NAME, counts(1, 1, mark="env-a"))
    opened = store.change(
        NAME, StateChange(BreakerState.OPEN, opened_at=1000.0, next_attempt_at=1020.0, at=1000.0), expected_version=0
    )
    assert opened is not None
    assert (opened.state, opened.version, opened.next_attempt_at) == (BreakerState.OPEN, 1, 1020.0)
    # The window and the marks start afresh with the new version.
    assert opened.buckets == {}
    assert opened.marks == {}
    lost = store.change(NAME, StateChange(BreakerState.OPEN, opened_at=1001.0, at=1001.0), expected_version=0)
    assert lost is None
    assert store.get(NAME) == opened


def test_change_on_a_missing_record_with_version_zero_creates_it(store):
    record = store.change(NAME, StateChange(BreakerState.OPEN, opened_at=5.0, at=5.0), expected_version=0)
    assert record is not None
    assert record.version == 1


def test_unconditional_change_and_removed_fields(store):
    store.change(
        NAME,
        StateChange(BreakerState.HALF_OPEN, probe_owner="env-1", probe_lease_until=1030.0, half_open_successes=1),
        expected_version=None,
    )
    probing = store.get(NAME)
    assert probing is not None
    assert (probing.probe_owner, probing.probe_lease_until, probing.half_open_successes) == ("env-1", 1030.0, 1)
    closed = store.change(NAME, StateChange(BreakerState.CLOSED, at=1040.0), expected_version=None)
    assert closed is not None
    assert (closed.state, closed.probe_owner, closed.probe_lease_until, closed.half_open_successes) == (
        BreakerState.CLOSED,
        None,
        None,
        0,
    )


def test_counters_of_old_versions_are_ignored_and_pruned(store):
    store.add(NAME, counts(4, 4, mark="env-a"))
    store.change(NAME, StateChange(BreakerState.CLOSED, at=1.0), expected_version=None)
    record = store.get(NAME)
    assert record is not None
    assert record.buckets == {}
    assert set(record.stale_counters) == {"n0_100", "f0_100", "m0_env-a"}
    pruned = store.add(NAME, CountUpdate(1, 200, Counts(1), at=2.0, prune=record.stale_counters))
    assert pruned.stale_counters == ()
    assert pruned.buckets == {200: Counts(1)}


def test_names_lists_every_breaker(store):
    store.add("b.two", counts(1))
    store.add("a.one", counts(1))
    assert store.names() == ["a.one", "b.two"]


def test_dynamodb_store_errors_become_breaker_store_errors():
    from local_runtime import LocalRuntime

    faults = [{"service": "dynamodb", "resource": "BreakersTable", "error": "InternalServerError"}]
    with LocalRuntime(ROOT / "template.yaml", faults=faults):
        import boto3
        from botocore.config import Config

        client = boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
        store = DynamoDBBreakerStore("BreakersTable", client)
        with pytest.raises(BreakerStoreError):
            store.get(NAME)
        with pytest.raises(BreakerStoreError):
            store.add(NAME, counts(1))
        with pytest.raises(BreakerStoreError):
            store.change(NAME, StateChange(BreakerState.OPEN), expected_version=0)


def test_the_breaker_store_client_times_out_once_within_its_short_read_timeout():
    # A Breakers table slower than any client would wait: the store's own client (1 s read
    # timeout, one attempt) gives up after one second, not after 3 attempts at 5 s.
    from local_runtime import LocalRuntime
    from resilience.clients import Clients, ClientSettings

    faults = [{"service": "dynamodb", "resource": "BreakersTable", "latency": 12}]
    with LocalRuntime(ROOT / "template.yaml", faults=faults) as runtime:
        store = DynamoDBBreakerStore("BreakersTable", Clients(settings=ClientSettings.from_env({})).breaker_store())
        started = runtime.clock.now()
        with pytest.raises(BreakerStoreError):
            store.get(NAME)
        assert runtime.clock.now() - started == pytest.approx(1.0)
        assert len(runtime.faults.log) == 1
