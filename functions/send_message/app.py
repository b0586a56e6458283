"""sendMessage route: validate, rate-limit, accept, deliver, and answer the sender.

The sender is a speaker of the session. A message is *accepted* once: its
``messageId`` (a ULID, so ids sort in send order) is made the first time a
(sender connection, clientMessageId) pair is seen and kept by Powertools
Idempotency, so every retry of the sender delivers under the same id. It is
then stored and fanned out by the DeliverMessage workflow (Express, run
synchronously, one SDK attempt): the sender gets an ``ack`` with the message
id once every recipient is delivered, gone, parked or dropped, or an ``error``
frame saying why not (400, 403, 429, 503 with retryAfter). A retry after a
503 runs the workflow again under the same id; the delivery ledger makes that
run post only to recipients no earlier run settled, and the lease keeps two
runs from posting at once. Bad input changes nothing. If the RateLimits
table is down, limiting is off for that message — logged and counted, never a
refusal.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
import time
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from ulid import ULID

from resilience.activity import ActivityPolicy, ActivityRecorder
from resilience.clients import Clients, ClientSettings, default_clients, translate_errors
from resilience.deliveries import DeliveryLedger
from resilience.errors import (
    BreakwaterError,
    DependencyUnavailableError,
    RetryableError,
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
# One attempt: a second StartSyncExecution would start a second run while the first may
# still post. The read timeout outlasts the workflow's TimeoutSeconds, so the outcome comes back.
_delivering = Clients(settings=dataclasses.replace(ClientSettings.from_env(), max_attempts=1))
_ledger = DeliveryLedger(_clients.dynamodb(), os.environ["BW_DELIVERIES_TABLE"], now=time.time)
#: How long one run of DeliverMessage may still be posting after it started.
_MAX_RUN_SECONDS = float(os.environ.get("BW_DELIVERY_MAX_RUN_SECONDS", "32"))
# A client retrying a sendMessage (same connection, same clientMessageId) gets the same
# messageId: acceptance is what is idempotent, and it never fails once it has made the id.
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
def accept(request: dict[str, Any]) -> dict[str, Any]:
    """The message's identity, made once: the same for every retry of the sender."""
    now_ms = int(request["now"] * 1000)
    return {"messageId": str(ULID.from_timestamp(now_ms / 1000)), "timestamp": now_ms, "acceptedBy": request["attempt"]}


def accept_once(message: dict[str, Any], sender: dict[str, str], now: float) -> tuple[dict[str, Any], bool]:
    """(accepted, first): whether this attempt is the one that accepted the message."""
    attempt = secrets.token_hex(8)
    request = {"sender": sender, "clientMessageId": message["clientMessageId"], "now": now, "attempt": attempt}
    try:
        accepted: dict[str, Any] = accept(request=request)
    except IdempotencyAlreadyInProgressError as exc:
        # The same message is being accepted by a concurrent attempt this very moment.
        raise RetryableError("the same message is being accepted", retry_after=1) from exc
    except IdempotencyPersistenceLayerError as exc:
        raise DependencyUnavailableError("messages cannot be accepted right now") from exc
    return accepted, accepted.get("acceptedBy") == attempt


def earlier_outcome(accepted: dict[str, Any], first: bool, now: float) -> dict[str, Any] | None:
    """For a retry: the outcome a finished run recorded, or the right to start a run.

    A retry starts a run only when no earlier run of the message can still be
    posting (the delivery lease); otherwise it is told when to come back.
    """
    if first:
        return None
    report = _ledger.report(accepted["messageId"])
    if report is not None:
        return {"messageId": accepted["messageId"], **report}
    held_until = _ledger.take_lease(
        accepted["messageId"],
        seconds=_MAX_RUN_SECONDS,
        first_run_ends=accepted["timestamp"] / 1000 + _MAX_RUN_SECONDS,
        expires_at=expires_at(accepted),
    )
    if held_until is not None:
        raise RetryableError("the message is still being delivered", retry_after=max(1, math.ceil(held_until - now)))
    return None


def expires_at(accepted: dict[str, Any]) -> int:
    """The message's TTL (MessageTtlHours after it was accepted): its item, Outbox entries and ledger."""
    return int(accepted["timestamp"]) // 1000 + int(float(os.environ.get("BW_MESSAGE_TTL_HOURS", "24")) * 3600)


def deliver(
    message: dict[str, Any], sender: dict[str, str], accepted: dict[str, Any], *, now: float, remaining: float
) -> dict[str, Any]:
    timestamp = int(accepted["timestamp"])
    payload = {
        "messageId": accepted["messageId"],
        "sessionId": message["sessionId"],
        "clientMessageId": message["clientMessageId"],
        "sender": sender,
        "body": message["body"],
        "timestamp": timestamp,
        "expiresAt": expires_at(accepted),
        "correlationId": current_correlation_id() or accepted["messageId"],
        "rerun": False,
    }
    read_timeout = _delivering.settings.timeouts_for("stepfunctions").read
    if remaining < read_timeout + 1:
        # Not enough time left to hear the outcome: starting now could only leave the sender guessing.
        raise RetryableError("not enough time left to deliver", retry_after=1)
    with translate_errors("stepfunctions", "StartSyncExecution"):
        outcome = _delivering.stepfunctions().start_sync_execution(
            stateMachineArn=os.environ["BW_DELIVER_MESSAGE_ARN"], name=payload["messageId"], input=json.dumps(payload)
        )
    if outcome["status"] != "SUCCEEDED":
        _logger.error("delivery failed", extra={"status": outcome["status"], "error": outcome.get("error")})
        if outcome.get("error") == "ServiceTimeoutError":
            # Nothing was stored, so no batch ever started: the sender may retry at once.
            try:
                _ledger.release(payload["messageId"], expires_at=int(payload["expiresAt"]))
            except BreakwaterError:
                _logger.warning("delivery lease not released")
            raise ServiceTimeoutError("the message could not be stored")
        # A batch of this run may still be posting: a retry before then is told to wait.
        run_ends = int(accepted["timestamp"]) / 1000 + _MAX_RUN_SECONDS
        raise DependencyUnavailableError(
            "the message could not be delivered", retry_after=max(1, math.ceil(run_ends - now))
        )
    report = json.loads(outcome["output"])
    counts = {key: int(report.get(key, 0)) for key in ("delivered", "gone", "parked", "dropped")}
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
        accepted, first = accept_once(message, sender, now)
        result = earlier_outcome(accepted, first, now) or deliver(
            message, sender, accepted, now=now, remaining=context.get_remaining_time_in_millis() / 1000
        )
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
