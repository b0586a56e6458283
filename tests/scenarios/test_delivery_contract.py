"""The delivery contract (README, "Delivery contract"), one outage at a time.

For every (message, listener) pair while the listener stays connected: delivered
exactly once under one messageId, in the speaker's send order, parked ones
included; or parked with the message's TTL and delivered on the listener's
next frame or next message — never twice.
"""

from __future__ import annotations

import json
from typing import Any

from local_runtime import LocalRuntime
from tests.scenarios.conftest import SESSION, SPEAKER


def send(runtime: LocalRuntime, n: int) -> int:
    body = {"action": "sendMessage", "sessionId": SESSION, "clientMessageId": f"{n:08x}-0000", "body": {"n": n}}
    event = {
        "requestContext": {"routeKey": "sendMessage", "connectionId": SPEAKER, "requestId": f"r{n}"},
        "body": json.dumps(body),
    }
    invocation = runtime.invoke("SendMessageFunction", event)
    assert invocation.error_type is None, invocation.error_message
    return int(invocation.payload["statusCode"])


def ping(runtime: LocalRuntime, connection_id: str) -> None:
    event = {
        "requestContext": {"routeKey": "$default", "connectionId": connection_id, "requestId": "p"},
        "body": json.dumps({"action": "ping"}),
    }
    assert runtime.invoke("DefaultRouteFunction", event).payload == {"statusCode": 200}


def numbers(runtime: LocalRuntime, connection_id: str) -> list[int]:
    """The ``n`` of every message frame a client received, in arrival order."""
    return [
        m["body"]["n"]
        for m in runtime.connections.received(connection_id)
        if isinstance(m, dict) and m.get("type") == "message"
    ]


def frames(runtime: LocalRuntime, connection_id: str, kind: str) -> list[dict[str, Any]]:
    return [m for m in runtime.connections.received(connection_id) if isinstance(m, dict) and m.get("type") == kind]


def test_ForbiddenRecipientDoesNotRedeliverOthers(stack):
    # One recipient answers 403: it alone is parked; the others are served once and the ack says so.
    runtime = stack(
        listeners=3,
        faults=[
            {"service": "apigatewaymanagementapi", "resource": "L1=", "error": "ForbiddenException", "status": 403}
        ],
    )

    assert send(runtime, 0) == 200

    (ack,) = frames(runtime, SPEAKER, "ack")
    assert {k: ack["recipients"][k] for k in ("delivered", "parked", "gone", "dropped")} == {
        "delivered": 2,
        "parked": 1,
        "gone": 0,
        "dropped": 0,
    }
    assert [numbers(runtime, f"L{i}=") for i in range(3)] == [[0], [], [0]]
    (parked,) = runtime.items("OutboxTable")
    assert parked["connectionId"] == "L1="
    assert parked["reason"].startswith("refused:")
    runtime.faults.clear()
    ping(runtime, "L1=")
    ping(runtime, "L0=")
    assert [numbers(runtime, f"L{i}=") for i in range(3)] == [[0], [0], [0]]


def test_BatchThatDiesMidwayLosesNoneOfWhatItDid(stack):
    # L1 cannot be served and its Outbox write fails: the batch fails after serving L0 and L2.
    # The workflow's own fallback reads the ledger and parks only L1.
    runtime = stack(
        listeners=3,
        faults=[
            {"service": "apigatewaymanagementapi", "resource": "L1=", "error": "ForbiddenException", "status": 403},
            {
                "service": "dynamodb",
                "operation": "PutItem",
                "resource": "OutboxTable",
                "error": "InternalServerError",
                "count": 3,
            },
        ],
    )

    assert send(runtime, 0) == 200

    (ack,) = frames(runtime, SPEAKER, "ack")
    assert (ack["recipients"]["delivered"], ack["recipients"]["parked"]) == (2, 1)
    assert [numbers(runtime, f"L{i}=") for i in range(3)] == [[0], [], [0]]
    assert [item["connectionId"] for item in runtime.items("OutboxTable")] == ["L1="]


