"""resilience.inputs: events of a shape no caller sends are a ValidationError, before any parsing cost."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from resilience.errors import RateLimitedError, ValidationError
from resilience.inputs import (
    MAX_FRAME_BYTES,
    MAX_JSON_DEPTH,
    error_response,
    http_api_request,
    json_depth,
    parse_json,
    require_object,
    validate_event,
    websocket_connection_id,
)

HTTP: dict[str, Any] = {
    "version": "2.0",
    "rawPath": "/prod/health",
    "headers": {"accept": "application/json"},
    "requestContext": {"http": {"method": "GET"}, "stage": "prod"},
    "isBase64Encoded": False,
}


@pytest.mark.parametrize("event", [None, [], "x", 1, True, 1.5])
def test_only_an_object_is_an_event(event: object):
    with pytest.raises(ValidationError, match="must be a JSON object"):
        require_object(event, "the step's input")


def test_connection_id_is_matched_whole():
    assert (
        websocket_connection_id({"requestContext": {"connectionId": "Xy1ZEcabcDEFg="}}, "$default") == "Xy1ZEcabcDEFg="
    )


@pytest.mark.parametrize(
    "event",
    [
        [],
        {},
        {"requestContext": None},
        {"requestContext": []},
        {"requestContext": {}},
        {"requestContext": {"connectionId": 5}},
        {"requestContext": {"connectionId": ""}},
        {"requestContext": {"connectionId": "Xy1ZEcabcDEFg=\n"}},
        {"requestContext": {"connectionId": "Xy1Z EcabcDEFg="}},
        {"requestContext": {"connectionId": "A" * 129}},
    ],
)
def test_a_connection_id_of_another_shape_is_refused(event: object):
    with pytest.raises(ValidationError, match=r"not a \$default event"):
        websocket_connection_id(event, "$default")


@pytest.mark.parametrize(
    ("text", "depth"),
    [("1", 0), ("{}", 1), ('{"a": [1, {"b": []}]}', 4), ('"[[[[" ', 0), ('["\\"[[", [2]]', 2), ("]]][[", 2)],
)
def test_depth_is_counted_without_parsing(text: str, depth: int):
    assert json_depth(text) == depth


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "must be JSON text"),
        ({"action": "ping"}, "must be JSON text"),
        ("x" * (MAX_FRAME_BYTES + 1), "at most"),
        ("é" * (MAX_FRAME_BYTES // 2 + 1), "at most"),  # under the limit in characters, over it in bytes
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nested at most"),
        ("[" * 20_000, "nested at most"),
        ("{not json", "must be JSON"),
    ],
)
def test_text_that_is_not_a_small_json_document_is_refused(text: object, message: str):
    with pytest.raises(ValidationError, match=message):
        parse_json(text)


def test_json_within_the_limits_parses():
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json('{"action": "ping"}') == {"action": "ping"}
    assert json_depth(json.dumps(parse_json(nested))) == MAX_JSON_DEPTH


def test_a_huge_text_is_refused_before_it_is_parsed():
    huge = "[" * (4 * MAX_FRAME_BYTES)
    started = time.perf_counter()
    with pytest.raises(ValidationError):
        parse_json(huge)
    assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize(
    "text",
    ['"' + '\\"' * 16_000, '"a' * 16_000, "[" * MAX_FRAME_BYTES, '["\\' * 10_000],
    ids=["escaped-quotes", "unclosed-strings", "brackets", "mixed"],
)
def test_counting_depth_is_linear(text: str):
    # A string that never closes is not retried from every later quote (that took seconds on 32 KB).
    started = time.perf_counter()
    json_depth(text)
    assert time.perf_counter() - started < 0.1


def test_schema_errors_name_the_rule_not_the_data():
    schema = {"type": "object", "properties": {"id": {"type": "string", "pattern": "^[a-z]{1,8}(?![\\s\\S])"}}}
    validate_event({"id": "abc"}, schema, "bad")
    with pytest.raises(ValidationError) as refused:
        validate_event({"id": "abc\n" + "secret" * 1000}, schema, "bad")
    assert str(refused.value).startswith("bad: data.id must match pattern")
    assert "secret" not in str(refused.value)


def test_an_http_api_request_passes():
    assert http_api_request(HTTP) is HTTP


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("requestContext",), None),
        (("requestContext", "http"), "GET"),
        (("requestContext", "stage"), 1),
        (("requestContext", "http", "method"), "get"),
        (("requestContext", "http", "method"), "GET\n"),
        (("rawPath",), 5),
        (("rawPath",), "health"),
        (("rawPath",), "/" + "a" * 5000),
        (("headers",), ["accept"]),
        (("headers",), {"accept": 1}),
        (("queryStringParameters",), {"a": ["b"]}),
        (("cookies",), "a=b"),
        (("body",), {"a": 1}),
        (("isBase64Encoded",), "false"),
        (("rawQueryString",), 1),
    ],
)
def test_an_http_api_request_of_another_shape_is_refused(path: tuple[str, ...], value: object):
    event = json.loads(json.dumps(HTTP))
    node = event
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValidationError):
        http_api_request(event)


def test_error_response_is_the_house_shape():
    response = error_response(ValidationError("role must be a string"))
    assert response["statusCode"] == 400
    assert response["headers"]["Content-Type"] == "application/json"
    assert json.loads(response["body"]) == {"error": {"code": "VALIDATION_ERROR", "message": "role must be a string"}}
    assert error_response(RateLimitedError(retry_after=3))["headers"]["Retry-After"] == "3"


def test_a_schema_changed_in_place_is_applied_as_changed():
    # Validators are compiled once per schema: the schema's text is the key, not the object.
    schema: dict[str, Any] = {"type": "object", "properties": {"id": {"type": "string", "maxLength": 8}}}
    validate_event({"id": "abcdefgh"}, schema, "bad")
    schema["properties"]["id"]["maxLength"] = 4
    with pytest.raises(ValidationError, match=r"bad: data\.id must be shorter than or equal to 4 characters"):
        validate_event({"id": "abcdefgh"}, schema, "bad")
