"""The edge (issue 12): stage throttling, access log lines, SigV4 verification, and what the
template declares for them (limits, access logs, reserved concurrency, /health's IAM split)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from local_runtime.access_logs import render
from local_runtime.gateway import WebSocketApiSpec
from local_runtime.http_api import http_stages
from local_runtime.sigv4 import Key, verify
from local_runtime.template import LocalTemplate
from local_runtime.throttling import StageThrottle, ThrottleSettings, TokenBucket, route_throttle_settings

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def template() -> LocalTemplate:
    return LocalTemplate.load(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader: yaml.Loader, suffix: str, node: yaml.Node) -> Any:
        suffix = suffix if suffix == "Ref" else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            return {suffix: loader.construct_scalar(node)}
        if isinstance(node, yaml.SequenceNode):
            return {suffix: loader.construct_sequence(node)}
        return {suffix: loader.construct_mapping(node)}  # type: ignore[arg-type]

    Loader.add_multi_constructor("!", intrinsic)
    loaded: dict[str, Any] = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    return loaded


# -- the token bucket ----------------------------------------------------------------------------------
def test_a_bucket_starts_full_and_refuses_past_its_burst() -> None:
    bucket = TokenBucket(ThrottleSettings(burst=3, rate=1.0), Clock())
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(ThrottleSettings(burst=2, rate=4.0), clock)
    assert bucket.take()
    assert bucket.take()
    assert not bucket.take()
    clock.now += 0.25  # one token at 4 per second
    assert bucket.take()
    assert not bucket.take()
    clock.now += 60  # never more than the burst
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_a_zero_limit_throttles_everything() -> None:
    clock = Clock()
    bucket = TokenBucket(ThrottleSettings(burst=0, rate=0.0), clock)
    clock.now += 3600
    assert not bucket.take()


def test_stage_limits_apply_to_each_route_separately() -> None:
    throttle = StageThrottle(ThrottleSettings(burst=1, rate=0.0), Clock())
    assert throttle.admit("$connect")
    assert not throttle.admit("$connect")
    assert throttle.admit("sendMessage")
    throttle.reset()
    assert throttle.admit("$connect")
    assert StageThrottle(None, Clock()).admit("$connect")


def test_a_route_setting_overrides_the_stage_default_for_its_route_only() -> None:
    default = ThrottleSettings(burst=5, rate=0.0)
    routes = route_throttle_settings({"$connect": {"ThrottlingBurstLimit": "1"}}, default, lambda v: v)
    assert routes == {"$connect": ThrottleSettings(burst=1, rate=0.0)}
    throttle = StageThrottle(default, Clock(), routes)
    assert [throttle.admit("$connect") for _ in range(2)] == [True, False]
    assert [throttle.admit("sendMessage") for _ in range(6)] == [True] * 5 + [False]


# -- access log lines ----------------------------------------------------------------------------------
def test_the_format_gets_each_context_variable_and_a_dash_for_none() -> None:
    line = render(
        '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","error":"$context.error.message"}',
        {"requestId": "r-1", "identity.sourceIp": "203.0.113.9"},
    )
    assert json.loads(line) == {"requestId": "r-1", "ip": "203.0.113.9", "error": "-"}


def test_a_value_cannot_break_the_json_line() -> None:
    line = render('{"ua":"$context.identity.userAgent"}', {"identity.userAgent": 'evil"}\n{"x":"'})
    assert json.loads(line) == {"ua": 'evil"}\n{"x":"'}


# -- SigV4 ----------------------------------------------------------------------------------------------
KEYS = {"AKIDEXAMPLE": Key("secret", None, "arn:aws:iam::123456789012:user/on-call")}
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()


def signed(
    *, key: str = "AKIDEXAMPLE", secret: str = "secret", region: str = "us-east-1", at: float = NOW
) -> dict[str, str]:
    import time_machine

    request = AWSRequest(method="GET", url="http://127.0.0.1:8080/prod/health/details?x=1", headers={})
    with time_machine.travel(at, tick=False):
        SigV4Auth(Credentials(key, secret), "execute-api", region).add_auth(request)
    return {**dict(request.headers.items()), "Host": "127.0.0.1:8080"}


def check(
    headers: dict[str, str], target: str = "/prod/health/details?x=1", now: float | tuple[float, ...] = NOW
) -> Any:
    return verify("GET", target, headers, b"", keys=KEYS, region="us-east-1", now=now)


def test_a_valid_signature_names_its_caller() -> None:
    caller = check(signed())
    assert caller is not None
    assert caller.arn == "arn:aws:iam::123456789012:user/on-call"


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "127.0.0.1:8080"},  # unsigned
        signed(secret="wrong"),
        signed(key="AKIDUNKNOWN"),
        signed(region="eu-west-1"),
    ],
    ids=["unsigned", "wrong-secret", "unknown-key", "other-region"],
)
def test_a_request_without_a_valid_signature_is_refused(headers: dict[str, str]) -> None:
    assert check(headers) is None


def test_a_signature_does_not_cover_another_path_or_an_old_date() -> None:
    assert check(signed(), target="/prod/timeout-status") is None
    assert check(signed(), now=NOW + 301) is None


def test_a_signature_may_be_dated_by_the_stacks_clock_or_the_wall_clock() -> None:
    virtual_far_ahead = NOW + 86_400  # `bw up --speed 10` for a few hours
    assert check(signed(), now=(virtual_far_ahead, NOW + 10)) is not None
    assert check(signed(), now=(virtual_far_ahead, NOW + 400)) is None


def test_a_temporary_key_needs_its_session_token() -> None:
    keys = {"AKIDEXAMPLE": Key("secret", "token", "arn:aws:sts::123456789012:assumed-role/r/s")}
    assert verify("GET", "/prod/health/details?x=1", signed(), b"", keys=keys, region="us-east-1", now=NOW) is None


# -- the template ------------------------------------------------------------------------------------------
def test_the_websocket_stage_is_throttled_and_logged(template: LocalTemplate) -> None:
    spec = WebSocketApiSpec.from_template(template)
    assert spec.throttle == ThrottleSettings(burst=2000, rate=1000.0)
    assert spec.route_throttles == {"$connect": ThrottleSettings(burst=200, rate=100.0)}
    assert spec.access_log is not None
    assert spec.access_log.log_group == "/aws/apigateway/breakwater-local-sessions-access"
    fields = json.loads(render(spec.access_log.format, {}))
    assert {"requestId", "connectionId", "ip", "routeKey", "status", "integrationError", "integrationLatency"} <= set(
        fields
    )


def test_the_health_stage_is_throttled_and_logged(template: LocalTemplate) -> None:
    (stage,) = http_stages(template).values()
    assert stage.throttle == ThrottleSettings(burst=20, rate=10.0)
    assert stage.access_log is not None
    fields = json.loads(render(stage.access_log.format, {}))
    assert {"requestId", "ip", "routeKey", "status", "integrationError", "integrationLatency", "caller"} <= set(fields)


def test_access_log_groups_keep_the_retention_parameter(raw: dict[str, Any]) -> None:
    for name in ("WebSocketAccessLogGroup", "HealthApiAccessLogGroup"):
        assert raw["Resources"][name]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_reserved_concurrency_leaves_the_account_its_unreserved_minimum(
    raw: dict[str, Any], template: LocalTemplate
) -> None:
    reserved = {
        name: template.function(name).reserved_concurrency
        for name in ("ConnectFunction", "HealthFunction", "IdleSweepFunction")
    }
    assert reserved == {"ConnectFunction": 100, "HealthFunction": 5, "IdleSweepFunction": 50}
    # Lambda keeps 100 of the default 1,000 unreserved: even every parameter at its maximum fits.
    parameters = raw["Parameters"]
    maxima = [parameters[f"{p}ReservedConcurrency"]["MaxValue"] for p in ("Connect", "Health", "IdleSweep")]
    assert sum(maxima) <= 1000 - 100
    # The sweep's Map fan-out fits in the sweep's reservation.
    assert reserved["IdleSweepFunction"] > parameters["IdleSweepMaxConcurrency"]["MaxValue"]


def test_health_details_need_iam_and_health_stays_public(raw: dict[str, Any]) -> None:
    health = raw["Resources"]["HealthFunction"]["Properties"]
    auth = {
        e["Properties"]["Path"]: (e["Properties"].get("Auth") or {}).get("Authorizer")
        for e in health["Events"].values()
    }
    assert auth == {"/health": None, "/health/details": "AWS_IAM", "/timeout-status": "AWS_IAM"}
    assert raw["Resources"]["HealthApi"]["Properties"]["Auth"]["EnableIamAuthorizer"] is True


def test_the_health_role_reads_only_what_health_reads(raw: dict[str, Any]) -> None:
    (policy,) = raw["Resources"]["HealthFunction"]["Properties"]["Policies"]
    granted = {
        (s["Action"] if isinstance(s["Action"], str) else tuple(s["Action"])): s["Resource"]
        for s in policy["Statement"]
    }
    assert set(granted) == {
        "dynamodb:GetItem",
        "dynamodb:DescribeTable",
        "s3:ListBucket",
        "secretsmanager:DescribeSecret",
    }
    assert granted["dynamodb:GetItem"] == {"Fn::GetAtt": "BreakersTable.Arn"}


# -- reserved concurrency in the sandbox -----------------------------------------------------------------
GATED_HANDLER = """
def handler(event, context):
    event["entered"].set()
    event["gate"].wait(30)
    return {"ok": True}
