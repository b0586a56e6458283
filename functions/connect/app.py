"""$connect route: validate the connection request and store the connection.

Minimal admission until the authorization workflow lands (it replaces this
handler): anonymous listeners are admitted; speakers are refused with 401,
because no token can be verified here yet — fail closed. Bad input is a 400
and writes nothing; a Connections table fault is a 503 with retryAfter.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from resilience.clients import default_clients, translate_errors
from resilience.errors import BreakwaterError, TokenInvalidError, ValidationError
from resilience.observability import current_correlation_id, default_observability, with_observability

#: API Gateway closes a WebSocket after 2 h; the TTL removes items whose $disconnect never came.
CONNECTION_TTL_SECONDS = 3 * 3600
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_logger = default_observability().logger
_metrics = default_observability().metrics


def parse_request(event: dict[str, Any]) -> dict[str, str]:
    """role, tenant and session from the query string, or ValidationError saying what is wrong."""
    params = event.get("queryStringParameters") or {}
    if not isinstance(params, dict):
        raise ValidationError("query string must be key=value pairs")
    role = params.get("role", "listener")
    if role not in ("speaker", "listener"):
        raise ValidationError("role must be 'speaker' or 'listener'")
    request = {"role": role}
    for name in ("tenant", "session"):
        value = params.get(name)
        if not isinstance(value, str) or not _ID.match(value):
            raise ValidationError(f"{name} is required: 1-64 letters, digits, '.', '_' or '-'")
        request[name] = value
    return request


def connection_item(connection_id: str, request: dict[str, str], now: float) -> dict[str, Any]:
    millis = str(int(now * 1000))
    return {
        "connectionId": {"S": connection_id},
        "tenantId": {"S": request["tenant"]},
        "sessionId": {"S": request["session"]},
        "role": {"S": request["role"]},
        "userId": {"S": "anonymous"},
        "connectedAt": {"N": millis},
        "lastActivityTime": {"N": millis},
        "expiresAt": {"N": str(int(now) + CONNECTION_TTL_SECONDS)},
    }


def error_response(error: BreakwaterError) -> dict[str, Any]:
    response: dict[str, Any] = {
        "statusCode": error.status,
        "body": json.dumps(error.to_response(current_correlation_id())),
    }
    if error.retry_after is not None:
        response["headers"] = {"Retry-After": str(error.retry_after)}
    return response


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    connection_id = (event.get("requestContext") or {}).get("connectionId")
    try:
        if not isinstance(connection_id, str) or not connection_id:
            raise ValidationError("not a $connect event")
        request = parse_request(event)
        if request["role"] == "speaker":
            _metrics.add_metric(name="SpeakerRefused", unit="Count", value=1)
            raise TokenInvalidError("speaker admission needs token verification")
        with translate_errors("dynamodb", "PutItem"):
            default_clients().dynamodb().put_item(
                TableName=os.environ["BW_CONNECTIONS_TABLE"],
                Item=connection_item(connection_id, request, time.time()),
            )
    except BreakwaterError as error:
        _logger.info("connection refused", extra={"status": error.status, "code": error.code})
        return error_response(error)
    _metrics.add_metric(name="ConnectionAdmitted", unit="Count", value=1)
    _logger.info("connection admitted", extra={"role": request["role"], "tenant": request["tenant"]})
    return {"statusCode": 200}
