"""Deliver a message to one batch of a session's recipients (the Map's item).

Input: ``{"messageId", "sessionId", "frame", "recipients": [...], "correlationId"}``.
Output: the delivered / gone / parked connection ids and counts. Parked
recipients are in the Outbox before this returns; if the Outbox itself
cannot be written, the batch fails with ``DependencyUnavailableError`` so the
workflow stops loudly instead of losing them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from delivery import BatchResult, deliver_batch

from resilience.breaker import CircuitBreaker, Transition
from resilience.clients import Clients, ClientSettings, default_clients, translate_errors
from resilience.errors import BreakwaterError, DependencyUnavailableError
from resilience.inputs import validate_event
from resilience.observability import default_observability, with_observability
from resilience.retry import RetryPolicy

_SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "schema.json").read_text(encoding="utf-8"))
_observability = default_observability()
_logger, _metrics = _observability.logger, _observability.metrics
_clients = default_clients()
# The batch's round loop is the one retry layer for posts (the ASL numbers from the
# template); SDK retries under it would multiply attempts on a throttled
# connection (3 SDK attempts x 4 rounds) and hide the stated policy.
_posting = Clients(settings=dataclasses.replace(ClientSettings.from_env(), max_attempts=1))


def _on_transition(transition: Transition) -> None:
    _metrics.add_metric(name=f"Breaker{transition.to_state.title().replace('_', '')}", unit="Count", value=1)
    _logger.warning("breaker transition", extra={"breaker": transition.name, "to": str(transition.to_state)})


_breaker = CircuitBreaker.from_env("apigateway.postToConnection", _clients.dynamodb(), on_transition=_on_transition)


def _park(event: dict[str, Any], result: BatchResult) -> None:
    ttl = int(time.time()) + int(float(os.environ.get("BW_MESSAGE_TTL_HOURS", "24")) * 3600)
    table = os.environ["BW_OUTBOX_TABLE"]
    frame = json.dumps(event["frame"])
    try:
        for connection_id, reason in result.parked.items():
            with translate_errors("dynamodb", "PutItem"):
                _clients.dynamodb().put_item(
                    TableName=table,
                    Item={
                        "connectionId": {"S": connection_id},
                        "messageId": {"S": event["messageId"]},
                        "sessionId": {"S": event["sessionId"]},
                        "frame": {"S": frame},
                        "reason": {"S": reason},
                        "attempts": {"N": str(result.attempts.get(connection_id, 0))},
                        "expiresAt": {"N": str(ttl)},
                    },
                )
    except BreakwaterError as exc:
        raise DependencyUnavailableError(f"could not park {len(result.parked)} recipients") from exc


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    validate_event(event, _SCHEMA, "invalid delivery batch")
    data = json.dumps(event["frame"]).encode()
    endpoint = os.environ["BW_WEBSOCKET_ENDPOINT"]

    def post(connection_id: str) -> None:
        with translate_errors("apigatewaymanagementapi", "PostToConnection"):
            _posting.apigateway_management(endpoint).post_to_connection(ConnectionId=connection_id, Data=data)

    # The speaker is acknowledged by send_message, not sent its own message back.
    ids = [r if isinstance(r, str) else r["connectionId"]["S"] for r in event["recipients"]]
    recipients = [r for r in ids if r != event.get("senderConnectionId")]
    result = deliver_batch(
        recipients,
        post,
        _breaker,
        policy=RetryPolicy.from_env(),
        sleep=time.sleep,
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    _breaker.flush()
    if result.parked:
        _park(event, result)
    for name, count in (
        ("Delivered", len(result.delivered)),
        ("Gone", len(result.gone)),
        ("Parked", len(result.parked)),
    ):
        if count:
            _metrics.add_metric(name=f"Messages{name}", unit="Count", value=count)
    return result.to_json()
