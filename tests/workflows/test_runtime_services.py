"""Services of the offline stack that workflows and handlers lean on."""

from __future__ import annotations

import itertools
import json
import re
import sys

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError


def test_GoneForUnknownOrClosedConnections(runtime_factory):
    runtime = runtime_factory()
    api = runtime.management_api()

    with pytest.raises(ClientError) as unknown:
        api.post_to_connection(ConnectionId="nobody", Data=b"hi")
    assert unknown.value.response["Error"]["Code"] == "GoneException"
    assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410

    runtime.connections.connect("c1")
    api.post_to_connection(ConnectionId="c1", Data=json.dumps({"type": "message", "n": 1}).encode())
    api.post_to_connection(ConnectionId="c1", Data=b"plain")
    assert runtime.connections.received("c1") == [{"type": "message", "n": 1}, "plain"]
    described = api.get_connection(ConnectionId="c1")
    assert described["ConnectedAt"].timestamp() == pytest.approx(runtime.clock.now(), abs=1)

    api.delete_connection(ConnectionId="c1")
    with pytest.raises(ClientError) as closed:
        api.post_to_connection(ConnectionId="c1", Data=b"late")
    assert closed.value.response["Error"]["Code"] == "GoneException"
    with pytest.raises(ClientError):
        api.delete_connection(ConnectionId="c1")


def test_InjectedGoneForAnOpenConnection(runtime_factory):
    runtime = runtime_factory(faults=[{"service": "apigatewaymanagementapi", "resource": "c2", "gone": True}])
    runtime.connections.connect("c2")
    runtime.connections.connect("c3")
    api = runtime.management_api()

    with pytest.raises(ClientError) as gone:
        api.post_to_connection(ConnectionId="c2", Data=b"x")
    assert gone.value.response["Error"]["Code"] == "GoneException"
    api.post_to_connection(ConnectionId="c3", Data=b"x")
    assert runtime.connections.received("c3") == ["x"]


def test_LatencyPastTheReadTimeoutRaisesReadTimeoutError(runtime_factory):
    runtime = runtime_factory(faults=[{"service": "dynamodb", "operation": "GetItem", "latency": 8}])
    import boto3

    client = boto3.client(
        "dynamodb", config=Config(connect_timeout=3, read_timeout=5, retries={"total_max_attempts": 1})
    )
    before = runtime.clock.now()
    with pytest.raises(ReadTimeoutError):
        client.get_item(TableName="AttemptsTable", Key={"pk": {"S": "x"}})
    # The client gave up at its read timeout, in virtual time.
    assert runtime.clock.now() - before == pytest.approx(5.0)


def test_LatencyWithinTheReadTimeoutIsJustSlow(runtime_factory):
    runtime = runtime_factory(faults=[{"service": "dynamodb", "operation": "GetItem", "latency": 2}])
    import boto3

    client = boto3.client("dynamodb", config=Config(read_timeout=5))
    before = runtime.clock.now()
    client.get_item(TableName="AttemptsTable", Key={"pk": {"S": "x"}})
    assert runtime.clock.now() - before == pytest.approx(2.0)


def test_FaultAfterAndCountLetCallsThrough(runtime_factory):
    runtime = runtime_factory(
        faults=[{"service": "dynamodb", "operation": "GetItem", "error": "InternalServerError", "after": 1, "count": 1}]
    )
    import boto3

    client = boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
    key = {"pk": {"S": "x"}}
    client.get_item(TableName="AttemptsTable", Key=key)
    with pytest.raises(ClientError) as failed:
        client.get_item(TableName="AttemptsTable", Key=key)
    assert failed.value.response["Error"]["Code"] == "InternalServerError"
    assert len(runtime.faults.log) == 1
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    client.get_item(TableName="AttemptsTable", Key=key)


def test_StartSyncExecutionRunsExpressWorkflowsToCompletion(runtime_factory):
    runtime = runtime_factory()

    answer = runtime.start_sync_execution("TimeoutFlow", {"seconds": 1})

    assert answer["status"] == "SUCCEEDED"
    assert json.loads(answer["output"]) == {"slept": 1.0}
    assert ":express:TimeoutFlow:" in answer["executionArn"]


def test_StartSyncExecutionRefusesStandardWorkflows(runtime_factory):
    runtime = runtime_factory()

    with pytest.raises(ClientError) as refused:
        runtime.start_sync_execution("RetryFlow", {"key": "s"})
    assert refused.value.response["Error"]["Code"] == "StateMachineTypeNotSupported"


def test_HandlerPastItsFunctionTimeoutIsStoppedThere(runtime_factory):
    runtime = runtime_factory()

    invocation = runtime.invoke("SlowFunction", {"seconds": 100})

    assert invocation.error_type == "Sandbox.Timedout"
    assert "Task timed out after 60.00 seconds" in (invocation.error_message or "")
    assert invocation.duration == pytest.approx(60.0)


