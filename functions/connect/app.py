"""$connect route: parse the request, limit attempts, ask AuthorizeConnection, answer.

The decision is the workflow's (``statemachines/authorize_connection.asl.json``):
this handler only turns the request into the workflow's input and the decision
into the handshake's HTTP status. Everything here fails closed: bad input is a
400 and starts nothing; if the workflow cannot be asked, or does not answer
with a decision, the client is refused with 503 and ``retryAfter``. The one
thing that fails open is the per-IP attempt limit — a RateLimits outage turns
limiting off (logged and counted), it never refuses a client.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from resilience.activity import ActivityPolicy, idle_shard
from resilience.clients import default_clients, translate_errors
from resilience.compact_jws import DEFAULT_MAX_TOKEN_BYTES
from resilience.errors import (
    BreakwaterError,
    DependencyUnavailableError,
    RateLimitedError,
    ValidationError,
)
from resilience.inputs import websocket_connection_id
from resilience.observability import current_correlation_id, default_observability, with_observability
from resilience.rate_limits import RateLimiter, RateLimitPolicy
from resilience.settings import env_number

#: API Gateway closes a WebSocket after 2 h; the TTL removes items whose $disconnect never came.
CONNECTION_TTL_SECONDS = 3 * 3600
#: ``MaxTokenBytes``: larger than any JWT a sane identity provider issues; anything bigger is refused unread.
MAX_TOKEN_CHARS = int(env_number(os.environ, "BW_MAX_TOKEN_BYTES", DEFAULT_MAX_TOKEN_BYTES, minimum=1024))
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # whole value (fullmatch): "$" would admit a trailing newline
_HINT = re.compile(r"[A-Za-z0-9._:-]{1,253}")
#: What a refused client reads, per public reason; never the token, never a stack trace.
_MESSAGES = {
    "token_required": "Speakers must present a token",
    "token_invalid": "The token is not valid",
    "signing_key_unavailable": "Tokens cannot be verified right now",
    "identity_provider_unavailable": "The identity provider is unavailable; try again later",
    "token_revoked": "The token has been revoked",
    "tenant_rejected": "The tenant is unknown or does not admit this connection",
    "checks_unavailable": "Admission checks are unavailable; try again later",
    "connections_table_unavailable": "The connection could not be stored; try again later",
    "connections_table_timeout": "Storing the connection timed out; try again later",
}
_observability = default_observability()
_logger, _metrics = _observability.logger, _observability.metrics
_clients = default_clients()


@dataclass(frozen=True)
class ConnectRequest:
    connection_id: str
    role: str
    tenant_hint: str
    session_id: str
    token: str | None
    source_ip: str


def _header(event: dict[str, Any], name: str) -> str | None:
    headers = event.get("headers") or {}
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return None


def _token(event: dict[str, Any], params: dict[str, Any]) -> str | None:
    authorization = _header(event, "authorization")
    token: object = None
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise ValidationError("Authorization must be 'Bearer <token>'")
        token = credentials.strip()
    elif "token" in params:
        token = params["token"]
    if token is None:
        return None
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise ValidationError(f"token must be 1-{MAX_TOKEN_CHARS} characters")
    return token


def parse_request(event: dict[str, Any]) -> ConnectRequest:
    """The connection request, or ValidationError saying what is wrong (never echoing a token)."""
    connection_id = websocket_connection_id(event, "$connect")
    context = event["requestContext"]
    params = event.get("queryStringParameters") or {}
    if not isinstance(params, dict):
        raise ValidationError("query string must be key=value pairs")
    role = params.get("role", "listener")
    if role not in ("speaker", "listener"):
        raise ValidationError("role must be 'speaker' or 'listener'")
    tenant = params.get("tenant")
    if not isinstance(tenant, str) or not _HINT.fullmatch(tenant):
        raise ValidationError("tenant is required: a tenant id, domain or client id")
    session = params.get("session")
    if not isinstance(session, str) or not _ID.fullmatch(session):
        raise ValidationError("session is required: 1-64 letters, digits, '.', '_' or '-'")
    identity = context.get("identity")
    source_ip = identity.get("sourceIp") if isinstance(identity, dict) else None
    if not isinstance(source_ip, str) or not source_ip:
        source_ip = "unknown"
    return ConnectRequest(
        connection_id=connection_id,
        role=role,
        tenant_hint=tenant,
        session_id=session,
        token=_token(event, params),
        source_ip=source_ip,
    )


def workflow_input(request: ConnectRequest, now: float, shards: int) -> dict[str, Any]:
    return {
        "connectionId": request.connection_id,
        "role": request.role,
        "tenantHint": request.tenant_hint,
        "sessionId": request.session_id,
        "token": request.token,
        "sourceIp": request.source_ip,
        "correlationId": current_correlation_id() or request.connection_id,
        "connectedAt": int(now * 1000),
        "expiresAt": int(now) + CONNECTION_TTL_SECONDS,
        "idleShard": idle_shard(request.connection_id, shards),
    }


def _detail(decision: dict[str, Any]) -> str | None:
    """The refusing error's own message (e.g. "token expired"), which never holds the token."""
    error = decision.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("Cause"), str):
        return None
    try:
        cause = json.loads(error["Cause"])
    except ValueError:
        return None
    message = cause.get("errorMessage") if isinstance(cause, dict) else None
    return message if isinstance(message, str) and len(message) <= 200 else None


