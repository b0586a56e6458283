"""boto3 clients: seed 000 timeouts, adaptive retries, one client per container, provider errors => taxonomy."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.stub import Stubber

from resilience.clients import (
    DEFAULT_TIMEOUTS,
    FALLBACK_TIMEOUTS,
    Clients,
    ClientSettings,
    ClientTimeouts,
    default_clients,
    is_transient,
    management_endpoint,
    translate_error,
    translate_errors,
)
from resilience.errors import (
    CircuitOpenError,
    RetryableError,
    ServiceTimeoutError,
    ThrottledError,
    TokenRevokedError,
)

REGION = "us-east-1"
SECRET = "SECRET-TOKEN-VALUE"


class CountingSession(boto3.session.Session):
    """A real session that counts the clients it builds."""

    def __init__(self) -> None:
        super().__init__(region_name=REGION)
        self.created: list[tuple[str, str | None]] = []

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.created.append((service_name, kwargs.get("endpoint_url")))
        return super().client(service_name, *args, **kwargs)  # type: ignore[call-overload]


def make_clients(environ: dict[str, str] | None = None) -> tuple[Clients, CountingSession]:
    session = CountingSession()
    return Clients(session, ClientSettings.from_env(environ or {})), session


def client_error(code: str, status: int, operation: str = "GetItem") -> ClientError:
    """The shape botocore parses an AWS error response into."""
    response: Any = {
        "Error": {"Code": code, "Message": f"details with {SECRET}"},
        "ResponseMetadata": {"RequestId": "r-1", "HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0},
    }
    return ClientError(response, operation)


def config_of(client: Any) -> Any:
    """The client's effective botocore Config (its attributes are not in the stubs)."""
    return client.meta.config


# -- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "connect", "read"),
    [
        ("dynamodb", 3, 5),
        ("secretsmanager", 2, 3),
        ("s3", 2, 3),
        ("stepfunctions", 2, 5),
        ("cognito-idp", 2, 3),
    ],
)
def test_each_client_has_the_seed_timeouts_and_adaptive_retries(service: str, connect: float, read: float) -> None:
    clients, _ = make_clients()
    config = config_of(clients.client(service))
    assert (config.connect_timeout, config.read_timeout) == (connect, read)
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 3}
    assert config.tcp_keepalive is True


def test_the_management_api_client_uses_its_stage_endpoint_and_region() -> None:
    clients, _ = make_clients()
    endpoint = management_endpoint("abc123", "prod", "eu-west-1")
    assert endpoint == "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
    api = clients.apigateway_management(endpoint)
    assert api.meta.endpoint_url == endpoint
    # Signed for the API's region, not the session's default.
    assert api.meta.region_name == "eu-west-1"
    assert (config_of(api).connect_timeout, config_of(api).read_timeout) == (2, 3)


def test_an_unlisted_service_never_gets_botocores_60_second_default() -> None:
    clients, _ = make_clients()
    config = config_of(clients.client("sqs"))
    assert (config.connect_timeout, config.read_timeout) == (FALLBACK_TIMEOUTS.connect, FALLBACK_TIMEOUTS.read)
    assert max(t.read for t in DEFAULT_TIMEOUTS.values()) <= 5


def test_environment_overrides_timeouts_and_attempts() -> None:
    clients, _ = make_clients(
        {
            "BW_DYNAMODB_CONNECT_TIMEOUT": "1",
            "BW_DYNAMODB_READ_TIMEOUT": "2.5",
            "BW_SECRETSMANAGER_READ_TIMEOUT": "4",
            "BW_S3_CONNECT_TIMEOUT": "7",
            "BW_SDK_MAX_ATTEMPTS": "1",
        }
    )
    ddb = config_of(clients.dynamodb())
    assert (ddb.connect_timeout, ddb.read_timeout) == (1, 2.5)
    # One attempt in total, not "one retry": the first call counts.
    assert ddb.retries == {"mode": "adaptive", "total_max_attempts": 1}
    assert config_of(clients.secretsmanager()).read_timeout == 4
    assert config_of(clients.s3()).connect_timeout == 7
    assert clients.settings.timeouts_for("s3") == ClientTimeouts(connect=7, read=3)