def test_HandlersReadTheVirtualClock(runtime_factory):
    runtime = runtime_factory()

    invocation = runtime.invoke("SlowFunction", {"seconds": 42})

    assert invocation.payload == {"slept": 42.0}
    assert invocation.duration == pytest.approx(42.0)


def test_FunctionsWithTheSameModuleNamesAreIsolated(runtime_factory):
    runtime = runtime_factory()

    slow = runtime.invoke("SlowFunction", {"seconds": 1})
    item = runtime.invoke("ItemFunction", {"id": 7})
    slow_again = runtime.invoke("SlowFunction", {"seconds": 1})

    assert slow.payload == {"slept": 1.0}
    assert item.payload == {"id": 7, "status": "processed"}
    assert slow_again.payload == {"slept": 1.0}
    assert not slow_again.cold_start
    # Nothing of a function leaks into the test process's own imports.
    assert "app" not in sys.modules


def test_HandlerSeesItsTemplateEnvironmentOnly(runtime_factory):
    import os

    runtime = runtime_factory(parameters={"FlakyFailures": "0"})

    invocation = runtime.invoke("FlakyFunction", {"key": "env"})

    assert invocation.payload["attempts"] == 1
    assert "ATTEMPTS_TABLE" not in os.environ


def test_UnhandledErrorsSurfaceWithTheirClassName(runtime_factory):
    runtime = runtime_factory()

    invocation = runtime.invoke("ItemFunction", {"id": 9, "fail": True})

    assert invocation.error_type == "ValidationError"
    assert invocation.error_message == "item 9 is malformed"


def test_RateScheduleFiresOncePerPeriodInVirtualTime(runtime_factory):
    runtime = runtime_factory()
    schedules = runtime.client("scheduler").list_schedules()["Schedules"]
    assert [s["Name"] for s in schedules] == ["TickFlowEveryMinute"]

    fired = runtime.advance(180)

    assert [r.status for r in fired] == ["SUCCEEDED"] * 3
    ticks = [item for item in runtime.items("AttemptsTable") if item["pk"].startswith("tick#")]
    assert len(ticks) == 3
    assert {item["source"] for item in ticks} == {"schedule"}
    # $$.Execution.StartTime is an ISO-8601 string, as on AWS.
    assert all(re.fullmatch(r"tick#\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["pk"]) for item in ticks)
    starts = sorted(r.start.timestamp() for r in fired)
    assert [b - a for a, b in itertools.pairwise(starts)] == pytest.approx([60.0, 60.0])


def test_RealConnectionIdsWithEqualsSignsAreFound(runtime_factory):
    runtime = runtime_factory()
    runtime.connections.connect("Xy1ZEcabcDEFg=")
    api = runtime.management_api()
    api.post_to_connection(ConnectionId="Xy1ZEcabcDEFg=", Data=b"hi")
    assert runtime.connections.received("Xy1ZEcabcDEFg=") == ["hi"]
    api.delete_connection(ConnectionId="Xy1ZEcabcDEFg=")
    with pytest.raises(ClientError):
        api.get_connection(ConnectionId="Xy1ZEcabcDEFg=")


def test_AFunctionsOwnModulesWinOverSameNamedOnesOfTheCaller(runtime_factory, monkeypatch):
    import types

    impostor = types.ModuleType("app")
    impostor.handler = lambda event, context: {"impostor": True}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "app", impostor)
    runtime = runtime_factory()

    assert runtime.invoke("SlowFunction", {"seconds": 1}).payload == {"slept": 1.0}
    assert sys.modules["app"] is impostor


def test_AnInitFailureIsTheInvocationsAnswer(runtime_factory, tmp_path):
    runtime = runtime_factory()
    function = runtime.function("ItemFunction")
    from dataclasses import replace

    function.spec = replace(function.spec, handler="app.no_such_handler")
    invocation = runtime.invoke("ItemFunction", {})
    assert invocation.error_type == "Runtime.HandlerNotFound"
    assert "no_such_handler" in (invocation.error_message or "")


def test_TheTemplatesLogGroupsExistEmptyFromTheStartAndAfterAWarmRestart():
    """Deployed log groups are there before anything writes: FilterLogEvents on an access log
    no request reached yet answers no events (it answered ResourceNotFoundException)."""
    from pathlib import Path

    from local_runtime import LocalRuntime

    template = Path(__file__).resolve().parents[2] / "template.yaml"
    for _ in ("cold", "warm"):
        with LocalRuntime(template, parameters={"LogRetentionDays": "7"}) as runtime:
            logs = runtime.client("logs")
            groups = {g["logGroupName"]: g for g in logs.describe_log_groups()["logGroups"]}
            access = "/aws/apigateway/breakwater-local-sessions-access"
            assert groups[access]["retentionInDays"] == 7
            assert "/aws/vendedlogs/states/breakwater-local-DeliverMessage" in groups
            assert logs.filter_log_events(logGroupName=access)["events"] == []
