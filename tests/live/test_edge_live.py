"""`bw up`'s edge with real clients: stage throttling (WebSocket and HTTP), the access log
lines a user reads back from CloudWatch Logs, and /health's public and IAM halves.

The stage limits are lowered (burst 2-3, refilling once per 100 virtual seconds) so a test
meets them in a few requests; buckets start full again for every test (``reset``).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from websockets.exceptions import InvalidStatus

from local_runtime.live import LiveStack
from local_runtime.runtime import FAKE_AWS_ENV
from tests.live.test_live_stack import Clients, run, started

PARAMETERS = {
    "ConnectRateLimit": "100000",
    "RateLimitMessages": "100000",
    "ConnectThrottlingBurstLimit": "2",
    "ConnectThrottlingRateLimit": "0.01",
    "WebSocketThrottlingBurstLimit": "3",
    "WebSocketThrottlingRateLimit": "0.01",
    "HealthApiThrottlingBurstLimit": "3",
    "HealthApiThrottlingRateLimit": "0.01",
}
WEBSOCKET_LOG = "/aws/apigateway/breakwater-local-sessions-access"
HEALTH_LOG = "/aws/apigateway/breakwater-local-health-access"


@pytest.fixture(scope="module")
def live() -> Iterator[LiveStack]:
    with started(PARAMETERS, aws_port=0) as stack:
        yield stack


@pytest.fixture
def stack(live: LiveStack) -> LiveStack:
    live.reset()  # full buckets, no connection
    return live


def get(stack: LiveStack, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    assert stack.http is not None
    request = urllib.request.Request(stack.http.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def signed_headers(stack: LiveStack, path: str, secret: str = FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"]) -> dict[str, str]:
    """What botocore (the AWS CLI, an SDK) sends for a GET signed for execute-api."""
    assert stack.http is not None
    request = AWSRequest(method="GET", url=stack.http.url + path)
    credentials = Credentials(FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"], secret, FAKE_AWS_ENV["AWS_SESSION_TOKEN"])
    SigV4Auth(credentials, "execute-api", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def log_lines(stack: LiveStack, group: str) -> list[dict[str, Any]]:
    """The access log as a user reads it: CloudWatch Logs through `bw up`'s AWS endpoint."""
    import boto3

    logs = boto3.client("logs", endpoint_url=stack.endpoints()["aws"], region_name="us-east-1")
    events = logs.filter_log_events(logGroupName=group)["events"]
    return [json.loads(event["message"]) for event in events]


# -- WebSocket stage throttling ------------------------------------------------------------------------
def test_a_connect_past_the_stage_burst_is_refused_429_until_the_bucket_refills(stack: LiveStack) -> None:
    clients = Clients(stack)
    invoked_before = len(stack.runtime.function("ConnectFunction").invocations)

    async def scenario() -> tuple[int, bytes]:
        opened = [(await clients.open(f"burst-{n}"))[0] for n in range(2)]
        try:
            await clients.open("burst-over")
        except InvalidStatus as refused:
            return refused.response.status_code, refused.response.body
        finally:
            for client in opened:
                await client.close()
        raise AssertionError("the third handshake was accepted")

    status, body = run(scenario())

    assert (status, json.loads(body)) == (429, {"message": "Too Many Requests"})
    # Throttled at the stage: the refused attempt never cost a Lambda.
    assert len(stack.runtime.function("ConnectFunction").invocations) == invoked_before + 2
    stack.advance(100)  # one token at 0.01 per second

    async def again() -> None:
        client, _ = await clients.open("burst-refilled")
        await client.close()

    run(again())


def test_a_message_past_the_stage_burst_gets_a_too_many_requests_frame(stack: LiveStack) -> None:
    clients = Clients(stack)

    async def scenario() -> tuple[dict[str, Any], bool]:
        client, connection_id = await clients.open("chatty")
        for _ in range(4):  # $default's bucket holds 3; a ping answers nothing when it is let through
            await client.send(json.dumps({"action": "ping"}))
        frame = json.loads(await asyncio.wait_for(client.recv(), 20))
        frame["mine"] = frame.pop("connectionId") == connection_id
        await client.send(json.dumps({"action": "ping"}))
        second = json.loads(await asyncio.wait_for(client.recv(), 20))
        await client.close()
        return frame, second["message"] == "Too Many Requests"

    frame, still_throttled = run(scenario())

    assert frame["message"] == "Too Many Requests"
    assert frame["mine"]
    assert frame["requestId"]
    assert still_throttled  # the connection stays open; its messages keep meeting the limit


