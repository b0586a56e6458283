"""The error taxonomy is the contract between Python and ASL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resilience import errors

ROOT = Path(__file__).resolve().parents[2]
ASL_FILES = sorted([*ROOT.glob("statemachines/*.asl.json"), *ROOT.glob("tests/fixtures/app/statemachines/*.asl.json")])
#: Names Step Functions and its integrations define are dotted (States.Timeout,
#: DynamoDB.ConditionalCheckFailedException, Sfn.SfnException); ours never are.


def _error_names(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ErrorEquals":
                found.update(value)
            elif key == "Error" and isinstance(value, str):
                found.add(value)
            else:
                found |= _error_names(value)
    elif isinstance(node, list):
        for item in node:
            found |= _error_names(item)
    return found


def test_there_are_state_machines_to_check():
    assert ASL_FILES


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_every_error_name_in_asl_is_a_class_of_the_taxonomy(path: Path):
    names = _error_names(json.loads(path.read_text(encoding="utf-8")))
    ours = {name for name in names if "." not in name}
    missing = ours - set(errors.all_error_classes())
    assert not missing, f"{path.name} names errors that resilience.errors does not define: {sorted(missing)}"


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (errors.TokenRevokedError, 401, "TOKEN_REVOKED"),
        (errors.TenantRejectedError, 403, "TENANT_REJECTED"),
        (errors.JwtKeyError, 500, "JWT_KEY_ERROR"),
        (errors.ServiceTimeoutError, 503, "SERVICE_TIMEOUT"),
        (errors.RateLimitedError, 429, "RATE_LIMITED"),
        (errors.ValidationError, 400, "VALIDATION_ERROR"),
        (errors.GoneError, 410, "CONNECTION_GONE"),
    ],
)
def test_each_error_has_its_public_status_and_code(cls, status, code):
    assert (cls.status, cls.code) == (status, code)


def test_public_body_never_carries_the_internal_message():
    error = errors.JwtKeyError("secretsmanager GetSecretValue AccessDenied for arn:aws:...:jwt-key")
    body = error.to_response(correlation_id="c-1")
    assert body == {"error": {"code": "JWT_KEY_ERROR", "message": "Authentication unavailable", "correlationId": "c-1"}}


def test_timeouts_tell_the_client_when_to_retry():
    body = errors.ServiceTimeoutError("dynamodb read timeout").to_response()
    assert body["error"]["retryAfter"] == 5
    assert errors.ServiceTimeoutError.retryable
    assert not errors.CircuitOpenError.retryable


def test_validation_errors_explain_the_callers_own_input():
    body = errors.ValidationError("sessionId is required").to_response()
    assert body["error"] == {"code": "VALIDATION_ERROR", "message": "sessionId is required"}
