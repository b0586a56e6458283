"""AuthorizeConnection's "Is the token revoked?" step (seed 000: fail closed).

Input ``{"jti", "exp", "correlationId"}``; output ``{"revoked": false}``, or
``TokenRevokedError`` — for a revoked token, and for any doubt: DynamoDB slow,
throttled, failing, refusing access, or behind the open
``dynamodb.tokenBlacklist`` breaker. Answers are cached in the container
(revoked until the token's exp; not revoked for ``BW_BLACKLIST_CACHE_TTL``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from resilience.alarm_metrics import CacheMetrics
from resilience.blacklist import TokenBlacklist
from resilience.breaker import CircuitBreaker
from resilience.clients import Clients, ClientSettings, default_clients
from resilience.errors import TokenRevokedError
from resilience.health import function_memory_bytes
from resilience.inputs import require_object
from resilience.observability import default_observability, with_observability

_observability = default_observability()
_logger, _metrics = _observability.logger, _observability.metrics
_clients = default_clients()
# Two attempts, not the default three: a third would only delay the fail-closed answer
# past the step's budget, and a refused client can simply reconnect.
_lookups = Clients(settings=dataclasses.replace(ClientSettings.from_env(), max_attempts=2))
_breaker = CircuitBreaker.from_env("dynamodb.tokenBlacklist", _clients)
_blacklist = TokenBlacklist(_lookups.dynamodb(), os.environ["BW_TOKEN_BLACKLIST_TABLE"], breaker=_breaker)
_cache_metrics = CacheMetrics((_blacklist.cache,), function_memory_bytes(os.environ) or 0)


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    event = require_object(event, "the step's input")  # ValidationError: a workflow bug, never retried
    jti, exp = event.get("jti"), event.get("exp")
    if not isinstance(jti, str) or not jti or not isinstance(exp, int | float) or isinstance(exp, bool):
        # Nothing to look up is not "not revoked".
        raise TokenRevokedError("no token id to check; treated as revoked")
    failures = _blacklist.failures
    try:
        _blacklist.check(jti, float(exp))
    except TokenRevokedError:
        if _blacklist.failures > failures:
            _metrics.add_metric(name="BlacklistUnavailable", unit="Count", value=1)
            _logger.warning("revocation list unavailable; token treated as revoked")
        else:
            _metrics.add_metric(name="TokenRevoked", unit="Count", value=1)
            _logger.info("token revoked")
        raise
    finally:
        _breaker.flush()
        _cache_metrics.emit(_metrics)
    return {"revoked": False}
