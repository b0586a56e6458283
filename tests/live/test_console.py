"""The console of ``bw up``: its JSON API, and the page in a real headless Chromium.

The API tests drive a live stack in-process with real WebSocket clients. The
browser test starts Chromium with its DevTools endpoint and drives the page
over the Chrome DevTools Protocol (the ``websockets`` client the other live
tests use): it watches an execution appear as a message is sent, then clicks
Reset on a forced-open breaker. Chromium is the Debian package (``make
browser``); without it the test fails rather than skips.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from local_runtime import LocalRuntime, logs
from local_runtime.clock import real_monotonic
from local_runtime.console import RecentOutput
from local_runtime.live import LiveStack, wait_until
from tests.chromium import HEADLESS_FLAGS
from tests.live.test_live_stack import PARAMETERS, ROOT, Clients, frames, message, run

CHROMIUM = "/usr/bin/chromium"
BREAKER = "apigateway.postToConnection"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    home = tmp_path_factory.mktemp("console")
    runtime = LocalRuntime(ROOT / "template.yaml", parameters=PARAMETERS, data=ROOT / "events" / "local_data.yaml")
    stack = LiveStack(runtime, up_file=home / ".bw" / "up.json").start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack(live: LiveStack) -> Iterator[LiveStack]:
    yield live
    live.reset()


def console_url(stack: LiveStack) -> str:
    return stack.endpoints()["console"]


def get(stack: LiveStack, path: str) -> Any:
    with urllib.request.urlopen(console_url(stack) + path, timeout=30) as response:
        return json.load(response)


def post(stack: LiveStack, path: str) -> Any:
    request = urllib.request.Request(console_url(stack) + path, method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


async def sending(stack: LiveStack, session: str, body: Any) -> dict[str, Any]:
    """A speaker sends one message to one listener; the speaker's ack."""
    clients = Clients(stack)
    speaker, _ = await clients.open(session, "speaker", clients.speaker_token())
    listener, _ = await clients.open(session)
    await speaker.send(json.dumps({**json.loads(message(session, 1)), "body": body}))
    (ack,) = await frames(speaker, 1)
    await frames(listener, 1)
    await speaker.close()
    await listener.close()
    return ack


def send_one(stack: LiveStack, session: str, body: Any) -> dict[str, Any]:
    return run(sending(stack, session, body))


def breaker_state(stack: LiveStack, name: str) -> tuple[str, bool] | None:
    for item in stack.runtime.items("BreakersTable"):
        if item["name"] == name:
            return str(item["state"]), bool(item.get("forced", False))
    return None


def test_recent_output_keeps_a_function_s_lines_and_emf() -> None:
    terminal = io.StringIO()
    recent = RecentOutput(lambda: ["SendMessageFunction"], lambda: 5.0)
    emf = {
        "_aws": {
            "CloudWatchMetrics": [
                {
                    "Namespace": "Breakwater",
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": "MessagesAccepted", "Unit": "Count"}],
                }
            ]
        },
        "service": "breakwater",
        "MessagesAccepted": [1.0],
    }
    with redirect_stdout(terminal), logs.listening(logs.Sink(recent.keep)):
        print("outside any function")
        with logs.running("SendMessageFunction"):
            print('{"level": "INFO", "message": "<b>hi</b>"}')
            print(json.dumps(emf))
        with logs.running("OtherStacksFunction"):
            print("not a function of this stack")

    assert terminal.getvalue().count("\n") == 4
    assert [entry["line"] for entry in recent.recent_lines("SendMessageFunction")] == [
        '{"level": "INFO", "message": "<b>hi</b>"}',
        json.dumps(emf),
    ]
    assert recent.counts() == {"SendMessageFunction": 2}
    (metric,) = recent.recent_metrics()
    assert metric == {
        "function": "SendMessageFunction",
        "at": 5.0,
        "namespace": "Breakwater",
        "dimensions": {"service": "breakwater"},
        "metrics": {"MessagesAccepted": {"value": [1.0], "unit": "Count"}},
    }


def test_a_stopped_console_leaves_stdout_as_it_found_it(tmp_path: Path) -> None:
    """Also when the stack fails to start: nothing of the console outlives it."""
    before = sys.stdout, sys.stderr
    runtime = LocalRuntime(ROOT / "template.yaml", parameters=PARAMETERS, data=ROOT / "events" / "local_data.yaml")
    stack = LiveStack(runtime, up_file=tmp_path / ".bw" / "up.json", console_port=-1)  # the last part to start
    with pytest.raises(OverflowError):
        stack.start()
    assert stack.endpoints() == {}
    with logs.running("SendMessageFunction"):  # no sink of that console still listens
        assert (sys.stdout, sys.stderr) == before


