"""Degradation is a table: each dependency x role has one answer, and the security path always fails closed."""

from __future__ import annotations

import re
from dataclasses import FrozenInstanceError

import pytest

from resilience.degradation import (
    DEGRADATIONS,
    Action,
    Criticality,
    DegradationTracker,
    Dependency,
    Role,
    decide,
)
from resilience.errors import BreakwaterError, ServiceTimeoutError

ROLES: list[Role | None] = [None, Role.SPEAKER, Role.LISTENER]

D, R, A = Dependency, Role, Action

#: dependency, role, criticality, action, HTTP status, public code, metric
EXPECTED = [
    (D.DYNAMODB, None, "critical", A.REJECT, 503, "SERVICE_TIMEOUT", "DynamoDbUnavailable"),
    (D.DYNAMODB, R.SPEAKER, "critical", A.REJECT, 503, "SERVICE_TIMEOUT", "DynamoDbUnavailable"),
    (D.DYNAMODB, R.LISTENER, "critical", A.REJECT, 503, "SERVICE_TIMEOUT", "DynamoDbUnavailable"),
    (D.COGNITO, R.SPEAKER, "important", A.REJECT, 503, "SERVICE_UNAVAILABLE", "CognitoSpeakerRejected"),
    (D.COGNITO, R.LISTENER, "important", A.ADMIT_ANONYMOUS, None, None, "CognitoListenerAnonymous"),
    (D.COGNITO, None, "important", A.REJECT, 503, "SERVICE_UNAVAILABLE", "CognitoSpeakerRejected"),
    (D.RATE_LIMITS, None, "optional", A.PROCEED, None, None, "RateLimitingDisabled"),
    (D.RATE_LIMITS, R.SPEAKER, "optional", A.PROCEED, None, None, "RateLimitingDisabled"),
    (D.TOKEN_BLACKLIST, R.SPEAKER, "critical", A.REJECT, 401, "TOKEN_REVOKED", "TokenBlacklistFailClosed"),
    (D.TOKEN_BLACKLIST, R.LISTENER, "critical", A.REJECT, 401, "TOKEN_REVOKED", "TokenBlacklistFailClosed"),
    (D.SIGNING_KEY, R.SPEAKER, "critical", A.SERVE_STALE, 500, "JWT_KEY_ERROR", "JwtKeyUnavailable"),
    (D.SIGNING_KEY, R.LISTENER, "critical", A.SERVE_STALE, 500, "JWT_KEY_ERROR", "JwtKeyUnavailable"),
    (D.TENANT_CONFIG, R.SPEAKER, "important", A.SERVE_STALE, 403, "TENANT_REJECTED", "TenantConfigDegraded"),
    (D.TENANT_CONFIG, R.LISTENER, "important", A.SERVE_STALE, 403, "TENANT_REJECTED", "TenantConfigDegraded"),
    (D.APIGATEWAY_MANAGEMENT, None, "important", A.PARK, None, None, "MessagesParked"),
]


@pytest.mark.parametrize(
    ("dependency", "role", "criticality", "action", "status", "code", "metric"),
    EXPECTED,
    ids=[f"{row[0].value}-{row[1].value if row[1] else 'any'}" for row in EXPECTED],
)
def test_each_dependency_and_role_has_its_answer(
    dependency: Dependency,
    role: Role | None,
    criticality: str,
    action: Action,
    status: int | None,
    code: str | None,
    metric: str,
) -> None:
    decision = decide(dependency, role=role)
    assert decision.dependency is dependency
    assert decision.criticality == criticality
    assert decision.action is action
    assert (decision.status, decision.code) == (status, code)
    assert decision.metric == metric


def test_every_dependency_has_an_answer_for_every_role() -> None:
    for dependency in Dependency:
        assert (dependency, None) in DEGRADATIONS, f"{dependency} has no row for an unlisted role"
        for role in ROLES:
            assert decide(dependency, role=role).dependency is dependency


def test_security_dependencies_never_proceed_on_failure() -> None:
    """Fail closed, over the whole table and every role a caller can present."""
    security = [dep for dep in Dependency if dep.security]
    assert set(security) == {D.COGNITO, D.TENANT_CONFIG, D.SIGNING_KEY, D.TOKEN_BLACKLIST}
    for dependency in security:
        for role in ROLES:
            decision = decide(dependency, role=role)
            assert decision.action not in (Action.PROCEED, Action.PARK), (dependency, role)
            if decision.action is Action.ADMIT_ANONYMOUS:
                # No more access than an anonymous listener has anyway: only listeners, identity dropped.
                assert role is Role.LISTENER, (dependency, role)
                assert decision.error is None
            else:
                # REJECT and SERVE_STALE end in an error: a refusal, never a silent pass.
                assert decision.error is not None, (dependency, role)
                assert decision.error.status >= 400
                assert decision.proceeds is (decision.action is Action.SERVE_STALE)