def test_LateSyncAnswerDoesNotRedeliver(stack):
    # The delivery ran to the end but SendMessage never heard back (its read timed out).
    # The sender's retry gets the recorded outcome; nobody gets the message twice.
    runtime = stack(
        listeners=2,
        faults=[{"service": "stepfunctions", "operation": "StartSyncExecution", "answer_lost": True, "count": 1}],
    )

    assert send(runtime, 0) == 503
    (error,) = frames(runtime, SPEAKER, "error")
    assert error["code"] == "SERVICE_TIMEOUT"
    assert error["retryAfter"] >= 1
    runtime.clock.advance(error["retryAfter"])
    assert send(runtime, 0) == 200

    (ack,) = frames(runtime, SPEAKER, "ack")
    assert ack["recipients"]["delivered"] == 2
    assert [numbers(runtime, f"L{i}=") for i in range(2)] == [[0], [0]]
    assert len(runtime.items("MessagesTable")) == 1


def test_RetryAfterAnUnrecordedRunPostsOnlyToTheUnsettled(stack):
    # The answer is lost AND the outcome could not be recorded: the retry must re-run,
    # after the first run can no longer be posting, and post to nobody a second time.
    runtime = stack(
        listeners=3,
        faults=[
            {"service": "stepfunctions", "operation": "StartSyncExecution", "answer_lost": True, "count": 1},
            {
                "service": "dynamodb",
                "operation": "PutItem",
                "resource": "DeliveriesTable",
                "error": "ValidationException",
                "count": 3,
            },
        ],
    )

    assert send(runtime, 0) == 503
    assert send(runtime, 0) == 503  # too early: the first run may still be posting
    wait = frames(runtime, SPEAKER, "error")[-1]
    assert wait["code"] == "SERVICE_UNAVAILABLE"
    assert wait["retryAfter"] > 1
    runtime.clock.advance(wait["retryAfter"])
    assert send(runtime, 0) == 200

    (ack,) = frames(runtime, SPEAKER, "ack")
    assert ack["recipients"]["delivered"] == 3
    assert [numbers(runtime, f"L{i}=") for i in range(3)] == [[0], [0], [0]]


def test_ClientRetryAfterAFailedSendKeepsTheMessageId(stack):
    # The first attempt fails before anything is stored; the retry delivers under the same id.
    runtime = stack(
        listeners=2,
        faults=[
            {
                "service": "dynamodb",
                "operation": "PutItem",
                "resource": "MessagesTable",
                "error": "InternalServerError",
                "count": 3,
            }
        ],
    )

    assert send(runtime, 0) == 503
    (error,) = frames(runtime, SPEAKER, "error")
    runtime.clock.advance(error["retryAfter"])
    assert send(runtime, 0) == 200

    (ack,) = frames(runtime, SPEAKER, "ack")
    (stored,) = runtime.items("MessagesTable")
    assert ack["messageId"] == stored["messageId"]
    received = [m["messageId"] for m in frames(runtime, "L0=", "message")]
    assert received == [stored["messageId"]]


def test_IdempotencyStoreFailureIs503WithRetryAfter(stack):
    runtime = stack(
        listeners=2, faults=[{"service": "dynamodb", "resource": "IdempotencyTable", "error": "InternalServerError"}]
    )

    assert send(runtime, 0) == 503

    (error,) = frames(runtime, SPEAKER, "error")
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert error["retryAfter"] >= 1
    assert runtime.items("MessagesTable") == []
    assert numbers(runtime, "L0=") == []