def respond(status: int, code: str | None = None, message: str = "", retry_after: int | None = None) -> dict[str, Any]:
    if status == 200:
        return {"statusCode": 200}
    body: dict[str, Any] = {"code": code, "message": message, "correlationId": current_correlation_id()}
    response: dict[str, Any] = {"statusCode": status}
    if retry_after is not None:
        body["retryAfter"] = retry_after
        response["headers"] = {"Retry-After": str(retry_after)}
    response["body"] = json.dumps({"error": body})
    return response


def decide(payload: dict[str, Any]) -> dict[str, Any]:
    """Run AuthorizeConnection and return its decision; DependencyUnavailableError if there is none."""
    with translate_errors("stepfunctions", "StartSyncExecution"):
        outcome = _clients.stepfunctions().start_sync_execution(
            stateMachineArn=os.environ["BW_AUTHORIZE_CONNECTION_ARN"], input=json.dumps(payload)
        )
    if outcome.get("status") != "SUCCEEDED":
        _logger.error("admission workflow did not decide", extra={"status": outcome.get("status")})
        raise DependencyUnavailableError("the admission workflow did not decide")
    decision: dict[str, Any] = json.loads(outcome["output"])
    if decision.get("decision") not in ("allow", "deny") or not isinstance(decision.get("status"), int):
        raise DependencyUnavailableError("the admission workflow answered without a decision")
    return decision


_limiter: RateLimiter | None = None


def limiter() -> RateLimiter:
    global _limiter
    if _limiter is None:
        policy = RateLimitPolicy.from_env(
            "BW_CONNECT_RATE_LIMIT", "BW_CONNECT_RATE_LIMIT_WINDOW_SECONDS", default_limit=30, default_window=60
        )
        _limiter = RateLimiter(_clients.dynamodb(), os.environ["BW_RATE_LIMITS_TABLE"], policy)
    return _limiter


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    now = time.time()
    try:
        request = parse_request(event)
        outcome = limiter().check(f"connect#{request.source_ip}", now)
        if not outcome.enforced:
            _metrics.add_metric(name="RateLimitingDisabled", unit="Count", value=1)
        decision = decide(workflow_input(request, now, ActivityPolicy.from_env().shards))
    except RateLimitedError as error:
        _metrics.add_metric(name="ConnectionRateLimited", unit="Count", value=1)
        _logger.info("connection refused", extra={"status": error.status, "code": error.code})
        return respond(error.status, error.code, "Too many connection attempts", error.retry_after)
    except BreakwaterError as error:
        _metrics.add_metric(name="ConnectionRefused", unit="Count", value=1)
        _logger.info("connection refused", extra={"status": error.status, "code": error.code})
        return respond(error.status, error.code, str(error) or error.code, error.retry_after)
    status, code, reason = decision["status"], decision.get("code"), str(decision.get("reason", ""))
    if decision["decision"] == "allow" and status == 200:
        _metrics.add_metric(name="ConnectionAdmitted", unit="Count", value=1)
        _logger.info(
            "connection admitted",
            extra={"role": request.role, "tenant": decision.get("tenantId"), "anonymous": decision.get("anonymous")},
        )
        return respond(200)
    _metrics.add_metric(name="ConnectionRefused", unit="Count", value=1)
    _logger.info("connection refused", extra={"status": status, "code": code, "reason": reason, "role": request.role})
    message = _MESSAGES.get(reason, "Connection refused")
    detail = _detail(decision)
    if detail and code == "TOKEN_INVALID":
        message = f"{message}: {detail}"
    retry_after = decision.get("retryAfter")
    return respond(status, code, message, retry_after if isinstance(retry_after, int) else None)