def test_only_optional_or_deferrable_dependencies_proceed_without_an_error() -> None:
    for row in DEGRADATIONS.values():
        if row.error is None:
            assert row.action in (Action.PROCEED, Action.PARK, Action.ADMIT_ANONYMOUS)
        if row.action is Action.PROCEED:
            assert not row.dependency.security
            assert row.criticality is Criticality.OPTIONAL
        if row.criticality is Criticality.CRITICAL:
            # Critical: refuse, or serve a last good value within its bound and refuse after it.
            assert row.action in (Action.REJECT, Action.SERVE_STALE)
            assert row.error is not None


def test_rows_are_consistent_and_metric_names_are_emf_safe() -> None:
    for (dependency, role), row in DEGRADATIONS.items():
        assert (row.dependency, row.role) == (dependency, role)
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", row.metric), row.metric
        # One criticality per dependency, whatever the role.
        assert row.criticality is DEGRADATIONS[(dependency, None)].criticality


def test_the_dynamodb_refusal_tells_the_client_when_to_retry() -> None:
    error = decide(Dependency.DYNAMODB).make_error()
    assert isinstance(error, ServiceTimeoutError)
    assert error.retry_after == 5
    assert error.to_response("corr-1") == {
        "error": {
            "code": "SERVICE_TIMEOUT",
            "message": "A dependency timed out",
            "retryAfter": 5,
            "correlationId": "corr-1",
        }
    }


def test_raise_error_raises_from_the_cause_or_returns_when_degraded() -> None:
    cause = TimeoutError("blacklist read timed out")
    with pytest.raises(BreakwaterError) as caught:
        decide(Dependency.TOKEN_BLACKLIST, role=Role.SPEAKER).raise_error(cause=cause)
    assert caught.value.code == "TOKEN_REVOKED"
    assert caught.value.__cause__ is cause
    decide(Dependency.RATE_LIMITS).raise_error(cause=cause)  # degraded, not refused: returns
    assert decide(Dependency.RATE_LIMITS).make_error() is None


def test_strings_from_events_are_accepted_and_unknown_names_refused() -> None:
    assert decide("cognito", role="listener").action is Action.ADMIT_ANONYMOUS
    with pytest.raises(ValueError, match="redis"):
        decide("redis")
    with pytest.raises(ValueError, match="admin"):
        decide("cognito", role="admin")


def test_rows_are_frozen() -> None:
    row = decide(Dependency.DYNAMODB)
    with pytest.raises(FrozenInstanceError):
        row.action = Action.PROCEED  # type: ignore[misc]
    with pytest.raises(TypeError):
        DEGRADATIONS[(Dependency.DYNAMODB, None)] = row  # type: ignore[index]


# -- tracker ------------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_tracker_records_since_when_a_dependency_is_degraded() -> None:
    clock = FakeClock()
    tracker = DegradationTracker(clock)
    assert tracker.snapshot() == []
    assert tracker.worst() is None

    assert tracker.mark_degraded(Dependency.RATE_LIMITS, reason="ThrottledError") is True
    clock.now = 1_010.0
    assert tracker.mark_degraded("dynamodb", reason="ServiceTimeoutError") is True
    clock.now = 1_020.0
    # A repeat failure is not a new transition: the start time stays, the count grows.
    assert tracker.mark_degraded(Dependency.RATE_LIMITS, reason="RetryableError") is False

    snapshot = tracker.snapshot()
    assert [d.dependency for d in snapshot] == [Dependency.DYNAMODB, Dependency.RATE_LIMITS]
    assert snapshot[1].since == 1_000.0
    assert snapshot[1].failures == 2
    assert snapshot[1].reason == "RetryableError"
    assert tracker.worst() is Criticality.CRITICAL
    assert snapshot[0].to_json() == {
        "dependency": "dynamodb",
        "criticality": "critical",
        "since": 1_010.0,
        "reason": "ServiceTimeoutError",
        "failures": 1,
    }

    assert tracker.mark_recovered(Dependency.DYNAMODB) is True
    assert tracker.mark_recovered(Dependency.DYNAMODB) is False
    assert not tracker.is_degraded("dynamodb")
    assert tracker.is_degraded(Dependency.RATE_LIMITS)
    assert tracker.worst() is Criticality.OPTIONAL

    # Degraded again later: a new episode, a new start time.
    clock.now = 2_000.0
    assert tracker.mark_degraded(Dependency.DYNAMODB) is True
    assert next(d for d in tracker.snapshot() if d.dependency is Dependency.DYNAMODB).since == 2_000.0
