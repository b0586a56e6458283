"""A fleet of 50 execution environments meets an outage: breakwater vs Powertools.

Prints figures, asserts nothing. Both breakers run in the same process on the
same virtual schedule, each on its own table in moto (the offline runtime),
with the same thresholds (seed 003's postToConnection: 5 failures, 15 s
recovery, 2 successes to close; Powertools' default 5 s local cache):

* every environment calls the dependency twice a second;
* the dependency dies at t=60 s and recovers at t=180 s;
* each environment has its own breaker instance and local cache (for
  Powertools, its own module-level counters and probe owner id: one process
  stands in for 50 containers).

A dead call is a *probe* when the shared record is HALF_OPEN while it runs
(the breaker elected it), otherwise it is *wasted* (the environment had not
heard of the outage). The floor is one wasted call per environment.

Last line: ``wasted_per_env=… wasted_ratio=… ddb_per_env_min=… probes=…``.
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "resilience")]

from local_runtime import LocalRuntime  # noqa: E402
from resilience.breaker import (  # noqa: E402
    BreakerPolicy,
    CircuitBreaker,
    DynamoDBBreakerStore,
    Transition,
)
from resilience.errors import ServiceTimeoutError  # noqa: E402

ENVIRONMENTS = 50
CALLS_PER_SECOND = 2
DIES_AT, RECOVERS_AT, ENDS_AT = 60.0, 180.0, 240.0
#: Healthy steady state for the store-traffic figure: after every environment's cold start.
STEADY_FROM = 20.0
BREAKER = "apigateway.postToConnection"


def peek_state(table: str, key: dict[str, Any]) -> str:
    """The shared record's state, read from moto's memory: the observer must not add traffic."""
    from moto.dynamodb.models import dynamodb_backends

    item = dynamodb_backends["123456789012"]["us-east-1"].get_item(table, key)
    return str(item.attrs["state"].value) if item is not None else "CLOSED"


class CountingClient:
    """One environment's DynamoDB client: counts the requests it makes."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.requests = 0
        self.healthy_requests = 0
        self.elapsed: Callable[[], float] = lambda: 0.0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            if STEADY_FROM <= self.elapsed() < DIES_AT:
                self.healthy_requests += 1
            return method(*args, **kwargs)

        return counted


@dataclass
class Outcome:
    name: str
    wasted: int = 0
    probes: int = 0
    attempts: int = 0
    last_wasted_at: float = 0.0
    clients: list[CountingClient] = field(default_factory=list)

    @property
    def wasted_per_env(self) -> float:
        return self.wasted / ENVIRONMENTS

    @property
    def ddb_per_env_min(self) -> float:
        return sum(c.healthy_requests for c in self.clients) / ENVIRONMENTS / ((DIES_AT - STEADY_FROM) / 60)


class Dependency:
    def __init__(self, elapsed: Callable[[], float], shared_state: Callable[[], str], outcome: Outcome) -> None:
        self.elapsed, self.shared_state, self.outcome = elapsed, shared_state, outcome

    def __call__(self) -> str:
        t = self.elapsed()
        if DIES_AT <= t < RECOVERS_AT:
            if self.shared_state() == "HALF_OPEN":
                self.outcome.probes += 1
            else:
                self.outcome.wasted += 1
                self.outcome.last_wasted_at = t
            raise ServiceTimeoutError("postToConnection timed out")
        if self.shared_state() == "HALF_OPEN":
            self.outcome.probes += 1
        return "delivered"


def schedule(seed: int) -> list[tuple[float, int]]:
    """(time, environment) of every call: each environment twice a second, out of phase."""
    rng = random.Random(seed)
    phase = [rng.random() / CALLS_PER_SECOND for _ in range(ENVIRONMENTS)]
    calls = [
        (tick / CALLS_PER_SECOND + phase[env], env)
        for tick in range(int(ENDS_AT * CALLS_PER_SECOND))
        for env in range(ENVIRONMENTS)
    ]
    return sorted(calls)


def run_breakwater(runtime: LocalRuntime, calls: list[tuple[float, int]]) -> Outcome:
    import boto3

    outcome = Outcome("breakwater")
    start = runtime.clock.now()

    def elapsed() -> float:
        return runtime.clock.now() - start

    def shared_state() -> str:
        return peek_state("BreakersTable", {"name": {"S": BREAKER}})

    def count(transition: Transition) -> None:
        if str(transition.to_state) == "HALF_OPEN":
            outcome.attempts += 1

    policy = BreakerPolicy(
        failure_threshold=5,
        failure_rate_threshold=50,
        window_seconds=30,
        minimum_calls=3,
        recovery_timeout=15,
        success_threshold=2,
        refresh_interval=15,
        is_failure=lambda exc: isinstance(exc, ServiceTimeoutError),
    )
    fleet = []
    for _ in range(ENVIRONMENTS):
        client = CountingClient(boto3.client("dynamodb", region_name="us-east-1"))
        client.elapsed = elapsed
        outcome.clients.append(client)
        store = DynamoDBBreakerStore("BreakersTable", client)
        fleet.append(CircuitBreaker(BREAKER, store, policy, on_transition=count))
    dependency = Dependency(elapsed, shared_state, outcome)
    for at, env in calls:
        runtime.clock.advance_to(start + at)
        try:
            fleet[env].call(dependency)
        except Exception:  # noqa: BLE001 - open breakers and dead calls are the point
            pass
    return outcome


