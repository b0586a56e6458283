"""The error taxonomy shared by every function and every state machine.

Error class names are a contract with the ASL definitions: Step Functions
matches a Lambda failure by the exception's class name (``errorType``), so
every name used in an ``ErrorEquals`` must be a class here, and renaming a
class is a breaking change for the workflows. ``tests/unit/test_errors.py``
checks both directions.

Each error carries what a client may see (HTTP status, public code, a safe
message, an optional ``retry_after``); the internal detail stays in the
exception chain (``raise ... from exc``) and never reaches a response.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BreakerStoreError",
    "BreakwaterError",
    "CircuitOpenError",
    "ConfigurationError",
    "DependencyUnavailableError",
    "GoneError",
    "JwtKeyError",
    "RateLimitedError",
    "RetryableError",
    "ServiceTimeoutError",
    "TenantRejectedError",
    "ThrottledError",
    "TokenInvalidError",
    "TokenRevokedError",
    "ValidationError",
    "all_error_classes",
    "error_by_name",
]


class BreakwaterError(Exception):
    """Base of every error the project raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    public_message: ClassVar[str] = "Internal error"
    #: Whether a Retry in ASL (or the in-call retry policy) may try again.
    retryable: ClassVar[bool] = False
    #: Seconds a client is told to wait before trying again (503s), if any.
    default_retry_after: ClassVar[int | None] = None

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(message or self.public_message)
        self.retry_after = retry_after if retry_after is not None else self.default_retry_after

    def to_response(self, correlation_id: str | None = None) -> dict[str, Any]:
        """The public error body: never the internal message, never a token."""
        body: dict[str, Any] = {"code": self.code, "message": self.public_message}
        if self.retry_after is not None:
            body["retryAfter"] = self.retry_after
        if correlation_id:
            body["correlationId"] = correlation_id
        return {"error": body}


class RetryableError(BreakwaterError):
    """A transient failure: the same call may succeed if tried again."""

    status = 503
    code = "SERVICE_UNAVAILABLE"
    public_message = "Service temporarily unavailable"
    retryable = True
    # Every 503 tells the client when to come back.
    default_retry_after = 5


class ThrottledError(RetryableError):
    """The dependency asked us to slow down (throttling, 429, 'SlowDown')."""

    code = "THROTTLED"
    public_message = "Service is busy, retry later"


class ServiceTimeoutError(RetryableError):
    """A dependency did not answer within its configured timeout."""

    code = "SERVICE_TIMEOUT"
    public_message = "A dependency timed out"


class CircuitOpenError(BreakwaterError):
    """The breaker for a dependency is open: the call was not attempted.

    Not retryable in place: retrying immediately defeats the breaker. ASL
    catches it and takes the fallback (park, deny, degrade).
    """

    status = 503
    code = "SERVICE_UNAVAILABLE"
    public_message = "Service temporarily unavailable"
    default_retry_after = 5


class DependencyUnavailableError(BreakwaterError):
    """A critical dependency is down and there is no safe fallback."""

    status = 503
    code = "SERVICE_UNAVAILABLE"
    public_message = "Service temporarily unavailable"
    default_retry_after = 5


class BreakerStoreError(BreakwaterError):
    """The Breakers table could not be read or written.

    The breaker decides per policy what this means: fail open (allow the call)
    for availability dependencies, fail closed for the security path.
    """

    status = 503
    code = "SERVICE_UNAVAILABLE"
    public_message = "Service temporarily unavailable"
    default_retry_after = 5


class GoneError(BreakwaterError):
    """The WebSocket connection no longer exists (API Gateway 410)."""

    status = 410
    code = "CONNECTION_GONE"
    public_message = "Connection is gone"


class TokenInvalidError(BreakwaterError):
    """The token is malformed, expired, or fails verification."""

    status = 401
    code = "TOKEN_INVALID"
    public_message = "Invalid token"


class TokenRevokedError(BreakwaterError):
    """The token is blacklisted, or the blacklist could not be checked (fail closed)."""

    status = 401
    code = "TOKEN_REVOKED"
    public_message = "Token revoked"


class TenantRejectedError(BreakwaterError):
    """The tenant is unknown, disabled, or could not be verified (fail closed)."""

    status = 403
    code = "TENANT_REJECTED"
    public_message = "Tenant rejected"


class RateLimitedError(BreakwaterError):
    """The caller is over its rate limit."""

    status = 429
    code = "RATE_LIMITED"
    public_message = "Too many requests"


class JwtKeyError(BreakwaterError):
    """The signing key is unavailable: no token is issued or verified."""

    status = 500
    code = "JWT_KEY_ERROR"
    public_message = "Authentication unavailable"


class ValidationError(BreakwaterError):
    """The caller's input is malformed; nothing was changed."""

    status = 400
    code = "VALIDATION_ERROR"
    public_message = "Invalid request"

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        # Validation messages describe the caller's own input, so they are safe to show.
        self.public_detail = message

    def to_response(self, correlation_id: str | None = None) -> dict[str, Any]:
        response = super().to_response(correlation_id)
        if self.public_detail:
            response["error"]["message"] = self.public_detail
        return response


class ConfigurationError(BreakwaterError):
    """The deployment is misconfigured (missing environment, bad parameter)."""

    code = "CONFIGURATION_ERROR"
    public_message = "Service misconfigured"


def all_error_classes() -> dict[str, type[BreakwaterError]]:
    """Every error class of the taxonomy by name, the base included."""
    found: dict[str, type[BreakwaterError]] = {}
    pending: list[type[BreakwaterError]] = [BreakwaterError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def error_by_name(name: str) -> type[BreakwaterError] | None:
    return all_error_classes().get(name)
