"""$connect admission end to end: ConnectFunction -> AuthorizeConnection -> the decision a client sees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_runtime import LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "events" / "local_data.yaml"


@pytest.fixture
def stack() -> Iterator[Any]:
    started: list[LocalRuntime] = []

    def make(faults: list[dict[str, Any]] | None = None, **kwargs: Any) -> LocalRuntime:
        runtime = LocalRuntime(ROOT / "template.yaml", faults=faults, data=DATA, **kwargs).start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()


def connect_event(
    connection_id: str = "C1=",
    *,
    role: str = "listener",
    tenant: str = "acme",
    session: str = "town-hall",
    token: str | None = None,
    source_ip: str = "203.0.113.10",
) -> dict[str, Any]:
    headers = {"x-correlation-id": f"corr-{connection_id}"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return {
        "requestContext": {
            "routeKey": "$connect",
            "eventType": "CONNECT",
            "connectionId": connection_id,
            "requestId": f"req-{connection_id}",
            "identity": {"sourceIp": source_ip},
        },
        "headers": headers,
        "queryStringParameters": {"role": role, "tenant": tenant, "session": session},
    }


def connect(runtime: LocalRuntime, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    invocation = runtime.invoke("ConnectFunction", event)
    assert invocation.error_type is None, invocation.error_message
    answer = invocation.payload
    body = json.loads(answer["body"])["error"] if "body" in answer else {}
    return int(answer["statusCode"]), body


def stored(runtime: LocalRuntime) -> dict[str, dict[str, Any]]:
    return {item["connectionId"]: item for item in runtime.items("ConnectionsTable")}


# -- named scenarios -----------------------------------------------------------------------------


def test_AnonymousListenerIsAdmitted(stack):
    runtime = stack()

    status, _ = connect(runtime, connect_event("L1="))

    assert status == 200
    item = stored(runtime)["L1="]
    assert (item["tenantId"], item["role"], item["userId"], item["anonymous"]) == (
        "acme",
        "listener",
        "anonymous",
        True,
    )
    assert item["lastActivityTime"] == item["connectedAt"]
    assert item["idleShard"] in {"0", "1", "2", "3"}


def test_SpeakerWithCognitoTokenIsAdmitted(stack):
    runtime = stack()

    status, _ = connect(runtime, connect_event("S1=", role="speaker", token=runtime.cognito_token(subject="alice")))

    assert status == 200
    assert (stored(runtime)["S1="]["userId"], stored(runtime)["S1="]["anonymous"]) == ("alice", False)


def test_SpeakerWithBreakwaterTokenIsAdmitted(stack):
    runtime = stack()

    status, _ = connect(runtime, connect_event("S1=", role="speaker", token=runtime.breakwater_token(subject="bot-7")))

    assert status == 200
    assert stored(runtime)["S1="]["userId"] == "bot-7"


def test_TokenInTheQueryStringIsAcceptedLikeTheHeader(stack):
    runtime = stack()
    event = connect_event("S1=", role="speaker")
    event["queryStringParameters"]["token"] = runtime.cognito_token()

    assert connect(runtime, event)[0] == 200


@pytest.mark.parametrize(
    ("claims", "status", "code", "detail"),
    [
        ({"exp": 0, "iat": 0}, 401, "TOKEN_INVALID", "token expired"),
        ({"aud": "someone-else"}, 401, "TOKEN_INVALID", "wrong audience"),
        ({"cognito:groups": ["listener"]}, 401, "TOKEN_INVALID", "speaker role"),
        ({"custom:tenant": "globex"}, 403, "TENANT_REJECTED", ""),
        ({"jti": "revoked-demo-token"}, 401, "TOKEN_REVOKED", ""),
    ],
    ids=["expired", "wrong-audience", "not-a-speaker", "other-tenant", "revoked"],
)
def test_SpeakerWithABadTokenIsRefusedAndNothingIsStored(stack, claims, status, code, detail):
    runtime = stack()

    answer = connect(runtime, connect_event("S1=", role="speaker", token=runtime.cognito_token(**claims)))

    assert answer[0] == status
    assert answer[1]["code"] == code
    assert detail in answer[1]["message"]
    assert answer[1]["correlationId"] == "corr-S1="
    assert stored(runtime) == {}


@pytest.mark.parametrize("issuer", ["cognito", "breakwater"])
def test_SpeakerWhoseTokenNamesNoTenantIsRefusedByEveryTenant(stack, issuer):
    """A signed-in client belongs to one tenant; a token without the claim is admitted nowhere."""
    runtime = stack()
    mint = runtime.cognito_token if issuer == "cognito" else runtime.breakwater_token

    status, body = connect(runtime, connect_event("S1=", role="speaker", token=mint(tenant=None)))

    assert (status, body["code"]) == (403, "TENANT_REJECTED")
    assert stored(runtime) == {}


def test_SpeakerWithoutTokenIs401(stack):
    runtime = stack()

    assert connect(runtime, connect_event("S1=", role="speaker"))[:1] == (401,)
    assert stored(runtime) == {}


@pytest.mark.parametrize(
    ("tenant", "reason"),
    [("umbrella", "unknown"), ("globex", "disabled"), ("initech", "anonymous")],
)
def test_TenantThatDoesNotAdmitTheListenerIs403(stack, tenant, reason):
    runtime = stack()

    status, body = connect(runtime, connect_event("L1=", tenant=tenant))

    assert (status, body["code"]) == (403, "TENANT_REJECTED")
    assert stored(runtime) == {}


def test_CognitoOutageRefusesSpeakersAndAdmitsListeners(stack):
    runtime = stack(
        [{"name": "cognito-down", "service": "cognito-idp", "error": "InternalErrorException", "status": 500}]
    )

    speaker = connect(runtime, connect_event("S1=", role="speaker", token=runtime.cognito_token()))
    listener = connect(runtime, connect_event("L1="))

    assert (speaker[0], speaker[1]["code"], speaker[1]["retryAfter"]) == (503, "SERVICE_UNAVAILABLE", 5)
    assert listener[0] == 200
    assert set(stored(runtime)) == {"L1="}


def test_CognitoOutageOpensTheSharedBreakerAndLaterSpeakersAreRefusedWithoutCallingIt(stack):
    runtime = stack(
        [{"name": "cognito-down", "service": "cognito-idp", "error": "InternalErrorException", "status": 500}]
    )
    for n in range(4):
        connect(runtime, connect_event(f"S{n}=", role="speaker", token=runtime.cognito_token()))
    calls = runtime.requests[("cognito-idp", "GetJWKS")]

    status, _ = connect(runtime, connect_event("S9=", role="speaker", token=runtime.cognito_token()))

    states = {item["name"]: item["state"] for item in runtime.items("BreakersTable")}
    assert states["cognito.verifyJwt"] == "OPEN"
    assert status == 503
    assert runtime.requests[("cognito-idp", "GetJWKS")] == calls


def test_TooManyConnectionAttemptsFromOneAddressIs429(stack):
    runtime = stack(parameters={"ConnectRateLimit": "2"})
    answers = [connect(runtime, connect_event(f"L{n}="))[0] for n in range(3)]

    assert answers == [200, 200, 429]


def test_RateLimitsOutageNeverRefusesAClient(stack):
    runtime = stack([{"service": "dynamodb", "resource": "RateLimitsTable", "error": "InternalServerError"}])

    assert connect(runtime, connect_event("L1="))[0] == 200


def test_AdmissionTraceShowsTheParallelChecks(stack):
    runtime = stack()
    payload = {
        "connectionId": "S1=",
        "role": "speaker",
        "tenantHint": "acme",
        "sessionId": "town-hall",
        "token": runtime.cognito_token(),
        "sourceIp": "203.0.113.10",
        "correlationId": "corr-trace",
        "connectedAt": 1795520000000,
        "expiresAt": 1795530800,
        "idleShard": "0",
    }

    result = runtime.run("AuthorizeConnection", payload)

    visited = [row.name for row in result.trace().rows]
    assert result.output["decision"] == "allow"
    assert visited[:3] == ["Does the client present a token?", "Verify token", "Forget the token"]
    assert {"Is the token revoked?", "Validate tenant and load its config", "Store the connection", "Admit"} <= set(
        visited
    )
    # After "Forget the token" no state's input or output holds the token.
    later = [row for row in result.trace().rows if visited.index(row.name) > visited.index("Forget the token")]
    assert later
    assert all(payload["token"] not in json.dumps([row.input, row.output], default=str) for row in later)


# -- the fault matrix ------------------------------------------------------------------------------
#
# Every dependency of admission x every way it can fail x every kind of client. The healthy
# system admits all three clients, so the rule "no fault admits a client the healthy system
# would refuse" holds trivially here; what the table pins is that each fault *degrades* the
# way seeds 000/002 say: security dependencies refuse token holders, configuration refuses
# everyone, rate limiting is switched off, the connection store refuses everyone with 503.
# Connections has no "malformed" row: the workflow writes the item, it reads nothing back.
# Breakers is the circuit breakers' own state: its rows pin where availability gives way.

COGNITO, BREAKWATER, LISTENER = "speaker (Cognito)", "speaker (breakwater)", "listener (anonymous)"
OK = (200, None)
REVOKED, REJECTED, NO_KEY = (401, "TOKEN_REVOKED"), (403, "TENANT_REJECTED"), (500, "JWT_KEY_ERROR")
DOWN, SLOW = (503, "SERVICE_UNAVAILABLE"), (503, "SERVICE_TIMEOUT")

DEPENDENCIES: dict[str, dict[str, Any]] = {
    "TokenBlacklist": {"service": "dynamodb", "resource": "TokenBlacklistTable"},
    "S3 config": {"service": "s3"},
    "Secrets Manager": {"service": "secretsmanager"},
    "Cognito JWKS": {"service": "cognito-idp", "operation": "GetJWKS"},
    "RateLimits": {"service": "dynamodb", "resource": "RateLimitsTable"},
    "Connections": {"service": "dynamodb", "resource": "ConnectionsTable", "operation": "PutItem"},
    "Breakers": {"service": "dynamodb", "resource": "BreakersTable"},
}
ERRORS: dict[str, dict[str, str]] = {  # per service: its 5xx and its access-denied error codes
    "dynamodb": {"5xx": "InternalServerError", "denied": "AccessDeniedException"},
    "s3": {"5xx": "InternalError", "denied": "AccessDenied"},
    "secretsmanager": {"5xx": "InternalServiceError", "denied": "AccessDeniedException"},
    "cognito-idp": {"5xx": "InternalErrorException", "denied": "AccessDenied"},
}

#   dependency          fault           Cognito speaker   breakwater speaker   anonymous listener
MATRIX: list[tuple[str, str, tuple[int, str | None], tuple[int, str | None], tuple[int, str | None]]] = [
    ("TokenBlacklist",  "timeout",      REVOKED,          REVOKED,             OK),
    ("TokenBlacklist",  "throttle",     REVOKED,          REVOKED,             OK),
    ("TokenBlacklist",  "5xx",          REVOKED,          REVOKED,             OK),
    ("TokenBlacklist",  "AccessDenied", REVOKED,          REVOKED,             OK),
    ("TokenBlacklist",  "malformed",    REVOKED,          REVOKED,             OK),
    ("S3 config",       "timeout",      REJECTED,         REJECTED,            REJECTED),
    ("S3 config",       "throttle",     REJECTED,         REJECTED,            REJECTED),
    ("S3 config",       "5xx",          REJECTED,         REJECTED,            REJECTED),
    ("S3 config",       "AccessDenied", REJECTED,         REJECTED,            REJECTED),
    ("S3 config",       "malformed",    REJECTED,         REJECTED,            REJECTED),
    ("Secrets Manager", "timeout",      OK,               NO_KEY,              OK),
    ("Secrets Manager", "throttle",     OK,               NO_KEY,              OK),
    ("Secrets Manager", "5xx",          OK,               NO_KEY,              OK),
    ("Secrets Manager", "AccessDenied", OK,               NO_KEY,              OK),
    ("Secrets Manager", "malformed",    OK,               NO_KEY,              OK),
    ("Cognito JWKS",    "timeout",      DOWN,             OK,                  OK),
    ("Cognito JWKS",    "throttle",     DOWN,             OK,                  OK),
    ("Cognito JWKS",    "5xx",          DOWN,             OK,                  OK),
    ("Cognito JWKS",    "AccessDenied", DOWN,             OK,                  OK),
    ("Cognito JWKS",    "malformed",    DOWN,             OK,                  OK),
    ("RateLimits",      "timeout",      OK,               OK,                  OK),
    ("RateLimits",      "throttle",     OK,               OK,                  OK),
    ("RateLimits",      "5xx",          OK,               OK,                  OK),
    ("RateLimits",      "AccessDenied", OK,               OK,                  OK),
    ("RateLimits",      "malformed",    OK,               OK,                  OK),
    ("Connections",     "timeout",      SLOW,             SLOW,                SLOW),
    ("Connections",     "throttle",     DOWN,             DOWN,                DOWN),
    ("Connections",     "5xx",          DOWN,             DOWN,                DOWN),
    ("Connections",     "AccessDenied", DOWN,             DOWN,                DOWN),
    # The security path's breakers fail closed when their state cannot be read: the JWKS
    # download is refused (no stale keys in a fresh container: 503), the revocation check
    # treats the token as revoked. Nothing a token holder presents is judged blind.
    ("Breakers",        "timeout",      DOWN,             REVOKED,             OK),
    ("Breakers",        "throttle",     DOWN,             REVOKED,             OK),
    ("Breakers",        "5xx",          DOWN,             REVOKED,             OK),
    ("Breakers",        "AccessDenied", DOWN,             REVOKED,             OK),
]  # fmt: skip
ROLES = (COGNITO, BREAKWATER, LISTENER)


def _fault(dependency: str, kind: str) -> dict[str, Any] | None:
    target = dict(DEPENDENCIES[dependency], name=f"{dependency} {kind}")
    errors = ERRORS[target["service"]]
    if kind == "timeout":
        return {**target, "timeout": True}
    if kind == "throttle":
        return {**target, "throttle": True}
    if kind == "5xx":
        return {**target, "error": errors["5xx"], "status": 500}
    if kind == "AccessDenied":
        return {**target, "error": errors["denied"], "status": 403}
    return None


def _corrupt(runtime: LocalRuntime, dependency: str, jti: str) -> None:
    """The "malformed data" column: the dependency answers, with something unusable."""
    if dependency == "TokenBlacklist":
        runtime.client("dynamodb").put_item(
            TableName="TokenBlacklistTable", Item={"jti": {"S": jti}, "expiresAt": {"S": "not-a-number"}}
        )
    elif dependency == "S3 config":
        runtime.client("s3").put_object(Bucket="tenantconfigbucket", Key="tenants/acme/config.json", Body=b"{oops")
    elif dependency == "Secrets Manager":
        runtime.client("secretsmanager").put_secret_value(SecretId="SigningKeySecret", SecretString="{oops")
    elif dependency == "Cognito JWKS":
        runtime.faults.add({"service": "cognito-idp", "operation": "GetJWKS", "error": "MalformedResponse"})
    elif dependency == "RateLimits":
        table = runtime.client("dynamodb")
        window = int(runtime.clock.now() // 60) * 60
        table.put_item(
            TableName="RateLimitsTable",
            Item={"subject": {"S": f"connect#203.0.113.10#{window}"}, "requests": {"S": "x"}},
        )


@pytest.mark.parametrize(
    ("dependency", "kind", "role", "expected"),
    [(row[0], row[1], role, row[2 + i]) for row in MATRIX for i, role in enumerate(ROLES)],
    ids=lambda v: str(v) if not isinstance(v, tuple) else f"{v[0]}",
)
def test_fault_matrix(stack, dependency, kind, role, expected):
    runtime = stack()
    jti = "matrix-token"
    token = None
    if role == COGNITO:
        token = runtime.cognito_token(jti=jti)
    elif role == BREAKWATER:
        token = runtime.breakwater_token(jti=jti)
    fault = _fault(dependency, kind)
    if fault is None:
        _corrupt(runtime, dependency, jti)
    else:
        runtime.faults.add(fault)
    event = connect_event("C1=", role="listener" if role == LISTENER else "speaker", token=token)

    status, body = connect(runtime, event)

    assert (status, body.get("code")) == expected
    assert ("C1=" in stored(runtime)) == (status == 200)


# -- bad input, fuzzed ------------------------------------------------------------------------------

_texts = st.text(max_size=80)
_query = st.dictionaries(st.sampled_from(["role", "tenant", "session", "token", "x"]), _texts, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    query=st.one_of(st.none(), _query, st.just("role=speaker")),
    headers=st.one_of(st.none(), st.dictionaries(st.sampled_from(["Authorization", "authorization", "X"]), _texts)),
)
def test_fuzzed_connect_requests_get_a_clear_4xx_and_write_nothing(stack_once, query, headers):
    runtime = stack_once
    event = {
        "requestContext": {"routeKey": "$connect", "connectionId": "F1=", "requestId": "fuzz"},
        "queryStringParameters": query,
        "headers": headers,
    }

    invocation = runtime.invoke("ConnectFunction", event)

    assert invocation.error_type is None, invocation.error_message
    status = invocation.payload["statusCode"]
    assert status in (400, 401, 403, 429), invocation.payload
    body = json.loads(invocation.payload["body"])["error"]
    assert set(body) >= {"code", "message", "correlationId"}
    assert "F1=" not in stored(runtime)


@pytest.fixture
def stack_once() -> Iterator[LocalRuntime]:
    """One stack for every example hypothesis draws in a test (function scope: one per test)."""
    with LocalRuntime(ROOT / "template.yaml", data=DATA, parameters={"ConnectRateLimit": "100000"}) as runtime:
        yield runtime


# -- secrets stay out of logs ---------------------------------------------------------------------


def test_logs_never_contain_a_token(stack, capsys):
    runtime = stack()
    tokens = [runtime.cognito_token(), runtime.cognito_token(exp=0, iat=0), runtime.breakwater_token()]
    for n, token in enumerate(tokens):
        connect(runtime, connect_event(f"S{n}=", role="speaker", token=token))
    connect(runtime, connect_event("S9=", role="speaker", token="not.a-token"))

    output = capsys.readouterr()
    logged = output.out + output.err
    assert "S0=" in logged or "corr-S0=" in logged  # the handlers did log
    for token in tokens:
        for part in token.split("."):
            assert part not in logged
