"""breakwater's shared resilience library, deployed as the ``resilience`` Lambda layer."""

from __future__ import annotations

from resilience import errors
from resilience.errors import (
    BreakwaterError,
    CircuitOpenError,
    ConfigurationError,
    DependencyUnavailableError,
    GoneError,
    JwtKeyError,
    RateLimitedError,
    RetryableError,
    ServiceTimeoutError,
    TenantRejectedError,
    ThrottledError,
    TokenInvalidError,
    TokenRevokedError,
    ValidationError,
)

__all__ = [
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
    "errors",
]
