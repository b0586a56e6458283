"""The breaker's policy, on the memory store with a fake clock (no real time)."""

from __future__ import annotations

import pytest

from resilience.breaker import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    MemoryBreakerStore,
    Transition,
)
from resilience.errors import BreakerStoreError, RetryableError, ValidationError


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Dependency:
    """A dependency that is up or down; counts how often it was actually called."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.up = True
        self.calls = 0
        self.latency = 0.0
        self.clock = clock

    def __call__(self, value: int = 0) -> int:
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.latency)
        if not self.up:
            raise RetryableError("dependency down")
        return value


def transient(exc: BaseException) -> bool:
    return isinstance(exc, RetryableError)


POLICY = BreakerPolicy(
    failure_threshold=3,
    failure_rate_threshold=50,
    window_seconds=60,
    minimum_calls=5,
    recovery_timeout=20,
    success_threshold=2,
    refresh_interval=5,
    probe_lease_seconds=10,
    is_failure=transient,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryBreakerStore:
    return MemoryBreakerStore()


def make(store, clock, policy=POLICY, **kwargs) -> CircuitBreaker:
    return CircuitBreaker("dynamodb.putMessage", store, policy, clock=clock, **kwargs)


def fail(breaker: CircuitBreaker, dependency: Dependency, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises((RetryableError, CircuitOpenError)):
            breaker.call(dependency)


def test_opens_after_the_failure_threshold_and_stops_calling(store, clock):
    breaker, dependency = make(store, clock), Dependency()
    dependency.up = False

    fail(breaker, dependency, 3)

    assert breaker.state() is BreakerState.OPEN
    with pytest.raises(CircuitOpenError) as rejected:
        breaker.call(dependency)
    assert dependency.calls == 3
    assert rejected.value.retry_after == 20


def test_caller_errors_never_count(store, clock):
    breaker = make(store, clock)

    def bad_request() -> None:
        raise ValidationError("bad input")

    for _ in range(10):
        with pytest.raises(ValidationError):
            breaker.call(bad_request)
    assert breaker.state() is BreakerState.CLOSED


def test_failure_rate_over_the_window_opens_with_enough_calls(store, clock):
    policy = BreakerPolicy(**{**POLICY.__dict__, "failure_threshold": 100})
    breaker, dependency = make(store, clock, policy), Dependency()
    for index in range(12):
        clock.advance(2)
        dependency.up = index % 2 == 0  # alternate: never 2 in a row, 50 % failures
        try:
            breaker.call(dependency)
        except (RetryableError, CircuitOpenError):
            pass
    assert breaker.state() is BreakerState.OPEN
    assert dependency.calls < 12


def test_rate_waits_for_the_window_to_hold_more_than_the_success_lag(store, clock):
    # Successes reach the table up to a refresh interval late: a young window looks worse than it is.
    policy = BreakerPolicy(**{**POLICY.__dict__, "failure_threshold": 100})
    breaker, dependency = make(store, clock, policy), Dependency()
    for index in range(6):
        dependency.up = index % 2 == 0
        try:
            breaker.call(dependency)
        except RetryableError:
            pass
    assert breaker.state() is BreakerState.CLOSED


def test_rate_needs_the_minimum_number_of_calls(store, clock):
    policy = BreakerPolicy(**{**POLICY.__dict__, "failure_threshold": 100, "minimum_calls": 10})
    breaker, dependency = make(store, clock, policy), Dependency()
    dependency.up = False
    fail(breaker, dependency, 9)
    assert breaker.state() is BreakerState.CLOSED


def test_slow_calls_count_as_failures(store, clock):
    policy = BreakerPolicy(**{**POLICY.__dict__, "slow_call_seconds": 0.5})
    breaker, dependency = make(store, clock, policy), Dependency(clock)
    dependency.latency = 2.0
    for _ in range(2):
        assert breaker.call(dependency, 7) == 7  # slow but answered: the caller still gets the result
    assert (breaker.stats().slow_calls, breaker.stats().failures) == (2, 2)
    breaker.call(dependency, 7)
    # Opening starts a fresh window (a new version of the record).
    assert breaker.state() is BreakerState.OPEN
    assert breaker.stats().calls == 0


def test_fallback_answers_while_open(store, clock):
    seen = []

    def fallback(value: int, *, circuit) -> str:
        seen.append((value, circuit.state))
        return "parked"

    breaker, dependency = make(store, clock, on_circuit_open=fallback), Dependency()
    dependency.up = False
    fail(breaker, dependency, 3)

    answer: object = breaker.call(dependency, 5)  # the fallback answers in the dependency's place
    assert answer == "parked"
    assert seen == [(5, BreakerState.OPEN)]
    assert dependency.calls == 3


def test_half_open_probe_then_close_after_success_threshold(store, clock):
    transitions: list[Transition] = []
    breaker, dependency = make(store, clock, on_transition=transitions.append), Dependency()
    dependency.up = False
    fail(breaker, dependency, 3)
    clock.advance(19)
    fail(breaker, dependency)  # still OPEN: not called
    assert dependency.calls == 3

    clock.advance(1)
    dependency.up = True
    assert breaker.call(dependency, 1) == 1  # probe 1
    assert breaker.state() is BreakerState.HALF_OPEN
    assert breaker.call(dependency, 2) == 2  # probe 2 closes (seed 004: 2 successes)
    assert breaker.state() is BreakerState.CLOSED
    assert [(t.from_state, t.to_state) for t in transitions] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_failed_probe_reopens_for_another_recovery_timeout(store, clock):
    breaker, dependency = make(store, clock), Dependency()
    dependency.up = False
    fail(breaker, dependency, 3)
    clock.advance(20)
    fail(breaker, dependency)  # the probe, fails
    assert dependency.calls == 4
    assert breaker.state() is BreakerState.OPEN
    clock.advance(19)
    fail(breaker, dependency)
    assert dependency.calls == 4


def test_only_one_probe_across_environments(store, clock):
    first, second = make(store, clock), make(store, clock)
    dependency = Dependency()
    dependency.up = False
    fail(first, dependency, 3)
    clock.advance(20)

    blocked: list[CircuitOpenError] = []

    def probe_while_another_tries() -> int:
        # While the first environment's probe is in flight, the second is refused.
        try:
            second.call(dependency)
        except CircuitOpenError as exc:
            blocked.append(exc)
        return 1

    dependency.up = True
    assert first.call(probe_while_another_tries) == 1
    assert len(blocked) == 1
    assert dependency.calls == 3


def test_an_expired_probe_lease_lets_another_environment_probe(store, clock):
    first, second = make(store, clock), make(store, clock)
    dependency = Dependency()
    dependency.up = False
    fail(first, dependency, 3)
    clock.advance(20)

    def vanish() -> None:
        # The probing environment is frozen mid-call and never reports.
        clock.advance(11)
        dependency.up = True
        assert second.call(dependency, 9) == 9  # lease (10 s) expired: second probes

    first._admit()  # first takes the lease and never reports
    vanish()
    assert dependency.calls == 4


def test_fleet_opens_when_enough_environments_are_failing(store, clock):
    fleet = [make(store, clock) for _ in range(5)]
    dependency = Dependency()
    for breaker in fleet:
        breaker.call(dependency)  # healthy: every environment has a cached CLOSED view
    calls_before = dependency.calls
    dependency.up = False
    for breaker in fleet:
        fail(breaker, dependency)  # one failure each: nobody is "failing" yet
    assert all(b.stats().state is BreakerState.CLOSED for b in fleet[:1])
    for breaker in fleet:
        fail(breaker, dependency)
    # The third environment to fail twice in a row makes three failing environments
    # (the policy's threshold) and opens the breaker; the other two re-read before
    # calling again (a failure invalidates the cached view) and are refused.
    assert dependency.calls - calls_before == 5 + 3
    assert all(b.state() is BreakerState.OPEN for b in fleet)
    for breaker in fleet:
        fail(breaker, dependency)
    assert dependency.calls - calls_before == 8


def test_a_low_error_rate_across_a_busy_fleet_never_opens(store, clock):
    # 50 environments share 1000 calls/s with 1 % of them failing at random: each
    # environment's own streaks stay short, so no breaker opens (a fleet-wide
    # "consecutive" count, fed by successes reported late, would open it every few seconds).
    import random

    policy = BreakerPolicy(**{**POLICY.__dict__, "refresh_interval": 15})
    rng = random.Random(7)
    fleet = [make(store, clock, policy, rng=random.Random(i)) for i in range(50)]
    dependency = Dependency()
    refused = 0
    for _ in range(30_000):
        clock.advance(0.001)
        dependency.up = rng.random() >= 0.01
        try:
            rng.choice(fleet).call(dependency)
        except RetryableError:
            pass
        except CircuitOpenError:
            refused += 1
    assert refused == 0
    assert fleet[0].stats().state is BreakerState.CLOSED


def test_closed_success_path_makes_at_most_one_store_request_per_refresh(store, clock):
    policy = BreakerPolicy(**{**POLICY.__dict__, "window_seconds": 600})
    breaker, dependency = make(store, clock, policy), Dependency()
    breaker.call(dependency)
    before = store.requests
    for _ in range(60):  # one call per second for a minute
        clock.advance(1)
        breaker.call(dependency)
    assert store.requests - before <= 60 / POLICY.refresh_interval + 1
    breaker.flush()
    assert breaker.stats().calls == 61


def test_store_down_fails_open_for_availability(clock):
    class DownStore(MemoryBreakerStore):
        def get(self, name):
            raise BreakerStoreError("table down")

        def add(self, name, update):
            raise BreakerStoreError("table down")

    breaker, dependency = make(DownStore(), clock), Dependency()
    assert breaker.call(dependency, 3) == 3


def test_store_down_fails_closed_on_the_security_path(clock):
    class DownStore(MemoryBreakerStore):
        def get(self, name):
            raise BreakerStoreError("table down")

    policy = BreakerPolicy(**{**POLICY.__dict__, "fail_closed_on_store_error": True})
    breaker, dependency = make(DownStore(), clock, policy), Dependency()
    with pytest.raises(CircuitOpenError):
        breaker.call(dependency)
    assert dependency.calls == 0


class SlowStore(MemoryBreakerStore):
    """The Breakers table behind its client: every request takes ``latency`` virtual seconds;
    while ``down``, it times out after the client's ``timeout`` instead."""

    def __init__(self, clock: Clock, *, latency: float = 0.0, timeout: float = 1.0) -> None:
        super().__init__()
        self.clock, self.latency, self.timeout = clock, latency, timeout
        self.down = False

    def _wait(self) -> None:
        self.requests += 1 if self.down else 0  # the memory store counts the ones it serves
        self.clock.advance(self.timeout if self.down else self.latency)
        if self.down:
            raise BreakerStoreError("Breakers table timed out")

    def get(self, name):
        self._wait()
        return super().get(name)

    def add(self, name, update):
        self._wait()
        return super().add(name, update)

    def change(self, name, change, *, expected_version):
        self._wait()
        return super().change(name, change, expected_version=expected_version)


