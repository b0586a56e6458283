"""A speaker's message reaches every listener, or is parked — whatever API Gateway or DynamoDB do."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from local_runtime import LocalRuntime
from tests.scenarios.conftest import SESSION, SPEAKER

ROOT = Path(__file__).resolve().parents[2]


def send(runtime: LocalRuntime, body: object, *, client_id: str = "6f1c2e9a-0000-4000-8000-000000000001") -> int:
    frame = (
        body
        if isinstance(body, str)
        else json.dumps({"action": "sendMessage", "sessionId": SESSION, "clientMessageId": client_id, "body": body})
    )
    event = {
        "requestContext": {
            "routeKey": "sendMessage",
            "connectionId": SPEAKER,
            "requestId": "req-1",
            "eventType": "MESSAGE",
        },
        "headers": {"x-correlation-id": "corr-send-1"},
        "body": frame,
    }
    invocation = runtime.invoke("SendMessageFunction", event)
    assert invocation.error_type is None, invocation.error_message
    return int(invocation.payload["statusCode"])


def listeners(runtime: LocalRuntime) -> list[str]:
    return sorted(c.connection_id for c in runtime.connections.all() if c.connection_id != SPEAKER)


def received(runtime: LocalRuntime, connection_id: str) -> list[dict[str, Any]]:
    return [m for m in runtime.connections.received(connection_id) if isinstance(m, dict)]


def test_DeliverToAllListeners(stack):
    runtime = stack(listeners=3)

    assert send(runtime, {"text": "hello"}) == 200

    (ack,) = received(runtime, SPEAKER)
    assert ack["type"] == "ack"
    assert ack["clientMessageId"] == "6f1c2e9a-0000-4000-8000-000000000001"
    assert ack["recipients"]["delivered"] == 3
    for listener in listeners(runtime):
        (message,) = received(runtime, listener)
        assert message["type"] == "message"
        assert message["messageId"] == ack["messageId"]
        assert message["body"] == {"text": "hello"}
        assert message["sender"] == {"role": "speaker", "userId": "u-speaker"}
    (stored,) = runtime.items("MessagesTable")
    assert stored["messageId"] == ack["messageId"]
    assert int(stored["expiresAt"]) - int(stored["timestamp"]) // 1000 == 24 * 3600


def test_RetryOnThrottleThenSucceed(stack):
    # API Gateway throttles the first two posts to L1=; the third gets through. The
    # third post meets a 1 ms latency rule (rules apply in order), so the fault log
    # holds every attempt's time.
    runtime = stack(
        listeners=3,
        faults=[
            {"name": "throttle", "service": "apigatewaymanagementapi", "resource": "L1=", "throttle": True, "count": 2},
            {"name": "third", "service": "apigatewaymanagementapi", "resource": "L1=", "count": 1, "latency": 0.001},
        ],
    )

    assert send(runtime, {"text": "hello"}) == 200

    assert [m["type"] for m in received(runtime, "L1=")] == ["message"]
    assert received(runtime, SPEAKER)[0]["recipients"]["delivered"] == 3
    attempts = [entry["at"] for entry in runtime.faults.log if entry["resource"].endswith("L1=")]
    assert [entry["rule"] for entry in runtime.faults.log] == ["throttle", "throttle", "third"]
    # The template's policy (IntervalSeconds 1, BackoffRate 2, JitterStrategy FULL): the wait
    # before retry n is drawn from (0, 1 * 2**(n-1)] — virtual seconds, nobody waited.
    waits = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert len(waits) == 2
    assert 0 < waits[0] <= 1.0
    assert 0 < waits[1] <= 2.0


def test_SessionLargerThanOnePageIsDeliveredWhole(stack):
    # Recipients are read a page at a time (RecipientsPageSize); no page is dropped.
    runtime = stack(listeners=7, parameters={"RecipientsPageSize": "2", "DeliveryBatchSize": "2"})

    assert send(runtime, {"text": "paged"}) == 200

    ack = received(runtime, SPEAKER)[0]
    assert ack["recipients"] == {"messageId": ack["messageId"], "delivered": 7, "gone": 0, "parked": 0, "dropped": 0}
    assert all(len(received(runtime, listener)) == 1 for listener in listeners(runtime))


def test_GoneTriggersCleanup(stack):
    runtime = stack(listeners=3)
    runtime.connections.disconnect("L2=")  # the client left; its $disconnect never arrived

    assert send(runtime, {"text": "hello"}) == 200

    ack = received(runtime, SPEAKER)[0]
    assert (ack["recipients"]["delivered"], ack["recipients"]["gone"]) == (2, 1)
    (cleanup,) = [runtime.wait(arn) for arn in runtime.executions.started("DisconnectCleanup")]
    assert cleanup.status == "SUCCEEDED"
    assert cleanup.input["connectionId"] == "L2="
    assert "L2=" not in {item["connectionId"] for item in runtime.items("ConnectionsTable")}


def test_BreakerOpenParksMessages(stack):
    runtime = stack(
        listeners=3,
        faults=[
            {"service": "apigatewaymanagementapi", "resource": "L*", "error": "InternalServerError", "status": 500}
        ],
    )

    assert send(runtime, {"n": 1}, client_id="6f1c2e9a-0000-4000-8000-000000000011") == 200
    first = received(runtime, SPEAKER)[0]["recipients"]
    assert (first["delivered"], first["parked"]) == (0, 3)
    calls_after_first = len(runtime.faults.log)

    assert send(runtime, {"n": 2}, client_id="6f1c2e9a-0000-4000-8000-000000000012") == 200
    second = received(runtime, SPEAKER)[1]["recipients"]
    assert second["parked"] == 3
    # The breaker is open: the second message did not call API Gateway at all.
    assert len(runtime.faults.log) == calls_after_first
    outbox = runtime.items("OutboxTable")
    assert len(outbox) == 6
    assert {item["reason"] for item in outbox} >= {"circuit_open"}


def test_StoreFailureIs503(stack):
    runtime = stack(
        listeners=2,
        faults=[
            {"service": "dynamodb", "operation": "PutItem", "resource": "MessagesTable", "error": "InternalServerError"}
        ],
    )

    assert send(runtime, {"text": "hello"}) == 503

    (error,) = received(runtime, SPEAKER)
    assert (error["type"], error["code"], error["retryAfter"]) == ("error", "SERVICE_TIMEOUT", 5)
    assert error["clientMessageId"] == "6f1c2e9a-0000-4000-8000-000000000001"
    assert runtime.items("MessagesTable") == []
    assert all(received(runtime, listener) == [] for listener in listeners(runtime))


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        json.dumps({"action": "sendMessage", "sessionId": SESSION, "body": {}}),
        json.dumps({"action": "sendMessage", "sessionId": "bad session", "clientMessageId": "6f1c2e9a-00", "body": {}}),
        json.dumps({"action": "sendMessage", "sessionId": SESSION, "clientMessageId": "6f1c2e9a-00", "body": "x" * 10}),
        json.dumps(
            {
                "action": "sendMessage",
                "sessionId": SESSION,
                "clientMessageId": "6f1c2e9a-00",
                "body": {"t": "x" * 40_000},
            }
        ),
        "[" * 20_000,
        json.dumps(
            {"action": "sendMessage", "sessionId": f"{SESSION}\n", "clientMessageId": "6f1c2e9a-00", "body": {}}
        ),
    ],
    ids=[
        "not-json",
        "missing-field",
        "bad-session",
        "body-not-object",
        "oversized",
        "nested-too-deep",
        "session-with-trailing-newline",
    ],
)
def test_OversizedOrMalformedBodyRejected(stack, frame):
    runtime = stack(listeners=2)

    assert send(runtime, frame) == 400

    (error,) = received(runtime, SPEAKER)
    assert (error["type"], error["code"]) == ("error", "VALIDATION_ERROR")
    assert runtime.items("MessagesTable") == []
    assert all(received(runtime, listener) == [] for listener in listeners(runtime))


def test_ListenersCannotBroadcast(stack):
    runtime = stack(listeners=1)
    event = {
        "requestContext": {"routeKey": "sendMessage", "connectionId": "L0=", "requestId": "r", "eventType": "MESSAGE"},
        "body": json.dumps(
            {"action": "sendMessage", "sessionId": SESSION, "clientMessageId": "6f1c2e9a-0000-4000", "body": {}}
        ),
    }
    assert runtime.invoke("SendMessageFunction", event).payload == {"statusCode": 403}
    assert received(runtime, "L0=")[0]["code"] == "TENANT_REJECTED"
    assert runtime.items("MessagesTable") == []


def test_RateLimitedSenderGets429AndRateLimitsOutageIsNotARefusal(stack):
    runtime = stack(listeners=1)
    runtime.function("SendMessageFunction")  # warm
    codes = [send(runtime, {"n": i}, client_id=f"6f1c2e9a-0000-4000-8000-{i:012d}") for i in range(21)]
    assert codes[:20] == [200] * 20
    assert codes[20] == 429
    error = received(runtime, SPEAKER)[-1]
    assert (error["code"], error["retryAfter"] >= 1) == ("RATE_LIMITED", True)

    runtime.faults.add({"service": "dynamodb", "resource": "RateLimitsTable", "error": "InternalServerError"})
    assert send(runtime, {"n": "during outage"}, client_id="6f1c2e9a-0000-4000-8000-999999999999") == 200


def test_FanOutOfAThousandListeners(stack):
    runtime = stack(listeners=1000)

    assert send(runtime, {"text": "all hands"}) == 200

    ack = received(runtime, SPEAKER)[0]
    assert ack["recipients"] == {"messageId": ack["messageId"], "delivered": 1000, "gone": 0, "parked": 0, "dropped": 0}
    assert all(len(received(runtime, f"L{i}=")) == 1 for i in range(0, 1000, 97))


def ping(runtime: LocalRuntime, connection_id: str) -> None:
    event = {
        "requestContext": {
            "routeKey": "$default",
            "connectionId": connection_id,
            "requestId": "p",
            "eventType": "MESSAGE",
        },
        "body": json.dumps({"action": "ping"}),
    }
    assert runtime.invoke("DefaultRouteFunction", event).payload == {"statusCode": 200}


def test_BreakerRecoversAndTheOutboxDrainsInOrder(stack):
    runtime = stack(
        listeners=2,
        faults=[
            {"service": "apigatewaymanagementapi", "resource": "L*", "error": "InternalServerError", "status": 500}
        ],
    )
    for n in range(3):
        assert send(runtime, {"n": n}, client_id=f"6f1c2e9a-0000-4000-8000-00000000002{n}") == 200
    assert len(runtime.items("OutboxTable")) == 6
    assert all(received(runtime, listener) == [] for listener in listeners(runtime))

    runtime.faults.clear()  # API Gateway recovers
    ping(runtime, "L0=")  # still within the recovery timeout: the breaker keeps everything parked
    assert received(runtime, "L0=") == []

    runtime.clock.advance(16)  # past the 15 s recovery timeout of apigateway.postToConnection
    ping(runtime, "L0=")  # the first redelivery is the probe; the second closes the breaker
    ping(runtime, "L1=")

    for listener in listeners(runtime):
        messages = received(runtime, listener)
        assert [m["body"]["n"] for m in messages] == [0, 1, 2]  # in order
        assert [m["messageId"] for m in messages] == sorted(m["messageId"] for m in messages)
    assert runtime.items("OutboxTable") == []
    states = {item["name"]: item["state"] for item in runtime.items("BreakersTable")}
    assert states == {"apigateway.postToConnection": "CLOSED"}


def test_AFailedBatchIsParkedWhole(stack):
    # The delivery function itself cannot run (here: a broken deployment): every
    # recipient of the batch is parked by the workflow, none is lost.
    runtime = stack(listeners=3)
    runtime.function("MessageDeliveryFunction").spec = __import__("dataclasses").replace(
        runtime.function("MessageDeliveryFunction").spec, handler="app.missing"
    )

    assert send(runtime, {"text": "hello"}) == 200

    ack = received(runtime, SPEAKER)[0]
    assert (ack["recipients"]["delivered"], ack["recipients"]["parked"]) == (0, 3)
    parked = runtime.items("OutboxTable")
    assert sorted(item["connectionId"] for item in parked) == ["L0=", "L1=", "L2="]
    assert {item["reason"] for item in parked} == {"delivery_failed"}


def test_ClientRetryWithTheSameClientMessageIdIsDeliveredOnce(stack):
    runtime = stack(listeners=2)

    assert send(runtime, {"text": "hello"}) == 200
    assert send(runtime, {"text": "hello"}) == 200  # the client did not see the ack and retries

    first, second = received(runtime, SPEAKER)
    assert first["type"] == second["type"] == "ack"
    assert first["messageId"] == second["messageId"]
    assert len(runtime.items("MessagesTable")) == 1
    assert all(len(received(runtime, listener)) == 1 for listener in listeners(runtime))


def test_SlowBreakerStoreCostsOneTimeoutPerInterval(stack):
    # The Breakers table answers in 12 s, past its client's read timeout (1 s, one attempt).
    # The delivery breaker fails open (availability wins) and leaves the table alone until
    # its next refresh: a message to ten listeners costs one store timeout, not one per
    # recipient (before: 3 attempts x 5 s per GetItem and UpdateItem, per recipient, which
    # ran the batch into its Lambda timeout).
    slow = {"name": "slow breakers", "service": "dynamodb", "resource": "*Breakers*", "latency": 12}
    runtime = stack(listeners=10, faults=[slow])

    def timed_send(n: int) -> tuple[float, int]:
        """Virtual seconds the send took, and the Breakers requests it made."""
        started, asked = runtime.clock.now(), len(runtime.faults.log)
        assert send(runtime, {"n": n}, client_id=f"6f1c2e9a-0000-4000-8000-00000000002{n}") == 200
        return round(runtime.clock.now() - started, 6), len(runtime.faults.log) - asked

    assert timed_send(1) == (1.0, 1)  # one store timeout for the whole batch
    assert timed_send(2) == (0.0, 0)  # within the refresh interval: the store rests
    runtime.clock.advance(16)  # past BreakerRefreshSeconds (15)
    assert timed_send(3) == (1.0, 1)  # the next interval: one more look, one more timeout

    acks = [m for m in received(runtime, SPEAKER) if m["type"] == "ack"]
    assert [a["recipients"]["delivered"] for a in acks] == [10, 10, 10]
    assert all(len(received(runtime, listener)) == 3 for listener in listeners(runtime))
    assert runtime.items("OutboxTable") == []
