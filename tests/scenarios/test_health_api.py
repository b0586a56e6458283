"""GET /health and GET /timeout-status, as a load balancer and an on-call engineer see them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_runtime import LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events" / "health"


@pytest.fixture
def stack() -> Iterator[Any]:
    started: list[LocalRuntime] = []

    def make(faults: list[dict[str, Any]] | None = None) -> LocalRuntime:
        runtime = LocalRuntime(ROOT / "template.yaml", faults=faults, data=ROOT / "events" / "local_data.yaml").start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()


def get(runtime: LocalRuntime, name: str, path: str | None = None) -> tuple[int, dict[str, Any]]:
    event = json.loads((EVENTS / name).read_text())
    if path is not None:
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
    answer = runtime.invoke("HealthFunction", event).payload
    return int(answer["statusCode"]), json.loads(answer["body"])


def test_HealthyStackReports200(stack):
    status, body = get(stack(), "health.json")

    assert (status, body["status"]) == (200, "healthy")
    assert set(body["dependencies"].values()) == {"up"}
    assert {b["name"] for b in body["breakers"]} >= {"apigateway.postToConnection", "cognito.verifyJwt"}
    assert body["correlationId"] == "corr-health-1"


def test_ConnectionsTableDownIs503(stack):
    runtime = stack(
        [{"service": "dynamodb", "operation": "DescribeTable", "resource": "ConnectionsTable", "timeout": True}]
    )

    status, body = get(runtime, "health.json")

    assert (status, body["status"], body["dependencies"]["dynamodb"]) == (503, "unhealthy", "down")
    assert [d["dependency"] for d in body["degradations"]] == ["dynamodb"]


def test_OptionalDependencyDownIsDegradedNot503(stack):
    runtime = stack(
        [
            {
                "service": "dynamodb",
                "operation": "DescribeTable",
                "resource": "RateLimitsTable",
                "error": "InternalServerError",
            }
        ]
    )

    status, body = get(runtime, "health.json")

    assert (status, body["status"], body["dependencies"]["rateLimits"]) == (200, "degraded", "down")


def test_OpenBreakerShowsDegraded(stack):
    runtime = stack()
    from resilience.breaker import CircuitBreaker

    CircuitBreaker.from_env(
        "cognito.verifyJwt", runtime.client("dynamodb"), env={"BW_BREAKERS_TABLE": "BreakersTable"}
    ).force_open()

    status, body = get(runtime, "health.json")

    assert (status, body["status"]) == (200, "degraded")
    assert {b["name"]: b["state"] for b in body["breakers"]}["cognito.verifyJwt"] == "OPEN"


def test_ProbesAreCachedBetweenPolls(stack):
    runtime = stack()
    get(runtime, "health.json")
    probes = runtime.requests[("dynamodb", "DescribeTable")]

    get(runtime, "health.json")
    runtime.clock.advance(11)
    get(runtime, "health.json")

    assert runtime.requests[("dynamodb", "DescribeTable")] == 2 * probes


def test_TimeoutStatusListsConfiguredTimeouts(stack):
    status, body = get(stack(), "timeout_status.json")

    assert status == 200
    assert body["timeouts"]["dynamodb"] == {"connect": 3.0, "read": 5.0}
    assert body["timeouts"]["secretsmanager"] == {"connect": 2.0, "read": 3.0}
    assert {b["name"] for b in body["breakers"]} == {
        "apigateway.postToConnection",
        "cognito.verifyJwt",
        "dynamodb.tokenBlacklist",
    }


def test_UnknownPathIs404(stack):
    status, body = get(stack(), "health.json", path="/prod/secrets")

    assert status == 404
    assert body["error"]["code"] == "NOT_FOUND"
    assert body["error"]["correlationId"] == "corr-health-1"


def test_HealthNeverShowsTheSigningKey(stack):
    runtime = stack()
    secret = runtime.client("secretsmanager").get_secret_value(SecretId="SigningKeySecret")["SecretString"]

    _, body = get(runtime, "health.json")

    assert json.loads(secret)["key"] not in json.dumps(body)
