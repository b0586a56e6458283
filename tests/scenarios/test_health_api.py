"""GET /health, GET /health/details and GET /timeout-status, as a load balancer and an on-call engineer
see them (the template puts the last two behind IAM; tests/live checks the signature part).

Every scenario runs the real template on the offline runtime: faults are injected
at botocore (the probes' DescribeTable / DescribeSecret / HeadBucket and the
breakers' GetItem), breakers are forced open through the breaker API, as
``bw breakers force-open`` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_runtime import LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events" / "health"
BREAKERS = {"apigateway.postToConnection", "cognito.verifyJwt", "dynamodb.tokenBlacklist"}


@pytest.fixture
def stack() -> Iterator[Any]:
    started: list[LocalRuntime] = []

    def make(faults: list[dict[str, Any]] | None = None, parameters: dict[str, str] | None = None) -> LocalRuntime:
        runtime = LocalRuntime(
            ROOT / "template.yaml", faults=faults, parameters=parameters, data=ROOT / "events" / "local_data.yaml"
        ).start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()


def event(name: str, *, path: str | None = None, method: str = "GET", correlation_id: str | None = None) -> Any:
    sample = json.loads((EVENTS / name).read_text())
    if path is not None:
        # As API Gateway sends a request that only a catch-all ($default) route would match.
        sample["rawPath"] = sample["requestContext"]["http"]["path"] = path
        sample["routeKey"] = sample["requestContext"]["routeKey"] = "$default"
    sample["requestContext"]["http"]["method"] = method
    if correlation_id is not None:
        sample["headers"]["x-correlation-id"] = correlation_id
    return sample


def call(runtime: LocalRuntime, sample: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    invocation = runtime.invoke("HealthFunction", sample)
    assert not invocation.errored, invocation.payload
    answer = invocation.payload
    return int(answer["statusCode"]), json.loads(answer["body"]), answer.get("headers") or {}


def get(runtime: LocalRuntime, name: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    status, body, _ = call(runtime, event(name, **kwargs))
    return status, body


def force_open(runtime: LocalRuntime, name: str) -> None:
    """What ``bw breakers force-open NAME`` does, on this stack's Breakers table."""
    from resilience.breaker import CircuitBreaker, DynamoDBBreakerStore, policy_for

    CircuitBreaker(
        name, DynamoDBBreakerStore("BreakersTable", runtime.client("dynamodb")), policy_for(name)
    ).force_open()


# -- /health ---------------------------------------------------------------------------------------
def test_PublicHealthSaysOnlyTheStatus(stack):
    runtime = stack(
        [
            {
                "service": "dynamodb",
                "operation": "DescribeTable",
                "resource": "ConnectionsTable",
                "error": "InternalServerError",
            }
        ]
    )

    status, body, headers = call(runtime, event("health.json"))

    # A load balancer gets its 503; nobody unauthenticated learns which dependency, breaker or error.
    assert (status, body) == (503, {"status": "unhealthy", "correlationId": "corr-health-1"})
    assert headers["Cache-Control"] == "no-store"


def test_PublicHealthOfAHealthyStack(stack):
    assert get(stack(), "health.json") == (200, {"status": "healthy", "correlationId": "corr-health-1"})


def test_HealthyStackReports200(stack):
    status, body, headers = call(stack(), event("health_details.json"))

    assert (status, body["status"]) == (200, "healthy")
    assert {name: dep["status"] for name, dep in body["dependencies"].items()} == {
        "dynamodb": "up",
        "tokenBlacklist": "up",
        "signingKey": "up",
        "tenantConfig": "up",
        "rateLimits": "up",
        "cognito": "up",
        "apigateway": "up",
    }
    assert {b["name"]: b["state"] for b in body["breakers"]} == dict.fromkeys(BREAKERS, "CLOSED")
    assert body["alerts"] == []
    assert body["degradations"] == []
    assert {p["name"] for p in body["caches"]} == {
        "signing_key",
        "tenant_config",
        "tenant_validation",
        "blacklist",
    }
    assert body["correlationId"] == "corr-health-1"
    assert headers["Cache-Control"] == "no-store"


def test_ConnectionsTableDownIs503(stack):
    runtime = stack(
        [
            {
                "service": "dynamodb",
                "operation": "DescribeTable",
                "resource": "ConnectionsTable",
                "error": "InternalServerError",
                "status": 500,
            }
        ]
    )

    status, body = get(runtime, "health_details.json")

    assert (status, body["status"]) == (503, "unhealthy")
    assert body["dependencies"]["dynamodb"] == {"status": "down", "criticality": "critical", "reason": "RetryableError"}
    assert [(d["dependency"], d["criticality"]) for d in body["degradations"]] == [("dynamodb", "critical")]
    assert body["correlationId"] == "corr-health-1"