def test_up_json_and_endpoints_name_the_console(stack: LiveStack) -> None:
    assert stack.up_file is not None
    written = json.loads(stack.up_file.read_text(encoding="utf-8"))
    assert written["console"].startswith("http://127.0.0.1:")
    with urllib.request.urlopen(written["console"] + "/", timeout=30) as response:
        page = response.read().decode("utf-8")
    assert "breakwater console" in page
    assert "http://" not in page.replace("http://127.0.0.1", "")  # self-contained: no CDN, no external resource


def test_a_sent_message_shows_its_deliver_message_run(stack: LiveStack) -> None:
    ack = send_one(stack, "console-api", {"text": "<img src=x onerror=alert(1)>"})

    listed = get(stack, "/api/executions")["executions"]
    runs = [e for e in listed if e["machine"] == "DeliverMessage" and e["name"] == ack["messageId"]]
    assert runs
    assert runs[0]["status"] == "SUCCEEDED"
    detail = get(stack, f"/api/executions/{ack['messageId']}")
    types = [e["type"] for e in detail["events"]]
    assert types[0] == "ExecutionStarted"
    assert types[-1] == "ExecutionSucceeded"
    assert detail["iterations"], "DeliverMessage maps over recipient batches"
    assert all(row["iteration"] for row in detail["iterations"])
    with urllib.request.urlopen(f"{console_url(stack)}/executions/{ack['messageId']}.html", timeout=30) as response:
        trace = response.read().decode("utf-8")
    assert 'data-state="Deliver batch"' in trace
    # The body is data: never in the markup, a JSON string in the page's data block only.
    markup, _, data = trace.partition('<script type="application/json" id="trace-data">')
    assert "<img src=x" not in markup
    assert "<img src=x" in data.split("</script>", 1)[0]

    # The handler posts the ack, then returns: its EMF document is flushed as it returns.
    def accepted() -> bool:
        metrics = get(stack, "/api/metrics")["metrics"]
        return any(m["function"] == "SendMessageFunction" and "MessagesAccepted" in m["metrics"] for m in metrics)

    assert wait_until(accepted, timeout=60)
    assert get(stack, "/api/logs")["functions"]["SendMessageFunction"] >= 1
    lines = get(stack, "/api/logs/SendMessageFunction")["lines"]
    assert any("MessagesAccepted" in line["line"] for line in lines)


def test_force_open_then_reset_a_breaker(stack: LiveStack) -> None:
    send_one(stack, "console-breaker", {"n": 1})  # the breaker gets its record

    opened = post(stack, f"/api/breakers/{BREAKER}/force-open")
    assert opened["state"] == "OPEN"
    assert opened["forced"]
    assert breaker_state(stack, BREAKER) == ("OPEN", True)
    assert {b["name"]: b["state"] for b in get(stack, "/api/breakers")["breakers"]}[BREAKER] == "OPEN"

    closed = post(stack, f"/api/breakers/{BREAKER}/reset")
    assert closed["state"] == "CLOSED"
    assert not closed["forced"]
    assert breaker_state(stack, BREAKER) == ("CLOSED", False)


def test_a_breaker_forced_open_from_the_console_opens_at_the_stack_s_present(stack: LiveStack) -> None:
    """The page's requests run on threads of their own: the breaker reads the stack's clock,
    not the timeline the console's server thread stopped at when the stack started."""
    from datetime import datetime

    stack.advance(3600)

    opened = post(stack, f"/api/breakers/{BREAKER}/force-open")
    try:
        at = datetime.fromisoformat(opened["openedAt"].replace("Z", "+00:00")).timestamp()
        with stack.runtime.clock.main_timeline():
            now = stack.runtime.clock.now()
        assert now - 5 <= at <= now
    finally:
        post(stack, f"/api/breakers/{BREAKER}/reset")


def test_connections_and_outbox(stack: LiveStack) -> None:
    clients = Clients(stack)

    def listed(connection_id: str) -> bool:
        return any(i["connectionId"] == connection_id for i in get(stack, "/api/connections")["table"])

    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        client, connection_id = await clients.open("console-connections")
        assert wait_until(lambda: listed(connection_id))
        registry = get(stack, "/api/connections")["registry"]
        await client.close()
        return connection_id, registry

    connection_id, registry = run(scenario())

    assert any(c["connectionId"] == connection_id and c["open"] for c in registry)
    assert get(stack, "/api/outbox") == {"items": []}


