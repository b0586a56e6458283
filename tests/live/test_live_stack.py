"""`bw up`: the real template live on 127.0.0.1, driven by real WebSocket clients.

One stack for the module (reset between tests: no connection, no fault, tables
as loaded, speed 1). Clients are the ``websockets`` library's, on an event loop
that keeps real time while the stack's virtual clock is installed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.request
from collections.abc import Awaitable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from local_runtime import LocalRuntime
from local_runtime.cli import app
from local_runtime.gateway import RealTimeLoop
from local_runtime.live import LiveStack, wait_until

ROOT = Path(__file__).resolve().parents[2]
#: Many clients share 127.0.0.1: the per-IP $connect limit, the per-sender message limit and
#: the stage's throttling are raised so the tests measure the gateway, not the rate limiters
#: (tested elsewhere: tests/live/test_edge_live.py for the stage).
PARAMETERS = {
    "ConnectRateLimit": "100000",
    "RateLimitMessages": "100000",
    "ConnectThrottlingBurstLimit": "100000",
    "WebSocketThrottlingBurstLimit": "100000",
}
T = TypeVar("T")


@contextmanager
def started(parameters: Mapping[str, str], **options: Any) -> Iterator[LiveStack]:
    """The template live with ``parameters`` and the sample stack data, stopped on the way out."""
    data = ROOT / "events" / "local_data.yaml"
    stack = LiveStack(LocalRuntime(ROOT / "template.yaml", parameters=dict(parameters), data=data), **options).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    home = tmp_path_factory.mktemp("live")
    with started(PARAMETERS, aws_port=0, up_file=home / ".bw" / "up.json") as stack:
        yield stack
    assert not (home / ".bw" / "up.json").exists()


@pytest.fixture
def stack(live: LiveStack) -> Iterator[LiveStack]:
    yield live
    live.reset()


def run[T](coroutine: Awaitable[T]) -> T:
    """Run a client coroutine on a real-time loop."""

    async def main() -> T:
        return await coroutine

    with asyncio.Runner(loop_factory=RealTimeLoop) as runner:
        return runner.run(main())


class Clients:
    """Opens clients against the live gateway and learns each one's connection id."""

    def __init__(self, stack: LiveStack) -> None:
        self.stack = stack
        assert stack.gateway is not None
        self.url = stack.gateway.url

    async def open(
        self, session: str, role: str = "listener", token: str | None = None
    ) -> tuple[ClientConnection, str]:
        assert self.stack.gateway is not None
        before = set(self.stack.gateway.open_connections())
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = await connect(
            f"{self.url}/?role={role}&tenant=acme&session={session}", additional_headers=headers, open_timeout=60
        )
        (connection_id,) = set(self.stack.gateway.open_connections()) - before
        return client, connection_id

    def speaker_token(self) -> str:
        return self.stack.runtime.cognito_token()


def message(session: str, n: int) -> str:
    return json.dumps(
        {
            "action": "sendMessage",
            "sessionId": session,
            "clientMessageId": f"{n:08x}-0000-4000-8000-000000000000",
            "body": {"n": n},
        }
    )


async def frames(client: ClientConnection, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(client.recv(), timeout)) for _ in range(count)]


async def close_code(client: ClientConnection, timeout: float = 20.0) -> int | None:
    """Read until the server closes; the close code it sent."""
    try:
        while True:
            await asyncio.wait_for(client.recv(), timeout)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


def connection_items(stack: LiveStack) -> set[str]:
    return {str(item["connectionId"]) for item in stack.runtime.items("ConnectionsTable")}


def test_speaker_and_listeners_receive_in_order(stack: LiveStack) -> None:
    clients = Clients(stack)

    async def scenario() -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
        speaker, _ = await clients.open("in-order", "speaker", clients.speaker_token())
        listeners = [(await clients.open("in-order"))[0] for _ in range(3)]
        acks = []
        for n in range(1, 6):
            await speaker.send(message("in-order", n))
            acks.extend(await frames(speaker, 1))
        received = [await frames(listener, 5) for listener in listeners]
        for client in (speaker, *listeners):
            await client.close()
        return acks, received

    acks, received = run(scenario())

    assert [a["type"] for a in acks] == ["ack"] * 5
    assert all(a["recipients"]["delivered"] == 3 for a in acks)
    for inbox in received:
        assert [m["body"]["n"] for m in inbox] == [1, 2, 3, 4, 5]
        assert {m["type"] for m in inbox} == {"message"}


def test_a_speaker_reaches_200_listeners(stack: LiveStack) -> None:
    clients = Clients(stack)

    async def scenario() -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
        speaker, _ = await clients.open("crowd", "speaker", clients.speaker_token())
        gate = asyncio.Semaphore(25)

        async def listener() -> ClientConnection:
            async with gate:
                return await connect(f"{clients.url}/?role=listener&tenant=acme&session=crowd", open_timeout=120)

        listeners = await asyncio.gather(*(listener() for _ in range(200)))
        await speaker.send(message("crowd", 1))
        (ack,) = await frames(speaker, 1, timeout=60)
        received = await asyncio.gather(*(frames(client, 1, timeout=60) for client in listeners))
        await asyncio.gather(*(client.close() for client in (speaker, *listeners)))
        return ack, received

    ack, received = run(scenario())

    assert ack["recipients"]["delivered"] == 200
    assert all(inbox[0]["body"] == {"n": 1} for inbox in received)


