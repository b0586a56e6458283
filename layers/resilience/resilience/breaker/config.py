"""Breaker policies: one frozen object per dependency + operation.

Defaults are seed 003's numbers; deployments tune them through template
Parameters, which Globals turn into ``BW_BREAKER_*`` environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# Imported once, with the module: a lazy import inside the predicate could meet a
# different copy of the taxonomy than the caller's (the offline runtime isolates
# each function's modules), and isinstance checks would silently fail.
from resilience.clients import is_transient
from resilience.settings import env_number

__all__ = ["FAIL_CLOSED_BREAKERS", "BreakerPolicy", "counts_as_failure", "policy_for", "policy_from_env"]


def counts_as_failure(exc: BaseException) -> bool:
    """Timeouts, throttles and 5xx count; a caller's 4xx and GoneException never do.

    A 4xx means the dependency answered, and a gone WebSocket client says
    nothing about API Gateway's health.
    """
    return is_transient(exc)


@dataclass(frozen=True)
class BreakerPolicy:
    #: Consecutive failures seen by one environment that open the breaker (seed 003).
    failure_threshold: int = 5
    #: Consecutive failures after which an environment counts as *failing* for the fleet...
    environment_streak: int = 2
    #: ...and how many failing environments open the breaker for all (default: failure_threshold).
    failing_environments: int | None = None
    #: Failure rate, in percent, over the window that opens the breaker...
    failure_rate_threshold: float = 50.0
    window_seconds: float = 60.0
    #: ...once the window holds at least this many calls.
    minimum_calls: int = 5
    #: A call slower than this (the dependency's expected response time) counts as a failure.
    slow_call_seconds: float | None = None
    #: How long the breaker stays OPEN before one probe is let through.
    recovery_timeout: float = 30.0
    #: Successful probes in a row that close a HALF_OPEN breaker (seed 004: 2).
    success_threshold: int = 2
    #: How long an environment trusts its cached view and aggregates successes...
    refresh_interval: float = 15.0
    #: ...shortened by up to this fraction, drawn per refresh, so a fleet does not refresh in lock-step.
    refresh_jitter: float = 0.2
    #: How long a probe may run before another environment may take over.
    probe_lease_seconds: float = 30.0
    #: When the Breakers table itself fails: allow calls (availability) or refuse (security path).
    fail_closed_on_store_error: bool = False
    is_failure: Callable[[BaseException], bool] = field(default=counts_as_failure, compare=False)

    def __post_init__(self) -> None:
        positive = {
            "failure_threshold": self.failure_threshold,
            "environment_streak": self.environment_streak,
            "failing_environments": self.failing_environments_threshold,
            "window_seconds": self.window_seconds,
            "minimum_calls": self.minimum_calls,
            "recovery_timeout": self.recovery_timeout,
            "success_threshold": self.success_threshold,
            "probe_lease_seconds": self.probe_lease_seconds,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"BreakerPolicy.{name} must be > 0, got {value!r}")
        if not 0 < self.failure_rate_threshold <= 100:
            raise ValueError("BreakerPolicy.failure_rate_threshold is a percentage in (0, 100]")
        if self.refresh_interval < 0:
            raise ValueError("BreakerPolicy.refresh_interval must be >= 0")
        if not 0 <= self.refresh_jitter < 1:
            raise ValueError("BreakerPolicy.refresh_jitter is a fraction in [0, 1)")
        if self.slow_call_seconds is not None and self.slow_call_seconds <= 0:
            raise ValueError("BreakerPolicy.slow_call_seconds must be > 0 when set")

    @property
    def failing_environments_threshold(self) -> int:
        return self.failing_environments if self.failing_environments is not None else self.failure_threshold

    @property
    def bucket_seconds(self) -> int:
        """Window granularity: six buckets per window, at least one second each."""
        return max(1, int(self.window_seconds // 6))


#: Seed 003 per dependency: (failure threshold, recovery s, expected response ms, window s, minimum calls).
_SEED_003: dict[str, tuple[int, float, float, float, int]] = {
    "cognito": (3, 30, 2000, 60, 5),
    "apigateway": (5, 15, 1000, 30, 3),
    "dynamodb": (3, 20, 500, 60, 5),
}


def policy_from_env(
    dependency: str, env: Mapping[str, str] | None = None, *, fail_closed_on_store_error: bool = False
) -> BreakerPolicy:
    """The policy of ``cognito``, ``apigateway`` or ``dynamodb`` from the template's Parameters."""
    env = os.environ if env is None else env
    if dependency not in _SEED_003:
        raise ValueError(f"no breaker policy for {dependency!r}; known: {', '.join(sorted(_SEED_003))}")
    threshold, recovery, slow_ms, window, minimum = _SEED_003[dependency]
    prefix = f"BW_BREAKER_{dependency.upper()}_"

    def number(name: str, default: float) -> float:
        # The dependency's own variable wins over the one shared by every breaker.
        key = prefix + name if (env.get(prefix + name) or "").strip() else f"BW_BREAKER_{name}"
        return env_number(env, key, default)

    return BreakerPolicy(
        failure_threshold=int(number("FAILURE_THRESHOLD", threshold)),
        failure_rate_threshold=number("FAILURE_RATE_PERCENT", 50),
        window_seconds=number("WINDOW_SECONDS", window),
        minimum_calls=int(number("MINIMUM_CALLS", minimum)),
        slow_call_seconds=number("SLOW_CALL_MS", slow_ms) / 1000,
        recovery_timeout=number("RECOVERY_SECONDS", recovery),
        success_threshold=int(number("SUCCESS_THRESHOLD", 2)),
        refresh_interval=number("REFRESH_SECONDS", 15),
        fail_closed_on_store_error=fail_closed_on_store_error,
    )


#: The breakers of the security path (``$connect`` admission: the Cognito JWKS download
#: and the revocation list). When the Breakers table cannot be read they refuse: an
#: unreadable breaker may be one an operator forced open, and on the security path
#: "unknown" is treated like "open" (seed 000: security fails closed; the caller's own
#: answer to an open breaker then applies: stale keys or 503, "treated as revoked").
#: Every other breaker guards availability (delivery, redelivery) and lets calls through.
FAIL_CLOSED_BREAKERS: frozenset[str] = frozenset({"cognito.verifyJwt", "dynamodb.tokenBlacklist"})


def policy_for(breaker: str, env: Mapping[str, str] | None = None) -> BreakerPolicy:
    """The policy of a breaker named ``<dependency>.<operation>``: its dependency's, or the default;
    failing closed on store errors if it is on the security path (:data:`FAIL_CLOSED_BREAKERS`)."""
    fail_closed = breaker in FAIL_CLOSED_BREAKERS
    try:
        return policy_from_env(breaker.split(".", 1)[0], env, fail_closed_on_store_error=fail_closed)
    except ValueError:
        return BreakerPolicy(fail_closed_on_store_error=fail_closed)
