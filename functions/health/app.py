"""HTTP API: ``GET /health``, ``GET /health/details`` and ``GET /timeout-status`` (seed 000's health check
and timeout status). ``/health`` is public and answers the status word only; the other two show
breakers, counts and error codes, and the template puts them behind IAM (SigV4) authorization.

Both routes answer from one *round* of checks, run at most once per
``BW_HEALTH_PROBE_SECONDS`` (10 s) per container: DescribeTable on the
Connections, Messages, TokenBlacklist and RateLimits tables, DescribeSecret on
the signing key (never its value), HeadBucket on the tenant config bucket, and
one GetItem per shared breaker. Every call of a round runs in parallel with a
single SDK attempt, so a round lasts at most one client timeout even when
everything is down (the function answers 503, it never times out itself), and a
load balancer polling every second costs nine calls per round per container,
not nine per request. ``probedAt`` says when the round ran.

``/health`` (and ``/health/details``) answer 503 (``unhealthy``) when a dependency the degradation table
calls *critical* is down — DynamoDB (Connections/Messages), the token blacklist,
the signing key — or its breaker is OPEN; 200 with ``degraded`` for the others
(tenant config, Cognito, API Gateway, rate limits), a probing breaker or an
alert of seed 000; 200 ``healthy`` otherwise. ``/timeout-status`` reports the
configured client timeouts (the numbers ``resilience.clients`` uses), the
breakers with their window counts and the timeouts this container's probes saw.
Any other path is a 404 in the house error shape. Nothing here shows a secret,
a token, a resource name or the environment.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from botocore.exceptions import BotoCoreError, ClientError

from resilience.alarm_metrics import emit_breaker_open, emit_dependency_call
from resilience.breaker import BreakerStats, CircuitBreaker
from resilience.cache import cache_presets, positive_only
from resilience.clients import Clients, ClientSettings, default_clients, error_code, translate_errors
from resilience.degradation import DEGRADATIONS, DegradationTracker, Dependency
from resilience.errors import BreakerStoreError, BreakwaterError, ServiceTimeoutError, ValidationError
from resilience.health import (
    UNKNOWN_STATE,
    AlertThresholds,
    HealthSnapshot,
    HealthStatus,
    LatencyTracker,
    build_health_snapshot,
)
from resilience.inputs import error_response, http_api_request
from resilience.observability import current_correlation_id, default_observability, with_observability
from resilience.settings import env_number
from resilience.timestamps import iso_utc

#: The fleet's shared breakers (one item each in the Breakers table) and the dependency each guards.
BREAKERS: Final[Mapping[str, Dependency]] = {
    "apigateway.postToConnection": Dependency.APIGATEWAY_MANAGEMENT,
    "cognito.verifyJwt": Dependency.COGNITO,
    "dynamodb.tokenBlacklist": Dependency.TOKEN_BLACKLIST,
}
#: Criticality per dependency and per breaker name, from the degradation table (never restated here).
CRITICALITY: Final[Mapping[str, str]] = {
    **{dep.value: row.criticality.value for (dep, role), row in DEGRADATIONS.items() if role is None},
    **{name: DEGRADATIONS[(dep, None)].criticality.value for name, dep in BREAKERS.items()},
}
#: DescribeTable states in which a table serves reads and writes.
_USABLE_TABLE: Final = frozenset({"ACTIVE", "UPDATING"})
#: What a dependency's breaker state says about it, for those only the breakers watch.
_BY_BREAKER: Final[Mapping[str, str]] = {"CLOSED": "up", "HALF_OPEN": "recovering", "OPEN": "down"}
_NO_STORE: Final = {"Cache-Control": "no-store"}

_observability = default_observability()
_logger, _metrics = _observability.logger, _observability.metrics
_clients = default_clients()
# One attempt: a health check reports what it sees now; retrying would hide a flapping
# dependency and stretch a round past the function's timeout.
_probing = Clients(settings=ClientSettings(timeouts=_clients.settings.timeouts, max_attempts=1))
_degradations = DegradationTracker(clock=lambda: time.time())
_latency = LatencyTracker(clock=lambda: time.monotonic())
_breakers = {name: CircuitBreaker.from_env(name, _clients) for name in BREAKERS}
app = APIGatewayHttpResolver()


class TableNotUsableError(Exception):
    """DescribeTable answered, but the table is not ACTIVE (deleting, archived, key inaccessible)."""


@dataclass(frozen=True)
class Probe:
    dependency: Dependency
    service: str
    check: Callable[[], object]


@dataclass(frozen=True)
class BreakerReading:
    """One breaker as read in a round; ``BreakerLike`` for the health snapshot."""

    name: str
    result: BreakerStats | str  # the stats, or why they could not be read

    def stats(self) -> BreakerStats:
        if isinstance(self.result, str):
            raise BreakerStoreError(f"{self.name}: {self.result}")
        return self.result


@dataclass(frozen=True)
class Round:
    """What one round of checks found."""

    at: float  # epoch seconds
    started: float  # monotonic, for the probe interval
    failures: Mapping[Dependency, str]  # dependency -> reason, for the probed ones that failed
    probed: frozenset[Dependency]
    breakers: tuple[BreakerReading, ...]
    calls: tuple[ProbeCall, ...] = ()


@dataclass(frozen=True)
class ProbeCall:
    """One probe's call, for the latency and timeout-rate metrics (per service, as the client timeouts)."""

    service: str
    seconds: float
    timed_out: bool