def test_an_abrupt_close_runs_disconnect_and_cleanup(stack: LiveStack) -> None:
    clients = Clients(stack)

    async def scenario() -> str:
        client, connection_id = await clients.open("abrupt")
        assert wait_until(lambda: connection_id in connection_items(stack))
        client.transport.abort()  # no close frame: the TCP connection just goes
        return connection_id

    connection_id = run(scenario())

    assert wait_until(lambda: connection_id not in connection_items(stack), timeout=20)
    found = stack.runtime.connections.find(connection_id)
    assert found is not None
    assert not found.open
    invocations = stack.runtime.functions["DisconnectFunction"].invocations
    assert not invocations[-1].errored


def test_the_disconnect_event_is_api_gateways(stack: LiveStack) -> None:
    clients = Clients(stack)
    seen: list[dict[str, Any]] = []
    function = stack.runtime.functions["DisconnectFunction"]
    original = function.invoke

    def spy(event: Any) -> Any:
        seen.append(event)
        return original(event)

    function.invoke = spy  # type: ignore[method-assign]
    try:

        async def scenario() -> str:
            client, connection_id = await clients.open("events")
            await client.close(4000, "bye")
            return connection_id

        connection_id = run(scenario())
        assert wait_until(lambda: bool(seen))
    finally:
        del function.invoke
    context = seen[0]["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["eventType"] == "DISCONNECT"
    assert context["connectionId"] == connection_id
    assert context["disconnectStatusCode"] == 4000
    assert context["disconnectReason"] == "bye"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["stage"] == "prod"
    assert context["requestTimeEpoch"] >= context["connectedAt"]


def test_the_sweeper_closes_an_idle_listener_with_a_connection_timeout_frame(stack: LiveStack) -> None:
    clients = Clients(stack)

    async def scenario() -> tuple[list[dict[str, Any]], int | None, str]:
        client, connection_id = await clients.open("idle")
        stack.speed = 300  # the template's 120 s timeout and 60 s sweep pass in about a second
        frame = await frames(client, 1, timeout=30)
        return frame, await close_code(client), connection_id

    (frame,), code, connection_id = run(scenario())

    assert frame["type"] == "connectionTimeout"
    assert code == 1001
    assert wait_until(lambda: connection_id not in connection_items(stack), timeout=20)


def test_the_gateway_closes_a_connection_idle_past_its_own_timeout(stack: LiveStack) -> None:
    assert stack.gateway is not None
    limits = stack.gateway.limits
    stack.gateway.limits = dataclasses.replace(limits, idle_seconds=30)
    clients = Clients(stack)
    try:

        async def scenario() -> int | None:
            client, _ = await clients.open("gateway-idle")
            stack.advance(31)
            return await close_code(client)

        assert run(scenario()) == 1001
    finally:
        stack.gateway.limits = limits


def test_an_api_gateway_outage_parks_messages_and_a_ping_redelivers(
    stack: LiveStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert stack.up_file is not None
    monkeypatch.chdir(stack.up_file.parent.parent)  # where `bw up` wrote .bw/up.json
    cli = CliRunner()
    clients = Clients(stack)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        speaker, _ = await clients.open("outage", "speaker", clients.speaker_token())
        listener, listener_id = await clients.open("outage")
        await speaker.send(message("outage", 1))
        await frames(speaker, 1)
        delivered = await frames(listener, 1)
        rules = tmp_path / "outage.yaml"
        rules.write_text(
            "faults:\n"
            "  - name: api-gateway-outage\n"
            "    service: apigatewaymanagementapi\n"
            "    operation: PostToConnection\n"
            f"    resource: '{listener_id}'\n"
            "    error: InternalServerError\n"
            "    status: 500\n",
            encoding="utf-8",
        )
        added = cli.invoke(app, ["fault", "add", str(rules)], catch_exceptions=False)
        assert added.exit_code == 0, added.output
        acks = []
        for n in (2, 3):
            await speaker.send(message("outage", n))
            acks.extend(await frames(speaker, 1))
        listed = cli.invoke(app, ["fault", "list", "--json"], catch_exceptions=False)
        assert json.loads(listed.stdout)[0]["fired"] >= 2
        assert cli.invoke(app, ["fault", "clear"], catch_exceptions=False).exit_code == 0
        assert not stack.runtime.faults.rules
        stack.advance(16)
        await listener.send(json.dumps({"action": "ping"}))
        redelivered = await frames(listener, 2)
        await speaker.close()
        await listener.close()
        return delivered + redelivered, acks

    inbox, acks = run(scenario())

    assert [ack.get("recipients", ack)["parked"] for ack in acks] == [1, 1], acks
    assert [m["body"]["n"] for m in inbox] == [1, 2, 3]


def test_a_frame_over_32_kb_closes_with_1009(stack: LiveStack) -> None:
    clients = Clients(stack)

    async def scenario() -> tuple[int | None, int | None, bool]:
        one, _ = await clients.open("sizes")
        await one.send("x" * (32 * 1024 + 1))
        frame_code = await close_code(one)
        two, _ = await clients.open("sizes")
        await two.send(iter(["y" * 30_000] * 5))  # 5 frames under 32 KB, 150 KB in all
        message_code = await close_code(two)
        three, _ = await clients.open("sizes")
        await three.send(iter(["z" * 30_000] * 4))  # 120 KB in 4 frames: within both limits
        pong = await three.ping()
        await asyncio.wait_for(pong, 10)
        alive = three.close_code is None
        await three.close()
        return frame_code, message_code, alive

    frame_code, message_code, alive = run(scenario())

    assert frame_code == 1009
    assert message_code == 1009
    assert alive


def test_a_speaker_without_a_token_is_refused_the_upgrade(stack: LiveStack) -> None:
    clients = Clients(stack)

    async def scenario() -> int:
        try:
            await clients.open("refused", "speaker")
        except InvalidStatus as refused:
            return refused.response.status_code
        raise AssertionError("the upgrade was accepted")

    assert run(scenario()) == 401
    assert stack.gateway is not None
    assert not stack.gateway.open_connections()


def test_the_management_api_reaches_the_socket(stack: LiveStack) -> None:
    endpoint = stack.runtime.template.function("SendMessageFunction").environment["BW_WEBSOCKET_ENDPOINT"]
    api = stack.runtime.management_api(str(endpoint))
    clients = Clients(stack)

    async def scenario() -> tuple[Any, dict[str, Any], int | None, str]:
        client, connection_id = await clients.open("management")
        api.post_to_connection(ConnectionId=connection_id, Data=b'{"hello": "there"}')
        got = json.loads(await asyncio.wait_for(client.recv(), 10))
        described = api.get_connection(ConnectionId=connection_id)
        with pytest.raises(api.exceptions.PayloadTooLargeException):
            api.post_to_connection(ConnectionId=connection_id, Data=b"x" * (128 * 1024 + 1))
        other_stage = stack.runtime.management_api(str(endpoint).rsplit("/", 1)[0] + "/staging")
        with pytest.raises(other_stage.exceptions.ForbiddenException) as refused:
            other_stage.post_to_connection(ConnectionId=connection_id, Data=b"wrong stage")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        api.delete_connection(ConnectionId=connection_id)
        return got, described, await close_code(client), connection_id

    got, described, code, connection_id = run(scenario())

    assert got == {"hello": "there"}
    assert described["Identity"]["SourceIp"] == "127.0.0.1"
    assert code == 1001
    with pytest.raises(api.exceptions.GoneException):
        api.post_to_connection(ConnectionId=connection_id, Data=b"late")
    assert wait_until(lambda: connection_id not in connection_items(stack), timeout=20)


def test_the_http_api_serves_health(stack: LiveStack) -> None:
    assert stack.http is not None
    for path in ("/health", "/prod/health"):
        with urllib.request.urlopen(stack.http.url + path, timeout=30) as response:
            assert response.status == 200
            assert json.loads(response.read())["status"] == "healthy"


def test_up_json_names_every_endpoint(stack: LiveStack) -> None:
    assert stack.up_file is not None
    written = json.loads(stack.up_file.read_text(encoding="utf-8"))
    assert written["websocket"].startswith("ws://127.0.0.1:")
    assert written["http"].startswith("http://127.0.0.1:")
    assert written["control"].startswith("http://127.0.0.1:")


def test_outside_tools_reach_the_stack_through_the_aws_endpoint(stack: LiveStack) -> None:
    import boto3

    assert "aws" in stack.endpoints()
    outside = boto3.client("dynamodb", endpoint_url=stack.endpoints()["aws"], region_name="us-east-1")
    assert "ConnectionsTable" in outside.list_tables()["TableNames"]
    stack.runtime.faults.add({"service": "dynamodb", "operation": "Scan", "error": "InternalServerError"})
    with pytest.raises(outside.exceptions.InternalServerError):
        outside.scan(TableName="ConnectionsTable")


def test_the_clock_endpoint_answers_the_stack_s_present(stack: LiveStack) -> None:
    """`POST /clock` says where the stack's clock is (each request runs on a thread of its own,
    whose timeline is not the stack's)."""
    import urllib.request

    def clock(body: dict[str, Any]) -> float:
        request = urllib.request.Request(
            f"{stack.endpoints()['control']}/clock", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return float(json.loads(answer.read())["now"])

    before = clock({})
    assert clock({"advance": 100}) - before >= 100
