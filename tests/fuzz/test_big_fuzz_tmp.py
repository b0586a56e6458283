"""The delivery contract over random fault schedules (README, "Delivery contract").

Each example builds a session, draws a schedule of faults — API Gateway
errors, throttles, refusals and timeouts; blips of the Outbox, Messages,
Idempotency, Deliveries and Breakers tables; the batch Lambda throttled; the
answer of StartSyncExecution lost — and a speaker that sends its messages one
after the other, retrying each with the same clientMessageId as a client does
(after ``retryAfter``) until it is acknowledged. Then the faults end and every
listener pings twice. Per listener:

* no messageId twice;
* messages in send order;
* no gap: every acknowledged message was received;
* while faults lasted, every (message, listener) pair of an acknowledged message
  was delivered or parked with the message's TTL.

Table faults are blips (a few calls), as real outages of a table look from
one request: what the contract does not promise under a long outage of the
delivery ledger is stated in the README.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_runtime import LocalRuntime
from local_runtime.sessions import join_session

ROOT = Path(__file__).resolve().parents[2]
SPEAKER, SESSION = "Speaker0=", "fuzz"
#: How often the simulated client retries one message before giving up.
CLIENT_ATTEMPTS = 8

apigateway = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["5xx", "throttle", "forbidden", "timeout"]),
        "probability": st.sampled_from([0.2, 0.5, 1.0]),
        "listener": st.sampled_from(["L*", "L0=", "L1="]),
        "count": st.sampled_from([None, 2, 6]),
    }
)
blip = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(
            [
                "outbox_put",
                "outbox_delete",
                "messages_put",
                "idempotency",
                "ledger",
                "breakers",
                "lambda",
                "answer_lost",
                "lost_outcome",
            ]
        ),
        "count": st.integers(min_value=1, max_value=3),
        "after": st.integers(min_value=0, max_value=6),
    }
)


def apigateway_rule(fault: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "service": "apigatewaymanagementapi",
        "resource": fault["listener"],
        "probability": fault["probability"],
    }
    if fault["count"] is not None:
        base["count"] = fault["count"]
    if fault["kind"] == "5xx":
        return {**base, "error": "InternalServerError", "status": 500}
    if fault["kind"] == "throttle":
        return {**base, "throttle": True}
    if fault["kind"] == "forbidden":
        return {**base, "error": "ForbiddenException", "status": 403}
    return {**base, "latency": 4}  # past the 3 s read timeout: the SDK times out before sending


def blip_rules(fault: dict[str, Any]) -> list[dict[str, Any]]:
    kind = fault["kind"]
    lost_answer = {"service": "stepfunctions", "operation": "StartSyncExecution", "answer_lost": True, "count": 1}
    if kind == "answer_lost":
        return [{**lost_answer, "after": fault["after"] % 3}]
    if kind == "lost_outcome":
        # The answer is lost and the outcome cannot be recorded: the sender's retry runs the
        # delivery again, which must post only to whoever the first run did not reach.
        return [
            {**lost_answer, "after": fault["after"] % 3},
            {
                "service": "dynamodb",
                "operation": "PutItem",
                "resource": "DeliveriesTable",
                "error": "InternalServerError",
                "count": 3,
            },
        ]
    return [blip_rule(fault)]


def blip_rule(fault: dict[str, Any]) -> dict[str, Any]:
    base = {"count": fault["count"], "after": fault["after"]}
    kind = fault["kind"]
    if kind == "lambda":
        return {**base, "service": "lambda", "resource": "MessageDeliveryFunction", "throttle": True}
    table, operation = {
        "outbox_put": ("OutboxTable", "PutItem"),
        "outbox_delete": ("OutboxTable", "DeleteItem"),
        "messages_put": ("MessagesTable", "PutItem"),
        "idempotency": ("IdempotencyTable", "*"),
        "ledger": ("DeliveriesTable", "*"),
        "breakers": ("BreakersTable", "*"),
    }[kind]
    return {**base, "service": "dynamodb", "operation": operation, "resource": table, "error": "InternalServerError"}


def send_until_acked(runtime: LocalRuntime, n: int) -> dict[str, Any] | None:
    body = {"action": "sendMessage", "sessionId": SESSION, "clientMessageId": f"{n:08x}-0000", "body": {"n": n}}
    event = {"requestContext": {"connectionId": SPEAKER, "requestId": f"r{n}"}, "body": json.dumps(body)}
    for _ in range(CLIENT_ATTEMPTS):
        before = len(runtime.connections.received(SPEAKER))
        invocation = runtime.invoke("SendMessageFunction", event)
        assert invocation.error_type is None, invocation.error_message  # always a clear answer
        frames = [f for f in runtime.connections.received(SPEAKER)[before:] if isinstance(f, dict)]
        status = invocation.payload["statusCode"]
        if status == 200:
            (ack,) = [f for f in frames if f.get("type") == "ack"]
            return ack
        assert status in (429, 503), (status, frames)
        errors = [f for f in frames if f.get("type") == "error"]
        runtime.clock.advance(max([e.get("retryAfter", 1) for e in errors] or [5]))
    return None


def ping(runtime: LocalRuntime, connection_id: str) -> None:
    event = {"requestContext": {"connectionId": connection_id, "requestId": "p"}, "body": '{"action": "ping"}'}
    assert runtime.invoke("DefaultRouteFunction", event).payload == {"statusCode": 200}


@settings(max_examples=120, deadline=None, derandomize=False, suppress_health_check=[HealthCheck.too_slow])
@given(
    listeners=st.integers(min_value=1, max_value=4),
    messages=st.integers(min_value=1, max_value=4),
    outages=st.lists(apigateway, max_size=2),
    blips=st.lists(blip, max_size=3),
    leaving=st.sets(st.integers(min_value=0, max_value=3), max_size=1),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_the_delivery_contract_holds_under_any_fault_schedule(listeners, messages, outages, blips, leaving, seed):
    rules = [apigateway_rule(f) for f in outages] + [rule for f in blips for rule in blip_rules(f)]
    with LocalRuntime(ROOT / "template.yaml", faults=rules, seed=seed) as runtime:
        everyone = [f"L{i}=" for i in range(listeners)]
        join_session(runtime, SESSION, [(SPEAKER, "speaker", "u"), *((c, "listener", "u") for c in everyone)])
        gone = {f"L{i}=" for i in leaving if i < listeners}
        for connection_id in gone:
            runtime.connections.disconnect(connection_id)
        acked: dict[int, str] = {}
        for n in range(messages):
            ack = send_until_acked(runtime, n)
            if ack is not None:
                acked[n] = ack["messageId"]
            runtime.clock.advance(1)

        stored = {item["messageId"]: item for item in runtime.items("MessagesTable")}
        parked = {(item["connectionId"], item["messageId"]): item for item in runtime.items("OutboxTable")}
        for (_listener, message_id), item in parked.items():
            assert int(item["expiresAt"]) == int(stored[message_id]["expiresAt"]), "parked without the message's TTL"
        staying = [c for c in everyone if c not in gone]
        for connection_id in staying:
            got = {m["messageId"] for m in runtime.connections.received(connection_id) if isinstance(m, dict)}
            for message_id in acked.values():
                assert message_id in got or (connection_id, message_id) in parked, (connection_id, message_id)

        runtime.faults.clear()
        for _ in range(2):
            runtime.clock.advance(60)  # past any breaker's recovery timeout
            for connection_id in staying:
                ping(runtime, connection_id)

        for connection_id in everyone:
            frames = [m for m in runtime.connections.received(connection_id) if isinstance(m, dict)]
            ids = [m["messageId"] for m in frames]
            order = [m["body"]["n"] for m in frames]
            assert len(ids) == len(set(ids)), f"{connection_id} got a message twice: {order}"
            assert order == sorted(order), f"{connection_id} got messages out of order: {order}"
            if connection_id in gone:
                assert not frames
                continue
            missing = [n for n, message_id in acked.items() if message_id not in ids]
            assert not missing, f"{connection_id} never got {missing} (got {order})"
