"""DisconnectCleanup and the $disconnect route, on the real template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from botocore.exceptions import ClientError

from local_runtime import ExecutionResult, LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"


def event(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / path).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def runtime():
    with LocalRuntime(TEMPLATE) as rt:
        yield rt


@pytest.fixture
def faulty():
    started: list[LocalRuntime] = []

    def make(faults):
        rt = LocalRuntime(TEMPLATE, faults=faults).start()
        started.append(rt)
        return rt

    yield make
    for rt in started:
        rt.stop()


def connect(runtime: LocalRuntime, connection_id: str, session: str = "s1", role: str = "listener") -> None:
    runtime.client("dynamodb").put_item(
        TableName="ConnectionsTable",
        Item={
            "connectionId": {"S": connection_id},
            "sessionId": {"S": session},
            "role": {"S": role},
            "tenantId": {"S": "t1"},
            "connectedAt": {"N": "1795520000000"},
        },
    )


def members(runtime: LocalRuntime, session: str = "s1") -> list[str]:
    page = runtime.client("dynamodb").query(
        TableName="ConnectionsTable",
        IndexName="BySession",
        KeyConditionExpression="sessionId = :s",
        ExpressionAttributeValues={":s": {"S": session}},
    )
    return sorted(item["connectionId"]["S"] for item in page["Items"])


def cleanup_metrics(runtime: LocalRuntime) -> list[dict[str, Any]]:
    listed = runtime.client("cloudwatch").list_metrics(Namespace="Breakwater", MetricName="ConnectionCleanedUp")
    return list(listed["Metrics"])


def test_sample_events_match_the_input_schema():
    schema = json.loads((EVENTS / "schemas" / "disconnect_cleanup.json").read_text(encoding="utf-8"))
    for path in (EVENTS / "disconnect_cleanup").glob("*.json"):
        jsonschema.validate(json.loads(path.read_text(encoding="utf-8")), schema)


def test_DisconnectRemovesTheConnectionAndItsMembership(runtime):
    connect(runtime, "Xy1ZEcabcDEFg=")
    connect(runtime, "other")

    result = runtime.run("DisconnectCleanup", event("disconnect_cleanup/client_disconnected.json"))

    assert result.status == "SUCCEEDED"
    assert result.output == {
        "connectionId": "Xy1ZEcabcDEFg=",
        "removed": True,
        "sessionId": "s1",
        "correlationId": "corr-disconnect-1",
    }
    assert members(runtime) == ["other"]
    (metric,) = cleanup_metrics(runtime)
    assert metric["Dimensions"] == [{"Name": "Reason", "Value": "clientDisconnected"}]


def test_DuplicateCleanupIsIdempotent(runtime):
    connect(runtime, "Xy1ZEcabcDEFg=")
    connect(runtime, "other")
    first = runtime.run("DisconnectCleanup", event("disconnect_cleanup/client_disconnected.json"))
    second = runtime.run("DisconnectCleanup", event("disconnect_cleanup/client_disconnected.json"))

    assert (first.status, second.status) == ("SUCCEEDED", "SUCCEEDED")
    assert second.output == {"connectionId": "Xy1ZEcabcDEFg=", "removed": False, "correlationId": "corr-disconnect-1"}
    assert members(runtime) == ["other"]
    assert second.trace().states_visited() == [
        "Shape input",
        "Remove connection",
        "Was it still connected?",
        "Already gone",
    ]


def test_UnknownConnectionCleanupSucceedsAndChangesNothing(runtime):
    connect(runtime, "other")
    result = runtime.run("DisconnectCleanup", event("disconnect_cleanup/unknown_connection.json"))
    assert result.status == "SUCCEEDED"
    assert result.output["removed"] is False
    assert members(runtime) == ["other"]
    assert cleanup_metrics(runtime) == []


def test_ThrottledDeleteIsRetriedWithBackoff(faulty):
    runtime = faulty([{"service": "dynamodb", "operation": "DeleteItem", "throttle": True, "count": 2}])
    connect(runtime, "Xy1ZEcabcDEFg=")

    result = runtime.run("DisconnectCleanup", event("disconnect_cleanup/client_disconnected.json"))

    assert result.status == "SUCCEEDED"
    row = result.trace().row("Remove connection")
    assert row.attempts == 3
    # Full jitter: each delay is drawn from [0, 1 s] and [0, 2 s].
    assert len(row.retry_delays) == 2
    assert all(0 <= d <= cap for d, cap in zip(row.retry_delays, (1.0, 2.0), strict=True))
    assert members(runtime) == []


def test_ConnectionsTableDownFailsVisiblyAfterRetries(faulty):
    runtime = faulty([{"service": "dynamodb", "operation": "DeleteItem", "error": "InternalServerError"}])
    connect(runtime, "Xy1ZEcabcDEFg=")

    result = runtime.run("DisconnectCleanup", event("disconnect_cleanup/client_disconnected.json"))

    assert result.status == "FAILED"
    assert result.error == "DependencyUnavailableError"
    assert result.trace().row("Remove connection").attempts == 4
    assert members(runtime) == ["Xy1ZEcabcDEFg="]


def test_MetricOutageDoesNotFailTheCleanup(faulty):
    runtime = faulty([{"service": "cloudwatch", "error": "InternalServiceFault", "status": 500}])
    connect(runtime, "Xy1ZEcabcDEFg=")

    result = runtime.run("DisconnectCleanup", event("disconnect_cleanup/client_disconnected.json"))

    assert result.status == "SUCCEEDED"
    assert result.output["removed"] is True
    assert result.trace().row("Count the cleanup").status == "caught"


def wait_for_cleanups(runtime: LocalRuntime) -> list[ExecutionResult]:
    return [runtime.wait(arn) for arn in runtime.executions.started("DisconnectCleanup")]


def test_DisconnectRouteStartsTheCleanup(runtime):
    connect(runtime, "Xy1ZEcabcDEFg=")

    invocation = runtime.invoke("DisconnectFunction", event("disconnect/client_disconnected.json"))

    assert invocation.payload == {"statusCode": 200}
    (cleanup,) = wait_for_cleanups(runtime)
    assert cleanup.status == "SUCCEEDED"
    assert cleanup.input["correlationId"] == "corr-disconnect-1"
    assert members(runtime) == []


def test_DisconnectRouteDeletesDirectlyWhenStepFunctionsIsDown(faulty):
    runtime = faulty(
        [{"service": "stepfunctions", "operation": "StartExecution", "error": "ServiceUnavailable", "status": 503}]
    )
    connect(runtime, "Xy1ZEcabcDEFg=")

    invocation = runtime.invoke("DisconnectFunction", event("disconnect/client_disconnected.json"))

    assert invocation.payload == {"statusCode": 200}
    assert wait_for_cleanups(runtime) == []
    assert members(runtime) == []


def test_DisconnectRouteIgnoresAnEventThatIsNotADisconnect(runtime):
    connect(runtime, "Xy1ZEcabcDEFg=")
    invocation = runtime.invoke("DisconnectFunction", {"requestContext": {"routeKey": "$connect"}})
    assert invocation.payload == {"statusCode": 400}
    assert members(runtime) == ["Xy1ZEcabcDEFg="]


def test_ReplayedDisconnectEventStartsASecondExpressCleanup(runtime):
    """AWS does not deduplicate Express executions by name: the same sample event sent
    twice (its connectionId and requestId make the name) starts two cleanups, each with
    its own ``:express:`` ARN, instead of an ExecutionAlreadyExists and the fallback."""
    connect(runtime, "Xy1ZEcabcDEFg=")
    replay = event("disconnect/client_disconnected.json")

    first = runtime.invoke("DisconnectFunction", replay)
    second = runtime.invoke("DisconnectFunction", dict(replay, headers={**replay["headers"], "x-correlation-id": "r2"}))

    assert first.payload == second.payload == {"statusCode": 200}
    cleanups = wait_for_cleanups(runtime)
    assert [c.status for c in cleanups] == ["SUCCEEDED", "SUCCEEDED"]
    assert len({c.name for c in cleanups}) == 1
    assert len({c.arn for c in cleanups}) == 2
    assert all(":express:DisconnectCleanup:" in c.arn for c in cleanups)
    assert sorted(c.input["correlationId"] for c in cleanups) == ["corr-disconnect-1", "r2"]


def test_ExpressExecutionsAreNeitherListedNorDescribedByTheApi(runtime):
    """ListExecutions and DescribeExecution are "not supported by EXPRESS state machines"
    (their runs are in CloudWatch Logs); a Standard machine still refuses a reused name."""
    sfn = runtime.client("stepfunctions")
    cleanup = runtime.template.state_machine("DisconnectCleanup").arn
    started = sfn.start_execution(stateMachineArn=cleanup, name="once", input=json.dumps({"connectionId": "x"}))
    runtime.wait(started["executionArn"])

    with pytest.raises(ClientError) as listed:
        sfn.list_executions(stateMachineArn=cleanup)
    assert listed.value.response["Error"]["Code"] == "StateMachineTypeNotSupported"
    with pytest.raises(ClientError):
        sfn.describe_execution(executionArn=started["executionArn"])

    sweep = runtime.template.state_machine("IdleSweep").arn
    runtime.wait(sfn.start_execution(stateMachineArn=sweep, name="sweep-1", input="{}")["executionArn"])
    with pytest.raises(ClientError) as reused:
        sfn.start_execution(stateMachineArn=sweep, name="sweep-1", input='{"again": true}')
    assert reused.value.response["Error"]["Code"] == "ExecutionAlreadyExists"


def test_EachRunRetriesAfresh(faulty):
    # Executions of one state machine evaluate the same parsed program: a run's retry
    # count is its own, not carried over from an earlier run.
    runtime = faulty([{"service": "dynamodb", "operation": "DeleteItem", "error": "InternalServerError"}])
    connect(runtime, "Xy1ZEcabcDEFg=")

    for _ in range(2):
        result = runtime.run("DisconnectCleanup", event("disconnect_cleanup/client_disconnected.json"))
        assert result.status == "FAILED"
        assert result.trace().row("Remove connection").attempts == 4