_round: Round | None = None
_round_lock = threading.Lock()
_last_status: HealthStatus | None = None


def _table(client: Any, name: str) -> Callable[[], object]:
    def check() -> object:
        status = client.describe_table(TableName=name)["Table"].get("TableStatus")
        if status not in _USABLE_TABLE:
            raise TableNotUsableError(str(status))
        return status

    return check


def probes(env: Mapping[str, str]) -> list[Probe]:
    """The checks of one round; names are read here, on the invoking thread, with its environment."""
    ddb, secrets, s3 = _probing.dynamodb(), _probing.secretsmanager(), _probing.s3()
    bucket, secret = env["BW_CONFIG_BUCKET"], env["BW_SIGNING_KEY_SECRET"]
    return [
        Probe(Dependency.DYNAMODB, "dynamodb", _table(ddb, env["BW_CONNECTIONS_TABLE"])),
        Probe(Dependency.DYNAMODB, "dynamodb", _table(ddb, env["BW_MESSAGES_TABLE"])),
        Probe(Dependency.TOKEN_BLACKLIST, "dynamodb", _table(ddb, env["BW_TOKEN_BLACKLIST_TABLE"])),
        Probe(Dependency.RATE_LIMITS, "dynamodb", _table(ddb, env["BW_RATE_LIMITS_TABLE"])),
        # Metadata only: DescribeSecret never returns the secret's value.
        Probe(Dependency.SIGNING_KEY, "secretsmanager", lambda: secrets.describe_secret(SecretId=secret)),
        Probe(Dependency.TENANT_CONFIG, "s3", lambda: s3.head_bucket(Bucket=bucket)),
    ]


def _reason(exc: BaseException) -> str:
    # A class name or an AWS error code: never a message, which may name a resource.
    if isinstance(exc, BreakwaterError | TableNotUsableError):
        return type(exc).__name__
    return error_code(exc) or type(exc).__name__


def _run(probe: Probe) -> tuple[str | None, ProbeCall]:
    """Runs on a worker thread: no logging here (the correlation id is the invoking thread's)."""
    reason: str | None = None
    timed_out = False
    started = time.monotonic()
    try:
        with _latency.measure(probe.dependency.value), translate_errors(probe.service, "HealthProbe"):
            probe.check()
    except (BreakwaterError, BotoCoreError, ClientError, TableNotUsableError) as exc:
        timed_out = isinstance(exc, ServiceTimeoutError)
        reason = _reason(exc)
    return reason, ProbeCall(probe.service, time.monotonic() - started, timed_out)


def _read(breaker: CircuitBreaker) -> BreakerReading:
    try:
        return BreakerReading(breaker.name, breaker.stats())
    except (BreakwaterError, BotoCoreError, ClientError) as exc:
        return BreakerReading(breaker.name, _reason(exc))


def in_parallel[T](tasks: Sequence[Callable[[], T]]) -> list[T]:
    """Run every task on its own thread and wait for all (a round lasts as long as its slowest call).

    One thread per task, started for this round: a pooled worker that runs two tasks
    one after the other would add their timeouts up.
    """
    results: dict[int, T] = {}
    errors: list[Exception] = []

    def run(index: int, task: Callable[[], T]) -> None:
        try:
            results[index] = task()
        except Exception as exc:  # noqa: BLE001 - re-raised on the invoking thread below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(index, task), name=f"health-{index}", daemon=True)
        for index, task in enumerate(tasks)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [results[index] for index in range(len(tasks))]


