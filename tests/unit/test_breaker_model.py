"""The breaker against a small pure reference model of its policy.

Hypothesis drives random sequences of successes, failures, slow calls and
clock advances through one environment (refresh interval 0, so every step
reads the store) and checks, after every step, that the breaker let the call
through exactly when the model says so and is in the model's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from resilience.breaker import BreakerPolicy, BreakerState, CircuitBreaker, CircuitOpenError, MemoryBreakerStore
from resilience.errors import RetryableError

POLICY = BreakerPolicy(
    failure_threshold=3,
    failure_rate_threshold=50,
    window_seconds=30,
    minimum_calls=4,
    slow_call_seconds=1.0,
    recovery_timeout=15,
    success_threshold=2,
    refresh_interval=0,
    probe_lease_seconds=10,
    is_failure=lambda exc: isinstance(exc, RetryableError),
)
CALL_TIME = 0.001  # every call takes a moment, so outcomes are ordered in time


@dataclass
class Model:
    """The policy, stated plainly."""

    state: BreakerState = BreakerState.CLOSED
    next_attempt_at: float = 0.0
    consecutive: int = 0
    half_open_successes: int = 0
    events: list[tuple[float, bool]] = field(default_factory=list)  # (time, failed) since the last transition
    since: float | None = None  # the last transition, or the first outcome ever

    def admits(self, now: float) -> bool:
        return self.state is BreakerState.CLOSED or now >= self.next_attempt_at

    def outcome(self, now: float, failed: bool) -> None:
        if self.since is None:
            self.since = now
        if self.state is BreakerState.CLOSED:
            self.events.append((now, failed))
            self.consecutive = self.consecutive + 1 if failed else 0
            if failed and self._trips(now):
                self._open(now)
        elif failed:
            self._open(now)
        else:
            self.half_open_successes += 1
            if self.half_open_successes >= POLICY.success_threshold:
                self.state, self.consecutive, self.events, self.since = BreakerState.CLOSED, 0, [], now
            else:
                self.state = BreakerState.HALF_OPEN

    def _trips(self, now: float) -> bool:
        if self.consecutive >= POLICY.failure_threshold:
            return True
        width = POLICY.bucket_seconds
        # The rate is judged once the window holds more than the success-reporting lag.
        if self.since is None or now - self.since < POLICY.refresh_interval + width:
            return False
        recent = [failed for at, failed in self.events if int(at // width) * width > now - POLICY.window_seconds]
        return len(recent) >= POLICY.minimum_calls and sum(recent) * 100 >= POLICY.failure_rate_threshold * len(recent)

    def _open(self, now: float) -> None:
        self.state, self.next_attempt_at, self.since = BreakerState.OPEN, now + POLICY.recovery_timeout, now
        self.consecutive, self.half_open_successes, self.events = 0, 0, []


class BreakerVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 50_000.0
        self.breaker = CircuitBreaker("model", MemoryBreakerStore(), POLICY, clock=lambda: self.now)
        self.model = Model()

    def _call(self, latency: float, fails: bool) -> None:
        admitted = self.model.admits(self.now)
        called = []

        def dependency() -> None:
            called.append(True)
            self.now += latency
            if fails:
                raise RetryableError("down")

        try:
            self.breaker.call(dependency)
        except (RetryableError, CircuitOpenError):
            pass
        assert bool(called) == admitted, f"breaker {'called' if called else 'refused'}, model says {admitted}"
        if admitted:
            self.model.outcome(self.now, fails or latency > (POLICY.slow_call_seconds or float("inf")))

    @rule()
    def success(self) -> None:
        self._call(CALL_TIME, fails=False)

    @rule()
    def failure(self) -> None:
        self._call(CALL_TIME, fails=True)

    @rule()
    def slow_success(self) -> None:
        self._call(2.0, fails=False)

    @rule(seconds=st.floats(min_value=0.5, max_value=40, allow_nan=False))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def same_state(self) -> None:
        assert self.breaker.state() is self.model.state


TestBreakerVersusModel = BreakerVersusModel.TestCase
TestBreakerVersusModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
