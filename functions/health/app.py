"""HTTP API: ``GET /health`` and ``GET /timeout-status`` (seed 000's health check).

``/health`` probes each dependency the service cannot do without — at most
once per ``BW_HEALTH_PROBE_SECONDS`` per container, so a load balancer polling
every second costs a handful of DescribeTable calls a minute, not one per
request — and reads the shared breakers. It answers 503 when a *critical*
dependency is down (Connections/Messages, the revocation list, the signing
key), 200 with ``degraded`` for the rest. ``/timeout-status`` reports the
configured client timeouts, the breakers and the timeouts this container has
seen recently. Neither ever shows a secret, a token or the environment.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from botocore.exceptions import ClientError

from resilience.breaker import CircuitBreaker
from resilience.clients import Clients, ClientSettings, default_clients, translate_errors
from resilience.degradation import DegradationTracker, Dependency
from resilience.errors import BreakwaterError
from resilience.health import AlertThresholds, LatencyTracker, build_health_snapshot, function_memory_bytes
from resilience.observability import current_correlation_id, default_observability, with_observability
from resilience.settings import env_number

#: The fleet's shared breakers (one item each in the Breakers table).
BREAKERS = ("apigateway.postToConnection", "cognito.verifyJwt", "dynamodb.tokenBlacklist")
_observability = default_observability()
_logger = _observability.logger
_clients = default_clients()
# One attempt: a health check reports what it sees now; retrying hides a flapping dependency.
_probing = Clients(settings=ClientSettings(timeouts=_clients.settings.timeouts, max_attempts=1))
_degradations = DegradationTracker(clock=time.time)
_latency = LatencyTracker(clock=time.monotonic)
_breakers = {name: CircuitBreaker.from_env(name, _clients.dynamodb()) for name in BREAKERS}
_last_probe: float | None = None
app = APIGatewayHttpResolver()


def _probes() -> dict[Dependency, Callable[[], Any]]:
    ddb = _probing.dynamodb()
    return {
        Dependency.DYNAMODB: lambda: [
            ddb.describe_table(TableName=os.environ[name]) for name in ("BW_CONNECTIONS_TABLE", "BW_MESSAGES_TABLE")
        ],
        Dependency.TOKEN_BLACKLIST: lambda: ddb.describe_table(TableName=os.environ["BW_TOKEN_BLACKLIST_TABLE"]),
        Dependency.RATE_LIMITS: lambda: ddb.describe_table(TableName=os.environ["BW_RATE_LIMITS_TABLE"]),
        Dependency.SIGNING_KEY: lambda: _probing.secretsmanager().describe_secret(
            SecretId=os.environ["BW_SIGNING_KEY_SECRET"]
        ),
        Dependency.TENANT_CONFIG: lambda: _probing.s3().head_bucket(Bucket=os.environ["BW_CONFIG_BUCKET"]),
    }


def probe(now: float) -> None:
    """Refresh the degradation picture, at most once per BW_HEALTH_PROBE_SECONDS."""
    global _last_probe
    interval = env_number(os.environ, "BW_HEALTH_PROBE_SECONDS", 10, minimum=0)
    if _last_probe is not None and now - _last_probe < interval:
        return
    _last_probe = now
    for dependency, check in _probes().items():
        try:
            with _latency.measure(dependency.value), translate_errors(dependency.value, "Probe"):
                check()
        except (BreakwaterError, ClientError) as exc:
            if _degradations.mark_degraded(dependency, reason=type(exc).__name__):
                _logger.warning("dependency down", extra={"dependency": dependency.value})
        else:
            if _degradations.mark_recovered(dependency):
                _logger.info("dependency recovered", extra={"dependency": dependency.value})


def _json(status: int, body: dict[str, Any]) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={**body, "correlationId": current_correlation_id()},
    )


@app.get("/health")
def health() -> Response[Any]:
    now = time.time()
    probe(now)
    snapshot = build_health_snapshot(
        clock=time.time,
        thresholds=AlertThresholds.from_env(os.environ),
        breakers=list(_breakers.values()),
        timeouts={service: (t.connect, t.read) for service, t in _clients.settings.timeouts.items()},
        degradations=_degradations.snapshot(),
        latency=_latency,
        criticality={"apigateway": "important", "cognito": "important", "dynamodb": "critical"},
        memory_budget_bytes=function_memory_bytes(os.environ),
    )
    body = snapshot.to_dict()
    body["dependencies"] = {
        dependency.value: ("down" if _degradations.is_degraded(dependency) else "up") for dependency in _probes()
    }
    return _json(snapshot.http_status, body)


@app.get("/timeout-status")
def timeout_status() -> Response[Any]:
    breakers = [_breakers[name].stats() for name in BREAKERS]
    return _json(
        200,
        {
            "timeouts": _clients.settings.describe(),
            "sdkMaxAttempts": _clients.settings.max_attempts,
            "breakers": [
                {"name": s.name, "state": str(s.state), "calls": s.calls, "failures": s.failures} for s in breakers
            ],
            "recentTimeouts": {stats.dependency: stats.timeouts for stats in _latency.stats()},
        },
    )


@app.not_found
def not_found(_: Exception) -> Response[Any]:
    error = {"code": "NOT_FOUND", "message": "Routes: GET /health, GET /timeout-status"}
    return Response(
        status_code=404,
        content_type=content_types.APPLICATION_JSON,
        body={"error": {**error, "correlationId": current_correlation_id()}},
    )


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
