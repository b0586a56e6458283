"""$default route: anything that is not a known action.

``{"action": "ping"}`` counts as activity (lastActivityTime moves on — at most
once per ``BW_ACTIVITY_WRITE_INTERVAL_SECONDS`` — so the idle sweeper leaves
the connection alone) and redelivers the messages parked
for this connection while it was unreachable, in order. Everything else gets a
clear error frame on the socket — an unknown action, or a body that is not
JSON — and changes nothing.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from botocore.exceptions import ClientError

from resilience.activity import ActivityPolicy, ActivityRecorder
from resilience.breaker import CircuitBreaker
from resilience.clients import default_clients, error_code, translate_errors
from resilience.errors import BreakwaterError, ValidationError
from resilience.inputs import MAX_FRAME_BYTES, MAX_JSON_DEPTH, error_response, parse_json, websocket_connection_id
from resilience.observability import current_correlation_id, default_observability, with_observability
from resilience.outbox import Outbox

SUPPORTED_ACTIONS = ("sendMessage", "ping")
_logger = default_observability().logger
_metrics = default_observability().metrics
_clients = default_clients()
_activity = ActivityRecorder(_clients.dynamodb(), os.environ["BW_CONNECTIONS_TABLE"], ActivityPolicy.from_env())
# The same breaker (the same item) as message delivery: one view of API Gateway's health.
_breaker = CircuitBreaker.from_env("apigateway.postToConnection", _clients)
# The same Outbox rules as delivery (resilience.outbox): oldest first, once, within the TTL.
_outbox = Outbox(
    _clients.dynamodb(),
    outbox_table=os.environ["BW_OUTBOX_TABLE"],
    connections_table=os.environ["BW_CONNECTIONS_TABLE"],
    now=time.time,
)


def _post(connection_id: str, data: bytes) -> None:
    with translate_errors("apigatewaymanagementapi", "PostToConnection"):
        _clients.apigateway_management(os.environ["BW_WEBSOCKET_ENDPOINT"]).post_to_connection(
            ConnectionId=connection_id, Data=data
        )


def error_frame(code: str, message: str, correlation_id: str | None) -> bytes:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if correlation_id:
        frame["correlationId"] = correlation_id
    return json.dumps(frame).encode()


def classify(body: object) -> tuple[str, str | None]:
    """("ping", None), or ("error", the error code) for what the client sent."""
    try:
        message = parse_json(body)  # text only; size and nesting checked before parsing
    except ValidationError:
        return "error", "INVALID_MESSAGE"
    if not isinstance(message, dict):
        return "error", "INVALID_MESSAGE"
    if message.get("action") == "ping":
        return "ping", None
    return "error", "UNKNOWN_ACTION"


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        connection_id = websocket_connection_id(event, "$default")
    except ValidationError as refused:
        _logger.warning("not a WebSocket message event; ignored")  # no connection to send an error frame to
        return error_response(refused)
    kind, code = classify(event.get("body"))
    clients = _clients
    if kind == "ping":
        now_ms = int(time.time() * 1000)
        if _activity.touch(connection_id, now_ms) == "gone":
            # A ping from a connection that was already cleaned up must not resurrect it.
            return {"statusCode": 200}
        try:
            drained = _outbox.drain(connection_id, _post, _breaker)
        except BreakwaterError:
            # The Outbox keeps the messages; the next ping tries again.
            _logger.warning("outbox unavailable; redelivery postponed")
            return {"statusCode": 200}
        if drained.delivered:
            _metrics.add_metric(name="MessagesRedelivered", unit="Count", value=len(drained.delivered))
        if drained.dropped:
            _metrics.add_metric(name="MessagesDropped", unit="Count", value=len(drained.dropped))
        return {"statusCode": 200}
    message = (
        f"Message body must be a JSON object (at most {MAX_FRAME_BYTES} bytes, nested at most {MAX_JSON_DEPTH} deep)"
        if code == "INVALID_MESSAGE"
        else f"Unknown action; supported actions: {', '.join(SUPPORTED_ACTIONS)}"
    )
    _metrics.add_metric(name="RejectedFrames", unit="Count", value=1)
    try:
        with translate_errors("apigatewaymanagementapi", "PostToConnection"):
            clients.apigateway_management(os.environ["BW_WEBSOCKET_ENDPOINT"]).post_to_connection(
                ConnectionId=connection_id, Data=error_frame(str(code), message, current_correlation_id())
            )
    except BreakwaterError:
        # The error frame is a courtesy: API Gateway is busy; the client may retry.
        _logger.warning("could not send the error frame", extra={"code": code})
    except ClientError as exc:
        if error_code(exc) != "GoneException":
            raise
        _logger.info("client gone before the error frame", extra={"code": code})
    return {"statusCode": 400}