def test_a_view_is_dated_from_when_the_store_answered(clock):
    # The store answers after 8 s, longer than the 5 s refresh interval: the view must still
    # be fresh on arrival, or every call would go back to the store.
    store = SlowStore(clock, latency=8)
    breaker, dependency = make(store, clock), Dependency()
    breaker.call(dependency)
    asked, started = store.requests, clock.now
    for _ in range(3):
        breaker.call(dependency)
    assert (store.requests - asked, clock.now - started) == (0, 0)


def test_a_failing_store_costs_one_timeout_per_refresh_interval_not_one_per_call(clock):
    store = SlowStore(clock)
    store.down = True
    breaker, dependency = make(store, clock), Dependency()
    waited = 0.0
    for second in range(60):  # a call a second for a minute, half of them failing
        dependency.up = second % 2 == 0
        before = clock.now
        try:
            breaker.call(dependency)
        except RetryableError:
            pass
        waited += clock.now - before
        clock.advance(1)
    # Availability wins: every call reached the dependency...
    assert dependency.calls == 60
    # ...and the store was asked (and waited for) once per refresh interval (5 s, up to 20 % shorter).
    looks = store.requests
    assert 60 / 5 <= looks <= 60 / (5 * 0.8) + 1
    assert waited == pytest.approx(looks * store.timeout)


