"""boto3 clients with per-service timeouts, created once per container, and provider errors mapped to the taxonomy.

Seed 000 bounds every AWS call so that a slow dependency can never run a
function into its 30 s Lambda timeout: DynamoDB 3 s connect / 5 s read,
Secrets Manager and S3 2 s / 3 s. botocore's own default is 60 s for both,
so a client built without a ``Config`` would silently wait twelve times too
long; every client here is therefore built by :class:`Clients` from
:class:`ClientSettings`, which the template's Globals configure
(``BW_<SERVICE>_CONNECT_TIMEOUT`` / ``BW_<SERVICE>_READ_TIMEOUT`` /
``BW_SDK_MAX_ATTEMPTS``).

The Breakers table is the exception: the circuit breaker asks it on the path
of the protected call, so its client has its own, much tighter budget
(``BW_BREAKER_STORE_CONNECT_TIMEOUT`` / ``BW_BREAKER_STORE_READ_TIMEOUT``,
0.5 s / 1 s) and makes one attempt (:meth:`Clients.breaker_store`).

Usage, once at module level of a handler (the cold start), then in the handler::

    CLIENTS = Clients()                     # or default_clients()
    ddb = CLIENTS.dynamodb()

    with translate_errors("dynamodb", "GetItem"):
        item = ddb.get_item(TableName=table, Key=key)

``translate_errors`` turns timeouts into :class:`ServiceTimeoutError`,
throttles into :class:`ThrottledError` and 5xx into :class:`RetryableError`
(the names ASL ``Retry``/``Catch`` blocks match on); a caller's own 4xx
(``ConditionalCheckFailedException``, ``GoneException``, ...) is re-raised
unchanged because the caller is the one who knows what it means.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from resilience.errors import (
    BreakwaterError,
    RetryableError,
    ServiceTimeoutError,
    ThrottledError,
)
from resilience.settings import env_int, env_number

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_stepfunctions import SFNClient

__all__ = [
    "BREAKER_STORE_TIMEOUTS",
    "DEFAULT_TIMEOUTS",
    "FALLBACK_TIMEOUTS",
    "THROTTLING_ERROR_CODES",
    "ClientSettings",
    "ClientTimeouts",
    "Clients",
    "default_clients",
    "error_code",
    "is_throttle",
    "is_transient",
    "management_endpoint",
    "translate_error",
    "translate_errors",
]

#: Error codes AWS services use to say "slow down". Mirrors botocore's own
#: ``ThrottledRetryableChecker`` list (its adaptive rate limiter reacts to the
#: same codes), so what the SDK treats as a throttle, we do too.
THROTTLING_ERROR_CODES: frozenset[str] = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)

#: Codes that are transient whatever their HTTP status (S3 answers RequestTimeout with a 400).
_TRANSIENT_ERROR_CODES: frozenset[str] = frozenset({"RequestTimeout", "RequestTimeoutException"})


@dataclass(frozen=True)
class ClientTimeouts:
    """How long one service's client waits to connect and for each response, in seconds."""

    connect: float
    read: float

    def __post_init__(self) -> None:
        if self.connect <= 0 or self.read <= 0:
            raise ValueError(f"timeouts must be positive, got connect={self.connect} read={self.read}")


#: Seed 000's numbers for the services it names; the others follow its rule that
#: no AWS call may wait more than 5 s, so the 30 s function budget always holds.
DEFAULT_TIMEOUTS: Mapping[str, ClientTimeouts] = MappingProxyType(
    {
        "dynamodb": ClientTimeouts(connect=3, read=5),
        "secretsmanager": ClientTimeouts(connect=2, read=3),
        "s3": ClientTimeouts(connect=2, read=3),
        # postToConnection is on the delivery fan-out path: a stuck connection must
        # not hold a Map iteration; the message is parked and redelivered instead.
        "apigatewaymanagementapi": ClientTimeouts(connect=2, read=3),
        # StartExecution/DescribeExecution answer in milliseconds. A caller using
        # StartSyncExecution waits for a whole Express run and must raise the read
        # timeout (BW_STEPFUNCTIONS_READ_TIMEOUT) to cover it.
        "stepfunctions": ClientTimeouts(connect=2, read=5),
        # On the $connect path, like the signing key: same budget as Secrets Manager.
        "cognito-idp": ClientTimeouts(connect=2, read=3),
    }
)