def test_unknown_paths_are_404(stack: LiveStack) -> None:
    for path in ("/api/nothing", "/api/executions/no-such-run", "/executions/no-such-run.html"):
        with pytest.raises(urllib.error.HTTPError) as raised:
            get(stack, path)
        assert raised.value.code == 404


# -- the page in Chromium -------------------------------------------------------------------------
class DevTools:
    """The least of the Chrome DevTools Protocol: navigate, evaluate, wait for an expression."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> Any:
        call_id = next(self._ids)
        await self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await asyncio.wait_for(self.socket.recv(), 30))
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = real_monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if real_monotonic() > deadline:
                raise AssertionError(f"still false after {timeout}s: {expression}")
            await asyncio.sleep(0.1)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[str]:
    """A headless Chromium with its DevTools endpoint; the page target's WebSocket URL."""
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    assert found, "Chromium is not installed: `make browser` (apt-get install chromium)"
    profile = tmp_path / "profile"
    process = subprocess.Popen(
        [
            found,
            *HEADLESS_FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        assert wait_until(port_file.exists, timeout=60), "Chromium did not open its DevTools port"
        assert wait_until(lambda: len(port_file.read_text().split()) >= 2, timeout=10)
        port = port_file.read_text().split()[0]
        targets: list[dict[str, Any]] = []

        def page_target() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                targets[:] = [t for t in json.load(response) if t.get("type") == "page"]
            return bool(targets)

        assert wait_until(page_target, timeout=30)
        yield str(targets[0]["webSocketDebuggerUrl"])
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.browser
def test_the_page_shows_a_live_execution_and_resets_a_breaker(stack: LiveStack, chromium: str) -> None:
    url = console_url(stack)
    row = "document.querySelector('tr[data-execution=\"{}\"]')"
    selector = f'tr[data-breaker="{BREAKER}"] [data-state]'

    async def scenario() -> None:
        async with connect(chromium, max_size=None, open_timeout=30) as socket:
            page = DevTools(socket)
            await page.call("Page.navigate", url=url + "/")
            await page.wait_for("document.readyState === 'complete' && !!document.querySelector('#executions-list')")
            shown = "[...document.querySelectorAll('tr[data-execution]')].map(r => r.dataset.execution)"
            before = set(await page.evaluate(shown))

            ack = await sending(stack, "console-browser", {"text": "<b>not bold</b>"})
            name = ack["messageId"]
            assert name not in before
            # The page polls: the run appears without a reload; picked, it shows its trace and events.
            assert await page.wait_for(f"{row.format(name)}?.dataset.status") in ("RUNNING", "SUCCEEDED")
            await page.wait_for(f"{row.format(name)}?.dataset.status === 'SUCCEEDED'")
            await page.evaluate(f"{row.format(name)}.click()")
            await page.wait_for(f"document.querySelector('#execution-title').textContent.includes('{name}')")
            await page.wait_for("document.querySelector('#events').textContent.includes('ExecutionSucceeded')")
            await page.wait_for("document.querySelector('#iterations tbody tr') !== null")
            assert await page.evaluate("document.querySelector('#trace').getAttribute('src')") == (
                f"/executions/{name}.html"
            )
            await page.wait_for("document.querySelector('#trace').contentDocument === null")  # sandboxed frame
            # Message bodies are text, never markup.
            assert not await page.evaluate("document.querySelector('#events b, #iterations b') !== null")

            post(stack, f"/api/breakers/{BREAKER}/force-open")
            await page.evaluate("document.querySelector('nav button[data-tab=breakers]').click()")
            assert await page.wait_for(f"document.querySelector('{selector}')?.dataset.state === 'OPEN'")
            await page.evaluate(f"document.querySelector('button.reset[data-breaker=\"{BREAKER}\"]').click()")
            assert await page.wait_for(f"document.querySelector('{selector}')?.dataset.state === 'CLOSED'")

            # Recent metrics and logs per function.
            await page.evaluate("document.querySelector('nav button[data-tab=metrics]').click()")
            await page.wait_for("document.querySelector('#metrics-list').textContent.includes('MessagesAccepted')")
            await page.evaluate("document.querySelector('nav button[data-tab=logs]').click()")
            await page.wait_for("document.querySelector('#log-function').options.length > 0")
            await page.evaluate(
                "const s = document.querySelector('#log-function'); s.value = 'SendMessageFunction';"
                "s.dispatchEvent(new Event('change'))"
            )
            await page.wait_for("document.querySelector('#log-lines').textContent.includes('MessagesAccepted')")

    run(scenario())
    assert breaker_state(stack, BREAKER) == ("CLOSED", False)