"""


def gated_function(tmp_path: Path, reserved: int | None) -> Any:
    from local_runtime.clock import VirtualClock
    from local_runtime.lambdas import LocalFunction
    from local_runtime.models import FunctionSpec
    from local_runtime.packaging import package_view

    code = tmp_path / "gated"
    code.mkdir()
    (code / "gated_app.py").write_text(GATED_HANDLER)
    spec = FunctionSpec(
        "GatedFunction",
        "GatedFunction",
        "gated_app.handler",
        code,
        (),
        30,
        128,
        {},
        "arn:aws:lambda:::function:G",
        reserved,
    )
    return LocalFunction(spec, VirtualClock(seed=0), package_view("GatedFunction", code, ()))


def test_an_invocation_past_the_reserved_concurrency_is_throttled(tmp_path: Path) -> None:
    import threading

    function = gated_function(tmp_path, reserved=1)
    entered, gate = threading.Event(), threading.Event()
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(function.invoke({"entered": entered, "gate": gate})))
    first.start()
    try:
        assert entered.wait(30)
        refused = function.invoke({"entered": threading.Event(), "gate": gate})
    finally:
        gate.set()
        first.join(30)
    assert refused.throttled
    assert refused.error_type == "TooManyRequestsException"
    assert refused.payload["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert function.throttles == 1
    assert results[0].payload == {"ok": True}
    # The slot is free again once the first one answered.
    done = threading.Event()
    done.set()
    assert function.invoke({"entered": threading.Event(), "gate": done}).payload == {"ok": True}


def test_a_reserved_concurrency_of_zero_refuses_every_invocation(tmp_path: Path) -> None:
    import threading

    function = gated_function(tmp_path, reserved=0)
    refused = function.invoke({"entered": threading.Event(), "gate": threading.Event()})
    assert refused.throttled
    assert function.throttles == 1
    assert function.invocations == []
