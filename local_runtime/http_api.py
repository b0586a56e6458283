"""The template's HTTP APIs, live on 127.0.0.1: what ``bw up`` serves besides the WebSocket API.

Every ``HttpApi`` event of a function (``Method`` + ``Path``) becomes a route;
a request is handed to the function as API Gateway's payload format 2.0 event
and its answer is turned back into an HTTP response the way API Gateway does
(a dict with ``statusCode`` as given; anything else is a 200 JSON body; an
unhandled error 500 ``{"message": "Internal Server Error"}``; a function
throttled by its reserved concurrency is an integration failure too, 500). The path is
served both bare (``/health``) and under its stage (``/prod/health``, as on AWS).

The stage's edge applies as on AWS: ``DefaultRouteSettings`` throttle each route
(429 ``{"message":"Too Many Requests"}``, :mod:`local_runtime.throttling`); a route whose
event says ``Auth: {Authorizer: AWS_IAM}`` wants a valid SigV4 signature (403
``{"message":"Forbidden"}``, :mod:`local_runtime.sigv4`); ``AccessLogSettings`` writes
one line per request to its log group (:mod:`local_runtime.access_logs`).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local_runtime.access_logs import AccessLog, AccessLogSpec, access_log_spec
from local_runtime.clock import real_time
from local_runtime.sigv4 import Caller, verify
from local_runtime.template import ACCOUNT_ID, LocalTemplate
from local_runtime.throttling import StageThrottle, ThrottleSettings, throttle_settings

__all__ = ["HttpApiServer", "HttpRoute", "HttpStage", "http_routes"]

_JSON = {"Content-Type": "application/json"}
TOO_MANY_REQUESTS = (429, _JSON, b'{"message":"Too Many Requests"}')
FORBIDDEN = (403, _JSON, b'{"message":"Forbidden"}')
NOT_FOUND = (404, _JSON, b'{"message":"Not Found"}')
INTERNAL_ERROR = (500, _JSON, b'{"message":"Internal Server Error"}')


@dataclass(frozen=True)
class HttpRoute:
    api: str
    method: str
    path: str
    function: str
    #: ``Auth: {Authorizer: AWS_IAM}``: callers sign with SigV4.
    iam: bool = False

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class HttpStage:
    """What an HTTP API's stage says about its edge."""

    name: str
    throttle: ThrottleSettings | None = None
    access_log: AccessLogSpec | None = None


def http_routes(template: LocalTemplate) -> tuple[list[HttpRoute], dict[str, str]]:
    """The template's HttpApi routes, and each HTTP API's stage name."""
    routes: list[HttpRoute] = []
    for logical_id, resource in template.of_type("AWS::Serverless::Function").items():
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            api = props.get("ApiId")
            api_id = str(api["Ref"]) if isinstance(api, dict) and "Ref" in api else "ServerlessHttpApi"
            method = str(props.get("Method", "ANY")).upper()
            auth = props.get("Auth") or {}
            iam = isinstance(auth, dict) and auth.get("Authorizer") == "AWS_IAM"
            routes.append(HttpRoute(api_id, method, str(props.get("Path", "/")), logical_id, iam))
    stages: dict[str, str] = {}
    for logical_id, resource in template.of_type("AWS::Serverless::HttpApi").items():
        stage = (resource.get("Properties") or {}).get("StageName", "$default")
        if isinstance(stage, dict) and "Ref" in stage:
            stage = template.parameters.get(str(stage["Ref"]), "$default")
        stages[logical_id] = str(stage)
    return routes, stages


def http_stages(template: LocalTemplate) -> dict[str, HttpStage]:
    """Each HTTP API's stage: its name, throttling and access log."""
    _, names = http_routes(template)
    resolver = template.resolver()

    def resolve(value: Any) -> Any:
        return resolver.intrinsic_property_resolver({"v": value}, ignore_errors=True).get("v")

    stages: dict[str, HttpStage] = {}
    for logical_id, resource in template.of_type("AWS::Serverless::HttpApi").items():
        props = resource.get("Properties") or {}
        stages[logical_id] = HttpStage(
            names[logical_id],
            throttle_settings(props.get("DefaultRouteSettings"), resolve),
            access_log_spec(template, props.get("AccessLogSettings")),
        )
    return stages