def run_round(env: Mapping[str, str]) -> Round:
    at, started = time.time(), time.monotonic()
    checks = probes(env)
    tasks: list[Callable[[], tuple[str | None, ProbeCall] | BreakerReading]] = [
        functools.partial(_run, probe) for probe in checks
    ]
    tasks += [functools.partial(_read, breaker) for breaker in _breakers.values()]
    outcomes = in_parallel(tasks)
    failures: dict[Dependency, str] = {}
    calls: list[ProbeCall] = []
    for probe, outcome in zip(checks, outcomes[: len(checks)], strict=True):
        if isinstance(outcome, tuple):
            reason, call = outcome
            calls.append(call)
            if reason is not None:
                failures.setdefault(probe.dependency, reason)
    breakers = tuple(reading for reading in outcomes[len(checks) :] if isinstance(reading, BreakerReading))
    probed = frozenset(probe.dependency for probe in checks)
    for dependency in sorted(probed):
        if dependency in failures:
            if _degradations.mark_degraded(dependency, reason=failures[dependency]):
                _logger.warning(
                    "dependency down", extra={"dependency": dependency.value, "reason": failures[dependency]}
                )
        elif _degradations.mark_recovered(dependency):
            _logger.info("dependency recovered", extra={"dependency": dependency.value})
    for reading in breakers:
        if isinstance(reading.result, str):
            _logger.warning("breaker unreadable", extra={"breaker": reading.name, "reason": reading.result})
    # Emitted here, on the invoking thread, once per round: a load balancer polling /health
    # every second must not multiply the datapoints of one probe.
    for call in calls:
        emit_dependency_call(_metrics, call.service, call.seconds, timed_out=call.timed_out)
    return Round(at=at, started=started, failures=failures, probed=probed, breakers=breakers, calls=tuple(calls))


def current_round() -> Round:
    """The latest round, run again once it is ``BW_HEALTH_PROBE_SECONDS`` old (concurrent callers share one)."""
    global _round
    interval = env_number(os.environ, "BW_HEALTH_PROBE_SECONDS", 10, minimum=0)
    with _round_lock:
        if _round is None or time.monotonic() - _round.started >= interval:
            _round = run_round(os.environ)
        return _round


def _state(reading: BreakerReading) -> str:
    return UNKNOWN_STATE if isinstance(reading.result, str) else str(reading.result.state)


def dependencies(found: Round) -> dict[str, dict[str, Any]]:
    """Every dependency of the degradation table: probed, watched by a breaker, or both (worst wins)."""
    by_breaker = {BREAKERS[reading.name]: _state(reading) for reading in found.breakers}
    view: dict[str, dict[str, Any]] = {}
    for dependency in Dependency:
        entry: dict[str, Any]
        if dependency in found.failures:
            entry = {"status": "down", "reason": found.failures[dependency]}
        elif dependency in by_breaker and by_breaker[dependency] != "CLOSED":
            state = by_breaker[dependency]
            entry = {"status": _BY_BREAKER.get(state, "unknown"), "reason": f"breaker {state}"}
        elif dependency in found.probed or dependency in by_breaker:
            entry = {"status": "up"}
        else:  # pragma: no cover - every dependency is probed or has a breaker
            entry = {"status": "unknown"}
        view[dependency.value] = {**entry, "criticality": CRITICALITY[dependency.value]}
    return view


def cache_settings() -> list[dict[str, Any]]:
    """The seed's caches as configured. The caches themselves live in the functions that use
    them, one set per container, out of this function's sight; what the fleet shares is this."""
    return [
        {
            "name": policy.name,
            "ttlSeconds": policy.ttl_seconds,
            "maxItems": policy.max_items,
            "maxStaleSeconds": policy.max_stale_seconds,
            "positiveOnly": policy.cacheable is positive_only,
        }
        for policy in cache_presets().policies()
    ]


def _json(status: int, body: dict[str, Any]) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=_NO_STORE)