#: One row per dependency the probes watch: the fault, and what /health answers (degradation table).
DEPENDENCY_DOWN = [
    # dependency       fault (service, operation, resource, error)                                  HTTP  status
    ("dynamodb", ("dynamodb", "DescribeTable", "MessagesTable", "InternalServerError"), 503, "unhealthy"),
    ("dynamodb", ("dynamodb", "DescribeTable", "ConnectionsTable", "AccessDeniedException"), 503, "unhealthy"),
    ("tokenBlacklist", ("dynamodb", "DescribeTable", "TokenBlacklistTable", "ThrottlingException"), 503, "unhealthy"),
    ("signingKey", ("secretsmanager", "DescribeSecret", "SigningKeySecret", "InternalServiceError"), 503, "unhealthy"),
    ("tenantConfig", ("s3", "HeadBucket", "*", "ServiceUnavailable"), 200, "degraded"),
    ("rateLimits", ("dynamodb", "DescribeTable", "RateLimitsTable", "InternalServerError"), 200, "degraded"),
]


@pytest.mark.parametrize(
    ("dependency", "fault", "http", "overall"),
    DEPENDENCY_DOWN,
    ids=[f"{row[0]}-{row[1][3]}" for row in DEPENDENCY_DOWN],
)
def test_EachDependencyDownAnswersPerTheDegradationTable(stack, dependency, fault, http, overall):
    service, operation, resource, error = fault
    runtime = stack([{"service": service, "operation": operation, "resource": resource, "error": error}])

    status, body = get(runtime, "health_details.json")

    assert (status, body["status"]) == (http, overall)
    assert {name for name, dep in body["dependencies"].items() if dep["status"] != "up"} == {dependency}


def test_DynamoDbTimingOutAnswers503WithinOneClientTimeout(stack):
    runtime = stack([{"service": "dynamodb", "timeout": True}])

    invocation = runtime.invoke("HealthFunction", event("health_details.json"))
    body = json.loads(invocation.payload["body"])

    # Every probe and breaker read runs at once with one attempt: one 5 s read timeout, not
    # seven in a row (which would outlive the function's 15 s and answer no JSON at all).
    assert not invocation.errored
    assert invocation.duration <= 5.0
    assert (invocation.payload["statusCode"], body["status"]) == (503, "unhealthy")
    assert body["dependencies"]["dynamodb"]["reason"] == "ServiceTimeoutError"
    assert {b["state"] for b in body["breakers"]} == {"UNKNOWN"}
    assert {"STATS_UNAVAILABLE", "TIMEOUT_RATE_HIGH"} <= {a["name"] for a in body["alerts"]}


def test_OpenBreakerShowsDegraded(stack):
    runtime = stack()
    force_open(runtime, "cognito.verifyJwt")

    status, body = get(runtime, "health_details.json")

    assert (status, body["status"]) == (200, "degraded")
    assert {b["name"]: b["state"] for b in body["breakers"]}["cognito.verifyJwt"] == "OPEN"
    assert body["dependencies"]["cognito"] == {"status": "down", "criticality": "important", "reason": "breaker OPEN"}


def test_OpenTokenBlacklistBreakerIs503(stack):
    runtime = stack()
    force_open(runtime, "dynamodb.tokenBlacklist")

    status, body = get(runtime, "health_details.json")

    # Fail closed: with its breaker open every token counts as revoked, so no speaker gets in.
    assert (status, body["status"]) == (503, "unhealthy")
    assert body["dependencies"]["tokenBlacklist"]["status"] == "down"
    assert {b["name"]: b["dependency"] for b in body["breakers"]}["dynamodb.tokenBlacklist"] == "tokenBlacklist"


def test_RecoveryIsSeenAfterTheProbeInterval(stack):
    runtime = stack(
        [
            {
                "service": "dynamodb",
                "operation": "DescribeTable",
                "resource": "ConnectionsTable",
                "error": "InternalServerError",
            }
        ]
    )
    assert get(runtime, "health_details.json")[0] == 503

    runtime.faults.clear()
    assert get(runtime, "health_details.json")[0] == 503  # the same round, 10 s of cache
    runtime.clock.advance(11)
    status, body = get(runtime, "health_details.json")

    assert (status, body["status"], body["dependencies"]["dynamodb"]["status"]) == (200, "healthy", "up")


def test_ProbesAreCachedBetweenPolls(stack):
    runtime = stack()
    get(runtime, "health_details.json")
    per_round = {op: runtime.requests[("dynamodb", op)] for op in ("DescribeTable", "GetItem")}
    assert per_round == {"DescribeTable": 4, "GetItem": len(BREAKERS)}

    for _ in range(5):
        get(runtime, "health_details.json")
        get(runtime, "timeout_status.json")
    runtime.clock.advance(11)
    get(runtime, "health_details.json")

    assert {op: runtime.requests[("dynamodb", op)] for op in per_round} == {op: 2 * n for op, n in per_round.items()}