def test_ParkedMessagesKeepOrder(stack):
    # API Gateway refuses L0 for two messages; the third, sent after recovery, is
    # parked behind them and the Outbox drained first: L0 sees 0, 1, 2.
    runtime = stack(
        listeners=2,
        faults=[
            {
                "service": "apigatewaymanagementapi",
                "resource": "L0=",
                "error": "ForbiddenException",
                "status": 403,
                "count": 2,
            }
        ],
    )

    for n in range(3):
        assert send(runtime, n) == 200
        runtime.clock.advance(1)

    assert numbers(runtime, "L0=") == [0, 1, 2]
    assert numbers(runtime, "L1=") == [0, 1, 2]
    assert runtime.items("OutboxTable") == []
    (l0,) = [item for item in runtime.items("ConnectionsTable") if item["connectionId"] == "L0="]
    assert "outboxPending" not in l0


def test_ParkedItemsCarryTheMessageTtlAndExpiredOnesAreNotRedelivered(stack):
    runtime = stack(
        listeners=1,
        faults=[
            {"service": "apigatewaymanagementapi", "resource": "L0=", "error": "ForbiddenException", "status": 403}
        ],
    )

    assert send(runtime, 0) == 200
    (parked,) = runtime.items("OutboxTable")
    (stored,) = runtime.items("MessagesTable")
    assert int(parked["expiresAt"]) == int(stored["expiresAt"])

    runtime.faults.clear()
    runtime.clock.advance(int(parked["expiresAt"]) - runtime.clock.now() + 1)
    ping(runtime, "L0=")

    assert numbers(runtime, "L0=") == []
    assert runtime.items("OutboxTable") == []


def test_RedeliveryWhoseDeleteFailsIsNotRepeated(stack):
    runtime = stack(
        listeners=1,
        faults=[
            {"service": "apigatewaymanagementapi", "resource": "L0=", "error": "ForbiddenException", "status": 403}
        ],
    )
    assert send(runtime, 0) == 200
    runtime.faults.clear()
    runtime.faults.add(
        {"service": "dynamodb", "operation": "DeleteItem", "resource": "OutboxTable", "error": "InternalServerError"}
    )

    ping(runtime, "L0=")
    ping(runtime, "L0=")
    assert numbers(runtime, "L0=") == [0]
    runtime.faults.clear()
    ping(runtime, "L0=")

    assert numbers(runtime, "L0=") == [0]
    assert runtime.items("OutboxTable") == []


def test_APayloadApiGatewayRefusesIsDroppedNotRetriedForever(stack):
    runtime = stack(
        listeners=2,
        faults=[
            {
                "service": "apigatewaymanagementapi",
                "resource": "L0=",
                "error": "PayloadTooLargeException",
                "status": 413,
            }
        ],
    )

    assert send(runtime, 0) == 200

    (ack,) = frames(runtime, SPEAKER, "ack")
    assert (ack["recipients"]["dropped"], ack["recipients"]["delivered"]) == (1, 1)
    assert runtime.items("OutboxTable") == []


def test_BatchNearItsTimeoutParksTheRestAndRedeliversNone(stack):
    # Every post takes 2.5 s (under the 3 s read timeout): a batch of 10 cannot finish in the
    # function's 15 s. It stops with its reserve left, parks the rest, records what it did:
    # no Sandbox.Timedout, no recipient served twice, the ack adds up to 10.
    runtime = stack(listeners=10, faults=[{"service": "apigatewaymanagementapi", "resource": "L*", "latency": 2.5}])

    assert send(runtime, 0) == 200

    (ack,) = frames(runtime, SPEAKER, "ack")
    counts = ack["recipients"]
    assert counts["delivered"] + counts["parked"] == 10
    assert 0 < counts["delivered"] < 10
    assert {item["reason"] for item in runtime.items("OutboxTable")} == {"deadline"}
    assert runtime.function("MessageDeliveryFunction").invocations[-1].error_type is None
    runtime.faults.clear()
    runtime.clock.advance(60)  # 2.5 s posts are slow calls: the breaker opened; let it recover
    for _ in range(2):
        for i in range(10):
            ping(runtime, f"L{i}=")
    assert [numbers(runtime, f"L{i}=") for i in range(10)] == [[0]] * 10
