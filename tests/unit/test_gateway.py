"""`bw up`'s pure parts: the template's WebSocket API, route selection, $connect answers, limits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from websockets.server import ServerProtocol

from local_runtime.aws_endpoint import identify
from local_runtime.faults import FaultRule
from local_runtime.gateway import (
    FRAME_MAX_BYTES,
    MESSAGE_MAX_BYTES,
    WebSocketApiSpec,
    _connect_refusal,
    _LimitedProtocol,
    new_connection_id,
    request_time,
)
from local_runtime.http_api import http_routes
from local_runtime.live import fault_rule_json
from local_runtime.template import LocalTemplate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> LocalTemplate:
    return LocalTemplate.load(ROOT / "template.yaml")


def test_the_websocket_api_is_read_from_the_template(template: LocalTemplate) -> None:
    spec = WebSocketApiSpec.from_template(template)
    assert spec.logical_id == "WebSocketApi"
    assert spec.api_id == "websocketapi"  # what BW_WEBSOCKET_ENDPOINT names
    assert spec.stage == "prod"
    assert spec.selection_expression == "$request.body.action"
    assert spec.routes == {
        "$connect": "ConnectFunction",
        "$disconnect": "DisconnectFunction",
        "$default": "DefaultRouteFunction",
        "sendMessage": "SendMessageFunction",
    }
    assert spec.two_way == frozenset()


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action": "sendMessage", "body": {}}', "sendMessage"),
        ('{"action": "ping"}', "$default"),
        ('{"action": "$connect"}', "$default"),
        ('{"action": 7}', "$default"),
        ("not json", "$default"),
        (b"\x00\x01", "$default"),
        ("[1, 2]", "$default"),
    ],
)
def test_route_selection_falls_back_to_default(template: LocalTemplate, body: str | bytes, route: str) -> None:
    assert WebSocketApiSpec.from_template(template).select(body) == route


def test_a_nested_selection_expression_and_no_default_route() -> None:
    spec = WebSocketApiSpec("Api", "api", "dev", "$request.body.meta.kind", {"$connect": "F", "chat": "G"})
    assert spec.select('{"meta": {"kind": "chat"}}') == "chat"
    assert spec.select('{"kind": "chat"}') is None  # no $default: API Gateway answers "Forbidden"


@pytest.mark.parametrize(
    ("outcome", "payload", "refusal"),
    [
        ("ok", {"statusCode": 200}, None),
        ("ok", {"statusCode": 204, "body": "x"}, None),
        ("ok", None, None),
        ("ok", {"statusCode": 401, "body": '{"error": "no"}'}, (401, '{"error": "no"}')),
        ("ok", {"statusCode": 429, "body": {"a": 1}}, (429, '{"a": 1}')),
        ("ok", {"statusCode": 403}, (403, "")),
        ("ok", {"statusCode": "nope"}, (500, json.dumps({"message": "Internal server error"}))),
        ("error", None, (500, json.dumps({"message": "Internal server error"}))),
        ("timeout", None, (504, json.dumps({"message": "Endpoint request timed out"}))),
    ],
)
def test_connect_answers_become_handshake_statuses(
    outcome: str, payload: object, refusal: tuple[int, str] | None
) -> None:
    assert _connect_refusal(outcome, payload) == refusal


def test_request_time_and_connection_ids_look_like_api_gateways() -> None:
    assert request_time(1_795_521_600.0) == "24/Nov/2026:12:00:00 +0000"
    ids = {new_connection_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9]{15}=", i) for i in ids)


def test_frames_and_messages_are_limited_separately() -> None:
    protocol = ServerProtocol()
    protocol.__class__ = _LimitedProtocol
    protocol.cur_size = None  # the first frame of a message
    assert protocol.max_size == FRAME_MAX_BYTES
    protocol.cur_size = 50_000  # websockets allows max_size - cur_size for the next frame
    assert protocol.max_size - protocol.cur_size == FRAME_MAX_BYTES
    protocol.cur_size = 120_000  # what the message may still hold is less than a frame
    assert protocol.max_size - protocol.cur_size == MESSAGE_MAX_BYTES - 120_000


def test_http_api_routes_come_from_httpapi_events(template: LocalTemplate) -> None:
    routes, stages = http_routes(template)
    assert {(r.method, r.path, r.function, r.iam) for r in routes} == {
        ("GET", "/health", "HealthFunction", False),
        ("GET", "/health/details", "HealthFunction", True),
        ("GET", "/timeout-status", "HealthFunction", True),
    }
    assert stages == {"HealthApi": "prod"}


def test_fault_rules_are_listed_without_their_defaults() -> None:
    rule = FaultRule.from_dict({"service": "dynamodb", "operation": "PutItem", "throttle": True, "count": 2})
    assert fault_rule_json(rule, 1) == {
        "service": "dynamodb",
        "operation": "PutItem",
        "error": "ProvisionedThroughputExceededException",
        "count": 2,
        "fired": 1,
    }


def _signed(service: str) -> str:
    return f"AWS4-HMAC-SHA256 Credential=testing/20261202/us-east-1/{service}/aws4_request, SignedHeaders=host"


def test_outside_calls_are_named_for_fault_rules() -> None:
    json_call = {"HTTP_AUTHORIZATION": _signed("dynamodb"), "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.Scan"}
    assert identify(json_call, b"{}") == ("dynamodb", "Scan")
    sfn = {"HTTP_AUTHORIZATION": _signed("states"), "HTTP_X_AMZ_TARGET": "AWSStepFunctions.StartExecution"}
    assert identify(sfn, b"{}") == ("stepfunctions", "StartExecution")
    query = {"HTTP_AUTHORIZATION": _signed("sqs"), "CONTENT_TYPE": "application/x-www-form-urlencoded"}
    assert identify(query, b"Action=SendMessage&QueueUrl=q") == ("sqs", "SendMessage")
    post = {
        "HTTP_AUTHORIZATION": _signed("execute-api"),
        "PATH_INFO": "/prod/@connections/abc=",
        "REQUEST_METHOD": "POST",
    }
    assert identify(post, b"hi") == ("apigatewaymanagementapi", "PostToConnection")
    assert identify({"PATH_INFO": "/"}, b"") is None