def run_powertools(runtime: LocalRuntime, calls: list[tuple[float, int]]) -> Outcome:
    import boto3
    from aws_lambda_powertools.utilities.circuit_breaker import (
        CircuitBreakerConfig,
        CircuitTransition,
        circuit_breaker,
    )
    from aws_lambda_powertools.utilities.circuit_breaker import base as powertools_base
    from aws_lambda_powertools.utilities.circuit_breaker.persistence import CircuitBreakerDynamoDBPersistence

    outcome = Outcome("Powertools")
    start = runtime.clock.now()

    def elapsed() -> float:
        return runtime.clock.now() - start

    raw = runtime.client("dynamodb")
    raw.create_table(
        TableName="PowertoolsBreakers",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def shared_state() -> str:
        return peek_state("PowertoolsBreakers", {"id": {"S": BREAKER}})

    def count(transition: CircuitTransition) -> None:
        if str(transition.to_state) == "HALF_OPEN":
            outcome.attempts += 1

    config = CircuitBreakerConfig(failure_threshold=5, recovery_timeout=15, success_threshold=2, local_cache_max_age=5)
    dependency = Dependency(elapsed, shared_state, outcome)

    @dataclass
    class Environment:
        """What a separate container would hold in its own module globals."""

        call: Callable[[], str]
        failures: dict[str, int] = field(default_factory=dict)
        successes: dict[str, int] = field(default_factory=dict)
        observed: dict[str, Any] = field(default_factory=dict)
        owner: threading.local = field(default_factory=threading.local)

    fleet = []
    for _ in range(ENVIRONMENTS):
        client = CountingClient(boto3.client("dynamodb", region_name="us-east-1"))
        client.elapsed = elapsed
        outcome.clients.append(client)
        persistence = CircuitBreakerDynamoDBPersistence(table_name="PowertoolsBreakers", boto3_client=client)  # type: ignore[arg-type]
        protected = circuit_breaker(BREAKER, persistence_store=persistence, config=config, on_transition=count)(
            dependency
        )
        fleet.append(Environment(protected))
    for at, env in calls:
        runtime.clock.advance_to(start + at)
        environment = fleet[env]
        # Swap in this container's module-level state: one process plays 50 containers.
        powertools_base._LOCAL_FAILURES = environment.failures  # type: ignore[attr-defined]
        powertools_base._LOCAL_SUCCESSES = environment.successes  # type: ignore[attr-defined]
        powertools_base._LAST_OBSERVED_STATE = environment.observed  # type: ignore[attr-defined]
        powertools_base._PROBE_OWNER = environment.owner  # type: ignore[attr-defined]
        try:
            environment.call()
        except Exception:  # noqa: BLE001 - open breakers and dead calls are the point
            pass
    return outcome


def main() -> None:
    import logging

    logging.disable(logging.WARNING)  # both libraries log every transition and store hiccup
    calls = schedule(seed=3)
    with LocalRuntime(ROOT / "template.yaml") as runtime:
        ours = run_breakwater(runtime, calls)
    with LocalRuntime(ROOT / "template.yaml") as runtime:
        theirs = run_powertools(runtime, calls)

    def per_attempt(outcome: Outcome) -> float:
        # The last attempt succeeds and needs success_threshold (2) probes, one after the other.
        return (outcome.probes - 2) / (outcome.attempts - 1) if outcome.attempts > 1 else float("nan")

    def stopped(outcome: Outcome) -> float:
        return max(0.0, outcome.last_wasted_at - DIES_AT)

    rows = [
        ("calls to the dead dependency (wasted), per env", ours.wasted_per_env, theirs.wasted_per_env, "{:.2f}"),
        ("  in total", ours.wasted, theirs.wasted, "{:.0f}"),
        ("seconds until the fleet stopped calling", stopped(ours), stopped(theirs), "{:.1f}"),
        ("DynamoDB requests per env per minute (healthy)", ours.ddb_per_env_min, theirs.ddb_per_env_min, "{:.2f}"),
        ("probes (calls while HALF_OPEN)", ours.probes, theirs.probes, "{:.0f}"),
        ("recovery attempts (OPEN -> HALF_OPEN)", ours.attempts, theirs.attempts, "{:.0f}"),
        ("probes per failed recovery attempt", per_attempt(ours), per_attempt(theirs), "{:.2f}"),
    ]
    print(
        f"{ENVIRONMENTS} environments x {CALLS_PER_SECOND} calls/s; dependency dead from {DIES_AT:.0f}s to "
        f"{RECOVERS_AT:.0f}s (virtual)"
    )
    print(f"{'figure':<50}{'breakwater':>12}{'Powertools':>12}")
    for label, a, b, fmt in rows:
        print(f"{label:<50}{fmt.format(a):>12}{fmt.format(b):>12}")
    ratio = theirs.wasted / ours.wasted if ours.wasted else float("inf")
    print(f"wasted calls: Powertools / breakwater = {ratio:.2f}x (floor: 1.00 per env)")
    print(f"store traffic measured from t={STEADY_FROM:.0f}s (after cold starts) to the outage")
    print(
        f"wasted_per_env={ours.wasted_per_env:.2f} wasted_ratio={ratio:.2f} "
        f"ddb_per_env_min={ours.ddb_per_env_min:.2f} probes={ours.probes}"
    )


if __name__ == "__main__":
    main()