def test_what_a_down_store_missed_is_reported_when_it_answers_again(clock):
    store = SlowStore(clock)
    breaker, dependency = make(store, clock), Dependency()
    breaker.call(dependency)
    store.down = True
    clock.advance(POLICY.refresh_interval)
    for _ in range(4):
        breaker.call(dependency)
    dependency.up = False
    fail(breaker, dependency)
    store.down = False
    clock.advance(POLICY.refresh_interval)
    breaker.call(Dependency())  # a healthy call after the interval flushes what was missed
    breaker.flush()
    stats = breaker.stats()
    assert (stats.calls, stats.failures) == (7, 1)


def test_a_failing_store_fails_closed_on_the_security_path_for_one_interval(clock):
    store = SlowStore(clock)
    store.down = True
    policy = BreakerPolicy(**{**POLICY.__dict__, "fail_closed_on_store_error": True, "refresh_jitter": 0})
    breaker, dependency = make(store, clock, policy), Dependency()
    started = clock.now
    for _ in range(10):
        with pytest.raises(CircuitOpenError):
            breaker.call(dependency)
    # Refused without calling the dependency, and the store was waited for once.
    assert (dependency.calls, store.requests, clock.now - started) == (0, 1, store.timeout)
    store.down = False
    clock.advance(policy.refresh_interval)
    assert breaker.call(dependency, 7) == 7


