"""AuthorizeConnection's "Verify token" step: a raw JWT in, the verified identity out.

Input ``{"token", "role", "correlationId"}``; output ``{"userId", "issuer",
"jti", "exp", "tenantId", "roles"}``. Refusals are errors the workflow
catches by name: ``TokenInvalidError`` (401, with a reason such as "token
expired"), ``JwtKeyError`` (500: the signing key is unavailable, so no token
is verified), and the dependency errors of the Cognito JWKS download
(``ServiceTimeoutError``, ``RetryableError``, ``CircuitOpenError`` …: 503).
The token and the key never reach a log line, a metric or the output.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from resilience.alarm_metrics import CacheMetrics
from resilience.breaker import CircuitBreaker
from resilience.clients import Clients, default_clients
from resilience.errors import TokenInvalidError, ValidationError
from resilience.health import function_memory_bytes
from resilience.inputs import require_object
from resilience.observability import default_observability, with_observability
from resilience.signing_keys import SigningKeyProvider
from resilience.tokens import JwksCache, TokenPolicy, TokenVerifier

_observability = default_observability()
_logger, _metrics = _observability.logger, _observability.metrics
_clients = default_clients()
_policy = TokenPolicy.from_env()
# One breaker for Cognito across the fleet (seed 003: cognito.verifyJwt).
_breaker = CircuitBreaker.from_env("cognito.verifyJwt", _clients)
_jwks = JwksCache(_policy, timeout=_clients.settings.timeouts_for("cognito-idp").read, breaker=_breaker)
# Two attempts: a third would push a Secrets Manager timeout past the step's 10 s budget,
# turning a precise JWT_KEY_ERROR into a timed-out step.
_signing_keys = SigningKeyProvider(
    Clients(settings=dataclasses.replace(_clients.settings, max_attempts=2)).secretsmanager(),
    os.environ["BW_SIGNING_KEY_SECRET"],
)
_verifier = TokenVerifier(_policy, jwks=_jwks, signing_keys=_signing_keys)
_cache_metrics = CacheMetrics((_jwks.cache, _signing_keys.cache), function_memory_bytes(os.environ) or 0)


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    event = require_object(event, "the step's input")  # ValidationError: a workflow bug, never retried
    token, role = event.get("token"), event.get("role")
    if role is not None and not isinstance(role, str):
        raise ValidationError("role must be a string")  # any token is the verifier's to refuse (TokenInvalidError)
    try:
        identity = _verifier.verify(token, role=role)
    except TokenInvalidError as error:
        _metrics.add_metric(name="TokenRejected", unit="Count", value=1)
        _logger.info("token rejected", extra={"reason": str(error)})
        raise
    finally:
        _breaker.flush()
        _cache_metrics.emit(_metrics)
    _metrics.add_metric(name="TokenVerified", unit="Count", value=1)
    _logger.info("token verified", extra={"issuer": identity.issuer, "use": identity.token_use})
    return identity.to_json()
