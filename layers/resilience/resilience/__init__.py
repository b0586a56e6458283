"""breakwater's shared resilience library, deployed as the ``resilience`` Lambda layer.

Modules (imported on demand, so a function pays only for what it uses at cold start):
``errors`` (the taxonomy, re-exported here), ``clients``, ``retry``, ``cache``,
``breaker``, ``degradation``, ``health``, ``observability``, ``settings``,
``timestamps``, ``activity``, ``alarm_metrics`` (what the alarms read), and the admission path's:

* ``compact_jws``: ``parse_compact`` (the strict RFC 7515 reader every token goes through);
* ``tokens``: ``token_shape``, ``TokenPolicy``, ``TokenVerifier``, ``JwksCache``,
  ``Identity``, ``SigningKey``, ``issue_token``, ``fetch_url``;
* ``signing_keys``: ``SigningKeyProvider``, ``parse_signing_key(s)``;
* ``blacklist``: ``TokenBlacklist``;
* ``tenants``: ``TenantDirectory``, ``TenantAdmission``, ``validate_config``;
* ``rate_limits``: ``RateLimiter``, ``RateLimitPolicy``, ``RateDecision``.
"""

from __future__ import annotations

from resilience import errors
from resilience.errors import (
    BreakerStoreError,
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
    "errors",
]