def test_flush_with_nothing_to_report_makes_no_request(store, clock):
    breaker, dependency = make(store, clock), Dependency()
    breaker.call(dependency)
    breaker.flush()
    asked = store.requests
    breaker.flush()
    assert store.requests == asked


def test_the_security_path_breakers_fail_closed_and_the_others_open():
    from resilience.breaker import policy_for

    assert policy_for("cognito.verifyJwt", {}).fail_closed_on_store_error
    assert policy_for("dynamodb.tokenBlacklist", {}).fail_closed_on_store_error
    assert not policy_for("apigateway.postToConnection", {}).fail_closed_on_store_error
    assert not policy_for("dynamodb.putMessage", {}).fail_closed_on_store_error
    assert not policy_for("unknown.thing", {}).fail_closed_on_store_error


def test_force_open_holds_until_reset(store, clock):
    breaker, dependency = make(store, clock), Dependency()
    breaker.force_open()
    clock.advance(3600)
    with pytest.raises(CircuitOpenError):
        breaker.call(dependency)
    assert breaker.stats().forced
    breaker.reset()
    assert breaker.call(dependency, 4) == 4
    assert breaker.stats().state is BreakerState.CLOSED


def test_stats_report_the_window(store, clock):
    breaker, dependency = make(store, clock), Dependency()
    breaker.call(dependency)
    dependency.up = False
    fail(breaker, dependency, 2)
    stats = breaker.stats()
    assert (stats.state, stats.calls, stats.failures, stats.failing_environments) == (BreakerState.CLOSED, 3, 2, 1)
    assert stats.failure_rate == pytest.approx(2 / 3)
    assert stats.last_failure_at == clock.now
    clock.advance(61)
    assert breaker.stats().calls == 0  # the window moved on


def test_decorator_and_guard(store, clock):
    breaker = make(store, clock)

    @breaker
    def double(x: int) -> int:
        return 2 * x

    assert double(4) == 8
    with breaker.guard():
        pass
    with pytest.raises(RetryableError), breaker.guard():
        raise RetryableError("down")
    assert breaker.stats().failures == 1


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="failure_threshold"):
        BreakerPolicy(failure_threshold=0)
    with pytest.raises(ValueError, match="percentage"):
        BreakerPolicy(failure_rate_threshold=150)


def test_policy_from_env_prefers_the_dependencys_own_variable_and_names_a_bad_one():
    from resilience.breaker import policy_from_env
    from resilience.errors import ConfigurationError

    env = {"BW_BREAKER_RECOVERY_SECONDS": "40", "BW_BREAKER_APIGATEWAY_RECOVERY_SECONDS": "12"}
    assert policy_from_env("apigateway", env).recovery_timeout == 12
    assert policy_from_env("dynamodb", env).recovery_timeout == 40
    with pytest.raises(ConfigurationError, match="BW_BREAKER_COGNITO_WINDOW_SECONDS"):
        policy_from_env("cognito", {"BW_BREAKER_COGNITO_WINDOW_SECONDS": "a minute"})