#: For a service not listed above: never botocore's 60 s default.
FALLBACK_TIMEOUTS = ClientTimeouts(connect=3, read=5)

#: The environment variable prefix per service (template Globals).
_ENV_PREFIX: Mapping[str, str] = MappingProxyType(
    {
        "dynamodb": "BW_DYNAMODB",
        "secretsmanager": "BW_SECRETSMANAGER",
        "s3": "BW_S3",
        "apigatewaymanagementapi": "BW_APIGATEWAY",
        "stepfunctions": "BW_STEPFUNCTIONS",
        "cognito-idp": "BW_COGNITO",
    }
)

#: The Breakers table's client. A breaker that cannot read its state in a second acts
#: on its policy (fail open or closed) instead: the protected call must not wait
#: a DynamoDB budget (3 attempts at 5 s) just to learn whether it may run.
BREAKER_STORE_TIMEOUTS = ClientTimeouts(connect=0.5, read=1)

_DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class ClientSettings:
    """Timeouts per service and the SDK's attempt budget, as the deployment configures them."""

    timeouts: Mapping[str, ClientTimeouts] = field(default_factory=lambda: DEFAULT_TIMEOUTS)
    #: Total attempts per SDK call, the first included (botocore's ``total_max_attempts``).
    max_attempts: int = _DEFAULT_MAX_ATTEMPTS
    #: The Breakers table's client (one attempt, whatever ``max_attempts`` says).
    breaker_store: ClientTimeouts = BREAKER_STORE_TIMEOUTS

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        # Frozen means frozen: a caller's dict must not change the settings afterwards.
        object.__setattr__(self, "timeouts", MappingProxyType(dict(self.timeouts)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientSettings:
        """Read ``BW_<SERVICE>_CONNECT_TIMEOUT``/``_READ_TIMEOUT``, ``BW_BREAKER_STORE_CONNECT_TIMEOUT``/
        ``_READ_TIMEOUT`` and ``BW_SDK_MAX_ATTEMPTS``.

        ``environ`` defaults to ``os.environ`` *as it is at call time*: the local
        runtime swaps ``os.environ`` for a per-function view, which a default bound
        at import time would miss.
        """
        env: Mapping[str, str] = os.environ if environ is None else environ
        timeouts = {
            service: ClientTimeouts(
                connect=env_number(env, f"{_ENV_PREFIX[service]}_CONNECT_TIMEOUT", default.connect, positive=True),
                read=env_number(env, f"{_ENV_PREFIX[service]}_READ_TIMEOUT", default.read, positive=True),
            )
            for service, default in DEFAULT_TIMEOUTS.items()
        }
        breaker_store = ClientTimeouts(
            connect=env_number(env, "BW_BREAKER_STORE_CONNECT_TIMEOUT", BREAKER_STORE_TIMEOUTS.connect, positive=True),
            read=env_number(env, "BW_BREAKER_STORE_READ_TIMEOUT", BREAKER_STORE_TIMEOUTS.read, positive=True),
        )
        return cls(
            timeouts=timeouts,
            max_attempts=env_int(env, "BW_SDK_MAX_ATTEMPTS", _DEFAULT_MAX_ATTEMPTS, positive=True),
            breaker_store=breaker_store,
        )

    def timeouts_for(self, service: str) -> ClientTimeouts:
        return self.timeouts.get(service, FALLBACK_TIMEOUTS)

    def config_for(self, service: str) -> Config:
        timeouts = self.timeouts_for(service)
        return Config(
            connect_timeout=timeouts.connect,
            read_timeout=timeouts.read,
            # total_max_attempts, not max_attempts: botocore's ``max_attempts`` key
            # counts retries *after* the first call (it would make 1 mean 2 calls),
            # while BW_SDK_MAX_ATTEMPTS, like AWS_MAX_ATTEMPTS, counts every attempt.
            # Adaptive mode adds a client-side rate limiter that backs off on
            # throttles, which is why each client lives as long as its container.
            retries={"mode": "adaptive", "total_max_attempts": self.max_attempts},
            # Lambda's NAT idles out quiet connections; keepalive saves a reconnect.
            tcp_keepalive=True,
        )

    def breaker_store_config(self) -> Config:
        """The Breakers table's client: tight timeouts and a single attempt.

        One attempt because the breaker itself remembers a failed store request
        for a refresh interval: an SDK retry would only multiply the time a
        protected call waits, and adaptive mode's rate limiter could add more.
        """
        return Config(
            connect_timeout=self.breaker_store.connect,
            read_timeout=self.breaker_store.read,
            retries={"mode": "standard", "total_max_attempts": 1},
            tcp_keepalive=True,
        )

    def describe(self) -> dict[str, dict[str, float]]:
        """The effective timeouts, for the health snapshot."""
        return {name: {"connect": t.connect, "read": t.read} for name, t in sorted(self.timeouts.items())}


_EXECUTE_API_HOST = re.compile(r"^https://[^./]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:/|$)")


def management_endpoint(api_id: str, stage: str, region: str) -> str:
    """The API Gateway management API endpoint of one WebSocket API stage."""
    return f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}"


class Clients:
    """One boto3 client per (service, endpoint) for the life of the container.

    Creating a client costs tens of milliseconds and, in adaptive mode, throws
    away the rate limiter's memory of recent throttles, so handlers build one
    ``Clients`` at import time and reuse it. Creation is locked because a boto3
    session is not thread-safe and the local runtime runs Map branches on threads.
    """

    def __init__(
        self,
        session: boto3.session.Session | None = None,
        settings: ClientSettings | None = None,
        *,
        region_name: str | None = None,
    ) -> None:
        self._session = session if session is not None else boto3.session.Session()
        self.settings = settings if settings is not None else ClientSettings.from_env()
        self._region_name = region_name
        #: Keyed by (service, endpoint, purpose): the Breakers table's client is a second DynamoDB client.
        self._clients: dict[tuple[str, str | None, str], BaseClient] = {}
        self._lock = threading.Lock()

    def client(self, service: str, *, endpoint_url: str | None = None) -> BaseClient:
        """The cached client for ``service`` (and ``endpoint_url``), built on first use."""
        return self._cached(service, endpoint_url, "", lambda: self.settings.config_for(service))

    def _cached(self, service: str, endpoint_url: str | None, purpose: str, config: Callable[[], Config]) -> BaseClient:
        key = (service, endpoint_url, purpose)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = self._create(service, endpoint_url, config())
                self._clients[key] = found
            return found

    def _create(self, service: str, endpoint_url: str | None, config: Config) -> BaseClient:
        region = self._region_name
        if endpoint_url is not None and (match := _EXECUTE_API_HOST.match(endpoint_url)):
            # SigV4 signs for the endpoint's own region, whatever the session's default is.
            region = match.group(1)
        created = self._session.client(  # type: ignore[call-overload]
            service, region_name=region, endpoint_url=endpoint_url, config=config
        )
        return cast("BaseClient", created)

    def dynamodb(self) -> DynamoDBClient:
        return cast("DynamoDBClient", self.client("dynamodb"))

    def breaker_store(self) -> DynamoDBClient:
        """The DynamoDB client of the Breakers table (:meth:`ClientSettings.breaker_store_config`)."""
        return cast(
            "DynamoDBClient", self._cached("dynamodb", None, "breaker-store", self.settings.breaker_store_config)
        )

    def secretsmanager(self) -> SecretsManagerClient:
        return cast("SecretsManagerClient", self.client("secretsmanager"))

    def s3(self) -> S3Client:
        return cast("S3Client", self.client("s3"))

    def stepfunctions(self) -> SFNClient:
        return cast("SFNClient", self.client("stepfunctions"))

    def cognito(self) -> BaseClient:
        return self.client("cognito-idp")

    def apigateway_management(self, endpoint_url: str) -> ApiGatewayManagementApiClient:
        """The management API client for one stage (see :func:`management_endpoint`)."""
        return cast("ApiGatewayManagementApiClient", self.client("apigatewaymanagementapi", endpoint_url=endpoint_url))

    def __len__(self) -> int:
        return len(self._clients)


@cache
def default_clients() -> Clients:
    """The container's shared registry, configured from the environment on first use."""
    return Clients()


# -- provider errors => the taxonomy ---------------------------------------------------------------


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ``ClientError`` (None for anything else)."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def _http_status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if isinstance(status, int) else None


def is_throttle(exc: BaseException) -> bool:
    if isinstance(exc, ThrottledError):
        return True
    if isinstance(exc, ClientError):
        return error_code(exc) in THROTTLING_ERROR_CODES or _http_status(exc) == 429
    return False


def _taxonomy_class(exc: BaseException) -> type[RetryableError] | None:
    """Which transient taxonomy error a provider exception is, or None if it is not transient."""
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError, EndpointConnectionError)):
        return ServiceTimeoutError
    if isinstance(exc, (BotocoreConnectionError, HTTPClientError)):
        # Connection reset/closed mid-response, proxy failures: transient, but not a timeout.
        return RetryableError
    if isinstance(exc, ClientError):
        if is_throttle(exc):
            return ThrottledError
        if error_code(exc) in _TRANSIENT_ERROR_CODES:
            return ServiceTimeoutError
        status = _http_status(exc)
        if status is not None and status >= 500:
            return RetryableError
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a failure says the dependency is unwell: timeouts, throttles, 5xx.

    The circuit breaker counts only these. A caller's own 4xx (validation,
    ``ConditionalCheckFailedException``, ``GoneException`` for a closed
    connection) says nothing about the dependency's health and never counts.
    Accepts both raw provider exceptions and the taxonomy errors
    :func:`translate_errors` makes of them.
    """
    if isinstance(exc, BreakwaterError):
        return exc.retryable
    if _taxonomy_class(exc) is not None:
        return True
    # Plain socket-level failures (e.g. fetching Cognito's JWKS over urllib).
    return isinstance(exc, (TimeoutError, ConnectionError))


def translate_error(service: str, operation: str, exc: BaseException) -> BaseException:
    """The taxonomy error for a provider exception, or ``exc`` itself when it is the caller's to handle.

    The message names only the service, operation and error code: provider
    messages can echo request URLs (pre-signed query strings, connection ids)
    or parameters, so they stay in the ``__cause__`` chain, out of responses.
    """
    cls = _taxonomy_class(exc)
    if cls is None:
        return exc
    detail = error_code(exc) or type(exc).__name__
    verb = {ServiceTimeoutError: "timed out", ThrottledError: "was throttled"}.get(cls, "failed transiently")
    return cls(f"{service}.{operation} {verb} ({detail})")


@contextmanager
def translate_errors(service: str, operation: str) -> Iterator[None]:
    """Run SDK calls with provider errors mapped to the taxonomy (``raise ... from`` the original)."""
    try:
        yield
    except (ClientError, BotocoreConnectionError, HTTPClientError) as exc:
        translated = translate_error(service, operation, exc)
        if translated is exc:
            raise
        raise translated from exc
