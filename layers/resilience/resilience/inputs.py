"""Reading what API Gateway and the workflows send, and refusing every other shape.

Every entry function starts here (issue 13): an event of a shape its caller never
sends — not an object, a field of the wrong type, an id with a stray character, a
body too large or nested too deep — is a ``ValidationError`` (400,
``VALIDATION_ERROR``) raised before the function reads, writes or parses anything
costly. How a caller sees it depends on the caller: a WebSocket route answers 400
(and an error frame when the connection is known), the HTTP API answers the house
JSON error shape (``error_response``), and a Step Functions task fails with
``ValidationError``, which no ``Retry`` of the workflows names.

Ids are matched whole (``fullmatch``): ``re.match`` with ``$`` would admit a
trailing newline.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import fastjsonschema
from aws_lambda_powertools.utilities.validation import InvalidSchemaFormatError

from resilience.errors import BreakwaterError, ValidationError
from resilience.observability import current_correlation_id

__all__ = [
    "CONNECTION_ID",
    "MAX_FRAME_BYTES",
    "MAX_JSON_DEPTH",
    "error_response",
    "http_api_request",
    "json_depth",
    "parse_json",
    "require_object",
    "validate_event",
    "websocket_connection_id",
]

#: An API Gateway WebSocket connection id (base64 text, "Xy1ZEcabcDEFg=").
CONNECTION_ID: Final = re.compile(r"[A-Za-z0-9+/=_-]{1,128}")
#: A client frame the service parses; API Gateway's own limit (128 KB) is far above any frame of ours.
MAX_FRAME_BYTES: Final = 32 * 1024
#: Containers nested deeper than this are refused before the text is parsed.
MAX_JSON_DEPTH: Final = 32
#: A path of the HTTP API (API Gateway's own limit on a request line is 8 KB).
MAX_PATH_CHARS: Final = 2048

# One left-to-right pass: a string (its closing quote optional, so an unterminated one ends the
# text instead of being retried from every later quote, which would be quadratic) or a bracket.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]', re.DOTALL)
_HTTP_METHOD = re.compile(r"[A-Z]{1,16}")


def require_object(event: object, what: str) -> dict[str, Any]:
    """``event`` itself when it is a JSON object; ValidationError naming ``what`` otherwise."""
    if not isinstance(event, dict):
        raise ValidationError(f"{what} must be a JSON object")
    return event


def validate_event(event: object, schema: Mapping[str, Any], what: str) -> None:
    """ValidationError unless ``event`` matches the JSON Schema.

    The message names the rule that failed, never the data: an event may be large,
    or carry what a caller should not see echoed.

    The engine is Powertools validation's own (fastjsonschema), but its ``validate``
    generates and compiles a validator on every call (10-20 ms per invocation, warm or
    cold); here a schema is compiled once per execution environment.
    """
    check = _compiled(json.dumps(schema, sort_keys=True, separators=(",", ":")))
    try:
        check(event)
    except fastjsonschema.JsonSchemaValueException as exc:
        detail = str(exc.message or "does not match its schema")
        raise ValidationError(f"{what}: {detail[:300]}") from exc
    except (TypeError, AttributeError) as exc:  # as Powertools: a schema the engine cannot apply
        raise InvalidSchemaFormatError(f"schema of {what}: {exc}") from exc


@functools.lru_cache(maxsize=64)
def _compiled(schema: str) -> Callable[[object], object]:
    """The validator of a schema (its canonical JSON text: a schema edited in place is a new one)."""
    try:
        return fastjsonschema.compile(json.loads(schema))  # type: ignore[no-any-return]
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise InvalidSchemaFormatError(f"schema: {exc}") from exc


def websocket_connection_id(event: object, route: str) -> str:
    """``requestContext.connectionId`` of an API Gateway WebSocket event, or ValidationError.

    Nothing can be posted back to a client whose connection id is missing or of a
    shape API Gateway never issues, so the caller answers with its status only.
    """
    context = event.get("requestContext") if isinstance(event, dict) else None
    connection_id = context.get("connectionId") if isinstance(context, dict) else None
    if not isinstance(connection_id, str) or not CONNECTION_ID.fullmatch(connection_id):
        raise ValidationError(f"not a {route} event")
    return connection_id


def json_depth(text: str) -> int:
    """How deep the containers of JSON ``text`` nest, counted without parsing it (strings skipped)."""
    depth = deepest = 0
    for token in _JSON_TOKEN.findall(text):
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth = max(0, depth - 1)
    return deepest


def parse_json(text: object, *, what: str = "message", max_bytes: int = MAX_FRAME_BYTES) -> Any:
    """JSON ``text`` parsed, or ValidationError: not text, over ``max_bytes``, nested too deep, not JSON.

    Size and depth are checked first, so a huge or deeply nested text costs no parse.
    """
    if not isinstance(text, str):
        raise ValidationError(f"{what} must be JSON text")
    # Characters before bytes: a text longer in characters is longer in bytes, and is refused unencoded.
    if len(text) > max_bytes or len(text.encode("utf-8", errors="surrogatepass")) > max_bytes:
        raise ValidationError(f"{what} must be at most {max_bytes} bytes")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ValidationError(f"{what} must be nested at most {MAX_JSON_DEPTH} deep")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"{what} must be JSON") from exc


def _string_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def http_api_request(event: object) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) request event, or ValidationError.

    Checks every field the Powertools resolver reads, so routing never meets a
    field of the wrong type.
    """
    request = require_object(event, "request")
    context = request.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    if not isinstance(http, dict) or not isinstance(context, dict) or not isinstance(context.get("stage"), str):
        raise ValidationError("not an HTTP API request")
    method, path = http.get("method"), request.get("rawPath")
    if not isinstance(method, str) or not _HTTP_METHOD.fullmatch(method):
        raise ValidationError("not an HTTP method")
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH_CHARS:
        raise ValidationError(f"the path must start with '/' and be at most {MAX_PATH_CHARS} characters")
    for field in ("headers", "queryStringParameters", "pathParameters", "stageVariables"):
        if request.get(field) is not None and not _string_map(request[field]):
            raise ValidationError(f"{field} must map names to strings")
    cookies = request.get("cookies")
    if cookies is not None and not (isinstance(cookies, list) and all(isinstance(c, str) for c in cookies)):
        raise ValidationError("cookies must be a list of strings")
    if request.get("body") is not None and not isinstance(request["body"], str):
        raise ValidationError("the body must be text")
    if not isinstance(request.get("isBase64Encoded", False), bool):
        raise ValidationError("isBase64Encoded must be a boolean")
    if not isinstance(request.get("rawQueryString", ""), str):
        raise ValidationError("rawQueryString must be text")
    return request


def error_response(error: BreakwaterError) -> dict[str, Any]:
    """The house error shape as an API Gateway proxy response (status, JSON body with the correlation id)."""
    response: dict[str, Any] = {
        "statusCode": error.status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(error.to_response(current_correlation_id())),
    }
    if error.retry_after is not None:
        response["headers"]["Retry-After"] = str(error.retry_after)
    return response