# -- HTTP API stage throttling ------------------------------------------------------------------------
def test_the_health_api_answers_429_past_its_burst(stack: LiveStack) -> None:
    answers = [get(stack, "/health") for _ in range(4)]

    assert [status for status, _ in answers] == [200, 200, 200, 429]
    assert answers[-1][1] == {"message": "Too Many Requests"}
    assert get(stack, "/prod/health/details")[0] == 403  # another route: its own bucket


def test_the_health_api_bucket_refills_as_the_stack_clock_moves(stack: LiveStack) -> None:
    """Each request runs on a thread of its own: the bucket reads the stack's present, not the
    timeline its server thread stopped at (it never refilled, and log lines kept the start time)."""
    assert [get(stack, "/health")[0] for _ in range(4)][-1] == 429

    stack.advance(150)  # 0.01 tokens/s: one and a half tokens

    assert get(stack, "/health")[0] == 200
    (last,) = log_lines(stack, HEALTH_LOG)[-1:]
    assert last["status"] == "200"


# -- /health public, details behind IAM -------------------------------------------------------------------
def test_public_health_answers_only_the_status(stack: LiveStack) -> None:
    status, body = get(stack, "/prod/health")

    assert status == 200
    assert set(body) == {"status", "correlationId"}


@pytest.mark.parametrize("path", ["/prod/health/details", "/prod/timeout-status"])
def test_details_without_a_valid_signature_are_forbidden(stack: LiveStack, path: str) -> None:
    assert get(stack, path) == (403, {"message": "Forbidden"})
    assert get(stack, path, signed_headers(stack, path, secret="not-the-secret")) == (403, {"message": "Forbidden"})


def test_a_signed_request_gets_the_details(stack: LiveStack) -> None:
    path = "/prod/health/details"
    status, body = get(stack, path, signed_headers(stack, path))

    assert status == 200
    assert body["status"] == "healthy"
    assert {b["name"] for b in body["breakers"]} == {
        "apigateway.postToConnection",
        "cognito.verifyJwt",
        "dynamodb.tokenBlacklist",
    }


# -- access logs -----------------------------------------------------------------------------------------
def test_every_request_writes_one_json_access_log_line(stack: LiveStack) -> None:
    before_ws, before_http = len(log_lines(stack, WEBSOCKET_LOG)), len(log_lines(stack, HEALTH_LOG))
    clients = Clients(stack)

    async def scenario() -> str:
        client, connection_id = await clients.open("logged")
        await client.send(json.dumps({"action": "ping"}))
        await client.close()
        return connection_id

    connection_id = run(scenario())
    get(stack, "/prod/health")
    get(stack, "/prod/timeout-status")  # unsigned: refused, and logged

    stack.close_all()
    websocket = [line for line in log_lines(stack, WEBSOCKET_LOG)[before_ws:] if line["connectionId"] == connection_id]
    assert [(line["routeKey"], line["status"]) for line in websocket] == [
        ("$connect", "200"),
        ("$default", "200"),
        ("$disconnect", "200"),
    ]
    assert {line["ip"] for line in websocket} == {"127.0.0.1"}
    assert all(line["integrationLatency"].isdigit() and line["integrationError"] == "-" for line in websocket)
    http = log_lines(stack, HEALTH_LOG)[before_http:]
    assert [(line["routeKey"], line["status"], line["errorMessage"]) for line in http] == [
        ("GET /health", "200", "-"),
        ("GET /timeout-status", "403", "Forbidden"),
    ]
    assert http[0]["integrationStatus"] == "200"
    assert http[1]["integrationStatus"] == "-"  # refused before the integration
