"""The template's alarms against what a scenario on the offline runtime emitted (issue 12).

Each seed threshold has a scenario that should trip its alarm and does, and the
healthy stack leaves every alarm OK. The runtime records each invocation's EMF
(as CloudWatch Logs would extract it) and the AWS/Lambda and AWS/States metrics
AWS publishes; ``runtime.alarm_states()`` evaluates every
``AWS::CloudWatch::Alarm`` of the template (statistic, period, threshold, M of
N, missing data, metric math) against them. Assertions name the exact set of
alarms in ALARM, so a scenario that trips a neighbour (or nothing) fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_runtime import LocalRuntime
from local_runtime.sessions import join_session

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
#: Silent this long, a connection is idle under the template's defaults (120 s + 30 s write interval).
IDLE = 160


@pytest.fixture
def stack() -> Iterator[Any]:
    started: list[LocalRuntime] = []

    def make(faults: list[dict[str, Any]] | None = None, parameters: dict[str, str] | None = None) -> LocalRuntime:
        runtime = LocalRuntime(
            ROOT / "template.yaml", faults=faults, parameters=parameters, data=EVENTS / "local_data.yaml"
        ).start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()


def alarming(runtime: LocalRuntime) -> set[str]:
    return {evaluation.alarm.logical_id for evaluation in runtime.alarm_states() if evaluation.state == "ALARM"}


def period_start(runtime: LocalRuntime, period: int) -> None:
    """Move the clock to one second into the next period, so a short scenario stays in one."""
    now = runtime.clock.now()
    runtime.clock.advance(period - now % period + 1)


def get_health(runtime: LocalRuntime) -> int:
    invocation = runtime.invoke("HealthFunction", json.loads((EVENTS / "health" / "health.json").read_text()))
    assert not invocation.errored, invocation.payload
    return int(invocation.payload["statusCode"])


def force_open(runtime: LocalRuntime, name: str) -> None:
    """What ``bw breakers force-open NAME`` does."""
    from resilience.breaker import CircuitBreaker, DynamoDBBreakerStore, policy_for

    CircuitBreaker(
        name, DynamoDBBreakerStore("BreakersTable", runtime.client("dynamodb")), policy_for(name)
    ).force_open()


def admit_listener(runtime: LocalRuntime, tenant: str) -> None:
    event = {"tenantHint": tenant, "tokenTenant": None, "role": "listener", "anonymous": True, "correlationId": "c-1"}
    runtime.invoke("TenantConfigFunction", event)


def idle_connections(runtime: LocalRuntime, count: int) -> None:
    join_session(runtime, "town-hall", [(f"L{n}=", "listener", "anonymous") for n in range(count)])
    runtime.clock.advance(IDLE)
    period_start(runtime, 60)
    assert runtime.run("IdleSweep", {}).status == "SUCCEEDED"


# -- seed 000: breaker OPEN > 5 min ------------------------------------------------------------------


def test_BreakerOpenSixMinutesTripsBreakerOpenAlarm(stack):
    runtime = stack()
    force_open(runtime, "cognito.verifyJwt")
    runtime.clock.advance(360)
    period_start(runtime, 60)

    get_health(runtime)

    assert alarming(runtime) == {"BreakerOpenAlarmCognitoVerifyJwt"}


def test_BreakerOpenFourMinutesLeavesBreakerOpenAlarmOk(stack):
    runtime = stack()
    force_open(runtime, "cognito.verifyJwt")
    runtime.clock.advance(180)
    period_start(runtime, 60)  # at most 4 min open

    get_health(runtime)

    assert alarming(runtime) == set()


# -- seed 000: average response > 1 s, timeout rate > 10 % -----------------------------------------


def test_SlowDynamoDbTripsLatencyAlarm(stack):
    # 2 s per DescribeTable: slow, but within the 5 s read timeout (no timeout counted).
    runtime = stack([{"service": "dynamodb", "operation": "DescribeTable", "latency": 2}])
    period_start(runtime, 60)

    get_health(runtime)

    assert alarming(runtime) == {"LatencyAlarmDynamodb"}


def test_DynamoDbTimingOutTripsTimeoutRateAlarm(stack):
    runtime = stack([{"service": "dynamodb", "timeout": True}])
    period_start(runtime, 300)

    assert get_health(runtime) == 503

    # Every DynamoDB probe timed out after the 5 s read timeout: 100 % of calls, 5000 ms average.
    assert alarming(runtime) == {"TimeoutRateAlarmDynamodb", "LatencyAlarmDynamodb"}


# -- seed 000: cache hit rate < 50 % -----------------------------------------------------------------


def test_UnknownTenantsForFifteenMinutesTripCacheHitRateAlarm(stack):
    runtime = stack()
    period_start(runtime, 300)
    for period in range(3):  # three 5-minute periods, each with its misses
        if period:
            runtime.clock.advance(300)
        for n in range(4):
            admit_listener(runtime, f"ghost-{period}-{n}")

    # Refusals are never cached (positive-only): every lookup of the decision cache misses,
    # while the tenant mapping object is found in its cache (hits) after the first.
    assert alarming(runtime) == {"CacheHitRateAlarmTenantValidation"}


def test_OnePeriodOfMissesLeavesCacheHitRateAlarmOk(stack):
    runtime = stack()
    period_start(runtime, 300)
    for n in range(4):
        admit_listener(runtime, f"ghost-{n}")

    assert alarming(runtime) == set()


# -- seed 000: memory > 80 % ---------------------------------------------------------------------------


def test_CachesOverTheMemoryShareTripMemoryAlarm(stack):
    # 1 % of the function's 256 MB is 2.7 MB: twelve tenant configs of 240 KB (each under the
    # 256 KB object limit) held by the tenant config cache pass it. At the default 80 % the
    # same takes 850 of them; the rule is the same.
    runtime = stack(parameters={"AlertMemoryPercent": "1"})
    s3 = runtime.client("s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"])
    mapping = json.loads(s3.get_object(Bucket=bucket, Key="tenants/mapping.json")["Body"].read())
    for n in range(12):
        mapping[f"big-{n}"] = f"big-{n}"
        config = {"tenantId": f"big-{n}", "enabled": True, "allowAnonymousListeners": True, "notes": "x" * 240_000}
        s3.put_object(Bucket=bucket, Key=f"tenants/big-{n}/config.json", Body=json.dumps(config).encode())
    s3.put_object(Bucket=bucket, Key="tenants/mapping.json", Body=json.dumps(mapping).encode())
    period_start(runtime, 60)

    for n in range(12):
        admit_listener(runtime, f"big-{n}")

    assert alarming(runtime) == {"CacheMemoryAlarmTenantConfig"}


# -- seed 001: IdleConnectionsDetected > 10/min (warning), ConnectionsClosed > 50/min (critical) -----


def test_ElevenIdleConnectionsTripIdleWarningOnly(stack):
    runtime = stack()
    idle_connections(runtime, 11)

    assert alarming(runtime) == {"IdleConnectionsAlarm"}


def test_FiftyOneIdleConnectionsTripIdleWarningAndClosedCritical(stack):
    runtime = stack()
    idle_connections(runtime, 51)

    assert alarming(runtime) == {"IdleConnectionsAlarm", "ConnectionsClosedAlarm"}


# -- AWS-published: failed executions, Lambda errors -------------------------------------------------


def test_FailedCleanupTripsExecutionsFailedAlarm(stack):
    runtime = stack([{"service": "dynamodb", "operation": "DeleteItem", "error": "InternalServerError"}])
    period_start(runtime, 60)
    event = json.loads((EVENTS / "disconnect_cleanup" / "client_disconnected.json").read_text())

    assert runtime.run("DisconnectCleanup", event).status == "FAILED"

    assert alarming(runtime) == {"ExecutionsFailedAlarmDisconnectCleanup"}


def test_FiftyOneStepErrorsInAMinuteTripErrorsAlarm(stack):
    # A workflow step raises what its state machine catches by name, so its alarm counts
    # errors above WorkflowStepErrorsAlarmPerMinute (50), not above 0.
    runtime = stack()
    period_start(runtime, 60)

    for _ in range(50):
        assert runtime.invoke("MessageDeliveryFunction", {}).error_type == "ValidationError"
    assert alarming(runtime) == set()
    runtime.invoke("MessageDeliveryFunction", {})

    assert alarming(runtime) == {"ErrorsAlarmMessageDeliveryFunction"}


def test_PausedSweepThrottledByItsReservedConcurrencyTripsThrottlesAlarm(stack):
    # IdleSweepReservedConcurrency 0: Lambda refuses every invocation (429), the sweep's Retry
    # tries 3 more times, then the execution fails: both alarms, and no Errors (never ran).
    runtime = stack(parameters={"IdleSweepReservedConcurrency": "0"})
    period_start(runtime, 60)

    assert runtime.run("IdleSweep", {}).error == "Lambda.TooManyRequestsException"

    assert alarming(runtime) == {"ThrottlesAlarmIdleSweepFunction", "ExecutionsFailedAlarmIdleSweep"}


# -- the healthy stack ------------------------------------------------------------------------------------


def test_HealthyStackLeavesEveryAlarmOkAndEmitsEveryMetricTheAlarmsRead(stack):
    runtime = stack()
    speaker = json.loads((EVENTS / "authorize_connection" / "speaker.json").read_text())
    speaker["token"] = runtime.breakwater_token(subject="bot-7")

    idle_connections(runtime, 10)  # exactly at the warning threshold: not above it
    assert get_health(runtime) == 200
    for _ in range(5):
        assert runtime.run("AuthorizeConnection", speaker).status == "SUCCEEDED"

    assert alarming(runtime) == set()
    # Every metric a seed-threshold alarm reads was emitted with the alarm's exact dimension set:
    # an alarm on a metric nobody emits would stay OK forever and prove nothing.
    emitted = {(p.namespace, p.name, p.dimensions) for p in runtime.metric_datapoints()}
    namespace = runtime.template.parameters["MetricsNamespace"]
    read = {
        (metric.namespace, metric.name, metric.dimensions)
        for alarm in runtime.alarms()
        for metric in alarm.metrics
        if metric.namespace == namespace
    }
    assert read
    assert read - emitted == set()


# -- `bw run --alarms` ------------------------------------------------------------------------------------


def test_BwRunWithAlarmsPrintsEveryAlarmsStateAlarmFirst(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from local_runtime.cli import app

    monkeypatch.chdir(tmp_path)
    faults = tmp_path / "faults.yaml"
    faults.write_text("- {service: dynamodb, operation: DeleteItem, error: InternalServerError}\n", encoding="utf-8")
    event = EVENTS / "disconnect_cleanup" / "client_disconnected.json"
    template = ROOT / "template.yaml"

    result = CliRunner().invoke(
        app,
        ["run", "DisconnectCleanup", "-e", str(event), "-t", str(template), "--faults", str(faults), "--alarms"],
        catch_exceptions=False,
    )

    assert result.exit_code == 1  # the execution failed
    states = [line.split()[:2] for line in result.output.splitlines() if line.startswith(("ALARM ", "OK "))]
    assert states[0] == ["ALARM", "ExecutionsFailedAlarmDisconnectCleanup:"]
    assert len(states) == 43
    assert [state for state, _ in states[1:]] == ["OK"] * 42
