"""The whole template, live on 127.0.0.1 until stopped: what ``bw up`` runs.

One strict :class:`LocalRuntime` (IAM, limits, faults, traces as ``bw run``)
behind real sockets:

* the WebSocket API (:mod:`local_runtime.gateway`),
* the HTTP API routes (:mod:`local_runtime.http_api`),
* schedules in real time: a ticker moves the virtual clock with the wall clock
  times ``speed`` and fires what falls due (``runtime.advance``); at ``speed`` > 1 a
  function in a container still reads the wall clock (``time.time()``, its SDK's
  timeouts, the Timeout the runtime enforces for it): only the stack's clock runs ahead,
* a control endpoint for ``bw fault add|list|clear`` against the running stack,
* optionally moto's own server (``"aws"``) on the same backends, for outside tools
  (:mod:`local_runtime.aws_endpoint`: fault rules apply, IAM does not),
* the console (``"console"``, :mod:`local_runtime.console`): executions with their
  traces, breakers, connections, Outbox, metrics and logs, in a local web page,
* optionally (``containers=True``, ``bw up --containers``) every function in a real
  Lambda container (:mod:`local_runtime.lambda_containers`; ``"lambda"``: SAM's
  Invoke API), calling the stack through the ``aws`` endpoint with its own role.

Its endpoints are written to ``.bw/up.json`` while it runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from local_runtime.clock import real_monotonic, real_sleep
from local_runtime.console import Console
from local_runtime.faults import FaultRule, load_fault_rules
from local_runtime.gateway import GatewayLimits, WebSocketGateway
from local_runtime.http_api import HttpApiServer
from local_runtime.leftovers import CONTAINERS_DIR
from local_runtime.runtime import LocalRuntime
from local_runtime.seams import forget_finished_threads

__all__ = ["UP_FILE", "LiveStack", "fault_rule_json", "wait_until"]

UP_FILE = Path(".bw") / "up.json"
_log = logging.getLogger("bw.live")


def fault_rule_json(rule: FaultRule, fired: int) -> dict[str, Any]:
    """A rule as ``bw fault list`` shows it (the rule file's fields, plus how often it fired)."""
    data: dict[str, Any] = {}
    for spec in dataclasses.fields(rule):
        value = getattr(rule, spec.name)
        if spec.name == "service" or (spec.name != "before" and value != spec.default):
            data[spec.name] = value
    data["fired"] = fired
    return data


class LiveStack:
    """``runtime`` served live; :meth:`start` / :meth:`stop` (or ``with``)."""

    def __init__(
        self,
        runtime: LocalRuntime,
        *,
        host: str = "127.0.0.1",
        websocket_port: int = 0,
        http_port: int = 0,
        control_port: int = 0,
        aws_port: int | None = None,
        console_port: int | None = 0,
        speed: float = 1.0,
        limits: GatewayLimits | None = None,
        tick: float = 0.05,
        up_file: Path | None = None,
        containers: bool = False,
        containers_dir: Path = CONTAINERS_DIR,
        containers_build: tuple[Path, Path] | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.runtime = runtime
        self.host = host
        self._ports = {"websocket": websocket_port, "http": http_port, "control": control_port}
        # The containers reach the stack through the aws endpoint: it runs whenever they do.
        self._aws_port = 0 if containers and aws_port is None else aws_port
        self._containers_wanted = containers
        self._containers_dir = containers_dir
        self._containers_build = containers_build
        self.containers: Any = None
        self.console: Console | None = Console(self, host=host, port=console_port) if console_port is not None else None
        self._speed = float(speed)
        self._limits = limits
        self._tick = tick
        self.up_file = up_file
        self.gateway: WebSocketGateway | None = None
        self.http: HttpApiServer | None = None
        self._control: ThreadingHTTPServer | None = None
        self._moto: Any = None
        self._ticker: threading.Thread | None = None
        self._stop_ticking = threading.Event()
        #: Held while the clock moves (ticker, advance, speed changes).
        self._clock_lock = threading.Lock()
        self._anchor = (0.0, 0.0)  # (real monotonic, virtual now)
        #: Real seconds: the whole start, and the runtime's part of it (moto, provisioning).
        self.started_in: float | None = None
        self.runtime_started_in: float | None = None
        self.ticker_errors: list[BaseException] = []

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> LiveStack:
        began = real_monotonic()
        self.runtime.start()
        self.runtime_started_in = real_monotonic() - began
        try:
            self.gateway = WebSocketGateway(
                self.runtime, host=self.host, port=self._ports["websocket"], limits=self._limits
            ).start()
            self.http = HttpApiServer(self.runtime, host=self.host, port=self._ports["http"]).start()
            self._control = ThreadingHTTPServer((self.host, self._ports["control"]), _control_handler(self))
            self._control.daemon_threads = True
            threading.Thread(target=self._control.serve_forever, args=(0.1,), name="bw-control", daemon=True).start()
            if self._aws_port is not None:
                self._start_moto_server(self._aws_port)
            if self._containers_wanted:
                from local_runtime.lambda_containers import LambdaContainers

                self.containers = LambdaContainers(
                    self.runtime, self._moto, work=self._containers_dir, host=self.host, build=self._containers_build
                )
                self.containers.start()
            if self.console is not None:
                self.console.start()
            self._reanchor()
            self._stop_ticking.clear()
            self._ticker = threading.Thread(target=self._tick_forever, name="bw-ticker", daemon=True)
            self._ticker.start()
        except BaseException:
            self.stop()
            raise
        self.started_in = real_monotonic() - began
        if self.up_file is not None:
            self.up_file.parent.mkdir(parents=True, exist_ok=True)
            self.up_file.write_text(json.dumps(self.endpoints(), indent=1) + "\n", encoding="utf-8")
        return self

    def stop(self) -> None:
        """Close every socket (each WebSocket runs $disconnect), every port, then the runtime."""
        self._stop_ticking.set()
        if self._ticker is not None:
            self._ticker.join(30)
            self._ticker = None
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self._control is not None:
            self._control.shutdown()
            self._control.server_close()
            self._control = None
        # After the gateway: its $disconnects ran in the containers.
        if self.containers is not None:
            self.containers.stop()
            self.containers = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self.console is not None:
            self.console.stop()
        self.runtime.stop()
        if self.up_file is not None:
            self.up_file.unlink(missing_ok=True)

    def __enter__(self) -> LiveStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def endpoints(self) -> dict[str, str]:
        found: dict[str, str] = {}
        if self.gateway is not None:
            found["websocket"] = self.gateway.url
        if self.http is not None:
            found["http"] = self.http.url
        if self._moto is not None:
            found["aws"] = self._moto.url
        if self.containers is not None and self.containers.port:
            found["lambda"] = f"http://{self.host}:{self.containers.port}"
        if self._control is not None:
            found["control"] = f"http://{self.host}:{self._control.server_address[1]}"
        if self.console is not None and self.console.running:
            found["console"] = self.console.url
        return found

    # -- time ------------------------------------------------------------------------------
    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if value <= 0:
            raise ValueError("speed must be > 0")
        with self._clock_lock:
            self._reanchor()
            self._speed = float(value)

    def _reanchor(self) -> None:
        with self.runtime.clock.main_timeline():
            self._anchor = (real_monotonic(), self.runtime.clock.now())

    def advance(self, seconds: float) -> list[Any]:
        """Let ``seconds`` of stack time pass now (firing what falls due), then carry on in real time."""
        with self._clock_lock, self.runtime.clock.main_timeline():
            fired = self.runtime.advance(seconds)
            self._reanchor()
            return fired

    def _tick_forever(self) -> None:
        with self.runtime.clock.main_timeline():
            while not self._stop_ticking.is_set():
                real_sleep(self._tick)
                forget_finished_threads()
                with self._clock_lock:
                    real_then, virtual_then = self._anchor
                    target = virtual_then + (real_monotonic() - real_then) * self._speed
                    behind = target - self.runtime.clock.now()
                    if behind <= 0:
                        continue
                    try:
                        self.runtime.advance(behind)
                    except Exception as exc:  # noqa: BLE001 - a failing schedule must not stop the clock
                        self.ticker_errors.append(exc)
                        _log.exception("a scheduled run failed")

    # -- faults at run time -----------------------------------------------------------------
    def add_faults(self, rules: Iterable[FaultRule | Mapping[str, Any]]) -> list[FaultRule]:
        added = [self.runtime.faults.add(rule) for rule in rules]
        return added

    def list_faults(self) -> list[dict[str, Any]]:
        faults = self.runtime.faults
        return [fault_rule_json(rule, faults.fired(rule)) for rule in list(faults.rules)]

    def clear_faults(self) -> int:
        count = len(self.runtime.faults.rules)
        self.runtime.faults.clear()
        return count

    # -- between tests -------------------------------------------------------------------------
    def close_all(self, timeout: float = 30.0) -> None:
        """Close every live WebSocket (as deleteConnection would) and wait for their $disconnects."""
        gateway = self.gateway
        if gateway is None:
            return
        for connection_id in gateway.open_connections():
            found = self.runtime.connections.find(connection_id)
            if found is not None and found.socket is not None:
                if found.open:
                    self.runtime.connections.disconnect(connection_id)
                found.socket.close(1001, "Going away")
        deadline = real_monotonic() + timeout
        while gateway.open_connections() or gateway.pending_disconnects():
            if real_monotonic() > deadline:
                raise TimeoutError(f"connections still open: {gateway.open_connections()}")
            real_sleep(0.01)

    def reset(self) -> None:
        """Back to a fresh stack between tests: no connection, no fault, speed 1, tables as loaded."""
        self.close_all()
        self.runtime.faults.clear()
        # Stage throttling starts with full buckets, as a freshly deployed stage does.
        if self.gateway is not None:
            self.gateway.throttle.reset()
        if self.http is not None:
            self.http.reset()
        with self._clock_lock, self.runtime.clock.main_timeline():
            self.runtime.connections.clear()
            self.runtime.reload_data()
            self._speed = 1.0
            self._reanchor()

    # -- moto's server, for outside tools -----------------------------------------------------------
    def _start_moto_server(self, port: int) -> None:
        from local_runtime.aws_endpoint import AwsEndpoint

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self._moto = AwsEndpoint(self.runtime, host=self.host, port=port)
        self._moto.start()


def _control_handler(stack: LiveStack) -> type[BaseHTTPRequestHandler]:
    """``bw fault`` talks to this: GET/POST/DELETE /faults, GET /endpoints, POST /clock."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, body: Any) -> None:
            raw = json.dumps(body, default=str).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"null")

        def do_GET(self) -> None:
            if self.path == "/faults":
                self._reply(200, {"faults": stack.list_faults()})
            elif self.path == "/endpoints":
                self._reply(200, stack.endpoints())
            else:
                self._reply(404, {"message": "Not Found"})

        def do_POST(self) -> None:
            try:
                body = self._body()
                if self.path == "/faults":
                    rules = load_fault_rules(body)
                    stack.add_faults(rules)
                    self._reply(200, {"added": len(rules), "faults": stack.list_faults()})
                elif self.path == "/clock":
                    if "speed" in body:
                        stack.speed = float(body["speed"])
                    if "advance" in body:
                        stack.advance(float(body["advance"]))
                    # The stack's present: this request's own thread has a timeline of its own.
                    self._reply(200, {"speed": stack.speed, "now": stack.runtime.clock.present()})
                else:
                    self._reply(404, {"message": "Not Found"})
            except (ValueError, TypeError, KeyError) as exc:
                self._reply(400, {"message": str(exc)})

        def do_DELETE(self) -> None:
            if self.path == "/faults":
                self._reply(200, {"cleared": stack.clear_faults()})
            else:
                self._reply(404, {"message": "Not Found"})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` in real time (the virtual clock may be installed)."""
    deadline = real_monotonic() + timeout
    while True:
        if predicate():
            return True
        if real_monotonic() > deadline:
            return False
        real_sleep(interval)
