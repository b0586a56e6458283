"""The template's WebSocket API, live on 127.0.0.1: what ``bw up`` serves.

API Gateway's WebSocket side as the template declares it (``AWS::ApiGatewayV2::Api``
with ``ProtocolType: WEBSOCKET``, its ``Route``s and ``AWS_PROXY`` ``Integration``s),
in front of the strict runtime's handlers:

* **$connect**: the opening handshake waits for the integration; a 2xx answer
  upgrades, anything else refuses the upgrade with that status (an error or a
  timeout of the integration: 500 / 504). Posts to the connection are refused
  (410) until ``$connect`` has answered, as on AWS.
* **messages**: the route is chosen by the API's ``RouteSelectionExpression``
  (``$request.body.action``), falling back to ``$default``; an integration
  that fails sends the client API Gateway's ``{"message": "Internal server
  error", ...}`` frame. Without a route response (this template has none) the
  integration's answer is not sent back. One message per connection is in
  flight at a time, in the order received. A subprotocol the client offers is
  agreed only if ``$connect`` answers with its ``Sec-WebSocket-Protocol`` header.
* **$disconnect** runs on every close: the client's (clean or abrupt), the
  server's (``deleteConnection``, idle, maximum duration, shutdown).
* **stage throttling**: the stage's ``DefaultRouteSettings`` are a token bucket per
  route on the stack's clock: ``$connect`` past it is refused with 429, a message past
  it gets a ``{"message": "Too Many Requests", ...}`` frame (the connection stays open)
  and never reaches its integration. A function throttled by its reserved concurrency
  is an integration failure (``$connect`` 500, a message's error frame), as on AWS.
* **access logs**: the stage's ``AccessLogSettings`` writes one line per $connect,
  message and $disconnect to its log group (:mod:`local_runtime.access_logs`).
* **limits**: a frame over 32 KB or a message over 128 KB closes the
  connection with 1009; an idle connection (no data frame for 10 minutes) and
  any connection older than 2 hours are closed with 1001. Both durations are in
  the stack's (virtual) time, so ``--speed`` scales them; tests shorten them.
* the **management API** (``postToConnection`` / ``getConnection`` /
  ``deleteConnection``) stays where it is: handlers call it through botocore
  in this process, so IAM, faults and limits keep applying; the registry
  (:mod:`local_runtime.websockets`) hands posts and closes to the socket.

Handlers run on a thread pool, each invocation on its own timeline starting
at the stack's present (:meth:`VirtualClock.timeline`). The event loop keeps
real time: the virtual clock patches ``time.monotonic``, which asyncio reads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import secrets
import string
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from local_runtime.access_logs import AccessLog, AccessLogSpec, access_log_spec
from local_runtime.clock import real_monotonic
from local_runtime.limits import POST_TO_CONNECTION_MAX_BYTES
from local_runtime.template import ACCOUNT_ID, LocalTemplate, TemplateError
from local_runtime.throttling import StageThrottle, ThrottleSettings, route_throttle_settings, throttle_settings
from local_runtime.websockets import ConnectionGoneError

__all__ = [
    "FRAME_MAX_BYTES",
    "IDLE_TIMEOUT_SECONDS",
    "MAX_CONNECTION_SECONDS",
    "MESSAGE_MAX_BYTES",
    "GatewayLimits",
    "RealTimeLoop",
    "WebSocketApiSpec",
    "WebSocketGateway",
]

#: API Gateway WebSocket quotas: frame size 32 KB, message payload size 128 KB (the same
#: quota that makes postToConnection answer 413), idle timeout 10 min, connection duration 2 h.
FRAME_MAX_BYTES = 32 * 1024
MESSAGE_MAX_BYTES = POST_TO_CONNECTION_MAX_BYTES
IDLE_TIMEOUT_SECONDS = 600.0
MAX_CONNECTION_SECONDS = 7200.0
#: An integration answers within 29 s (real time here: handlers' own waits are virtual).
INTEGRATION_TIMEOUT_SECONDS = 29.0

GOING_AWAY = 1001
MESSAGE_TOO_BIG = 1009
_ID_ALPHABET = string.ascii_letters + string.digits
_SUB_REF = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.Arn)?\}")
_log = logging.getLogger("bw.gateway")


@dataclass(frozen=True)
class GatewayLimits:
    frame_bytes: int = FRAME_MAX_BYTES
    message_bytes: int = MESSAGE_MAX_BYTES
    #: Virtual seconds without a data frame from the client before the gateway closes it.
    idle_seconds: float = IDLE_TIMEOUT_SECONDS
    #: Virtual seconds a connection may last at most.
    max_seconds: float = MAX_CONNECTION_SECONDS
    integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS
    #: Real seconds between two checks of the idle and duration limits.
    check_interval: float = 0.2


# -- the template's API ---------------------------------------------------------------
@dataclass(frozen=True)
class WebSocketApiSpec:
    """One WebSocket API of the template: its routes, their functions, its stage."""

    logical_id: str
    api_id: str
    stage: str
    selection_expression: str
    #: Route key -> logical id of the function its AWS_PROXY integration invokes.
    routes: dict[str, str]
    #: Route keys with a route response: the integration's answer goes back to the client.
    two_way: frozenset[str] = frozenset()
    #: The stage's DefaultRouteSettings throttling (None: not set).
    throttle: ThrottleSettings | None = None
    #: The stage's RouteSettings throttling, by route key.
    route_throttles: Mapping[str, ThrottleSettings | None] = field(default_factory=dict)
    #: The stage's AccessLogSettings (None: no access log).
    access_log: AccessLogSpec | None = None

    @classmethod
    def from_template(cls, template: LocalTemplate, api: str | None = None) -> WebSocketApiSpec:
        apis = {
            lid: r
            for lid, r in template.of_type("AWS::ApiGatewayV2::Api").items()
            if (r.get("Properties") or {}).get("ProtocolType") == "WEBSOCKET"
        }
        if not apis:
            raise TemplateError(f"{template.path} has no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET")
        if api is None:
            if len(apis) > 1:
                raise TemplateError(f"several WebSocket APIs ({', '.join(sorted(apis))}); name one")
            api = next(iter(apis))
        if api not in apis:
            raise TemplateError(f"no WebSocket API {api!r}; the template has {', '.join(sorted(apis))}")
        props = apis[api].get("Properties") or {}
        expression = str(props.get("RouteSelectionExpression") or "$request.body.action")

        def belongs(resource: dict[str, Any]) -> bool:
            return _ref((resource.get("Properties") or {}).get("ApiId")) == api

        integrations = {lid: r for lid, r in template.of_type("AWS::ApiGatewayV2::Integration").items() if belongs(r)}
        routes: dict[str, str] = {}
        route_ids: dict[str, str] = {}
        for lid, route in template.of_type("AWS::ApiGatewayV2::Route").items():
            if not belongs(route):
                continue
            rprops = route.get("Properties") or {}
            key = str(rprops.get("RouteKey"))
            target = _sub_names(rprops.get("Target"))
            integration = next((name for name in target if name in integrations), None)
            if integration is None:
                raise TemplateError(f"route {lid} ({key}) has no integration this runtime can follow")
            iprops = integrations[integration].get("Properties") or {}
            if iprops.get("IntegrationType") not in ("AWS_PROXY", None):
                raise TemplateError(f"integration {integration}: only AWS_PROXY (Lambda) is served offline")
            function = next((n for n in _sub_names(iprops.get("IntegrationUri")) if n in template.functions), None)
            if function is None:
                raise TemplateError(f"integration {integration} invokes no function of the template")
            routes[key] = function
            route_ids[lid] = key
        two_way = frozenset(
            route_ids[_ref((r.get("Properties") or {}).get("RouteId")) or ""]
            for r in template.of_type("AWS::ApiGatewayV2::RouteResponse").values()
            if _ref((r.get("Properties") or {}).get("RouteId")) in route_ids
        )
        stage = "$default"
        throttle: ThrottleSettings | None = None
        route_throttles: dict[str, ThrottleSettings | None] = {}
        access_log: AccessLogSpec | None = None
        for resource in template.of_type("AWS::ApiGatewayV2::Stage").values():
            if belongs(resource):
                sprops = resource.get("Properties") or {}
                stage = str(_value(sprops.get("StageName"), template.parameters))
                throttle = throttle_settings(
                    sprops.get("DefaultRouteSettings"), lambda v: _value(v, template.parameters)
                )
                route_throttles = route_throttle_settings(
                    sprops.get("RouteSettings"), throttle, lambda v: _value(v, template.parameters)
                )
                access_log = access_log_spec(template, sprops.get("AccessLogSettings"))
        return cls(
            api,
            api.lower(),
            stage,
            expression,
            routes,
            two_way,
            throttle=throttle,
            route_throttles=route_throttles,
            access_log=access_log,
        )

    def select(self, body: str | bytes) -> str | None:
        """The route a message takes: the selection expression's value if a route has that key,
        else ``$default`` (None when there is no ``$default`` either)."""
        prefix = "$request.body."
        if self.selection_expression.startswith(prefix):
            try:
                value: Any = json.loads(body)
            except ValueError:
                value = None
            for part in self.selection_expression[len(prefix) :].split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, str) and value in self.routes and not value.startswith("$"):
                return value
        return "$default" if "$default" in self.routes else None


def _ref(value: Any) -> str | None:
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    return value if isinstance(value, str) else None


def _sub_names(value: Any) -> list[str]:
    """Logical ids a ``!Sub`` (or a plain string) names: ``integrations/${X}``, ``${F.Arn}``."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        value = value["Fn::Sub"]
        value = value[0] if isinstance(value, list) else value
    if isinstance(value, dict) and "Ref" in value:
        return [str(value["Ref"])]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return [str(target[0] if isinstance(target, list) else str(target).split(".")[0])]
    if not isinstance(value, str):
        return []
    return _SUB_REF.findall(value) or [value.rsplit("/", 1)[-1]]


