"""Reserved concurrency as Lambda enforces it, on `bw up`: ConnectReservedConcurrency 0 (the
emergency stop) throttles every $connect invocation. Lambda refuses it with 429
TooManyRequestsException; API Gateway turns that into a 500 handshake (an integration
failure), and its access log says the integration answered 429.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from local_runtime.live import LiveStack
from tests.live.test_live_stack import Clients, run, started

PARAMETERS = {"ConnectReservedConcurrency": "0"}
WEBSOCKET_LOG = "/aws/apigateway/breakwater-local-sessions-access"


@pytest.fixture(scope="module")
def stack() -> Iterator[LiveStack]:
    with started(PARAMETERS, aws_port=0) as live:
        yield live


def test_a_throttled_connect_function_refuses_the_handshake_with_500(stack: LiveStack) -> None:
    clients = Clients(stack)
    connect = stack.runtime.function("ConnectFunction")
    throttles = connect.throttles

    async def scenario() -> tuple[int, bytes]:
        try:
            await clients.open("no-capacity")
        except InvalidStatus as refused:
            return refused.response.status_code, refused.response.body
        raise AssertionError("the upgrade was accepted")

    status, body = run(scenario())

    assert (status, json.loads(body)) == (500, {"message": "Internal server error"})
    assert connect.throttles == throttles + 1
    assert connect.invocations == []  # the handler never ran
    assert stack.runtime.items("ConnectionsTable") == []


def test_the_access_log_shows_the_integrations_429(stack: LiveStack) -> None:
    import boto3

    async def scenario() -> None:
        try:
            await Clients(stack).open("no-capacity-logged")
        except InvalidStatus:
            return

    run(scenario())

    logs = boto3.client("logs", endpoint_url=stack.endpoints()["aws"], region_name="us-east-1")
    lines = [json.loads(e["message"]) for e in logs.filter_log_events(logGroupName=WEBSOCKET_LOG)["events"]]
    last = lines[-1]
    assert (last["routeKey"], last["status"], last["integrationStatus"]) == ("$connect", "500", "429")
    assert last["integrationError"] == "TooManyRequestsException"


def test_the_invoke_api_answers_429_too_many_requests(stack: LiveStack) -> None:
    import boto3

    # An outside tool through `bw up`'s AWS endpoint, as `aws lambda invoke` would call it.
    outside = boto3.client("lambda", endpoint_url=stack.endpoints()["aws"], region_name="us-east-1")
    with pytest.raises(outside.exceptions.TooManyRequestsException) as refused:
        outside.invoke(FunctionName="ConnectFunction", Payload=b"{}")

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    answer: dict[str, Any] = dict(refused.value.response)
    assert answer["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