def checked() -> tuple[Round, HealthSnapshot]:
    """The latest round and what it says (logged once per change of status)."""
    global _last_status
    found = current_round()
    snapshot = build_health_snapshot(
        clock=time.time,
        thresholds=AlertThresholds.from_env(os.environ),
        breakers=found.breakers,
        timeouts={service: (t.connect, t.read) for service, t in _clients.settings.timeouts.items()},
        degradations=_degradations.snapshot(),
        latency=_latency,
        criticality=CRITICALITY,
    )
    # Emitted on every check (a load balancer polls the public /health): the breaker-open alarms read it.
    for breaker in snapshot.breakers:
        if breaker.state != UNKNOWN_STATE:
            emit_breaker_open(_metrics, breaker.name, breaker.open_seconds)
    summary = {
        "status": snapshot.status,
        "httpStatus": snapshot.http_status,
        "down": sorted(name for name, dep in dependencies(found).items() if dep["status"] != "up"),
        "alerts": sorted({alert.name for alert in snapshot.alerts}),
    }
    if snapshot.status != _last_status:
        # Once per change, not once per poll: a load balancer polls all day.
        (_logger.info if snapshot.status == "healthy" else _logger.warning)("health status changed", extra=summary)
        _last_status = snapshot.status
    else:
        _logger.debug("health checked", extra=summary)
    return found, snapshot


@app.get("/health")
def health() -> Response[Any]:
    """Liveness for anyone (load balancers, uptime checks): the status word and nothing about
    why; the details are behind IAM (GET /health/details)."""
    _, snapshot = checked()
    return _json(snapshot.http_status, {"status": snapshot.status, "correlationId": current_correlation_id()})


@app.get("/health/details")
def health_details() -> Response[Any]:
    found, snapshot = checked()
    full = snapshot.to_dict()
    body = {
        "status": snapshot.status,
        "checkedAt": full["checkedAt"],
        "probedAt": iso_utc(found.at),
        "dependencies": dependencies(found),
        # The breaker's own dependency (dynamodb.tokenBlacklist guards the token blacklist).
        "breakers": [{**entry, "dependency": BREAKERS[entry["name"]].value} for entry in full["breakers"]],
        "alerts": full["alerts"],
        "degradations": full["degradations"],
        "latency": full["latency"],
        "timeouts": full["timeouts"],
        "caches": cache_settings(),
        "correlationId": current_correlation_id(),
    }
    return _json(snapshot.http_status, body)


@app.get("/timeout-status")
def timeout_status() -> Response[Any]:
    found = current_round()
    breakers: list[dict[str, Any]] = []
    for reading in found.breakers:
        policy = _breakers[reading.name].policy
        entry: dict[str, Any] = {"name": reading.name, "dependency": BREAKERS[reading.name].value}
        if isinstance(reading.result, str):
            entry.update(state=UNKNOWN_STATE, reason=reading.result)
        else:
            entry.update(reading.result.to_dict())
        entry.update(
            windowSeconds=policy.window_seconds,
            slowCallSeconds=policy.slow_call_seconds,
            recoverySeconds=policy.recovery_timeout,
        )
        breakers.append(entry)
    body = {
        "probedAt": iso_utc(found.at),
        # What every function's clients use (resilience.clients, from the template Parameters).
        "timeouts": {
            service: {"connectSeconds": t.connect, "readSeconds": t.read}
            for service, t in sorted(_clients.settings.timeouts.items())
        },
        "sdkMaxAttempts": _clients.settings.max_attempts,
        "breakers": breakers,
        # This container's last probes per dependency; the breakers' window counts are fleet-wide.
        "recentTimeouts": {
            stats.dependency: {"probes": stats.samples, "timeouts": stats.timeouts, "averageMs": stats.average_ms}
            for stats in _latency.stats()
        },
        "correlationId": current_correlation_id(),
    }
    _logger.debug("timeout status read")
    return _json(200, body)


@app.not_found
def not_found(_: Exception) -> Response[Any]:
    event = app.current_event
    # Method and path only (a caller's path may be anything: the JSON formatter escapes it).
    _logger.info("unknown route", extra={"method": event.http_method, "path": event.path[:200]})
    error = {"code": "NOT_FOUND", "message": "Routes: GET /health, GET /health/details, GET /timeout-status"}
    return _json(404, {"error": {**error, "correlationId": current_correlation_id()}})


@app.exception_handler(BreakwaterError)  # type: ignore[untyped-decorator]
def breakwater_error(error: BreakwaterError) -> Response[Any]:
    _logger.warning("health request failed", extra={"error": type(error).__name__})
    return _json(error.status, error.to_response(current_correlation_id()))


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def unexpected_error(error: Exception) -> Response[Any]:
    _logger.exception("health request failed", extra={"error": type(error).__name__})
    return _json(500, BreakwaterError().to_response(current_correlation_id()))


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        http_api_request(event)
    except ValidationError as error:
        _logger.info("not an HTTP API request", extra={"reason": str(error)})
        return error_response(error)
    return app.resolve(event, context)
