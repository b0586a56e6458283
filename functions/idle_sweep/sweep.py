"""The idle sweep's steps, as plain functions over injected clients and a clock.

``begin`` takes the sweep lock (one sweep at a time, fleet-wide) or renews it
(a continuation, and every page, so the lock only has to outlast one page);
``page`` reads one page of one shard of the ``ByIdleShard`` index — only
connections idle past the cutoff, never a Scan; ``notify`` and
``close`` act on one connection; ``finish`` releases the lock. ``backfill``
indexes connections stored before the index existed (no ``idleShard`` /
``lastActivityTime``: their ``connectedAt`` stands in) — a one-off, paginated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from resilience.activity import ActivityPolicy, idle_shard
from resilience.clients import error_code, translate_errors

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient

LOCK_NAME = "idle-sweep"
#: Connections one execution may act on. A Standard execution's history holds at most 25 000
#: events; one idle connection costs 22 (four task states of 5 events, the iteration's own 2)
#: and up to 49 when three of them retry to the end (3 more per retry), so 400 stays under 20 000.
MAX_CONNECTIONS_PER_EXECUTION = 400
TIMEOUT_MESSAGE = "Connection closed due to inactivity"


@dataclass(frozen=True, slots=True)
class SweepPolicy:
    activity: ActivityPolicy
    #: Items per index Query page.
    page_size: int = 100
    #: Pages one execution reads before it continues as a new one (history and payload stay bounded).
    pages_per_execution: int = 4
    #: The lock lasts this long past the last page read: a crashed sweep's lock frees itself after it.
    lock_seconds: int = 300

    def pages_this_execution(self) -> int:
        """``pages_per_execution``, but never more connections than one execution's history holds."""
        return max(1, min(self.pages_per_execution, MAX_CONNECTIONS_PER_EXECUTION // self.page_size))


def begin(
    dynamodb: DynamoDBClient, locks_table: str, *, owner: str, now: float, policy: SweepPolicy, continuing: bool
) -> dict[str, Any]:
    """Take (or, for a continuation, renew) the sweep lock; ``locked`` False means another sweep runs."""
    condition = "attribute_not_exists(#n) OR expiresAt < :now"
    if continuing:
        condition = "#owner = :owner"
    try:
        with translate_errors("dynamodb", "PutItem"):
            dynamodb.put_item(
                TableName=locks_table,
                Item={
                    "name": {"S": LOCK_NAME},
                    "owner": {"S": owner},
                    "expiresAt": {"N": str(int(now) + policy.lock_seconds)},
                },
                ConditionExpression=condition,
                ExpressionAttributeNames={"#owner": "owner"} if continuing else {"#n": "name"},
                ExpressionAttributeValues={":owner": {"S": owner}} if continuing else {":now": {"N": str(int(now))}},
            )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        return {"locked": False}
    return {"locked": True}


def page(
    dynamodb: DynamoDBClient,
    table: str,
    *,
    shard: int,
    cutoff_ms: int,
    start_key: dict[str, Any] | None,
    now_ms: int,
    policy: SweepPolicy,
) -> dict[str, Any]:
    """One page of connections idle since before ``cutoff_ms`` in ``shard``, and where to go on."""
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": "ByIdleShard",
        "KeyConditionExpression": "idleShard = :shard AND lastActivityTime < :cutoff",
        "ExpressionAttributeValues": {":shard": {"S": str(shard)}, ":cutoff": {"N": str(cutoff_ms)}},
        "Limit": policy.page_size,
        "ReturnConsumedCapacity": "TOTAL",
    }
    if start_key:
        request["ExclusiveStartKey"] = start_key
    with translate_errors("dynamodb", "Query"):
        response = dynamodb.query(**request)
    idle = [
        {
            "connectionId": item["connectionId"]["S"],
            "role": item.get("role", {}).get("S", "unknown"),
            "lastActivityTime": int(item["lastActivityTime"]["N"]),
            "idleSeconds": (now_ms - int(item["lastActivityTime"]["N"])) // 1000,
        }
        for item in response.get("Items", [])
    ]
    next_key = response.get("LastEvaluatedKey")
    next_shard = shard if next_key else shard + 1
    return {
        "connections": idle,
        "read": int(response.get("ScannedCount", len(idle))),
        "capacity": float(response.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)),
        "cursor": {
            "shard": next_shard,
            "startKey": json.dumps(next_key) if next_key else None,
            "done": next_shard >= policy.activity.shards,
        },
    }


def notify(management: ApiGatewayManagementApiClient, connection_id: str, *, idle_seconds: int, now_ms: int) -> None:
    frame = {"type": "connectionTimeout", "message": TIMEOUT_MESSAGE, "idleSeconds": idle_seconds, "timestamp": now_ms}
    with translate_errors("apigatewaymanagementapi", "PostToConnection"):
        management.post_to_connection(ConnectionId=connection_id, Data=json.dumps(frame).encode())


def close(management: ApiGatewayManagementApiClient, connection_id: str) -> str:
    """deleteConnection; "closed", or "gone" when API Gateway no longer has it (success too)."""
    try:
        with translate_errors("apigatewaymanagementapi", "DeleteConnection"):
            management.delete_connection(ConnectionId=connection_id)
    except ClientError as exc:
        if error_code(exc) == "GoneException":
            return "gone"
        raise
    return "closed"


def finish(dynamodb: DynamoDBClient, locks_table: str, *, owner: str) -> bool:
    """Release the lock if this sweep still holds it."""
    try:
        with translate_errors("dynamodb", "DeleteItem"):
            dynamodb.delete_item(
                TableName=locks_table,
                Key={"name": {"S": LOCK_NAME}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        return False
    return True


def backfill(dynamodb: DynamoDBClient, table: str, *, policy: ActivityPolicy, on_page: Callable[[int], None]) -> int:
    """Index connections stored before ByIdleShard existed; lastActivityTime := connectedAt where missing."""
    updated, start_key = 0, None
    while True:
        request: dict[str, Any] = {
            "TableName": table,
            "FilterExpression": "attribute_not_exists(idleShard) OR attribute_not_exists(lastActivityTime)",
            "ProjectionExpression": "connectionId, connectedAt",
        }
        if start_key:
            request["ExclusiveStartKey"] = start_key
        with translate_errors("dynamodb", "Scan"):
            response = dynamodb.scan(**request)
        for item in response.get("Items", []):
            connection_id = item["connectionId"]["S"]
            connected_at = item.get("connectedAt", {}).get("N", "0")
            with translate_errors("dynamodb", "UpdateItem"):
                dynamodb.update_item(
                    TableName=table,
                    Key={"connectionId": {"S": connection_id}},
                    UpdateExpression="SET idleShard = :shard, lastActivityTime = if_not_exists(lastActivityTime, :at)",
                    ConditionExpression="attribute_exists(connectionId)",
                    ExpressionAttributeValues={
                        ":shard": {"S": idle_shard(connection_id, policy.shards)},
                        ":at": {"N": connected_at},
                    },
                )
            updated += 1
        on_page(len(response.get("Items", [])))
        start_key = response.get("LastEvaluatedKey")
        if not start_key:
            return updated
