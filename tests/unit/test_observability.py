"""The shared Powertools set-up: correlation ids on every line, no secret in any line, EMF metrics."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from hypothesis import given
from hypothesis import strategies as st

from resilience.errors import ServiceTimeoutError
from resilience.observability import (
    REDACTED,
    Observability,
    RedactingFormatter,
    current_correlation_id,
    extract_correlation_id,
    is_sensitive_key,
    redact,
    redact_text,
    setup_observability,
)

# A real-shaped JWT (header {"alg":"HS256","typ":"JWT"}); never a live credential.
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJzcGVha2VyLTEiLCJ0ZW5hbnQiOiJ0MSIsImV4cCI6MTcwMDAwMDAwMH0"
    ".c2lnbmF0dXJlLW5vdC1yZWFsLWJ1dC1sb25nLWVub3VnaA"
)
pytestmark = pytest.mark.filterwarnings(
    # Powertools warns on every flush without application metrics; most handlers here emit none.
    "ignore:No application metrics to publish:UserWarning"
)

OPAQUE_TOKEN = "opaque-7Hq2xVb9Lm3Pz8Rt"
SECRET = "s3cr3t-Signing-Key-Value-42"


@dataclass(frozen=True)
class FakeContext:
    function_name: str = "AuthorizeFn"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:AuthorizeFn"
    aws_request_id: str = "lambda-request-1"


@pytest.fixture(autouse=True)
def _compact_json(monkeypatch: pytest.MonkeyPatch) -> None:
    # POWERTOOLS_DEV pretty-prints across lines; these tests read one JSON document per line.
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)


@dataclass
class Rig:
    obs: Observability
    stream: io.StringIO

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def make_rig(id_factory: Callable[[], str] | None = None) -> Rig:
    stream = io.StringIO()
    # Powertools configures a named logger once per process: a fresh service name per
    # test gets a fresh logger with this test's handler.
    env = {
        "POWERTOOLS_SERVICE_NAME": f"bw-test-{uuid.uuid4().hex[:8]}",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
        "POWERTOOLS_METRICS_NAMESPACE": "BreakwaterTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    kwargs: dict[str, Any] = {"logger_handler": logging.StreamHandler(stream)}
    if id_factory is not None:
        kwargs["id_factory"] = id_factory
    return Rig(setup_observability(env, **kwargs), stream)


def run(rig: Rig, event: Any, body: Callable[[Logger], Any] | None = None) -> Any:
    logger = rig.obs.logger

    @rig.obs.instrument
    def handler(event: Any, context: Any) -> Any:
        logger.info("handling")
        if body is not None:
            return body(logger)
        return current_correlation_id()

    return handler(event, FakeContext())


# --------------------------------------------------------------------------- correlation id


def test_every_line_is_json_with_the_correlation_id_and_lambda_context(rig: Rig) -> None:
    def body(logger: Logger) -> None:
        logger.debug("step one")
        logger.warning("step two", extra={"tenant": "t1"})

    run(rig, {"headers": {"x-correlation-id": "corr-123"}}, body)

    lines = rig.lines()
    assert len(lines) >= 3
    assert all(line["correlation_id"] == "corr-123" for line in lines)
    assert all(line["function_request_id"] == "lambda-request-1" for line in lines)
    # UTC ISO-8601, e.g. 2024-05-01T12:00:00.123+00:00
    assert all(line["timestamp"].endswith("+00:00") and "T" in line["timestamp"] for line in lines)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param({"headers": {"x-correlation-id": "from-header"}}, "from-header", id="header"),
        pytest.param({"headers": {"X-Correlation-ID": "Mixed-Case"}}, "Mixed-Case", id="header-any-case"),
        pytest.param(
            {"headers": None, "multiValueHeaders": {"X-CORRELATION-ID": ["", "multi-1", "multi-2"]}},
            "multi-1",
            id="multi-value-header",
        ),
        pytest.param({"correlationId": "from-workflow", "connectionId": "c1"}, "from-workflow", id="workflow-input"),
        pytest.param({"requestContext": {"requestId": "apigw-req-9"}}, "apigw-req-9", id="request-context"),
        pytest.param(
            {
                "headers": {"x-correlation-id": "wins"},
                "correlationId": "loses",
                "requestContext": {"requestId": "loses-too"},
            },
            "wins",
            id="header-before-workflow-before-request-id",
        ),
        pytest.param(
            {"correlationId": "workflow-wins", "requestContext": {"requestId": "apigw"}},
            "workflow-wins",
            id="workflow-before-request-id",
        ),
        pytest.param(
            {"headers": {"x-correlation-id": 'evil\n{"level":"INFO"}'}, "requestContext": {"requestId": "safe"}},
            "safe",
            id="unsafe-header-value-skipped",
        ),
        pytest.param({"headers": {"x-correlation-id": "x" * 129}}, None, id="oversized-header-skipped"),
        pytest.param({"correlationId": 42}, None, id="non-string-ignored"),
        pytest.param(["not", "a", "mapping"], None, id="non-mapping-event"),
        pytest.param({}, None, id="nothing"),
    ],
)
def test_extract_correlation_id(event: Any, expected: str | None) -> None:
    assert extract_correlation_id(event) == expected


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"headers": {"X-Correlation-Id": "hdr-1"}}, "hdr-1"),
        ({"correlationId": "wf-1"}, "wf-1"),
        ({"requestContext": {"requestId": "req-1", "routeKey": "$connect"}}, "req-1"),
        ({"action": "ping"}, "generated-1"),
    ],
)
def test_handler_sees_and_logs_the_id_from_each_source(event: dict[str, Any], expected: str) -> None:
    rig = make_rig(id_factory=lambda: "generated-1")

    assert run(rig, event) == expected
    assert {line["correlation_id"] for line in rig.lines()} == {expected}


def test_generated_id_is_a_uuid4_by_default(rig: Rig) -> None:
    generated = run(rig, {})

    assert uuid.UUID(generated).version == 4
    assert rig.lines()[0]["correlation_id"] == generated


def test_each_invocation_gets_its_own_id_and_none_leaks_outside(rig: Rig) -> None:
    first = run(rig, {"correlationId": "first"})
    second = run(rig, {})

    assert first == "first"
    assert second != "first"
    assert current_correlation_id() is None
    assert [line["correlation_id"] for line in rig.lines()] == ["first", second]


def test_error_response_carries_the_correlation_id(rig: Rig) -> None:
    def body(logger: Logger) -> dict[str, Any]:
        return ServiceTimeoutError("dynamodb read timed out").to_response(current_correlation_id())

    response = run(rig, {"headers": {"x-correlation-id": "corr-err"}}, body)

    assert response["error"]["correlationId"] == "corr-err"
    assert response["error"]["code"] == "SERVICE_TIMEOUT"


def test_id_is_restored_when_the_handler_raises(rig: Rig) -> None:
    def body(logger: Logger) -> None:
        raise ServiceTimeoutError

    with pytest.raises(ServiceTimeoutError):
        run(rig, {"correlationId": "boom"}, body)
    assert current_correlation_id() is None


def test_concurrent_invocations_keep_their_own_id_on_every_line(rig: Rig) -> None:
    # The offline runtime runs handlers of several functions in threads of one process,
    # all sharing the Powertools logger of the service.
    a_logged_first = threading.Event()
    b_done = threading.Event()
    results: dict[str, Any] = {}

    def body_a(logger: Logger) -> None:
        a_logged_first.set()
        assert b_done.wait(5)
        logger.info("a after b")

    def invoke_a() -> None:
        results["a"] = run(rig, {"correlationId": "corr-a"}, body_a)

    thread = threading.Thread(target=invoke_a)
    thread.start()
    assert a_logged_first.wait(5)
    run(rig, {"correlationId": "corr-b"})
    b_done.set()
    thread.join(5)

    by_message = {(line["message"], line["correlation_id"]) for line in rig.lines()}
    assert ("a after b", "corr-a") in by_message
    assert ("handling", "corr-b") in by_message
    assert ("a after b", "corr-b") not in by_message


# --------------------------------------------------------------------------- redaction


def test_tokens_and_secrets_never_reach_a_log_line(rig: Rig) -> None:
    def body(logger: Logger) -> None:
        logger.info(f"verifying {JWT}")
        logger.info(f"header was Authorization: Bearer {OPAQUE_TOKEN}")
        logger.info(f"connect wss://api.example/prod?role=speaker&token={OPAQUE_TOKEN}&tenant=t1")
        logger.info("key loaded", extra={"signing_key": SECRET, "clientSecret": SECRET, "tenant": "t1"})
        logger.info("kwargs too", password=SECRET, jwt=JWT)
        logger.info({"event": {"headers": {"Authorization": f"Bearer {JWT}"}, "body": f"token={OPAQUE_TOKEN}"}})
        logger.info(json.dumps({"queryStringParameters": {"token": OPAQUE_TOKEN}}))
        logger.append_keys(api_key=SECRET)
        logger.info("appended keys are redacted too")
        logger.remove_keys(["api_key"])
        logger.info("args %s and %s", JWT, f"Bearer {OPAQUE_TOKEN}")
        try:
            raise ValueError(f"bad token {JWT}")
        except ValueError:
            logger.exception("verification failed")

    run(rig, {"headers": {"Authorization": f"Bearer {JWT}", "x-correlation-id": "corr-sec"}}, body)

    output = rig.stream.getvalue()
    for secret in (JWT, OPAQUE_TOKEN, SECRET, JWT.split(".")[2]):
        assert secret not in output
    assert output.count(REDACTED) >= 12
    lines = rig.lines()
    assert all(line["correlation_id"] == "corr-sec" for line in lines)
    # What is not secret survives: the log stays useful.
    key_loaded = next(line for line in lines if line["message"] == "key loaded")
    assert key_loaded["tenant"] == "t1"
    assert key_loaded["signing_key"] == REDACTED
    connect = next(line for line in lines if str(line["message"]).startswith("connect"))
    assert connect["message"] == f"connect wss://api.example/prod?role=speaker&token={REDACTED}&tenant=t1"
    failed = next(line for line in lines if line["message"] == "verification failed")
    assert failed["exception_name"] == "ValueError"


def test_event_logging_by_powertools_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    rig = make_rig()
    event = {
        "headers": {"Authorization": f"Bearer {JWT}"},
        "queryStringParameters": {"token": OPAQUE_TOKEN, "tenant": "t1"},
        "requestContext": {"requestId": "r-1"},
    }

    run(rig, event)

    output = rig.stream.getvalue()
    assert JWT not in output
    assert OPAQUE_TOKEN not in output
    assert '"tenant":"t1"' in output


def test_redaction_is_installed_on_a_logger_configured_before(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    service = f"bw-pre-{uuid.uuid4().hex[:8]}"
    plain = Logger(service=service, logger_handler=logging.StreamHandler(stream))
    plain.append_keys(component="early")

    obs = setup_observability({"POWERTOOLS_SERVICE_NAME": service, "POWERTOOLS_TRACE_DISABLED": "1"})
    obs.logger.info(f"late {JWT}")

    assert isinstance(obs.logger.registered_formatter, RedactingFormatter)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert JWT not in stream.getvalue()
    assert line["component"] == "early"
    assert line["service"] == service


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [
        ("token", True),
        ("access_token", True),
        ("idToken", True),
        ("Authorization", True),
        ("signing_key", True),
        ("signingKey", True),
        ("Signing-Key", True),
        ("client_secret", True),
        ("PASSWORD", True),
        ("jwt", True),
        ("x-api-key", True),
        ("tenant", False),
        ("correlation_id", False),
        ("connectionId", False),
        ("function_request_id", False),
    ],
)
def test_is_sensitive_key(key: str, sensitive: bool) -> None:
    assert is_sensitive_key(key) is sensitive


def test_redact_keeps_structure_and_harmless_values() -> None:
    value = {
        "token_present": False,
        "token": None,
        "nested": [{"password": 1234}, ("Bearer abc.def",)],
        "count": 3,
        "raw": b"token=abc",
    }

    assert redact(value) == {
        "token_present": False,
        "token": None,
        "nested": [{"password": REDACTED}, [f"Bearer {REDACTED}"]],
        "count": 3,
        "raw": f"token={REDACTED}",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no secrets here", "no secrets here"),
        (f"jwt {JWT} end", f"jwt {REDACTED} end"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", REDACTED),  # alg none: empty signature
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: [REDACTED]"),
        ('{"client_secret": "abc"}', '{"client_secret": "[REDACTED]"}'),
        ("/connect?token=abc&x=1#frag", "/connect?token=[REDACTED]&x=1#frag"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


_B64URL = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=40)


@given(prefix=st.text(max_size=30), header=_B64URL, payload=_B64URL, signature=_B64URL, suffix=st.text(max_size=30))
def test_no_jwt_survives_redaction_whatever_surrounds_it(
    prefix: str, header: str, payload: str, signature: str, suffix: str
) -> None:
    token = f"eyJ{header}.{payload}.{signature}"
    assert token not in redact_text(prefix + token + suffix)


@pytest.mark.parametrize("unit", ["a-", "x.", "eyJ", "eyJ.", "token", "a.token", "token ", "Bearer ", "password="])
def test_redaction_stays_linear_on_hostile_lines(unit: str) -> None:
    # Not a benchmark: a guard against catastrophic backtracking. Redaction runs on every
    # log line, including caller-controlled text; these 200 KB lines take milliseconds,
    # and the quadratic patterns this replaced took minutes on a fifth of the size.
    line = unit * (200_000 // len(unit))
    started = time.perf_counter()
    redact_text(line)
    assert time.perf_counter() - started < 2.0


# --------------------------------------------------------------------------- metrics and tracer


def test_metrics_are_flushed_as_emf_with_the_namespace(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    def body(logger: Logger) -> None:
        rig.obs.metrics.add_metric(name="ConnectionsAdmitted", unit="Count", value=1)

    run(rig, {"correlationId": "corr-metrics"}, body)

    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emf = [blob for blob in blobs if "ConnectionsAdmitted" in blob]
    assert len(emf) == 1
    directive = emf[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "BreakwaterTest"
    assert {"Name": "ConnectionsAdmitted", "Unit": "Count"} in directive["Metrics"]
    assert emf[0]["service"] == rig.obs.logger.service
    # Metadata links the metric blob to the log lines of the same invocation.
    assert emf[0]["correlationId"] == "corr-metrics"


def test_metrics_are_flushed_even_when_the_handler_raises(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    def body(logger: Logger) -> None:
        rig.obs.metrics.add_metric(name="DependencyTimeouts", unit="Count", value=1)
        raise ServiceTimeoutError

    with pytest.raises(ServiceTimeoutError):
        run(rig, {}, body)

    out = capsys.readouterr().out
    assert '"DependencyTimeouts"' in out
    assert '"Namespace":"BreakwaterTest"' in out


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_tracer_disabled_by_env(value: str) -> None:
    env = {"POWERTOOLS_SERVICE_NAME": f"bw-tr-{uuid.uuid4().hex[:8]}", "POWERTOOLS_TRACE_DISABLED": value}
    assert setup_observability(env).tracer.disabled is True


def test_pem_private_keys_are_redacted() -> None:
    from resilience.observability import REDACTED, redact_text

    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx0fW\nQ2F0c3Rhc3Rl\n-----END RSA PRIVATE KEY-----"
    text = redact_text(f"loaded key {pem} from Secrets Manager")
    assert "MIIEowIBAAKCAQEAx0fW" not in text
    assert REDACTED in text
    assert text.startswith("loaded key ")
