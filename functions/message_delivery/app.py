"""Deliver a message to one batch of a session's recipients (the Map's item).

Input: ``{"messageId", "sessionId", "frame", "recipients": [...], "correlationId",
"expiresAt", "rerun"}``. Output: the delivered / gone / parked / dropped
connection ids and counts.

* On a re-run of the same message (``rerun``), recipients an earlier run
  already settled are not posted again; they are reported as they settled.
* A recipient with parked messages (``outboxPending`` on its Connections
  item) is never posted to directly: the message is parked behind the others
  and that recipient's Outbox is drained in order.
* The batch's outcomes go to the delivery ledger when it ends, so neither a
  re-run nor the workflow's own fallback posts to them again.

Parked recipients are in the Outbox before this returns; if the Outbox itself
cannot be written, the batch fails with ``DependencyUnavailableError`` (after
recording what it did) so the workflow parks the rest or stops loudly.
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
from resilience.deliveries import DeliveryLedger, Settlement
from resilience.errors import BreakwaterError, DependencyUnavailableError
from resilience.inputs import validate_event
from resilience.observability import default_observability, with_observability
from resilience.outbox import Outbox, ParkedMessage
from resilience.retry import RetryPolicy

_SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "schema.json").read_text(encoding="utf-8"))
_observability = default_observability()
_logger, _metrics = _observability.logger, _observability.metrics
_clients = default_clients()
# The batch's round loop is the one retry layer for posts (the ASL numbers from the
# template); SDK retries under it would multiply attempts on a throttled
# connection (3 SDK attempts x 4 rounds) and hide the stated policy.
_posting = Clients(settings=dataclasses.replace(ClientSettings.from_env(), max_attempts=1))
_outbox = Outbox(
    _clients.dynamodb(),
    outbox_table=os.environ["BW_OUTBOX_TABLE"],
    connections_table=os.environ["BW_CONNECTIONS_TABLE"],
    now=time.time,
)
_ledger = DeliveryLedger(_clients.dynamodb(), os.environ["BW_DELIVERIES_TABLE"], now=time.time)
#: Seconds kept back from the Lambda's remaining time to park and record.
_RESERVE_SECONDS = float(os.environ.get("BW_DELIVERY_RESERVE_SECONDS", "5"))


def _on_transition(transition: Transition) -> None:
    _metrics.add_metric(name=f"Breaker{transition.to_state.title().replace('_', '')}", unit="Count", value=1)
    _logger.warning("breaker transition", extra={"breaker": transition.name, "to": str(transition.to_state)})


_breaker = CircuitBreaker.from_env("apigateway.postToConnection", _clients, on_transition=_on_transition)


def _recipients(event: dict[str, Any]) -> dict[str, bool]:
    """Connection id -> whether it has parked messages, in the order given; the sender left out."""
    found: dict[str, bool] = {}
    for recipient in event["recipients"]:
        if isinstance(recipient, str):
            found.setdefault(recipient, False)
        else:
            found.setdefault(recipient["connectionId"]["S"], "outboxPending" in recipient)
    # The speaker is acknowledged by send_message, not sent its own message back.
    found.pop(event.get("senderConnectionId") or "", None)
    return found


def _park(event: dict[str, Any], result: BatchResult, expires_at: int) -> list[str]:
    """Park every parked recipient; the ones whose Outbox write failed are returned (and unparked)."""
    frame = json.dumps(event["frame"])
    failed: list[str] = []
    for connection_id, reason in list(result.parked.items()):
        try:
            _outbox.park(
                ParkedMessage(
                    connection_id=connection_id,
                    message_id=event["messageId"],
                    session_id=event["sessionId"],
                    frame=frame,
                    reason=reason,
                    expires_at=expires_at,
                    attempts=result.attempts.get(connection_id, 0),
                )
            )
        except BreakwaterError:
            failed.append(connection_id)
            del result.parked[connection_id]
    return failed


def _post(connection_id: str, data: bytes) -> None:
    with translate_errors("apigatewaymanagementapi", "PostToConnection"):
        _posting.apigateway_management(os.environ["BW_WEBSOCKET_ENDPOINT"]).post_to_connection(
            ConnectionId=connection_id, Data=data
        )


def _drain_behind(event: dict[str, Any], result: BatchResult, behind: list[str], remaining: Any) -> None:
    """Recipients with older parked messages: deliver those first, then this one, in order."""
    for connection_id in behind:
        if connection_id not in result.parked or remaining() < _RESERVE_SECONDS:
            continue
        try:
            drained = _outbox.drain(connection_id, _post, _breaker)
        except BreakwaterError:
            continue  # the Outbox keeps them; the recipient's next frame drains it
        if drained.delivered:
            _metrics.add_metric(name="MessagesRedelivered", unit="Count", value=len(drained.delivered))
        if event["messageId"] in drained.delivered:
            del result.parked[connection_id]
            result.delivered.append(connection_id)


def _record(event: dict[str, Any], result: BatchResult, batch: str, expires_at: int) -> None:
    try:
        _ledger.record(event["messageId"], batch, result.outcomes(), expires_at=expires_at)
    except BreakwaterError:
        # Delivery stands; only a re-run of this message could post to these recipients again.
        _logger.error("delivery progress not recorded")
        _metrics.add_metric(name="DeliveryProgressNotRecorded", unit="Count", value=1)


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    validate_event(event, _SCHEMA, "invalid delivery batch")
    data = json.dumps(event["frame"]).encode()
    expires_at = int(event.get("expiresAt") or time.time() + float(os.environ.get("BW_MESSAGE_TTL_HOURS", "24")) * 3600)

    def post(connection_id: str) -> None:
        _post(connection_id, data)

    def remaining() -> float:
        return float(context.get_remaining_time_in_millis()) / 1000

    recipients = _recipients(event)
    if not recipients:
        return BatchResult().to_json()
    batch = min(recipients)
    settled = _ledger.settled(event["messageId"]) if event.get("rerun") else Settlement()
    todo = [c for c in recipients if c not in settled]
    behind = [c for c in todo if recipients[c]]
    result = deliver_batch(
        [c for c in todo if not recipients[c]],
        post,
        _breaker,
        policy=RetryPolicy.from_env(),
        sleep=time.sleep,
        remaining_seconds=remaining,
        reserve_seconds=_RESERVE_SECONDS,
    )
    for connection_id in behind:
        result.parked[connection_id] = "behind_parked"
    unparked = _park(event, result, expires_at)
    _drain_behind(event, result, behind, remaining)
    _breaker.flush()
    _record(event, result, batch, expires_at)
    if unparked:
        raise DependencyUnavailableError(f"could not park {len(unparked)} recipients")
    for outcome, ids in result.outcomes().items():
        if ids:
            _metrics.add_metric(name=f"Messages{outcome.title()}", unit="Count", value=len(ids))
    # What earlier runs settled is reported as it settled: the ack adds up every recipient once.
    for connection_id in recipients:
        earlier = settled.outcome.get(connection_id)
        if earlier == "parked":
            result.parked[connection_id] = "earlier_run"
        elif earlier is not None:
            getattr(result, earlier).append(connection_id)
    return result.to_json()