def _value(value: Any, parameters: dict[str, Any]) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return parameters.get(str(value["Ref"]), value["Ref"])
    return value


# -- the events API Gateway sends ----------------------------------------------------------
def request_time(now: float) -> str:
    """``requestTime`` as API Gateway writes it (CLF): ``24/Nov/2026:12:00:00 +0000``."""
    return datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def new_connection_id() -> str:
    """An id shaped like API Gateway's (16 characters ending in ``=``)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(15)) + "="


def _request_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(15)) + "="


@dataclass
class _Live:
    """One upgraded (or upgrading) client."""

    connection_id: str
    source_ip: str
    user_agent: str
    connected_at: float
    last_active_at: float
    socket: ServerConnection | None = None
    outbox: asyncio.Queue[bytes | tuple[int, str]] = field(default_factory=asyncio.Queue)
    #: Why the gateway closed it (code, reason), if it did.
    server_close: tuple[int, str] | None = None


class _LimitedProtocol(ServerProtocol):
    """websockets' protocol with API Gateway's two size limits: every frame at most
    ``frame_bytes``, a message (all its frames) at most ``message_bytes``; past either the
    connection is closed with 1009. websockets allows the next frame ``max_size`` minus what
    the message already holds, read before each frame."""

    frame_bytes = FRAME_MAX_BYTES
    message_bytes = MESSAGE_MAX_BYTES

    @property  # type: ignore[override]
    def max_size(self) -> int:
        return min((self.cur_size or 0) + self.frame_bytes, self.message_bytes)

    @max_size.setter
    def max_size(self, value: int | None) -> None:
        pass


class _GatewayConnection(ServerConnection):
    """A server connection whose protocol enforces the gateway's size limits."""

    limits = GatewayLimits()
    live: _Live | None = None

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        protocol.__class__ = type(
            "_Limits",
            (_LimitedProtocol,),
            {"frame_bytes": self.limits.frame_bytes, "message_bytes": self.limits.message_bytes},
        )
        super().__init__(protocol, *args, **kwargs)


class RealTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on real time while the virtual clock is installed (the gateway's, and
    clients' in the same process: ``asyncio.Runner(loop_factory=RealTimeLoop)``)."""

    def time(self) -> float:
        return real_monotonic()


# -- the gateway -----------------------------------------------------------------------------
class WebSocketGateway:
    """The template's WebSocket API on ``host:port`` (0: any free port), for ``runtime``."""

    def __init__(
        self,
        runtime: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: GatewayLimits | None = None,
        api: str | None = None,
        workers: int = 32,
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.limits = limits or GatewayLimits()
        self.spec = WebSocketApiSpec.from_template(runtime.template, api)
        self.domain = f"{self.spec.api_id}.execute-api.{runtime.region}.amazonaws.com"
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._live: dict[str, _Live] = {}
        self._disconnects: set[asyncio.Future[Any]] = set()
        #: Called with every $disconnect's connection id once it has run (tests wait on it).
        self.on_disconnected: Callable[[str], None] = lambda connection_id: None
        self.throttle = StageThrottle(self.spec.throttle, runtime.clock.now, self.spec.route_throttles)
        self.access_log = (
            AccessLog(
                self.spec.access_log,
                runtime.region,
                ACCOUNT_ID,
                f"{self.spec.api_id}_{self.spec.stage}",
                runtime.clock.now,
            )
            if self.spec.access_log is not None
            else None
        )

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def open_connections(self) -> list[str]:
        return list(self._live)

    def pending_disconnects(self) -> int:
        """$disconnect integrations still running."""
        return len(self._disconnects)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> WebSocketGateway:
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="bw-integration")
        self._thread = threading.Thread(target=self._serve, name="bw-gateway", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Close every connection (1001, each runs $disconnect), then the port."""
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
        self._thread = self._pool = None

    def _serve(self) -> None:
        loop = RealTimeLoop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            with self.runtime.clock.main_timeline():
                loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._startup_error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        limits = self.limits
        connection_class = type("_Connection", (_GatewayConnection,), {"limits": limits})
        server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._connect,
            select_subprotocol=_subprotocol,
            create_connection=connection_class,
            open_timeout=limits.integration_timeout + 5,
            ping_interval=None,
            max_size=limits.message_bytes,
            # API Gateway negotiates no extension: frames are limited as they travel.
            compression=None,
            server_header=None,
        )
        self._server = server
        self.port = int(next(iter(server.sockets)).getsockname()[1])
        sweeper = asyncio.create_task(self._sweep())
        self._ready.set()
        await self._stopped.wait()
        sweeper.cancel()
        server.close()  # open connections get 1001 Going away; their handlers run $disconnect
        await server.wait_closed()
        if self._disconnects:
            await asyncio.gather(*self._disconnects, return_exceptions=True)

    # -- integrations --------------------------------------------------------------------
    def _invoke(self, route_key: str, event: dict[str, Any]) -> Any:
        clock = self.runtime.clock
        with clock.bound(clock.timeline()):
            return self.runtime.invoke(self.spec.routes[route_key], event)

    async def _integrate(
        self, route_key: str, event: dict[str, Any], notes: dict[str, Any] | None = None
    ) -> tuple[str, Any]:
        """("ok", payload), ("error", invocation) or ("timeout", None); the outcome goes to the
        access log's ``notes`` (a function throttled by its reserved concurrency is an
        error: API Gateway answers it as an integration failure)."""
        notes = {} if notes is None else notes
        loop = asyncio.get_running_loop()
        started = real_monotonic()
        future = loop.run_in_executor(self._pool, self._invoke, route_key, event)
        try:
            invocation = await asyncio.wait_for(asyncio.shield(future), self.limits.integration_timeout)
        except TimeoutError:
            notes.update(integrationLatency=int((real_monotonic() - started) * 1000), integrationError="timeout")
            return "timeout", None
        notes.update(integrationLatency=int(invocation.duration * 1000))
        if invocation.errored:
            notes.update(
                integrationStatus=429 if invocation.throttled else 200,
                # The error's type, never its message: a handler's message may carry what it read.
                integrationError=invocation.error_type,
            )
            return "error", invocation
        notes.update(integrationStatus=200)
        return "ok", invocation.payload

    def _log(
        self, event: dict[str, Any], status: int, error: str | None = None, noted: dict[str, Any] | None = None
    ) -> None:
        """The request's access log line (``noted``: what _integrate saw of the integration)."""
        noted = noted or {}
        if self.access_log is None:
            return
        context = event["requestContext"]
        self.access_log.write(
            {
                "requestId": context["requestId"],
                "extendedRequestId": context["extendedRequestId"],
                "connectionId": context["connectionId"],
                "identity.sourceIp": context["identity"]["sourceIp"],
                "identity.userAgent": context["identity"]["userAgent"],
                "requestTime": context["requestTime"],
                "requestTimeEpoch": context["requestTimeEpoch"],
                "eventType": context["eventType"],
                "routeKey": context["routeKey"],
                "messageId": context.get("messageId"),
                "stage": context["stage"],
                "apiId": context["apiId"],
                "status": status,
                "integration.status": noted.get("integrationStatus"),
                "integrationStatus": noted.get("integrationStatus"),
                "integration.error": noted.get("integrationError"),
                "integration.latency": noted.get("integrationLatency"),
                "integrationLatency": noted.get("integrationLatency"),
                "error.message": error,
            }
        )

    def _context(self, live: _Live, route_key: str, event_type: str, **extra: Any) -> dict[str, Any]:
        now = self.runtime.clock.now()
        request_id = _request_id()
        context: dict[str, Any] = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": request_time(now),
            "messageDirection": "IN",
            "stage": self.spec.stage,
            "connectedAt": int(live.connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "identity": {"sourceIp": live.source_ip, "userAgent": live.user_agent},
            "requestId": request_id,
            "domainName": self.domain,
            "connectionId": live.connection_id,
            "apiId": self.spec.api_id,
        }
        context.update(extra)
        return context

    # -- $connect: the handshake waits for the integration -----------------------------------
    async def _connect(self, connection: ServerConnection, request: Request) -> Response | None:
        now = self.runtime.clock.now()
        peer = connection.remote_address
        headers = dict(request.headers.raw_items())
        live = _Live(
            connection_id=new_connection_id(),
            source_ip=str(peer[0]) if peer else "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""),
            connected_at=now,
            last_active_at=now,
        )
        headers.update(
            {
                "X-Forwarded-For": live.source_ip,
                "X-Forwarded-Port": str(self.port),
                "X-Forwarded-Proto": "http",
            }
        )
        multi_headers: dict[str, list[str]] = {}
        for name, value in request.headers.raw_items():
            multi_headers.setdefault(name, []).append(value)
        query = parse_qsl(urlsplit(request.path).query, keep_blank_values=True)
        event: dict[str, Any] = {
            "headers": headers,
            "multiValueHeaders": {**multi_headers, **{k: [v] for k, v in headers.items() if k not in multi_headers}},
            "requestContext": self._context(live, "$connect", "CONNECT"),
            "isBase64Encoded": False,
        }
        if query:
            event["queryStringParameters"] = dict(query)
            multi_query: dict[str, list[str]] = {}
            for key, value in query:
                multi_query.setdefault(key, []).append(value)
            event["multiValueQueryStringParameters"] = multi_query
        if not self.throttle.admit("$connect"):
            # Throttled at the stage: no integration runs (no Lambda, no admission).
            self._log(event, 429, "Too Many Requests")
            return connection.respond(429, json.dumps({"message": "Too Many Requests"}))
        notes: dict[str, Any] = {}
        if "$connect" in self.spec.routes:
            outcome, payload = await self._integrate("$connect", event, notes)
            refused = _connect_refusal(outcome, payload)
            if refused is not None:
                status, body = refused
                self._log(event, status, _error_message(body), notes)
                return connection.respond(status, body)
            # A subprotocol is agreed only if $connect answers with it (Sec-WebSocket-Protocol).
            answered = payload.get("headers") if isinstance(payload, dict) else None
            for name, value in (answered or {}).items() if isinstance(answered, dict) else ():
                if str(name).lower() == "sec-websocket-protocol":
                    connection.subprotocol_answered = str(value)  # type: ignore[attr-defined]
        self._log(event, 200, None, notes)
        # Accepted: from here on the management API can reach it.
        connection.live = live  # type: ignore[attr-defined]
        live.socket = connection
        self._live[live.connection_id] = live
        self.runtime.connections.connect(
            live.connection_id,
            source_ip=live.source_ip,
            user_agent=live.user_agent,
            socket=_SocketHandle(self, live),
            connected_at=live.connected_at,
        )
        return None

    # -- an open connection ---------------------------------------------------------------
    async def _handle(self, connection: ServerConnection) -> None:
        live: _Live = connection.live  # type: ignore[attr-defined]
        writer = asyncio.create_task(self._write(connection, live))
        try:
            async for message in connection:
                live.last_active_at = self.runtime.clock.now()
                try:
                    self.runtime.connections.touch(live.connection_id)
                except ConnectionGoneError:
                    pass  # already closed by deleteConnection or a limit: its close frame is queued
                await self._message(live, message)
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            await self._closed(connection, live)

    async def _write(self, connection: ServerConnection, live: _Live) -> None:
        """Frames the management API posted, in order; a queued close after them."""
        try:
            while True:
                item = await live.outbox.get()
                if isinstance(item, tuple):
                    code, reason = item
                    live.server_close = live.server_close or (code, reason)
                    await connection.close(code, reason)
                    return
                try:
                    text = item.decode("utf-8")
                except UnicodeDecodeError:
                    await connection.send(item)
                else:
                    await connection.send(text)
        except ConnectionClosed:
            return

    async def _message(self, live: _Live, message: str | bytes) -> None:
        route_key = self.spec.select(message)
        if route_key is None:
            await self._reply_error(live, "Forbidden")
            return
        # A binary frame reaches the integration base64-encoded.
        binary = isinstance(message, bytes)
        event: dict[str, Any] = {
            "requestContext": self._context(live, route_key, "MESSAGE", messageId=_request_id()),
            "body": base64.b64encode(message).decode("ascii") if isinstance(message, bytes) else message,
            "isBase64Encoded": binary,
        }
        request_id = event["requestContext"]["requestId"]
        if not self.throttle.admit(route_key):
            self._log(event, 429, "Too Many Requests")
            await self._reply_error(live, "Too Many Requests", request_id)
            return
        notes: dict[str, Any] = {}
        outcome, payload = await self._integrate(route_key, event, notes)
        if outcome == "timeout":
            self._log(event, 504, "Endpoint request timed out", notes)
            await self._reply_error(live, "Endpoint request timed out", request_id)
        elif outcome == "error":
            self._log(event, 500, "Internal server error", notes)
            await self._reply_error(live, "Internal server error", request_id)
        else:
            self._log(event, 200, None, notes)
        if outcome == "ok" and route_key in self.spec.two_way and payload is not None:
            body = payload.get("body") if isinstance(payload, dict) and "statusCode" in payload else payload
            if body is not None:
                live.outbox.put_nowait(body.encode() if isinstance(body, str) else json.dumps(body).encode())

    async def _reply_error(self, live: _Live, message: str, request_id: str | None = None) -> None:
        frame = {"message": message, "connectionId": live.connection_id, "requestId": request_id or _request_id()}
        live.outbox.put_nowait(json.dumps(frame).encode())

    # -- every close runs $disconnect ---------------------------------------------------------
    async def _closed(self, connection: ServerConnection, live: _Live) -> None:
        # Pending before it leaves the open set: a thread waiting for "none open and none
        # pending" (LiveStack.close_all) runs between any two bytecodes of this one, and read
        # neither while $disconnect had not started (its access log line came after the wait).
        settled: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._disconnects.add(settled)
        try:
            await self._disconnect(connection, live)
        finally:
            self._disconnects.discard(settled)
            settled.set_result(None)
            self.on_disconnected(live.connection_id)

    async def _disconnect(self, connection: ServerConnection, live: _Live) -> None:
        self._live.pop(live.connection_id, None)
        self.runtime.connections.disconnect(live.connection_id)
        if live.server_close is not None:
            code, reason = live.server_close
        else:
            code = connection.close_code if connection.close_code is not None else 1006
            reason = connection.close_reason or ""
        if "$disconnect" not in self.spec.routes:
            return
        event = {
            "headers": {"Host": self.domain, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
            "multiValueHeaders": {
                "Host": [self.domain],
                "x-api-key": [""],
                "X-Forwarded-For": [""],
                "x-restapi": [""],
            },
            "requestContext": self._context(
                live, "$disconnect", "DISCONNECT", disconnectStatusCode=code, disconnectReason=reason
            ),
            "isBase64Encoded": False,
        }
        notes: dict[str, Any] = {}
        outcome, _ = await self._integrate("$disconnect", event, notes)
        self._log(event, 200 if outcome == "ok" else 500 if outcome == "error" else 504, None, notes)

    # -- idle and maximum duration ---------------------------------------------------------------
    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.limits.check_interval)
            now = self.runtime.clock.now()
            for live in list(self._live.values()):
                if live.server_close is not None:
                    continue
                too_old = now - live.connected_at >= self.limits.max_seconds
                if too_old or now - live.last_active_at >= self.limits.idle_seconds:
                    self._close_now(live, GOING_AWAY, "Going away")

    def _close_now(self, live: _Live, code: int, reason: str) -> None:
        live.server_close = (code, reason)
        self.runtime.connections.disconnect(live.connection_id)
        live.outbox.put_nowait((code, reason))

    # -- the registry's hand-over (called from handler threads) ----------------------------------
    def _post(self, live: _Live, data: bytes) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(live.outbox.put_nowait, data)

    def _delete(self, live: _Live, code: int, reason: str) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(live.outbox.put_nowait, (code, reason))


@dataclass(frozen=True)
class _SocketHandle:
    """What the registry holds for a live connection (see :class:`local_runtime.websockets.Socket`)."""

    gateway: WebSocketGateway
    live: _Live

    def send(self, data: bytes) -> None:
        self.gateway._post(self.live, data)

    def close(self, code: int, reason: str) -> None:
        self.gateway._delete(self.live, code, reason)


def _subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """The subprotocol $connect answered with, if the client offered it; else none."""
    answered = getattr(connection, "subprotocol_answered", None)
    return Subprotocol(answered) if answered is not None and answered in offered else None


def _error_message(body: str) -> str | None:
    try:
        message = json.loads(body).get("message") if body else None
    except (ValueError, AttributeError):
        return None
    return str(message) if message is not None else None


def _connect_refusal(outcome: str, payload: Any) -> tuple[int, str] | None:
    """None to upgrade, else the handshake's (status, body), as API Gateway answers $connect."""
    if outcome == "timeout":
        return 504, json.dumps({"message": "Endpoint request timed out"})
    if outcome == "error":
        return 500, json.dumps({"message": "Internal server error"})
    if not isinstance(payload, dict):
        return None  # a proxy integration answering without a statusCode: 200
    try:
        status = int(payload.get("statusCode", 200))
    except (TypeError, ValueError):
        return 500, json.dumps({"message": "Internal server error"})
    if 200 <= status < 300:
        return None
    body = payload.get("body")
    return status, body if isinstance(body, str) else json.dumps(body) if body is not None else ""