# -- /timeout-status -------------------------------------------------------------------------------


def test_TimeoutStatusListsConfiguredTimeouts(stack):
    runtime = stack(parameters={"DynamoDbReadTimeoutSeconds": "4", "SdkMaxAttempts": "2"})

    status, body = get(runtime, "timeout_status.json")

    assert status == 200
    assert body["timeouts"]["dynamodb"] == {"connectSeconds": 3.0, "readSeconds": 4.0}
    assert body["timeouts"]["secretsmanager"] == {"connectSeconds": 2.0, "readSeconds": 3.0}
    assert body["timeouts"]["s3"] == {"connectSeconds": 2.0, "readSeconds": 3.0}
    assert body["sdkMaxAttempts"] == 2
    assert {b["name"]: b["state"] for b in body["breakers"]} == dict.fromkeys(BREAKERS, "CLOSED")
    assert all({"windowSeconds", "failures", "slowCalls", "recoverySeconds"} <= set(b) for b in body["breakers"])
    assert body["recentTimeouts"]["dynamodb"]["timeouts"] == 0
    assert body["correlationId"] == "corr-health-1"


def test_TimeoutStatusCountsTimeoutsAndShowsOpenBreakers(stack):
    runtime = stack(
        [{"service": "dynamodb", "operation": "DescribeTable", "resource": "MessagesTable", "timeout": True}]
    )
    force_open(runtime, "apigateway.postToConnection")

    status, body = get(runtime, "timeout_status.json")

    assert status == 200
    assert body["recentTimeouts"]["dynamodb"] == {"probes": 2, "timeouts": 1, "averageMs": 2500.0}
    assert body["recentTimeouts"]["signingKey"]["timeouts"] == 0
    breakers = {b["name"]: b for b in body["breakers"]}
    assert (breakers["apigateway.postToConnection"]["state"], breakers["apigateway.postToConnection"]["forced"]) == (
        "OPEN",
        True,
    )


def test_TimeoutStatusAnswersWhenTheBreakersTableIsDown(stack):
    runtime = stack(
        [{"service": "dynamodb", "operation": "GetItem", "resource": "BreakersTable", "error": "InternalServerError"}]
    )

    status, body = get(runtime, "timeout_status.json")

    assert status == 200
    assert {(b["name"], b["state"], b["reason"]) for b in body["breakers"]} == {
        (name, "UNKNOWN", "BreakerStoreError") for name in BREAKERS
    }


# -- everything else -------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", "/prod/secrets"), ("GET", "/prod/"), ("POST", "/prod/health")])
def test_UnknownPathIs404(stack, method, path):
    status, body = get(stack(), "health_details.json", path=path, method=method)

    assert status == 404
    assert body == {
        "error": {
            "code": "NOT_FOUND",
            "message": "Routes: GET /health, GET /health/details, GET /timeout-status",
            "correlationId": "corr-health-1",
        }
    }


def test_AMisconfiguredProbeIntervalIsA500InTheHouseShape(stack):
    runtime = stack(parameters={"HealthProbeSeconds": "-1"})  # past the template's MinValue, as a hand edit would be

    status, body = get(runtime, "health_details.json")

    assert status == 500
    assert body == {
        "error": {"code": "CONFIGURATION_ERROR", "message": "Service misconfigured", "correlationId": "corr-health-1"}
    }


def test_LogLinesCarryTheCorrelationId(stack, capsys):
    runtime = stack(
        [
            {
                "service": "dynamodb",
                "operation": "DescribeTable",
                "resource": "ConnectionsTable",
                "error": "InternalServerError",
            }
        ]
    )
    get(runtime, "health_details.json", path="/prod/warm-up")  # the function's logger exists once it is loaded
    capsys.readouterr()

    get(runtime, "health_details.json", correlation_id="corr-from-the-caller")
    get(runtime, "health_details.json", path="/prod/nope", correlation_id="corr-from-the-caller")

    # The function's Powertools logger writes JSON lines to stdout, as on Lambda.
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"level"')]
    assert {"dependency down", "health status changed", "unknown route"} <= {line["message"] for line in lines}
    assert {line["correlation_id"] for line in lines} == {"corr-from-the-caller"}
    assert {line["function_name"] for line in lines} == {"HealthFunction"}


def test_HealthNeverShowsASecretOrTheEnvironment(stack):
    runtime = stack()
    secret = runtime.client("secretsmanager").get_secret_value(SecretId="SigningKeySecret")["SecretString"]

    answers = [
        json.dumps(get(runtime, name)[1]) for name in ("health.json", "health_details.json", "timeout_status.json")
    ]

    for text in answers:
        assert json.loads(secret)["key"] not in text
        # No resource names, no environment variables.
        assert "Table" not in text
        assert "SigningKeySecret" not in text
        assert "BW_" not in text