def test_the_template_defaults_match_the_code_defaults() -> None:
    # What template.yaml's Globals set with its default parameters.
    from_template = ClientSettings.from_env(
        {
            "BW_DYNAMODB_CONNECT_TIMEOUT": "3",
            "BW_DYNAMODB_READ_TIMEOUT": "5",
            "BW_SECRETSMANAGER_CONNECT_TIMEOUT": "2",
            "BW_SECRETSMANAGER_READ_TIMEOUT": "3",
            "BW_S3_CONNECT_TIMEOUT": "2",
            "BW_S3_READ_TIMEOUT": "3",
            "BW_SDK_MAX_ATTEMPTS": "3",
        }
    )
    assert from_template == ClientSettings.from_env({}) == ClientSettings()


def test_the_breaker_store_client_has_its_own_tight_timeouts_and_one_attempt() -> None:
    clients, session = make_clients({"BW_SDK_MAX_ATTEMPTS": "5", "BW_DYNAMODB_READ_TIMEOUT": "9"})
    store = config_of(clients.breaker_store())
    assert (store.connect_timeout, store.read_timeout) == (0.5, 1)
    # One attempt whatever BW_SDK_MAX_ATTEMPTS says: the breaker remembers a failure instead.
    assert store.retries == {"mode": "standard", "total_max_attempts": 1}
    # A second DynamoDB client, next to (not instead of) the tables' own.
    assert clients.breaker_store() is clients.breaker_store()
    assert clients.dynamodb() is not clients.breaker_store()
    assert config_of(clients.dynamodb()).read_timeout == 9
    assert session.created == [("dynamodb", None), ("dynamodb", None)]

    tuned, _ = make_clients({"BW_BREAKER_STORE_CONNECT_TIMEOUT": "0.2", "BW_BREAKER_STORE_READ_TIMEOUT": "0.8"})
    assert (config_of(tuned.breaker_store()).connect_timeout, config_of(tuned.breaker_store()).read_timeout) == (
        0.2,
        0.8,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BW_DYNAMODB_READ_TIMEOUT", "soon"),
        ("BW_DYNAMODB_READ_TIMEOUT", "0"),
        ("BW_S3_CONNECT_TIMEOUT", "-1"),
        ("BW_SDK_MAX_ATTEMPTS", "2.5"),
        ("BW_SDK_MAX_ATTEMPTS", "0"),
        ("BW_BREAKER_STORE_READ_TIMEOUT", "0"),
    ],
)
def test_a_bad_setting_is_a_configuration_error_naming_the_variable(name: str, value: str) -> None:
    from resilience.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=name):
        ClientSettings.from_env({name: value})


def test_settings_are_frozen_even_against_the_callers_dict() -> None:
    timeouts = {"dynamodb": ClientTimeouts(1, 1)}
    settings = ClientSettings(timeouts=timeouts, max_attempts=2)
    timeouts["dynamodb"] = ClientTimeouts(9, 9)
    assert settings.timeouts_for("dynamodb") == ClientTimeouts(1, 1)
    with pytest.raises(AttributeError):
        settings.max_attempts = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="positive"):
        ClientTimeouts(connect=0, read=1)
    assert settings.describe()["dynamodb"] == {"connect": 1, "read": 1}


def test_clients_are_created_once_per_service_and_endpoint() -> None:
    clients, session = make_clients()
    first = clients.dynamodb()
    assert clients.dynamodb() is first
    assert clients.client("dynamodb") is first
    one = clients.apigateway_management(management_endpoint("a1", "prod", REGION))
    assert clients.apigateway_management(management_endpoint("a1", "prod", REGION)) is one
    other = clients.apigateway_management(management_endpoint("a2", "prod", REGION))
    assert other is not one
    assert session.created == [
        ("dynamodb", None),
        ("apigatewaymanagementapi", "https://a1.execute-api.us-east-1.amazonaws.com/prod"),
        ("apigatewaymanagementapi", "https://a2.execute-api.us-east-1.amazonaws.com/prod"),
    ]
    assert len(clients) == 3


