"""$default route: anything that is not a known action.

``{"action": "ping"}`` counts as activity (lastActivityTime moves on, so the
idle sweeper leaves the connection alone). Everything else gets a clear error
frame on the socket — an unknown action, or a body that is not JSON — and
changes nothing.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from botocore.exceptions import ClientError

from resilience.clients import default_clients, error_code, translate_errors
from resilience.errors import BreakwaterError
from resilience.observability import current_correlation_id, default_observability, with_observability

SUPPORTED_ACTIONS = ("sendMessage", "ping")
_logger = default_observability().logger
_metrics = default_observability().metrics


def error_frame(code: str, message: str, correlation_id: str | None) -> bytes:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if correlation_id:
        frame["correlationId"] = correlation_id
    return json.dumps(frame).encode()


def classify(body: str | None) -> tuple[str, str | None]:
    """("ping", None), or ("error", the error code) for what the client sent."""
    try:
        message = json.loads(body or "")
    except ValueError:
        return "error", "INVALID_MESSAGE"
    if not isinstance(message, dict):
        return "error", "INVALID_MESSAGE"
    if message.get("action") == "ping":
        return "ping", None
    return "error", "UNKNOWN_ACTION"


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    connection_id = event["requestContext"]["connectionId"]
    kind, code = classify(event.get("body"))
    clients = default_clients()
    if kind == "ping":
        try:
            with translate_errors("dynamodb", "UpdateItem"):
                clients.dynamodb().update_item(
                    TableName=os.environ["BW_CONNECTIONS_TABLE"],
                    Key={"connectionId": {"S": connection_id}},
                    UpdateExpression="SET lastActivityTime = :now",
                    ConditionExpression="attribute_exists(connectionId)",
                    ExpressionAttributeValues={":now": {"N": str(int(time.time() * 1000))}},
                )
        except ClientError as exc:
            # A ping from a connection that was already cleaned up must not resurrect it.
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        return {"statusCode": 200}
    message = (
        "Message body must be a JSON object"
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
