"""$connect, $default and $disconnect on the real template, as a client sees them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from local_runtime import LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
CONNECTION = "Xy1ZEcabcDEFg="


def event(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / path).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def stack():
    started: list[LocalRuntime] = []

    def make(faults: list[dict[str, Any]] | None = None) -> LocalRuntime:
        runtime = LocalRuntime(ROOT / "template.yaml", faults=faults, data=EVENTS / "local_data.yaml").start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()


def stored(runtime: LocalRuntime) -> list[dict[str, Any]]:
    return runtime.items("ConnectionsTable")


def test_ListenerConnectsAnonymously(stack):
    runtime = stack()

    answer = runtime.invoke("ConnectFunction", event("connect/listener.json")).payload

    assert answer == {"statusCode": 200}
    (item,) = stored(runtime)
    assert (item["connectionId"], item["tenantId"], item["sessionId"], item["role"], item["userId"]) == (
        CONNECTION,
        "acme",
        "town-hall",
        "listener",
        "anonymous",
    )
    assert item["lastActivityTime"] == item["connectedAt"]
    assert item["expiresAt"] == int(item["connectedAt"]) // 1000 + 3 * 3600


def test_SpeakerWithoutTokenIs401(stack):
    runtime = stack()

    answer = runtime.invoke("ConnectFunction", event("connect/speaker_without_token.json")).payload

    assert answer["statusCode"] == 401
    assert json.loads(answer["body"])["error"]["code"] == "TOKEN_INVALID"
    assert json.loads(answer["body"])["error"]["correlationId"] == "corr-connect-1"
    assert stored(runtime) == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"role": "moderator", "tenant": "acme", "session": "s"}, "role must be"),
        ({"role": "listener", "session": "s"}, "tenant is required"),
        ({"role": "listener", "tenant": "acme", "session": "has spaces"}, "session is required"),
        ({"role": "listener", "tenant": "a" * 254, "session": "s"}, "tenant is required"),
        ({"role": "listener", "tenant": "acme/..", "session": "s"}, "tenant is required"),
        ({"role": "listener", "tenant": "acme", "session": "town-hall\n"}, "session is required"),
        ({"role": "listener", "tenant": "acme\n", "session": "s"}, "tenant is required"),
    ],
)
def test_BadConnectRequestIs400AndStoresNothing(stack, query, message):
    runtime = stack()
    request = event("connect/listener.json")
    request["queryStringParameters"] = query

    answer = runtime.invoke("ConnectFunction", request).payload

    assert answer["statusCode"] == 400
    body = json.loads(answer["body"])["error"]
    assert body["code"] == "VALIDATION_ERROR"
    assert message in body["message"]
    assert stored(runtime) == []


def test_ConnectionsTableDownIs503WithRetryAfter(stack):
    runtime = stack([{"service": "dynamodb", "operation": "PutItem", "error": "InternalServerError"}])

    answer = runtime.invoke("ConnectFunction", event("connect/listener.json")).payload

    assert answer["statusCode"] == 503
    assert answer["headers"] == {"Retry-After": "5"}
    error = json.loads(answer["body"])["error"]
    assert (error["code"], error["retryAfter"]) == ("SERVICE_UNAVAILABLE", 5)
    assert stored(runtime) == []


def test_ConnectionsTableTimeoutIs503ServiceTimeout(stack):
    runtime = stack([{"service": "dynamodb", "operation": "PutItem", "latency": 30}])

    answer = runtime.invoke("ConnectFunction", event("connect/listener.json")).payload

    assert answer["statusCode"] == 503
    assert json.loads(answer["body"])["error"]["code"] == "SERVICE_TIMEOUT"


def test_UnknownActionIsClearError(stack):
    runtime = stack()
    runtime.connections.connect(CONNECTION)
    runtime.invoke("ConnectFunction", event("connect/listener.json"))

    answer = runtime.invoke("DefaultRouteFunction", event("default_route/unknown_action.json")).payload

    assert answer == {"statusCode": 400}
    (frame,) = runtime.connections.received(CONNECTION)
    assert frame["type"] == "error"
    assert frame["code"] == "UNKNOWN_ACTION"
    assert "sendMessage" in frame["message"]
    assert frame["correlationId"]


def test_MalformedBodyIsClearErrorAndChangesNothing(stack):
    runtime = stack()
    runtime.connections.connect(CONNECTION)
    runtime.invoke("ConnectFunction", event("connect/listener.json"))
    before = stored(runtime)

    runtime.invoke("DefaultRouteFunction", event("default_route/not_json.json"))

    assert [f["code"] for f in runtime.connections.received(CONNECTION)] == ["INVALID_MESSAGE"]
    assert stored(runtime) == before


def test_DeeplyNestedFrameIsAClearErrorAndChangesNothing(stack):
    runtime = stack()
    runtime.connections.connect(CONNECTION)
    runtime.invoke("ConnectFunction", event("connect/listener.json"))
    before = stored(runtime)
    frame = event("default_route/not_json.json")
    frame["body"] = "[" * 20_000  # parsing it recursively exhausts the interpreter's stack

    answer = runtime.invoke("DefaultRouteFunction", frame)

    assert not answer.errored, answer.payload
    assert [f["code"] for f in runtime.connections.received(CONNECTION)] == ["INVALID_MESSAGE"]
    assert stored(runtime) == before


def test_PingCountsAsActivity(stack):
    runtime = stack()
    runtime.invoke("ConnectFunction", event("connect/listener.json"))
    (before,) = stored(runtime)
    runtime.clock.advance(45)

    answer = runtime.invoke("DefaultRouteFunction", event("default_route/ping.json")).payload

    (after,) = stored(runtime)
    assert answer == {"statusCode": 200}
    assert int(after["lastActivityTime"]) - int(before["lastActivityTime"]) == 45_000


def test_PingAfterCleanupDoesNotResurrectTheConnection(stack):
    runtime = stack()

    answer = runtime.invoke("DefaultRouteFunction", event("default_route/ping.json")).payload

    assert answer == {"statusCode": 200}
    assert stored(runtime) == []


def test_ConnectThenDisconnectLeavesNothingBehind(stack):
    runtime = stack()
    runtime.invoke("ConnectFunction", event("connect/listener.json"))

    runtime.invoke("DisconnectFunction", event("disconnect/client_disconnected.json"))
    for arn in runtime.executions.started("DisconnectCleanup"):
        assert runtime.wait(arn).status == "SUCCEEDED"

    assert stored(runtime) == []
