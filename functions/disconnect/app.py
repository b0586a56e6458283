"""$disconnect route: hand the connection to the disconnect cleanup workflow.

API Gateway ignores a $disconnect response, so nothing here may fail loudly:
if Step Functions cannot be reached, the connection is deleted directly
(best effort), and the Connections table's expiresAt TTL is the last safety net.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from resilience.clients import default_clients, translate_errors
from resilience.errors import BreakwaterError, ValidationError
from resilience.inputs import validate_event
from resilience.observability import current_correlation_id, default_observability, with_observability

_SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "schema.json").read_text(encoding="utf-8"))
_logger = default_observability().logger
_metrics = default_observability().metrics


def cleanup_input(event: dict[str, Any], correlation_id: str) -> dict[str, str]:
    return {
        "connectionId": event["requestContext"]["connectionId"],
        "reason": "clientDisconnected",
        "correlationId": correlation_id,
    }


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        validate_event(event, _SCHEMA, "$disconnect event")  # compiled once per container
    except ValidationError:
        _logger.warning("not a $disconnect event; ignored")
        return {"statusCode": 400}
    correlation_id = current_correlation_id() or event["requestContext"]["requestId"]
    payload = cleanup_input(event, correlation_id)
    clients = default_clients()
    try:
        with translate_errors("stepfunctions", "StartExecution"):
            clients.stepfunctions().start_execution(
                stateMachineArn=os.environ["BW_DISCONNECT_CLEANUP_ARN"],
                name=f"{payload['connectionId']}-{event['requestContext']['requestId']}"[:80],
                input=json.dumps(payload),
            )
        _metrics.add_metric(name="DisconnectCleanupStarted", unit="Count", value=1)
    except BreakwaterError:
        _logger.warning("cleanup workflow unavailable; deleting the connection directly")
        _metrics.add_metric(name="DisconnectCleanupFallback", unit="Count", value=1)
        with translate_errors("dynamodb", "DeleteItem"):
            clients.dynamodb().delete_item(
                TableName=os.environ["BW_CONNECTIONS_TABLE"],
                Key={"connectionId": {"S": payload["connectionId"]}},
            )
    return {"statusCode": 200}
