"""What happens when a dependency is down: one table, read by every function.

Seed 002 (requirement 21) and seed 000's fail-closed rules, as data rather
than ``if`` chains spread over handlers, so the whole policy can be reviewed
(and property-tested) in one place:

==========================  ===========  ==============================================  =====================
dependency                  criticality  when it is down                                 error raised
==========================  ===========  ==============================================  =====================
dynamodb (connections,      critical     refuse: 503 SERVICE_TIMEOUT, retryAfter         ServiceTimeoutError
messages)
tokenBlacklist              critical     treat the token as revoked (fail closed)        TokenRevokedError
signingKey (Secrets Mgr)    critical     no token verified or issued (fail closed)       JwtKeyError
tenantConfig (S3)           important    serve the last good config within its bound,    TenantRejectedError
                                         else reject the tenant (fail closed)
cognito                     important    speakers: refuse (503); listeners: admit        DependencyUnavailable
                                         as anonymous, the claimed identity dropped      / none
apigateway                  important    park the message in the outbox for redelivery   none
rateLimits                  optional     rate limiting off, logged and counted           none
==========================  ===========  ==============================================  =====================

Usage::

    decision = decide(Dependency.COGNITO, role=Role.LISTENER)
    tracker.mark_degraded(decision.dependency, reason=type(exc).__name__)
    metrics.add_metric(decision.metric, unit="Count", value=1)
    decision.raise_error(cause=exc)      # raises for REJECT; returns for degraded actions
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from resilience.errors import (
    BreakwaterError,
    DependencyUnavailableError,
    JwtKeyError,
    ServiceTimeoutError,
    TenantRejectedError,
    TokenRevokedError,
)

__all__ = [
    "DEGRADATIONS",
    "Action",
    "Criticality",
    "Degradation",
    "DegradationTracker",
    "DegradedDependency",
    "Dependency",
    "Role",
    "decide",
]


class Dependency(StrEnum):
    """A dependency whose outage the service has a stated answer for (names appear in metrics and health)."""

    DYNAMODB = "dynamodb"
    COGNITO = "cognito"
    TENANT_CONFIG = "tenantConfig"
    SIGNING_KEY = "signingKey"
    RATE_LIMITS = "rateLimits"
    TOKEN_BLACKLIST = "tokenBlacklist"
    APIGATEWAY_MANAGEMENT = "apigateway"  # the breaker prefix too: apigateway.postToConnection

    @property
    def security(self) -> bool:
        """On the admission path: an outage here must never widen access (fail closed)."""
        return self in _SECURITY


_SECURITY = frozenset(
    {Dependency.COGNITO, Dependency.TENANT_CONFIG, Dependency.SIGNING_KEY, Dependency.TOKEN_BLACKLIST}
)


class Criticality(StrEnum):
    CRITICAL = "critical"  # no safe fallback: the request fails
    IMPORTANT = "important"  # a narrower fallback exists (stale data, anonymous, parked)
    OPTIONAL = "optional"  # the feature switches off; the request goes on

    @property
    def rank(self) -> int:
        """Worst first, for sorting the health snapshot."""
        return {"critical": 0, "important": 1, "optional": 2}[self.value]


class Role(StrEnum):
    SPEAKER = "speaker"
    LISTENER = "listener"


class Action(StrEnum):
    #: Fail the request with ``error``.
    REJECT = "reject"
    #: Serve the last good value if it is within its staleness bound, else raise ``error``.
    SERVE_STALE = "serve_stale"
    #: Let the caller in with no identity (the same access as an anonymous listener), never the claimed one.
    ADMIT_ANONYMOUS = "admit_anonymous"
    #: Keep the work for later (outbox) instead of doing it now; nothing is dropped.
    PARK = "park"
    #: Go on without the feature the dependency backs.
    PROCEED = "proceed"


@dataclass(frozen=True)
class Degradation:
    """One row of the table: what a caller does when ``dependency`` fails."""

    dependency: Dependency
    criticality: Criticality
    action: Action
    #: What to raise (REJECT), or to raise once the fallback is exhausted (SERVE_STALE); None otherwise.
    error: type[BreakwaterError] | None
    #: Counted (EMF, unit Count) every time this degradation is applied.
    metric: str
    #: The role this row is for; None = every role (or a dependency roles do not matter to).
    role: Role | None = None

    @property
    def status(self) -> int | None:
        return self.error.status if self.error is not None else None

    @property
    def code(self) -> str | None:
        return self.error.code if self.error is not None else None

    @property
    def proceeds(self) -> bool:
        """Whether the request goes on (possibly narrowed) rather than failing outright."""
        return self.action is not Action.REJECT

    def make_error(self, message: str | None = None) -> BreakwaterError | None:
        return self.error(message) if self.error is not None else None

    def raise_error(self, cause: BaseException | None = None, message: str | None = None) -> None:
        """Raise this row's error (``from cause``) if it has one; return otherwise.

        For SERVE_STALE call it only once the stale value turned out missing or
        too old: the error is what the fallback falls back to.
        """
        error = self.make_error(message)
        if error is not None:
            raise error from cause


def _row(
    dependency: Dependency,
    criticality: Criticality,
    action: Action,
    error: type[BreakwaterError] | None,
    metric: str,
    role: Role | None = None,
) -> Degradation:
    return Degradation(dependency, criticality, action, error, metric, role)


_C, _I, _O = Criticality.CRITICAL, Criticality.IMPORTANT, Criticality.OPTIONAL

#: The table, keyed by (dependency, role); role None is the row for any role not listed.
DEGRADATIONS: Mapping[tuple[Dependency, Role | None], Degradation] = MappingProxyType(
    {
        (row.dependency, row.role): row
        for row in (
            # Connections and Messages: nothing to serve without them; the client retries.
            _row(Dependency.DYNAMODB, _C, Action.REJECT, ServiceTimeoutError, "DynamoDbUnavailable"),
            # Seed 000: a blacklist that cannot be checked means the token may be revoked.
            _row(Dependency.TOKEN_BLACKLIST, _C, Action.REJECT, TokenRevokedError, "TokenBlacklistFailClosed"),
            # Seed 000: no signing key, no token verified or issued (500: it is our fault, not the
            # caller's). The last good key is a real key, served within its stale bound
            # (cache.signing_key_policy); past it, JwtKeyError.
            _row(Dependency.SIGNING_KEY, _C, Action.SERVE_STALE, JwtKeyError, "JwtKeyUnavailable"),
            # Seed 000: positive answers only; what was verified before may be reused within its bound.
            _row(Dependency.TENANT_CONFIG, _I, Action.SERVE_STALE, TenantRejectedError, "TenantConfigDegraded"),
            # Seed 002: a speaker's identity must be verified; a listener may be anonymous anyway.
            _row(
                Dependency.COGNITO,
                _I,
                Action.REJECT,
                DependencyUnavailableError,
                "CognitoSpeakerRejected",
                Role.SPEAKER,
            ),
            _row(Dependency.COGNITO, _I, Action.ADMIT_ANONYMOUS, None, "CognitoListenerAnonymous", Role.LISTENER),
            # A caller whose role is unknown gets the strict answer.
            _row(Dependency.COGNITO, _I, Action.REJECT, DependencyUnavailableError, "CognitoSpeakerRejected"),
            # Delivery: no message is dropped silently; the redelivery path picks it up.
            _row(Dependency.APIGATEWAY_MANAGEMENT, _I, Action.PARK, None, "MessagesParked"),
            # Seed 002: availability over limiting, but never silently.
            _row(Dependency.RATE_LIMITS, _O, Action.PROCEED, None, "RateLimitingDisabled"),
        )
    }
)


def decide(dependency: Dependency | str, role: Role | str | None = None) -> Degradation:
    """The row for ``dependency`` failing, for a caller in ``role``.

    Strings are accepted for values that come straight from an event; an
    unknown dependency or role raises ``ValueError`` rather than guessing a policy.
    """
    dep = Dependency(dependency)
    who = Role(role) if role is not None else None
    found = DEGRADATIONS.get((dep, who)) or DEGRADATIONS.get((dep, None))
    if found is None:  # pragma: no cover - every dependency has a role-None row; a test holds the table to it
        raise ValueError(f"no degradation policy for {dep.value!r}")
    return found


# -- which dependencies are degraded right now (for the health snapshot) -------------------------------------


@dataclass(frozen=True)
class DegradedDependency:
    dependency: Dependency
    criticality: Criticality
    #: When it was first seen failing in this container (clock seconds).
    since: float
    #: The latest failure's kind (an exception class name, never its message).
    reason: str
    #: Failures recorded since ``since``.
    failures: int

    def to_json(self) -> dict[str, object]:
        return {
            "dependency": self.dependency.value,
            "criticality": self.criticality.value,
            "since": self.since,
            "reason": self.reason,
            "failures": self.failures,
        }


class DegradationTracker:
    """The dependencies this container currently runs degraded on, since when.

    Per container by design: it reports what this environment has seen; the
    fleet-wide picture is the metrics and the breakers. Locked because the local
    runtime runs concurrent invocations on threads.
    """

    def __init__(
        self, clock: Callable[[], float], table: Mapping[tuple[Dependency, Role | None], Degradation] = DEGRADATIONS
    ):
        self._clock = clock
        self._criticality = {dep: row.criticality for (dep, _), row in table.items()}
        self._degraded: dict[Dependency, DegradedDependency] = {}
        self._lock = threading.Lock()

    def mark_degraded(self, dependency: Dependency | str, reason: str = "") -> bool:
        """Record a failure; True when the dependency was healthy until now (a transition worth logging)."""
        dep = Dependency(dependency)
        with self._lock:
            current = self._degraded.get(dep)
            if current is None:
                self._degraded[dep] = DegradedDependency(dep, self._criticality[dep], self._clock(), reason, 1)
                return True
            self._degraded[dep] = DegradedDependency(
                dep, current.criticality, current.since, reason or current.reason, current.failures + 1
            )
            return False

    def mark_recovered(self, dependency: Dependency | str) -> bool:
        """Record a success; True when the dependency was degraded until now."""
        with self._lock:
            return self._degraded.pop(Dependency(dependency), None) is not None

    def is_degraded(self, dependency: Dependency | str) -> bool:
        with self._lock:
            return Dependency(dependency) in self._degraded

    def worst(self) -> Criticality | None:
        """The most critical dependency currently degraded, for an overall health level."""
        snapshot = self.snapshot()
        return snapshot[0].criticality if snapshot else None

    def snapshot(self) -> list[DegradedDependency]:
        """Currently degraded dependencies, most critical first, then longest degraded."""
        with self._lock:
            items = list(self._degraded.values())
        return sorted(items, key=lambda d: (d.criticality.rank, d.since, d.dependency.value))
