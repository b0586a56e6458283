"""IdleSweep (seed 001) on the local runtime: scheduled, one at a time, indexed, in virtual time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_runtime import LocalRuntime
from local_runtime.clock import real_monotonic
from local_runtime.sessions import join_session
from resilience.activity import idle_shard

ROOT = Path(__file__).resolve().parents[2]
#: Silent this long, a connection is idle under the template's defaults: past the 120 s timeout
#: plus the 30 s by which a stored lastActivityTime may trail the client's last frame.
IDLE = 160


@pytest.fixture
def stack() -> Iterator[Any]:
    started: list[LocalRuntime] = []

    def make(faults: list[dict[str, Any]] | None = None, **kwargs: Any) -> LocalRuntime:
        runtime = LocalRuntime(ROOT / "template.yaml", faults=faults, **kwargs).start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()


def join(runtime: LocalRuntime, *members: tuple[str, str]) -> None:
    join_session(
        runtime, "town-hall", [(cid, role, "anonymous" if role == "listener" else "u-1") for cid, role in members]
    )


def remaining(runtime: LocalRuntime) -> set[str]:
    """Connections left once the cleanups the sweep started (asynchronously) have finished."""
    settle(runtime)
    return {item["connectionId"] for item in runtime.items("ConnectionsTable")}


def settle(runtime: LocalRuntime, limit: float = 120.0) -> None:
    """Wait (in real time: they run on threads of their own) for every started execution to end.

    "Clean up" starts DisconnectCleanup with StartExecution and does not wait for it, as on
    AWS; on a loaded machine a cleanup could still be running when the sweep returned.
    """
    import threading

    deadline = real_monotonic() + limit
    while any(e.status == "RUNNING" for m in runtime._backend().state_machines for e in m.executions):
        assert real_monotonic() < deadline, "executions still running"
        threading.Event().wait(0.05)


def received(runtime: LocalRuntime, connection_id: str) -> list[Any]:
    return runtime.connections.received(connection_id)


def is_open(runtime: LocalRuntime, connection_id: str) -> bool:
    found = runtime.connections.find(connection_id)
    return bool(found and found.open)


def emf(output: str) -> list[dict[str, Any]]:
    """Every EMF document printed, as CloudWatch would read them (Map branches may share a line)."""
    decoder, documents, at = json.JSONDecoder(), [], output.find("{")
    while at >= 0:
        try:
            document, end = decoder.raw_decode(output, at)
        except ValueError:
            at = output.find("{", at + 1)
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
        at = output.find("{", end)
    return documents


def test_IdleListenerIsNotifiedThenClosed(stack):
    runtime = stack()
    join(runtime, ("Idle=", "listener"))
    runtime.clock.advance(IDLE)
    join(runtime, ("Fresh=", "listener"))

    result = runtime.run("IdleSweep", {})

    assert result.status == "SUCCEEDED"
    (frame,) = received(runtime, "Idle=")
    assert frame["type"] == "connectionTimeout"
    assert frame["message"] == "Connection closed due to inactivity"
    assert frame["idleSeconds"] == IDLE
    assert frame["timestamp"] == int(runtime.clock.now() * 1000)
    assert not is_open(runtime, "Idle=")
    assert is_open(runtime, "Fresh=")
    assert received(runtime, "Fresh=") == []
    assert remaining(runtime) == {"Fresh="}


def test_SendFailsButCloseStillHappens(stack):
    runtime = stack(
        [{"service": "apigatewaymanagementapi", "operation": "PostToConnection", "error": "InternalServerError"}]
    )
    join(runtime, ("Idle=", "listener"))
    runtime.clock.advance(IDLE)

    result = runtime.run("IdleSweep", {})

    notify = [row for row in result.trace().rows if row.name == "Tell the client it timed out"]
    assert [row.status for row in notify] == ["caught"]
    assert not is_open(runtime, "Idle=")
    assert remaining(runtime) == set()


def test_GoneOnCloseCountsAsClosed(stack, capsys):
    runtime = stack()
    join(runtime, ("Left=", "speaker"))
    runtime.connections.disconnect("Left=")  # the client went away; its $disconnect never arrived
    runtime.clock.advance(IDLE)

    result = runtime.run("IdleSweep", {})

    closes = [row for row in result.trace().rows if row.name == "Close the connection"]
    assert [row.status for row in closes] == ["succeeded"]
    assert closes[0].output["close"]["Payload"]["closed"] == "gone"
    assert remaining(runtime) == set()
    timeouts = [d for d in emf(capsys.readouterr().out) if "ConnectionTimeout" in d]
    assert [(d["Role"], d["Reason"]) for d in timeouts] == [("speaker", "already_gone")]


def test_CleanupIsTriggered(stack):
    runtime = stack()
    join(runtime, ("Idle=", "listener"))
    runtime.clock.advance(IDLE)

    runtime.run("IdleSweep", {})

    (execution,) = runtime.executions.started("DisconnectCleanup")
    described = runtime.wait(execution)
    assert described.status == "SUCCEEDED"
    assert described.input["reason"] == "idleTimeout"


def test_ConnectedAtIsTheFallbackForConnectionsStoredBeforeTheIndex(stack):
    runtime = stack()
    runtime.connections.connect("Old=")
    runtime.client("dynamodb").put_item(
        TableName="ConnectionsTable",
        Item={
            "connectionId": {"S": "Old="},
            "sessionId": {"S": "town-hall"},
            "role": {"S": "listener"},
            "connectedAt": {"N": str(int(runtime.clock.now() * 1000))},
        },
    )
    runtime.clock.advance(IDLE)

    before = runtime.run("IdleSweep", {})
    backfill = runtime.invoke("IdleSweepFunction", {"action": "backfill"}).payload
    after = runtime.run("IdleSweep", {})

    assert before.status == after.status == "SUCCEEDED"
    assert backfill == {"indexed": 1, "pages": 1}
    assert remaining(runtime) == set()
    assert received(runtime, "Old=")[0]["idleSeconds"] == IDLE


@pytest.mark.parametrize(
    ("write_interval", "threshold"),
    [
        ("0", 120),  # every frame stored: seed 001's threshold exactly
        ("30", 150),  # the default: a stored time may trail the last frame by up to 30 s, so 120 + 30
    ],
)
def test_ExactlyAtTheThresholdIsNotClosed(stack, write_interval, threshold):
    runtime = stack(parameters={"ActivityWriteIntervalSeconds": write_interval})
    join(runtime, ("AtLimit=", "listener"))
    runtime.clock.advance(threshold)

    runtime.run("IdleSweep", {})
    assert remaining(runtime) == {"AtLimit="}

    runtime.clock.advance(1)
    runtime.run("IdleSweep", {})
    assert remaining(runtime) == set()


def test_CustomTimeoutFromTheParameter(stack):
    # The Parameter reaches the sweep as CONNECTION_IDLE_TIMEOUT_SECONDS (seed 001's variable).
    runtime = stack(parameters={"ConnectionIdleTimeoutSeconds": "300"})
    assert runtime.template.function("IdleSweepFunction").environment["CONNECTION_IDLE_TIMEOUT_SECONDS"] == "300"
    join(runtime, ("Idle=", "listener"))
    runtime.clock.advance(330)  # 300 s + the 30 s write interval: not yet

    runtime.run("IdleSweep", {})
    assert remaining(runtime) == {"Idle="}

    runtime.clock.advance(1)
    runtime.run("IdleSweep", {})
    assert remaining(runtime) == set()


def test_MetricsAreEmittedWithTheirDimensions(stack, capsys):
    runtime = stack()
    join(runtime, ("L1=", "listener"), ("L2=", "listener"), ("S1=", "speaker"))
    runtime.clock.advance(90)
    join(runtime, ("Fresh=", "listener"))
    runtime.clock.advance(IDLE - 90)

    runtime.run("IdleSweep", {})

    documents = emf(capsys.readouterr().out)
    timeouts = sorted((d["Role"], d["Reason"]) for d in documents if "ConnectionTimeout" in d)
    assert timeouts == [("listener", "idle"), ("listener", "idle"), ("speaker", "idle")]
    dimensions = next(d for d in documents if "ConnectionTimeout" in d)["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert {"Role", "Reason"} <= set(dimensions[0])  # plus Powertools' service

    def total(name: str) -> float:
        return sum(sum(d[name]) if isinstance(d[name], list) else d[name] for d in documents if name in d)

    assert total("IdleConnectionsDetected") == 3
    assert total("ConnectionsChecked") == 3  # the index returns idle connections only: Fresh= is never read
    assert total("ConnectionsClosed") == 3
    assert any("SweepDurationMs" in d for d in documents)


def test_TwoSchedulesDuringASweepMakeOneSweep(stack):
    runtime = stack()
    join(runtime, ("Idle=", "listener"))
    runtime.clock.advance(IDLE)
    overlapping: list[Any] = []
    # While the first sweep is in its Map, the schedule fires twice more.
    runtime.faults.add(
        {
            "service": "dynamodb",
            "operation": "UpdateItem",
            "resource": "ConnectionsTable",
            "count": 1,
            "before": lambda: overlapping.extend([runtime.run("IdleSweep", {}), runtime.run("IdleSweep", {})]),
        }
    )

    first = runtime.run("IdleSweep", {})

    assert first.status == "SUCCEEDED"
    assert [run.status for run in overlapping] == ["SUCCEEDED", "SUCCEEDED"]
    for run in overlapping:
        assert [row.name for row in run.trace().rows][-1] == "Another sweep is running"
    assert len(received(runtime, "Idle=")) == 1  # notified and closed once
    assert runtime.items("LocksTable") == []  # released at the end


def test_ALockLeftByACrashedSweepExpires(stack):
    runtime = stack()
    join(runtime, ("Idle=", "listener"))
    runtime.clock.advance(IDLE)
    expires = int(runtime.clock.now()) + 60
    runtime.client("dynamodb").put_item(
        TableName="LocksTable",
        Item={"name": {"S": "idle-sweep"}, "owner": {"S": "crashed"}, "expiresAt": {"N": str(expires)}},
    )

    blocked = runtime.run("IdleSweep", {})
    runtime.clock.advance(61)
    swept = runtime.run("IdleSweep", {})

    assert [row.name for row in blocked.trace().rows][-1] == "Another sweep is running"
    assert remaining(runtime) == set()
    assert swept.status == "SUCCEEDED"


def test_TheScheduleStartsASweepEveryMinute(stack):
    runtime = stack()
    join(runtime, ("Idle=", "listener"))

    fired = runtime.advance(180)

    assert len(fired) == 3
    assert remaining(runtime) == set()
    # Each firing started the sweep with the schedule's own role, as EventBridge Scheduler does.
    used = {(u["role"], u["action"], u["calls"]) for u in runtime.iam.usage()["used"]}
    assert ("IdleSweepEveryMinuteRole", "states:StartExecution", 3) in used


def test_AConnectionActiveDuringTheSweepIsNotClosed(stack):
    runtime = stack()
    join(runtime, ("Busy=", "listener"))
    runtime.clock.advance(IDLE)

    # The client pings after the sweep read its page, before the sweep acts on it.
    runtime.faults.add(
        {
            "service": "dynamodb",
            "operation": "UpdateItem",
            "resource": "ConnectionsTable",
            "count": 1,
            "before": lambda: ping(runtime, "Busy="),
        }
    )

    result = runtime.run("IdleSweep", {})

    assert "Active again: leave it open" in [row.name for row in result.trace().rows]
    assert is_open(runtime, "Busy=")
    assert received(runtime, "Busy=") == []
    assert remaining(runtime) == {"Busy="}


def ping(runtime: LocalRuntime, connection_id: str) -> None:
    event = {
        "requestContext": {"routeKey": "$default", "connectionId": connection_id, "requestId": "p"},
        "body": '{"action": "ping"}',
    }
    assert runtime.invoke("DefaultRouteFunction", event).payload == {"statusCode": 200}


def stored_activity(runtime: LocalRuntime, connection_id: str) -> int:
    (item,) = [i for i in runtime.items("ConnectionsTable") if i["connectionId"] == connection_id]
    return int(item["lastActivityTime"])


def test_AClientActiveWithinTheWriteIntervalIsNotClosedEarly(stack):
    runtime = stack()
    join(runtime, ("Chatty=", "listener"))
    joined = stored_activity(runtime, "Chatty=")
    runtime.clock.advance(29)
    ping(runtime, "Chatty=")  # within the 30 s write interval: not stored
    assert stored_activity(runtime, "Chatty=") == joined
    runtime.clock.advance(92)  # stored 121 s ago, but the client was heard 92 s ago

    runtime.run("IdleSweep", {})
    assert remaining(runtime) == {"Chatty="}
    assert received(runtime, "Chatty=") == []

    runtime.clock.advance(30)  # stored 151 s ago: silent for at least 121 s
    runtime.run("IdleSweep", {})
    assert remaining(runtime) == set()
    assert received(runtime, "Chatty=")[0]["idleSeconds"] == 151


def test_ASweepThatLosesItsLockStopsAtTheNextPage(stack):
    runtime = stack(parameters={"IdleSweepPageSize": "1"})
    join(runtime, ("A=", "listener"), ("B=", "listener"), ("C=", "listener"))
    runtime.clock.advance(200)

    def taken_over() -> None:  # e.g. the lock expired during a very slow page and another sweep took it
        runtime.client("dynamodb").put_item(
            TableName="LocksTable",
            Item={"name": {"S": "idle-sweep"}, "owner": {"S": "another"}, "expiresAt": {"N": "9999999999"}},
        )

    runtime.faults.add(
        {
            "service": "dynamodb",
            "operation": "UpdateItem",
            "resource": "ConnectionsTable",
            "count": 1,
            "before": taken_over,
        }
    )

    result = runtime.run("IdleSweep", {})

    assert result.status == "SUCCEEDED"
    assert len(remaining(runtime)) == 2  # the first page was closed, no page after it
    last_page = [row for row in result.trace().rows if row.name == "Read a page of idle connections"][-1]
    assert last_page.output["page"]["connections"] == []
    assert last_page.output["page"]["cursor"]["done"] is True
    assert result.output["released"] is False  # the other sweep's lock is left alone
    assert [item["owner"] for item in runtime.items("LocksTable")] == ["another"]


def test_TenThousandConnectionsFiftyIdleReadsOnlyTheIdle(stack):
    runtime = stack()
    now_ms = int(runtime.clock.now() * 1000)
    ddb = runtime.client("dynamodb")
    items = []
    for n in range(10_000):
        connection_id = f"C{n:05d}="
        idle = n % 200 == 0
        last = now_ms - (600_000 if idle else 10_000)
        items.append(
            {
                "PutRequest": {
                    "Item": {
                        "connectionId": {"S": connection_id},
                        "sessionId": {"S": f"s{n % 50}"},
                        "role": {"S": "listener"},
                        "connectedAt": {"N": str(last)},
                        "lastActivityTime": {"N": str(last)},
                        "idleShard": {"S": idle_shard(connection_id, 4)},
                    }
                }
            }
        )
        if idle:
            runtime.connections.connect(connection_id)
    for start in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={"ConnectionsTable": items[start : start + 25]})
    reads_before = runtime.requests[("dynamodb", "Query")]
    scans_before = runtime.requests[("dynamodb", "Scan")]

    result = runtime.run("IdleSweep", {})
    scans = runtime.requests[("dynamodb", "Scan")] - scans_before

    assert result.status == "SUCCEEDED"
    assert len(remaining(runtime)) == 9_950
    pages = [row for row in result.trace().rows if row.name == "Read a page of idle connections"]
    assert sum(len(row.output["page"]["connections"]) for row in pages) == 50
    # What DynamoDB read (ScannedCount, what a Query is billed for), not only what it returned.
    assert sum(row.output["page"]["read"] for row in pages) == 50
    assert runtime.requests[("dynamodb", "Query")] - reads_before == len(pages) == 4  # one page per shard
    assert scans == 0


def test_ALargeSweepContinuesAsANewExecution(stack):
    runtime = stack(parameters={"IdleSweepPageSize": "2", "IdleSweepPagesPerExecution": "2"})
    join(runtime, *[(f"L{n}=", "listener") for n in range(12)])
    runtime.clock.advance(IDLE)

    first = runtime.run("IdleSweep", {})

    assert [row.name for row in first.trace().rows][-1] == "Continue as a new execution"
    arn = runtime.template.state_machine("IdleSweep").arn
    finished: set[str] = set()
    while True:  # each continuation may start the next one
        executions = runtime.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]
        pending = [e["executionArn"] for e in executions if e["executionArn"] not in finished]
        if not pending:
            break
        for execution_arn in pending:
            assert runtime.wait(execution_arn).status == "SUCCEEDED"
            finished.add(execution_arn)
    assert len(finished) == 4  # 12 idle, 2 per page, 4 shards' worth of pages, 2 pages per execution
    assert remaining(runtime) == set()
    assert runtime.items("LocksTable") == []


@pytest.mark.parametrize(
    ("page_size", "pages", "expected"),
    [("100", "4", 4), ("100", "200", 4), ("400", "3", 1), ("7", "2", 2)],
)
def test_OneExecutionNeverActsOnMoreConnectionsThanItsHistoryHolds(stack, page_size, pages, expected):
    # 400 connections x at most 49 history events each stays under Standard's 25 000.
    runtime = stack(parameters={"IdleSweepPageSize": page_size, "IdleSweepPagesPerExecution": pages})

    begun = runtime.invoke("IdleSweepFunction", {"action": "begin", "executionName": "sweep-1"}).payload

    assert begun["locked"] is True
    assert begun["pagesLeft"] == expected
    assert begun["pagesLeft"] * int(page_size) <= 400
