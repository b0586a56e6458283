"""AWS quotas on the offline runtime (local_runtime.limits), asserted on what a user sees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from local_runtime import limits
from local_runtime.executions import execution_history

LIMITS_TEMPLATE = Path(__file__).resolve().parents[1] / "fixtures" / "app" / "limits_template.yaml"


@pytest.fixture
def runtime() -> Iterator[Any]:
    from local_runtime import LocalRuntime

    with LocalRuntime(LIMITS_TEMPLATE) as started:
        yield started


# -- Step Functions: 256 KiB payloads ---------------------------------------------------------
def test_TaskResultUnderThePayloadQuotaSucceeds(runtime):
    result = runtime.run("BigFlow", {"bytes": 200_000})

    assert result.status == "SUCCEEDED"
    assert result.output == {"status": 200}


def test_TaskResultOverThePayloadQuotaFailsTheExecutionPastCatchAndRetryOfStatesAll(runtime):
    result = runtime.run("BigFlow", {"bytes": 300_000})

    assert result.status == "FAILED"
    assert result.error == "States.DataLimitExceeded"
    types = [event["type"] for event in result.events]
    # Terminal: the Retry and the Catch on States.ALL do not apply.
    assert types.count("TaskFailed") == 1
    assert "PassStateEntered" not in types
    assert types[-1] == "ExecutionFailed"


def test_PayloadQuotaAllowsExactly262144Bytes(runtime):
    from moto.stepfunctions.parser.asl.component.state import state

    within_quota = vars(state)["is_within_size_quota"]  # the interpreter's own check, as the runtime sets it
    # A string output of 262,142 characters is 262,144 bytes of JSON, quotes included.
    assert within_quota("x" * (limits.SFN_MAX_PAYLOAD_BYTES - 2))
    assert not within_quota("x" * (limits.SFN_MAX_PAYLOAD_BYTES - 1))
    assert not within_quota({"k": "é" * 131_070})


# -- Step Functions Express: 5 minutes ------------------------------------------------------------
def test_ExpressExecutionPastFiveMinutesTimesOut(runtime):
    response = runtime.start_sync_execution("LongExpressFlow", {"seconds": 400})

    assert response["status"] == "TIMED_OUT"
    assert response["error"] == "States.Timeout"
    assert (response["stopDate"] - response["startDate"]).total_seconds() == pytest.approx(300)


def test_ExpressExecutionJustUnderFiveMinutesSucceeds(runtime):
    response = runtime.start_sync_execution("LongExpressFlow", {"seconds": 299})

    assert response["status"] == "SUCCEEDED"


def test_ExpressExecutionWhoseMapBranchesRunPastFiveMinutesTimesOut(runtime):
    response = runtime.start_sync_execution("MapExpressFlow", {"items": [1, 2]})

    assert response["status"] == "TIMED_OUT"
    assert response["error"] == "States.Timeout"


# -- A definition's own TimeoutSeconds -----------------------------------------------------------
def test_ExecutionPastItsOwnTimeoutSecondsTimesOutInVirtualTime(runtime):
    result = runtime.run("TimedStandardFlow", {"seconds": 3600})

    assert result.status == "TIMED_OUT"
    assert result.error == "States.Timeout"
    assert result.events[-1]["type"] == "ExecutionTimedOut"


def test_ExecutionWithinItsOwnTimeoutSecondsSucceedsHoweverBusyTheMachineIs(runtime, monkeypatch):
    import threading

    from moto.stepfunctions.parser.asl.component.state.wait.state_wait import StateWait

    original = StateWait._eval_state

    def busy(self, env):
        threading.Event().wait(1.5)  # real seconds: a loaded CI machine, not virtual time
        return original(self, env)

    monkeypatch.setattr(StateWait, "_eval_state", busy)

    # 1.5 real seconds > the definition's TimeoutSeconds of 1, but no virtual time passed.
    assert runtime.run("TimedBusyFlow", {}).status == "SUCCEEDED"


# -- Step Functions Standard: 25,000 history events --------------------------------------------------
def test_StandardExecutionFailsAtTheHistoryQuota(runtime):
    arn = runtime.start_execution("LoopFlow", {})
    execution = runtime._backend().describe_execution(arn)
    execution.exec_worker._bw_thread.join(600)
    sfn = runtime.client("stepfunctions")

    described = sfn.describe_execution(executionArn=arn)

    assert described["status"] == "FAILED"
    assert described["error"] == "States.Runtime"
    assert described["cause"] == "The execution reached the maximum number of history events (25000)."
    events = execution_history(sfn, arn, page_size=1000)
    assert len(events) == 25_000
    assert events[-1]["id"] == 25_000
    assert events[-1]["type"] == "ExecutionFailed"
    assert events[-1]["executionFailedEventDetails"]["error"] == "States.Runtime"
    assert events[-2]["type"] in {"PassStateEntered", "PassStateExited", "ChoiceStateEntered", "ChoiceStateExited"}


# -- API Gateway: PostToConnection over 128 KB ----------------------------------------------------------
def test_PostToConnectionOver128KBIsRefusedWith413(runtime):
    runtime.connections.connect("conn-1=")
    api = runtime.management_api()

    api.post_to_connection(ConnectionId="conn-1=", Data=b"x" * limits.POST_TO_CONNECTION_MAX_BYTES)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        api.post_to_connection(ConnectionId="conn-1=", Data=b"x" * (limits.POST_TO_CONNECTION_MAX_BYTES + 1))

    error = raised.value.response
    assert error["Error"]["Code"] == "PayloadTooLargeException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert isinstance(raised.value, api.exceptions.PayloadTooLargeException)
    assert len(runtime.connections.find("conn-1=").received) == 1


# -- DynamoDB: moto already enforces both quotas --------------------------------------------------------
@pytest.fixture
def table(runtime):
    ddb = runtime.client("dynamodb")
    ddb.create_table(
        TableName="Quota",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return ddb


def test_DynamoDbItemOver400KBIsRefused(table):
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        table.put_item(TableName="Quota", Item={"pk": {"S": "a"}, "sk": {"N": "0"}, "v": {"S": "x" * 410_000}})

    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert raised.value.response["Error"]["Message"] == "Item size has exceeded the maximum allowed size"


def test_DynamoDbQueryAndScanPagesStopAt1MB(table):
    for sk in range(12):
        table.put_item(TableName="Quota", Item={"pk": {"S": "p"}, "sk": {"N": str(sk)}, "v": {"S": "x" * 100_000}})

    query = table.query(
        TableName="Quota", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}}
    )
    scan = table.scan(TableName="Quota")

    for page in (query, scan):
        assert page["Count"] < 12
        assert page["Count"] * 100_000 <= limits.DYNAMODB_MAX_PAGE_BYTES
        assert "LastEvaluatedKey" in page