class HttpApiServer:
    """The HTTP API routes of ``runtime``'s template on ``host:port`` (0: any free port)."""

    def __init__(self, runtime: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.runtime = runtime
        self.routes, self.stages = http_routes(runtime.template)
        self.edges = http_stages(runtime.template)
        # The stack's present: each request runs on a thread of its own, whose timeline stops
        # where its server thread's did (throttle buckets never refilled, log lines lagged).
        clock = runtime.clock.present
        self.throttles = {api: StageThrottle(edge.throttle, clock) for api, edge in self.edges.items()}
        self.access_logs = {
            api: AccessLog(edge.access_log, runtime.region, ACCOUNT_ID, f"{api.lower()}_{edge.name}", clock)
            for api, edge in self.edges.items()
            if edge.access_log is not None
        }
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HttpApiServer:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="bw-http", daemon=True)
        self._thread.start()
        return self

    def reset(self) -> None:
        """Full throttle buckets again (a live stack between two tests)."""
        for throttle in self.throttles.values():
            throttle.reset()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def match(self, method: str, path: str) -> tuple[HttpRoute, str] | None:
        """The route for a request, and the path as API Gateway sees it (with the stage)."""
        for route in self.routes:
            if route.method not in (method, "ANY"):
                continue
            stage = self.stages.get(route.api, "$default")
            if path == route.path:
                return route, path if stage == "$default" else f"/{stage}{path}"
            if stage != "$default" and path == f"/{stage}{route.path}":
                return route, path
        return None

    def event(
        self,
        route: HttpRoute,
        method: str,
        raw_path: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        source_ip: str,
        caller: Caller | None = None,
    ) -> dict[str, Any]:
        now = self.runtime.clock.now()
        query = urlsplit(target).query
        api_id = route.api.lower()
        stage = self.stages.get(route.api, "$default")
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": raw_path,
            "rawQueryString": query,
            "headers": {k.lower(): v for k, v in headers.items()},
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": api_id,
                "domainName": f"{api_id}.execute-api.{self.runtime.region}.amazonaws.com",
                "domainPrefix": api_id,
                "http": {
                    "method": method,
                    "path": raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": headers.get("User-Agent", ""),
                },
                "requestId": base64.b64encode(os.urandom(9)).decode(),
                "routeKey": route.route_key,
                "stage": stage,
                "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now * 1000),
            },
            "isBase64Encoded": False,
        }
        if caller is not None:
            event["requestContext"]["authorizer"] = {
                "iam": {
                    "accessKey": caller.access_key,
                    "accountId": ACCOUNT_ID,
                    "callerId": caller.arn.rsplit(":", 1)[-1],
                    "principalOrgId": None,
                    "userArn": caller.arn,
                    "userId": caller.arn.rsplit(":", 1)[-1],
                }
            }
        if query:
            event["queryStringParameters"] = dict(parse_qsl(query, keep_blank_values=True))
        if body:
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
        return event

    def answer(self, route: HttpRoute, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        status, headers, raw, _ = self._integrate(route, event)
        return status, headers, raw

    def _integrate(self, route: HttpRoute, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes, Any]:
        """The response, and the invocation behind it (for the access log)."""
        clock = self.runtime.clock
        with clock.bound(clock.timeline()):
            invocation = self.runtime.invoke(route.function, event)
        if invocation.errored:
            # A throttled function (429 from Lambda) is an integration failure to API Gateway.
            return (*INTERNAL_ERROR, invocation)
        payload = invocation.payload
        if not (isinstance(payload, dict) and "statusCode" in payload):
            return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode(), invocation
        headers = {str(k): str(v) for k, v in (payload.get("headers") or {}).items()}
        for name, values in (payload.get("multiValueHeaders") or {}).items():
            headers[str(name)] = ", ".join(str(v) for v in values)
        body = payload.get("body") or ""
        raw = base64.b64decode(body) if payload.get("isBase64Encoded") else str(body).encode("utf-8")
        return int(payload["statusCode"]), headers, raw, invocation

    def serve(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        """One request through the stage's edge: route, throttle, IAM, integration, access log."""
        clock = self.runtime.clock
        started = clock.now()
        path = urlsplit(target).path
        found = self.match(method, path)
        api = found[0].api if found is not None else next(iter(self.edges), None)
        log: dict[str, Any] = {
            "requestId": base64.b64encode(os.urandom(9)).decode(),
            "identity.sourceIp": source_ip,
            "identity.userAgent": headers.get("User-Agent", ""),
            "requestTime": datetime.fromtimestamp(started, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(started * 1000),
            "httpMethod": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "stage": self.stages.get(api, "$default") if api else "$default",
        }
        invocation: Any = None
        if found is None:
            status, out_headers, raw = NOT_FOUND
            log["error.message"] = "Not Found"
        else:
            route, raw_path = found
            log["routeKey"] = route.route_key
            throttle = self.throttles.get(route.api)
            caller: Caller | None = None
            if throttle is not None and not throttle.admit(route.route_key):
                status, out_headers, raw = TOO_MANY_REQUESTS
                log["error.message"] = "Too Many Requests"
            elif route.iam and (caller := self._caller(method, target, headers, body)) is None:
                status, out_headers, raw = FORBIDDEN
                log["error.message"] = "Forbidden"
            else:
                if caller is not None:
                    log["identity.caller"] = caller.arn.rsplit(":", 1)[-1]
                    log["identity.userArn"] = caller.arn
                    log["identity.accessKey"] = caller.access_key
                event = self.event(route, method, raw_path, target, headers, body, source_ip, caller)
                log["requestId"] = event["requestContext"]["requestId"]
                status, out_headers, raw, invocation = self._integrate(route, event)
                log["integrationLatency"] = int(invocation.duration * 1000)
                if invocation.errored:
                    # The error's type, never its message: a handler's message may carry what it read.
                    log["integrationErrorMessage"] = invocation.error_type
                    log["integrationStatus"] = 429 if invocation.throttled else 200
                    log["error.message"] = "Internal Server Error"
                else:
                    log["integrationStatus"] = 200
        log.update(status=status, responseLength=len(raw), responseLatency=int((clock.now() - started) * 1000))
        writer = self.access_logs.get(api) if api else None
        if writer is not None:
            writer.write(log)
        return status, out_headers, raw

    def _caller(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Caller | None:
        return verify(
            method,
            target,
            headers,
            body,
            keys=self.runtime.signing_keys(),
            region=self.runtime.region,
            # A client in this process signs on the stack's (virtual) clock; one outside it on
            # the wall clock, which `--speed` or `advance` leave behind.
            now=(self.runtime.clock.now(), real_time()),
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, raw = api.serve(
                    self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
                )
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
