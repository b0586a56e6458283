"""The Outbox: messages parked for one recipient, delivered later, in order, once.

An Outbox item is keyed by the recipient's ``connectionId`` and the message's
``messageId`` (a ULID, so a Query returns them in send order), and carries the
frame, the reason it was parked and ``expiresAt`` (the message's own TTL).

Two marks on the recipient's Connections item keep the delivery contract:

* ``outboxPending`` — the id of the newest message parked for it. While it is
  set, a new message to that recipient is parked behind the others and the
  Outbox is drained first, so a message never overtakes a parked one. The
  drain clears it only if it is still the value the drain started from (a
  message parked meanwhile keeps it set).
* ``outboxPosted`` — ids posted by a drain whose Outbox item could not be
  deleted afterwards. The next drain deletes those items instead of posting
  them again.

A drain stops at the first recipient-level failure (breaker open, throttle,
5xx, timeout, gone): what is left keeps its order for the next drain. A frame
API Gateway refuses for good (413) is dropped and counted, never retried
forever in front of the others; an item past its TTL is deleted unsent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from resilience.breaker import CircuitBreaker, CircuitOpenError
from resilience.clients import error_code, is_transient, translate_errors
from resilience.errors import BreakwaterError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["PERMANENT_POST_ERRORS", "DrainResult", "Outbox", "ParkedMessage"]

_logger = logging.getLogger(__name__)

#: postToConnection answers that will never turn into a delivery: the frame is dropped, not parked.
PERMANENT_POST_ERRORS = frozenset({"PayloadTooLargeException"})


@dataclass(frozen=True)
class ParkedMessage:
    """One (message, recipient) pair that could not be delivered now."""

    connection_id: str
    message_id: str
    session_id: str
    frame: str
    reason: str
    expires_at: int
    attempts: int = 0


@dataclass
class DrainResult:
    delivered: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    expired: int = 0
    #: Why the drain stopped early (``circuit_open``, ``gone``, ``transient``), or None when it ran out of items.
    stopped_by: str | None = None
    #: Whether the Outbox may still hold messages for this recipient.
    remaining: bool = False


class Outbox:
    """Park and drain one recipient's messages (the Outbox and Connections tables)."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        *,
        outbox_table: str,
        connections_table: str,
        now: Callable[[], float],
    ) -> None:
        self._ddb = dynamodb
        self._outbox = outbox_table
        self._connections = connections_table
        self._now = now

    # -- parking ---------------------------------------------------------------------------------
    def park(self, message: ParkedMessage) -> None:
        """Write the pair to the Outbox, then mark the recipient (both idempotent).

        Raises the taxonomy error when the Outbox cannot be written: the caller
        must not report the pair as parked.
        """
        with translate_errors("dynamodb", "PutItem"):
            self._ddb.put_item(
                TableName=self._outbox,
                Item={
                    "connectionId": {"S": message.connection_id},
                    "messageId": {"S": message.message_id},
                    "sessionId": {"S": message.session_id},
                    "frame": {"S": message.frame},
                    "reason": {"S": message.reason},
                    "attempts": {"N": str(message.attempts)},
                    "expiresAt": {"N": str(message.expires_at)},
                },
            )
        self.mark_pending(message.connection_id, message.message_id)

    def mark_pending(self, connection_id: str, message_id: str) -> None:
        """Set ``outboxPending``; a recipient that has left is not recreated."""
        try:
            self._update_connection(connection_id, "SET outboxPending = :m", {":m": {"S": message_id}}, strict=True)
        except BreakwaterError:
            # The item is parked; without the mark a later message may overtake it
            # (it is still delivered on the recipient's next frame). Not worth failing for.
            _logger.warning("outbox mark not written", extra={"connection": connection_id})

    # -- draining --------------------------------------------------------------------------------
    def drain(
        self,
        connection_id: str,
        post: Callable[[str, bytes], None],
        breaker: CircuitBreaker,
        *,
        limit: int = 25,
        marks: Mapping[str, Any] | None = None,
    ) -> DrainResult:
        """Post up to ``limit`` parked frames oldest first; stop at the first that cannot go.

        ``marks`` is the recipient's Connections item when the caller already
        read it (consistently); otherwise it is read here. Raises the taxonomy
        error when the Outbox cannot be read: nothing was posted.
        """
        if marks is None:
            marks = self._marks(connection_id)
        pending = marks.get("outboxPending", {}).get("S")
        posted = set(marks.get("outboxPosted", {}).get("SS", []))
        result = DrainResult()
        items = self._query(connection_id, limit)
        now = self._now()
        for item in items:
            message_id = item["messageId"]["S"]
            if message_id in posted:
                # Posted by an earlier drain that could not delete it: delete now, never post twice.
                self._forget(connection_id, message_id, posted=True)
                continue
            if float(item.get("expiresAt", {}).get("N", "inf")) <= now:
                result.expired += 1
                self._forget(connection_id, message_id, posted=False)
                continue
            try:
                breaker.call(post, connection_id, item["frame"]["S"].encode())
            except CircuitOpenError:
                result.stopped_by, result.remaining = "circuit_open", True
                return result
            except Exception as exc:  # noqa: BLE001 - the drain classifies every answer
                code = error_code(exc)
                if code == "GoneException":
                    result.stopped_by, result.remaining = "gone", True
                    return result
                if code in PERMANENT_POST_ERRORS:
                    result.dropped.append(message_id)
                    self._forget(connection_id, message_id, posted=False)
                    continue
                if is_transient(exc) or isinstance(exc, BreakwaterError):
                    result.stopped_by, result.remaining = "transient", True
                    return result
                # Any other refusal (403 for a bad stage, ...): keep the order, try on the next frame.
                _logger.warning("redelivery refused", extra={"code": code or type(exc).__name__})
                result.stopped_by, result.remaining = "refused", True
                return result
            result.delivered.append(message_id)
            self._forget(connection_id, message_id, posted=False, just_posted=True)
        result.remaining = len(items) == limit
        if not result.remaining and pending is not None:
            self._clear_pending(connection_id, pending)
        return result

    def _marks(self, connection_id: str) -> Mapping[str, Any]:
        with translate_errors("dynamodb", "GetItem"):
            item = self._ddb.get_item(
                TableName=self._connections,
                Key={"connectionId": {"S": connection_id}},
                ProjectionExpression="outboxPending, outboxPosted",
                ConsistentRead=True,
            ).get("Item")
        return item or {}

    def _query(self, connection_id: str, limit: int) -> list[dict[str, Any]]:
        with translate_errors("dynamodb", "Query"):
            page = self._ddb.query(
                TableName=self._outbox,
                KeyConditionExpression="connectionId = :c",
                ExpressionAttributeValues={":c": {"S": connection_id}},
                ScanIndexForward=True,
                ConsistentRead=True,
                Limit=limit,
            )
        return list(page.get("Items", []))

    def _forget(self, connection_id: str, message_id: str, *, posted: bool, just_posted: bool = False) -> None:
        """Delete the item; when a just-posted item cannot be deleted, remember it was posted."""
        try:
            with translate_errors("dynamodb", "DeleteItem"):
                self._ddb.delete_item(
                    TableName=self._outbox,
                    Key={"connectionId": {"S": connection_id}, "messageId": {"S": message_id}},
                )
        except (BreakwaterError, ClientError):
            if just_posted:
                self._remember_posted(connection_id, message_id)
            return
        if posted:
            self._update_connection(connection_id, "DELETE outboxPosted :m", {":m": {"SS": [message_id]}})

    def _remember_posted(self, connection_id: str, message_id: str) -> None:
        try:
            self._update_connection(connection_id, "ADD outboxPosted :m", {":m": {"SS": [message_id]}}, strict=True)
        except (BreakwaterError, ClientError):
            # Both tables failed at once: the next drain may post this frame again.
            _logger.error("posted frame not recorded; it may be redelivered", extra={"connection": connection_id})

    def _clear_pending(self, connection_id: str, seen: str) -> None:
        try:
            with translate_errors("dynamodb", "UpdateItem"):
                self._ddb.update_item(
                    TableName=self._connections,
                    Key={"connectionId": {"S": connection_id}},
                    UpdateExpression="REMOVE outboxPending",
                    ConditionExpression="outboxPending = :seen",
                    ExpressionAttributeValues={":seen": {"S": seen}},
                )
        except (BreakwaterError, ClientError):
            # Parked meanwhile, or the table is busy: the mark stays and the next delivery drains first.
            return

    def _update_connection(
        self, connection_id: str, expression: str, values: dict[str, Any], *, strict: bool = False
    ) -> None:
        try:
            with translate_errors("dynamodb", "UpdateItem"):
                self._ddb.update_item(
                    TableName=self._connections,
                    Key={"connectionId": {"S": connection_id}},
                    UpdateExpression=expression,
                    ConditionExpression="attribute_exists(connectionId)",
                    ExpressionAttributeValues=values,
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return
            if strict:
                raise
        except BreakwaterError:
            if strict:
                raise
