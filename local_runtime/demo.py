"""`bw demo`, part two: a WebSocket session rides out an API Gateway outage.

The real template: a speaker and three listeners; API Gateway starts failing,
the shared breaker opens, messages are parked in the Outbox instead of lost;
API Gateway recovers, the breaker lets one probe through and closes, and each
listener's next ping drains its Outbox in order. All in virtual time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from local_runtime.runtime import ExecutionResult, LocalRuntime
from local_runtime.sessions import join_session

__all__ = ["delivery_demo"]

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
SPEAKER, SESSION = "Speaker0=", "town-hall"
LISTENERS = ("Ana=", "Ben=", "Chi=")


def _join(runtime: LocalRuntime) -> None:
    members = [(SPEAKER, "speaker", "host"), *((listener, "listener", "anonymous") for listener in LISTENERS)]
    join_session(runtime, SESSION, members)


def _send(runtime: LocalRuntime, n: int) -> dict[str, Any]:
    client_message_id = f"{n:08x}-0000-4000-8000-000000000000"
    frame = {"action": "sendMessage", "sessionId": SESSION, "clientMessageId": client_message_id, "body": {"n": n}}
    event = {
        "requestContext": {"routeKey": "sendMessage", "connectionId": SPEAKER, "requestId": f"demo-{n}"},
        "headers": {"x-correlation-id": f"demo-message-{n}"},
        "body": json.dumps(frame),
    }
    runtime.invoke("SendMessageFunction", event)
    answers = [m for m in runtime.connections.received(SPEAKER) if isinstance(m, dict)]
    return answers[-1]


def _ping(runtime: LocalRuntime, connection_id: str) -> None:
    event = {
        "requestContext": {"routeKey": "$default", "connectionId": connection_id, "requestId": "ping"},
        "body": json.dumps({"action": "ping"}),
    }
    runtime.invoke("DefaultRouteFunction", event)


def _inboxes(runtime: LocalRuntime, console: Console, title: str) -> None:
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("Listener")
    table.add_column("Messages received (n, in order)")
    table.add_column("Parked in Outbox")
    parked = runtime.items("OutboxTable")
    for listener in LISTENERS:
        got = [m["body"]["n"] for m in runtime.connections.received(listener) if isinstance(m, dict)]
        waiting = sum(1 for item in parked if item["connectionId"] == listener)
        table.add_row(listener, ", ".join(map(str, got)) or "-", str(waiting))
    console.print(table)


def _breaker(runtime: LocalRuntime) -> str:
    states = {item["name"]: item["state"] for item in runtime.items("BreakersTable")}
    return str(states.get("apigateway.postToConnection", "CLOSED"))


def _last_delivery(runtime: LocalRuntime) -> ExecutionResult | None:
    arn = runtime.template.state_machine("DeliverMessage").arn
    for machine in runtime._backend().state_machines:
        if machine.arn == arn and machine.executions:
            execution = machine.executions[-1]
            return runtime.describe_sync(execution)
    return None


def delivery_demo(console: Console, html: Path | None = None) -> bool:
    with LocalRuntime(TEMPLATE, seed=7) as runtime:
        _join(runtime)
        console.print(f"Session [bold]{SESSION}[/]: speaker {SPEAKER} and listeners {', '.join(LISTENERS)}.")
        ack = _send(runtime, 1)
        console.print(f"message 1 → ack {ack['recipients']}")
        outage = {"name": "api-gateway-outage", "service": "apigatewaymanagementapi", "resource": "[ABC]*"}
        runtime.faults.add({**outage, "error": "InternalServerError", "status": 500})
        console.print("[red]API Gateway starts failing (500) for every listener.[/]")
        for n in (2, 3):
            ack = _send(runtime, n)
            console.print(f"message {n} → ack {ack['recipients']}  breaker: [bold]{_breaker(runtime)}[/]")
        outage_run = _last_delivery(runtime)
        _inboxes(runtime, console, "During the outage: nothing lost, everything parked")
        runtime.faults.clear()
        runtime.clock.advance(16)
        console.print("[green]API Gateway recovers[/]; 16 s later each listener pings (activity + redelivery).")
        for listener in LISTENERS:
            _ping(runtime, listener)
        _inboxes(runtime, console, f"After recovery: breaker {_breaker(runtime)}, Outbox drained in order")
        if outage_run is not None:
            console.print("DeliverMessage during the outage (message 3):")
            outage_run.trace().render(console)
            if html is not None:
                from local_runtime.html import render_html

                html.write_text(render_html(outage_run.trace()), encoding="utf-8")
                console.print(f"HTML trace: [bold]{html}[/]")
        delivered = all(
            [m["body"]["n"] for m in runtime.connections.received(listener) if isinstance(m, dict)] == [1, 2, 3]
            for listener in LISTENERS
        )
        return delivered and _breaker(runtime) == "CLOSED" and not runtime.items("OutboxTable")


def _connect(runtime: LocalRuntime, connection_id: str, role: str, token: str | None) -> tuple[int, str]:
    headers = {"x-correlation-id": f"demo-{connection_id}"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    event = {
        "requestContext": {"routeKey": "$connect", "connectionId": connection_id, "requestId": f"demo-{connection_id}"},
        "headers": headers,
        "queryStringParameters": {"role": role, "tenant": "acme", "session": SESSION},
    }
    answer = runtime.invoke("ConnectFunction", event).payload
    if answer["statusCode"] == 200:
        runtime.connections.connect(connection_id)
        return 200, "admitted"
    return int(answer["statusCode"]), str(json.loads(answer["body"])["error"]["code"])


def admission_demo(console: Console) -> bool:
    """A Cognito outage: speakers are refused (503), anonymous listeners still get in (seed 002)."""
    data = TEMPLATE.parent / "events" / "local_data.yaml"
    with LocalRuntime(TEMPLATE, seed=7, data=data) as runtime:
        outage = {"name": "cognito-down", "service": "cognito-idp", "error": "InternalErrorException", "status": 500}
        runtime.faults.add(outage)
        console.print("[red]Cognito is down[/] (its JWKS cannot be fetched); clients connect to session town-hall.")
        table = Table(title="$connect during the outage", title_justify="left", header_style="bold")
        for column in ("Client", "Role", "Token", "Status", "Code"):
            table.add_column(column)
        attempts = [("Spk1=", "speaker", runtime.cognito_token()), ("Ana=", "listener", None)]
        during = [(cid, role, token, *_connect(runtime, cid, role, token)) for cid, role, token in attempts]
        for cid, role, token, status, code in during:
            table.add_row(cid, role, "Cognito" if token else "-", str(status), code)
        console.print(table)
        refused = runtime.run(
            "AuthorizeConnection",
            {
                "connectionId": "Spk2=",
                "role": "speaker",
                "tenantHint": "acme",
                "sessionId": SESSION,
                "token": runtime.cognito_token(),
                "sourceIp": "203.0.113.10",
                "correlationId": "demo-refused-speaker",
                "connectedAt": int(runtime.clock.now() * 1000),
                "expiresAt": int(runtime.clock.now()) + 10_800,
                "idleShard": "0",
            },
        )
        console.print("AuthorizeConnection for a speaker during the outage:")
        refused.trace().render(console)
        runtime.faults.clear()
        runtime.clock.advance(61)
        status, code = _connect(runtime, "Spk3=", "speaker", runtime.cognito_token())
        console.print(f"[green]Cognito recovers[/]; a minute later a speaker connects: {status} {code}.")
        ok = [status for *_, status, _ in during] == [503, 200] and status == 200
        return ok and refused.output["code"] == "SERVICE_UNAVAILABLE"


def idle_demo(console: Console) -> bool:
    """An idle listener is told, then closed, by the scheduled sweep; an active one is left alone."""
    data = TEMPLATE.parent / "events" / "local_data.yaml"
    with LocalRuntime(TEMPLATE, seed=7, data=data) as runtime:
        for listener in ("Idle=", "Busy="):
            _connect(runtime, listener, "listener", None)
        console.print("Two listeners connect; [bold]Busy=[/] pings every 50 s, [bold]Idle=[/] says nothing.")
        for _ in range(3):
            runtime.advance(50)
            _ping(runtime, "Busy=")
        sweeps = [fired for fired in runtime.advance(40) if isinstance(fired, ExecutionResult)]
        table = Table(title="After 190 s and three scheduled sweeps", title_justify="left", header_style="bold")
        for column in ("Listener", "Open", "Frames received"):
            table.add_column(column)
        for listener in ("Idle=", "Busy="):
            found = runtime.connections.find(listener)
            frames = [str(m.get("type")) for m in runtime.connections.received(listener) if isinstance(m, dict)]
            table.add_row(listener, "yes" if found and found.open else "no", ", ".join(frames) or "-")
        console.print(table)
        closing = next((s for s in sweeps if "Close the connection" in [r.name for r in s.trace().rows]), None)
        if closing is None:
            closing = next(
                (s for s in _sweeps(runtime) if "Close the connection" in [r.name for r in s.trace().rows]), None
            )
        if closing is not None:
            console.print("The IdleSweep execution that closed it:")
            closing.trace().render(console)
        idle, busy = runtime.connections.find("Idle="), runtime.connections.find("Busy=")
        return bool(idle and not idle.open and busy and busy.open and closing is not None)


def _sweeps(runtime: LocalRuntime) -> list[ExecutionResult]:
    arn = runtime.template.state_machine("IdleSweep").arn
    executions = runtime.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]
    return [runtime.wait(execution["executionArn"]) for execution in executions]
