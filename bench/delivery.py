"""What one message costs at fan-out 1 / 10 / 1 000, and whether any is lost.

Prints figures, asserts nothing. Counts come from real runs of the sendMessage
path on the offline runtime (state transitions from the execution history,
Lambda invocations, AWS requests by service); AWS cost per million messages is
computed from those counts with the us-east-1 prices in PRICES, beside the
floor: the API Gateway messages themselves (the speaker's inbound frame, which
API Gateway bills like any other message, plus one outbound per listener) and
one DynamoDB write. ``contract writes`` are what the delivery contract adds
(README, "Delivery contract"): the ledger's one write per batch and the
recorded outcome. Then a
random outage schedule (API Gateway errors, throttles, gone clients) runs
and every (message, listener) pair is checked: delivered, parked, or gone.

Last line: ``lost=… transitions_per_msg=… ddb_per_msg=… wall_ms_per_1000=…
cost_ratio_fanout10=… cost_ratio_fanout1000=…``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "resilience")]

from local_runtime import LocalRuntime  # noqa: E402
from local_runtime.sessions import join_session  # noqa: E402

#: us-east-1, on-demand, public list prices (USD); arm64 Lambda.
PRICES = {
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second": 0.0000133334,
    "express_request": 1.00 / 1e6,
    "express_gb_second": 0.00001667,
    "dynamodb_write": 0.625 / 1e6,
    "dynamodb_read": 0.125 / 1e6,
    "apigw_websocket_message": 1.00 / 1e6,
    "sfn_sdk_request": 0.0,  # Express integrations are billed in its duration
}
#: Modelled durations (the offline runtime runs in virtual time, not AWS time).
LAMBDA_MEMORY_GB = 0.25
POST_SECONDS = 0.012  # one postToConnection from Lambda
LAMBDA_OVERHEAD_SECONDS = 0.020
EXPRESS_MEMORY_GB = 0.064
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
DYNAMODB_READS = {"GetItem", "Query", "Scan", "BatchGetItem"}
SPEAKER, SESSION = "Speaker0=", "bench"


def stack(listeners: int, faults: list[dict[str, Any]] | None = None, seed: int = 0) -> LocalRuntime:
    runtime = LocalRuntime(ROOT / "template.yaml", faults=faults, seed=seed).start()
    join_session(
        runtime, SESSION, [(SPEAKER, "speaker", "u"), *((f"L{i}=", "listener", "u") for i in range(listeners))]
    )
    runtime.requests.clear()
    return runtime


def send(runtime: LocalRuntime, n: int) -> dict[str, Any]:
    body = json.dumps(
        {"action": "sendMessage", "sessionId": SESSION, "clientMessageId": f"{n:08x}-0000", "body": {"n": n}}
    )
    event = {"requestContext": {"connectionId": SPEAKER, "requestId": f"r{n}"}, "body": body}
    runtime.invoke("SendMessageFunction", event)
    frames = [m for m in runtime.connections.received(SPEAKER) if isinstance(m, dict)]
    return frames[-1]


def measure(fanout: int, messages: int) -> dict[str, float]:
    runtime = stack(fanout)
    try:
        started = time.perf_counter()
        for n in range(messages):
            send(runtime, n)
        wall = time.perf_counter() - started
        sfn = runtime.client("stepfunctions")
        arn = runtime.template.state_machine("DeliverMessage").arn
        transitions = 0
        # Express executions started synchronously: count their state entries from the histories.
        for machine in runtime._backend().state_machines:
            if machine.arn != arn:
                continue
            for execution in machine.executions:
                transitions += sum(
                    1
                    for e in execution.exec_worker.env.event_manager.get_event_history()
                    if e["type"].endswith("StateEntered")
                )
        del sfn
        invocations = sum(
            len(f.invocations) for name, f in runtime.functions.items() if name == "MessageDeliveryFunction"
        )
        requests = runtime.requests
        writes = sum(c for (svc, op), c in requests.items() if svc == "dynamodb" and op in DYNAMODB_WRITES)
        reads = sum(c for (svc, op), c in requests.items() if svc == "dynamodb" and op in DYNAMODB_READS)
        posts = sum(c for (svc, op), c in requests.items() if svc == "apigatewaymanagementapi")
        # No fault here, so every ledger item was written once: one per batch, plus the outcome.
        contract_writes = len(runtime.items("DeliveriesTable"))
    finally:
        runtime.stop()
    per = 1 / messages
    lambda_seconds = (invocations * LAMBDA_OVERHEAD_SECONDS + posts * POST_SECONDS) * per
    # send_message is one invocation per message too; it waits for the express run.
    express_seconds = lambda_seconds + 0.05
    cost = (
        (invocations * per + 1) * PRICES["lambda_request"]
        + (lambda_seconds + express_seconds) * LAMBDA_MEMORY_GB * PRICES["lambda_gb_second"]
        + PRICES["express_request"]
        + express_seconds * EXPRESS_MEMORY_GB * PRICES["express_gb_second"]
        + writes * per * PRICES["dynamodb_write"]
        + reads * per * PRICES["dynamodb_read"]
        + (posts * per + 1) * PRICES["apigw_websocket_message"]  # + the speaker's inbound frame
    )
    floor = (1 + fanout) * PRICES["apigw_websocket_message"] + PRICES["dynamodb_write"]
    return {
        "fanout": fanout,
        "transitions": transitions * per,
        "lambda_invocations": invocations * per + 1,
        "ddb_requests": (writes + reads) * per,
        "posts": posts * per,
        "contract_writes": contract_writes * per,
        "wall_ms_per_1000_deliveries": wall * 1000 / (messages * fanout) * 1000,
        "cost_per_million": cost * 1e6,
        "floor_per_million": floor * 1e6,
    }


def outage(listeners: int = 20, messages: int = 30, seed: int = 11) -> tuple[int, int, int]:
    """Random faults on API Gateway; every (message, listener) pair must end delivered, parked or gone."""
    rng = random.Random(seed)
    faults = [
        {"service": "apigatewaymanagementapi", "error": "InternalServerError", "status": 500, "probability": 0.3},
        {"service": "apigatewaymanagementapi", "throttle": True, "probability": 0.2},
    ]
    runtime = stack(listeners, faults, seed=seed)
    try:
        gone_at: dict[str, int] = {}
        for n in range(messages):
            if rng.random() < 0.1:
                victim = f"L{rng.randrange(listeners)}="
                if victim not in gone_at:
                    runtime.connections.disconnect(victim)
                    gone_at[victim] = n
            send(runtime, n)
            runtime.clock.advance(rng.uniform(0, 5))
        parked = {(item["connectionId"], item["messageId"]) for item in runtime.items("OutboxTable")}
        stored = {item["messageId"]: int(json.loads(item["body"])["n"]) for item in runtime.items("MessagesTable")}
        lost = 0
        delivered_pairs = 0
        for i in range(listeners):
            listener = f"L{i}="
            got = {m["messageId"] for m in runtime.connections.received(listener) if isinstance(m, dict)}
            delivered_pairs += len(got)
            for message_id, n in stored.items():
                if message_id in got or (listener, message_id) in parked:
                    continue
                if listener in gone_at and n >= gone_at[listener]:
                    continue  # gone: cleanup ran, nothing to deliver to
                lost += 1
        return lost, delivered_pairs, len(parked)
    finally:
        runtime.stop()


def main() -> None:
    import logging

    logging.disable(logging.WARNING)
    rows = [measure(1, 20), measure(10, 20), measure(1000, 3)]
    print(
        f"{'fan-out':>8}{'transitions':>13}{'lambdas':>9}{'ddb req':>9}{'posts':>8}{'wall ms/1000':>14}"
        f"{'$ per 1M msgs':>15}{'floor $':>10}{'ratio':>8}{'contract writes':>17}"
    )
    for row in rows:
        print(
            f"{row['fanout']:>8.0f}{row['transitions']:>13.1f}{row['lambda_invocations']:>9.2f}{row['ddb_requests']:>9.2f}"
            f"{row['posts']:>8.0f}{row['wall_ms_per_1000_deliveries']:>14.0f}{row['cost_per_million']:>15.2f}"
            f"{row['floor_per_million']:>10.2f}{row['cost_per_million'] / row['floor_per_million']:>8.2f}"
            f"{row['contract_writes']:>17.2f}"
        )
    print("cost model: us-east-1 list prices (PRICES); Lambda 256 MB arm64, 12 ms per post, Express 64 MB")
    lost, delivered, parked = outage()
    print(f"random outage (30% 5xx, 20% throttles, clients leaving): delivered={delivered} parked={parked} lost={lost}")
    by_fanout = {int(row["fanout"]): row for row in rows}
    print(
        f"lost={lost} transitions_per_msg={by_fanout[1000]['transitions']:.1f} "
        f"ddb_per_msg={by_fanout[1000]['ddb_requests']:.2f} "
        f"wall_ms_per_1000={by_fanout[1000]['wall_ms_per_1000_deliveries']:.0f} "
        f"cost_ratio_fanout1={by_fanout[1]['cost_per_million'] / by_fanout[1]['floor_per_million']:.2f} "
        f"cost_ratio_fanout10={by_fanout[10]['cost_per_million'] / by_fanout[10]['floor_per_million']:.2f} "
        f"cost_ratio_fanout1000={by_fanout[1000]['cost_per_million'] / by_fanout[1000]['floor_per_million']:.2f}"
    )


if __name__ == "__main__":
    main()
