"""The quota checks of local_runtime.limits that need no running stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_runtime import limits
from local_runtime.template import LocalTemplate

LIMITS_TEMPLATE = Path(__file__).resolve().parents[1] / "fixtures" / "app" / "limits_template.yaml"


def test_quotas_are_awss_documented_numbers():
    assert limits.SFN_MAX_PAYLOAD_BYTES == 256 * 1024
    assert limits.EXPRESS_MAX_DURATION_SECONDS == 5 * 60
    assert limits.STANDARD_MAX_HISTORY_EVENTS == 25_000
    assert limits.POST_TO_CONNECTION_MAX_BYTES == 128 * 1024
    assert limits.LAMBDA_SYNC_REQUEST_MAX_BYTES == 6 * 1024 * 1024
    assert limits.LAMBDA_ASYNC_REQUEST_MAX_BYTES == 1024 * 1024


def test_payload_size_is_compact_utf8_json():
    assert limits.payload_size({"a": [1, 2]}) == len('{"a":[1,2]}')
    # "é" is two bytes in UTF-8, not a six-character \u escape.
    assert limits.payload_size({"k": "é"}) == len('{"k":""}') + 2
    assert limits.payload_size("raw text") == len('"raw text"')


def test_every_limit_seam_resolves():
    limits.verify()


@pytest.mark.parametrize(
    ("size", "invocation_type", "refused"),
    [
        (6_291_456, "RequestResponse", False),
        (6_291_457, "RequestResponse", True),
        (1_048_576, "Event", False),
        (1_048_577, "Event", True),
        (6_291_457, "DryRun", True),
    ],
)
def test_invoke_request_quota(size, invocation_type, refused):
    error = limits.check_invoke_request(size, invocation_type)
    if not refused:
        assert error is None
        return
    assert error is not None
    assert (error.code, error.status) == ("RequestEntityTooLargeException", 413)
    assert "Request must be smaller than" in error.message


def test_invoke_response_quota():
    assert limits.check_invoke_response(6_291_556) is None
    error = limits.check_invoke_response(6_291_557)
    assert error == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }
    # An asynchronous invocation's response is discarded, never refused.
    assert limits.check_invoke_response(10_000_000, "Event") is None


def test_post_to_connection_quota():
    from local_runtime.websockets import ConnectionRegistry, PayloadTooLargeError

    registry = ConnectionRegistry(lambda: 0.0)
    registry.connect("c1")
    registry.post("c1", b"x" * 131_072)
    with pytest.raises(PayloadTooLargeError) as raised:
        registry.post("c1", b"x" * 131_073)
    assert raised.value.size == 131_073
    assert len(registry.find("c1").received) == 1  # type: ignore[union-attr]


def test_timeout_warnings_name_the_state_the_function_and_both_timeouts():
    template = LocalTemplate.load(LIMITS_TEMPLATE)

    warnings = limits.timeout_warnings(template)

    assert warnings == [
        "BigFlow: state 'Make blob' has TimeoutSeconds 10 but invokes BigFunction, whose Timeout is 30 s: "
        "the state fails with States.Timeout while the function may still be running",
        "SyncStarterFunction: StartSyncExecution of LongExpressFlow reads for 10 s "
        "(BW_STEPFUNCTIONS_READ_TIMEOUT) but the Express workflow can run 300 s: the call times out while "
        "the execution continues, and an SDK retry starts it again",
    ]