def test_the_container_registry_is_a_single_instance() -> None:
    default_clients.cache_clear()
    try:
        assert default_clients() is default_clients()
    finally:
        default_clients.cache_clear()


# -- provider errors => taxonomy ---------------------------------------------------------------------------

PRESIGNED = f"https://abc.execute-api.us-east-1.amazonaws.com/prod/@connections/c1?X-Amz-Security-Token={SECRET}"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ReadTimeoutError(endpoint_url=PRESIGNED), ServiceTimeoutError),
        (ConnectTimeoutError(endpoint_url=PRESIGNED), ServiceTimeoutError),
        (EndpointConnectionError(endpoint_url=PRESIGNED), ServiceTimeoutError),
        (ConnectionClosedError(endpoint_url=PRESIGNED), RetryableError),
        (client_error("ProvisionedThroughputExceededException", 400), ThrottledError),
        (client_error("ThrottlingException", 400), ThrottledError),
        (client_error("RequestLimitExceeded", 400), ThrottledError),
        (client_error("TooManyRequestsException", 429), ThrottledError),
        (client_error("LimitExceededException", 429), ThrottledError),
        (client_error("SlowDown", 503), ThrottledError),
        (client_error("SomethingNew", 429), ThrottledError),
        (client_error("InternalServerError", 500), RetryableError),
        (client_error("ServiceUnavailable", 503), RetryableError),
        (client_error("RequestTimeout", 400), ServiceTimeoutError),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else type(value).__name__,
)
def test_transient_provider_errors_become_taxonomy_errors(exc: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as caught, translate_errors("dynamodb", "GetItem"):
        raise exc
    assert type(caught.value) is expected
    assert caught.value.__cause__ is exc
    message = str(caught.value)
    assert "dynamodb.GetItem" in message
    # Provider messages and URLs may carry tokens: they stay in the chain only.
    assert SECRET not in message
    assert SECRET not in str(caught.value.to_response())  # type: ignore[attr-defined]
    assert is_transient(exc)
    assert is_transient(caught.value)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ConditionalCheckFailedException", 400),
        ("GoneException", 410),
        ("ValidationException", 400),
        ("ResourceNotFoundException", 400),
        ("AccessDeniedException", 403),
        ("NoSuchKey", 404),
    ],
)
def test_caller_errors_are_re_raised_unchanged_and_are_not_transient(code: str, status: int) -> None:
    exc = client_error(code, status)
    with pytest.raises(ClientError) as caught, translate_errors("dynamodb", "PutItem"):
        raise exc
    assert caught.value is exc
    assert translate_error("dynamodb", "PutItem", exc) is exc
    assert not is_transient(exc)


def test_non_provider_errors_pass_through_untouched() -> None:
    for exc in (ValueError("bug"), TokenRevokedError(), ParamValidationError(report="bad")):
        with pytest.raises(type(exc)) as caught, translate_errors("dynamodb", "GetItem"):
            raise exc
        assert caught.value is exc


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ServiceTimeoutError(), True),
        (ThrottledError(), True),
        (RetryableError(), True),
        (CircuitOpenError(), False),
        (TokenRevokedError(), False),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (ValueError(), False),
        (KeyError("x"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_is_transient_counts_what_says_the_dependency_is_unwell(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_a_real_client_error_from_a_client_call_is_translated() -> None:
    clients, _ = make_clients()
    ddb = clients.dynamodb()
    with Stubber(ddb) as stub:
        stub.add_client_error("get_item", "ProvisionedThroughputExceededException", http_status_code=400)
        stub.add_client_error("put_item", "ConditionalCheckFailedException", http_status_code=400)
        with pytest.raises(ThrottledError) as throttled, translate_errors("dynamodb", "GetItem"):
            ddb.get_item(TableName="Connections", Key={"connectionId": {"S": "c1"}})
        assert isinstance(throttled.value.__cause__, ClientError)
        with pytest.raises(ClientError) as conditional, translate_errors("dynamodb", "PutItem"):
            ddb.put_item(TableName="Connections", Item={"connectionId": {"S": "c1"}})
        assert conditional.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
