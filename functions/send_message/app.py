"""sendMessage route: validate, rate-limit, deliver, and answer the sender.

The sender is a speaker of the session. The message is stored and fanned out
by the DeliverMessage workflow (Express, run synchronously); the sender gets
an ``ack`` with the message id once every recipient is delivered, gone or
parked, or an ``error`` frame saying why not (400, 403, 429, 503 with
retryAfter). Bad input changes nothing. If the RateLimits table is down,
limiting is off for that message — logged and counted, never a refusal.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from ulid import ULID

from resilience.activity import ActivityPolicy, ActivityRecorder
from resilience.clients import default_clients, translate_errors
from resilience.errors import (
    BreakwaterError,
    DependencyUnavailableError,
    RateLimitedError,
    ServiceTimeoutError,
    TenantRejectedError,
    ValidationError,
)
from resilience.inputs import error_response, parse_json, validate_event, websocket_connection_id
from resilience.observability import current_correlation_id, default_observability, with_observability
from resilience.rate_limits import RateLimiter, RateLimitPolicy

_SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "schema.json").read_text(encoding="utf-8"))
#: API Gateway frames are at most 128 KB; a message must fit in one with its envelope.
MAX_FRAME_BYTES = 32 * 1024
_observability = default_observability()
_logger, _metrics = _observability.logger, _observability.metrics
_clients = default_clients()
# A client retrying a sendMessage (same connection, same clientMessageId) gets the first
# attempt's ack and message id back; the message is neither stored nor delivered twice.
_idempotency = IdempotencyConfig(
    event_key_jmespath="[sender.connectionId, clientMessageId]", expires_after_seconds=3600
)
_idempotency_store = DynamoDBPersistenceLayer(
    table_name=os.environ["BW_IDEMPOTENCY_TABLE"], boto3_client=_clients.dynamodb()
)


def parse(body: object) -> dict[str, Any]:
    # Text only; size and nesting are checked before parsing.
    message = parse_json(body, max_bytes=MAX_FRAME_BYTES)
    validate_event(message, _SCHEMA, "invalid sendMessage")
    return message  # type: ignore[no-any-return]


def sender_of(connection_id: str, session_id: str) -> dict[str, str]:
    with translate_errors("dynamodb", "GetItem"):
        item = (
            _clients.dynamodb()
            .get_item(
                TableName=os.environ["BW_CONNECTIONS_TABLE"],
                Key={"connectionId": {"S": connection_id}},
                ConsistentRead=True,
            )
            .get("Item")
        )
    if item is None or item.get("sessionId", {}).get("S") != session_id:
        raise TenantRejectedError("sender is not connected to this session")
    if item.get("role", {}).get("S") != "speaker":
        raise TenantRejectedError("only speakers broadcast")
    return {"connectionId": connection_id, "role": "speaker", "userId": item.get("userId", {}).get("S", "anonymous")}


_limiter: RateLimiter | None = None
_activity = ActivityRecorder(_clients.dynamodb(), os.environ["BW_CONNECTIONS_TABLE"], ActivityPolicy.from_env())


def check_rate(subject: str, now: float) -> None:
    """One atomic ADD per message (resilience.rate_limits); a RateLimits outage never refuses."""
    global _limiter
    if _limiter is None:
        policy = RateLimitPolicy.from_env(
            "BW_RATE_LIMIT_MESSAGES", "BW_RATE_LIMIT_WINDOW_SECONDS", default_limit=20, default_window=10
        )
        _limiter = RateLimiter(_clients.dynamodb(), os.environ["BW_RATE_LIMITS_TABLE"], policy)
    if not _limiter.check(subject, now).enforced:
        # Seed 002: availability over limiting, but never silently.
        _logger.warning("rate limiting unavailable; message allowed")
        _metrics.add_metric(name="RateLimitingDisabled", unit="Count", value=1)


@idempotent_function(  # type: ignore[untyped-decorator]
    data_keyword_argument="request", config=_idempotency, persistence_store=_idempotency_store
)
def deliver_once(request: dict[str, Any]) -> dict[str, Any]:
    return deliver(request["message"], request["sender"], time.time())


def deliver(message: dict[str, Any], sender: dict[str, str], now: float) -> dict[str, Any]:
    message_id = str(ULID.from_timestamp(now))
    payload = {
        "messageId": message_id,
        "sessionId": message["sessionId"],
        "clientMessageId": message["clientMessageId"],
        "sender": sender,
        "body": message["body"],
        "timestamp": int(now * 1000),
        "expiresAt": int(now) + int(float(os.environ.get("BW_MESSAGE_TTL_HOURS", "24")) * 3600),
        "correlationId": current_correlation_id() or message_id,
    }
    with translate_errors("stepfunctions", "StartSyncExecution"):
        outcome = _clients.stepfunctions().start_sync_execution(
            stateMachineArn=os.environ["BW_DELIVER_MESSAGE_ARN"], name=payload["messageId"], input=json.dumps(payload)
        )
    if outcome["status"] != "SUCCEEDED":
        _logger.error("delivery failed", extra={"error": outcome.get("error")})
        if outcome.get("error") == "ServiceTimeoutError":
            raise ServiceTimeoutError("the message could not be stored")
        raise DependencyUnavailableError("the message could not be delivered")
    report = json.loads(outcome["output"])
    counts = {key: int(report[key]) for key in ("delivered", "gone", "parked")}
    return {"messageId": payload["messageId"], **counts}


def answer(connection_id: str, frame: dict[str, Any]) -> None:
    try:
        with translate_errors("apigatewaymanagementapi", "PostToConnection"):
            _clients.apigateway_management(os.environ["BW_WEBSOCKET_ENDPOINT"]).post_to_connection(
                ConnectionId=connection_id, Data=json.dumps(frame).encode()
            )
    except Exception:  # noqa: BLE001 - the sender left or API Gateway is busy: the outcome stands
        _logger.info("could not answer the sender", extra={"type": frame.get("type")})


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        connection_id = websocket_connection_id(event, "sendMessage")
    except ValidationError as refused:
        _logger.warning("not a WebSocket message event; ignored")  # no connection to answer
        return error_response(refused)
    client_message_id: str | None = None
    try:
        message = parse(event.get("body"))
        client_message_id = message["clientMessageId"]
        now = time.time()
        sender = sender_of(connection_id, message["sessionId"])
        # Sending is activity too (seed 001); bounded like pings, and never worth refusing a message over.
        try:
            _activity.touch(connection_id, int(now * 1000))
        except BreakwaterError:
            _logger.warning("activity not recorded")
        check_rate(sender["userId"] if sender["userId"] != "anonymous" else connection_id, now)
        _idempotency.register_lambda_context(context)
        result = deliver_once(
            request={"message": message, "sender": sender, "clientMessageId": message["clientMessageId"]}
        )
    except IdempotencyAlreadyInProgressError:
        error = RateLimitedError("the same message is being delivered", retry_after=1)
        answer(connection_id, {"type": "error", **error.to_response(current_correlation_id())["error"]})
        return {"statusCode": 429}
    except BreakwaterError as error:
        frame: dict[str, Any] = {"type": "error", **error.to_response(current_correlation_id())["error"]}
        if client_message_id:
            frame["clientMessageId"] = client_message_id
        _metrics.add_metric(name="MessagesRefused", unit="Count", value=1)
        answer(connection_id, frame)
        return {"statusCode": error.status}
    _metrics.add_metric(name="MessagesAccepted", unit="Count", value=1)
    answer(
        connection_id,
        {"type": "ack", "clientMessageId": client_message_id, "messageId": result["messageId"], "recipients": result},
    )
    return {"statusCode": 200}
