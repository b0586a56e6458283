"""The template's HTTP APIs, live on 127.0.0.1: what ``bw up`` serves besides the WebSocket API.

Every ``HttpApi`` event of a function (``Method`` + ``Path``) becomes a route;
a request is handed to the function as API Gateway's payload format 2.0 event
and its answer is turned back into an HTTP response the way API Gateway does
(a dict with ``statusCode`` as given; anything else is a 200 JSON body; an
unhandled error 500 ``{"message": "Internal Server Error"}``). The path is
served both bare (``/health``) and under its stage (``/prod/health``, as on AWS).
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

from local_runtime.template import ACCOUNT_ID, LocalTemplate

__all__ = ["HttpApiServer", "HttpRoute", "http_routes"]


@dataclass(frozen=True)
class HttpRoute:
    api: str
    method: str
    path: str
    function: str

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


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
            routes.append(HttpRoute(api_id, method, str(props.get("Path", "/")), logical_id))
    stages: dict[str, str] = {}
    for logical_id, resource in template.of_type("AWS::Serverless::HttpApi").items():
        stage = (resource.get("Properties") or {}).get("StageName", "$default")
        if isinstance(stage, dict) and "Ref" in stage:
            stage = template.parameters.get(str(stage["Ref"]), "$default")
        stages[logical_id] = str(stage)
    return routes, stages


class HttpApiServer:
    """The HTTP API routes of ``runtime``'s template on ``host:port`` (0: any free port)."""

    def __init__(self, runtime: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.runtime = runtime
        self.routes, self.stages = http_routes(runtime.template)
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
        if query:
            event["queryStringParameters"] = dict(parse_qsl(query, keep_blank_values=True))
        if body:
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
        return event

    def answer(self, route: HttpRoute, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        clock = self.runtime.clock
        with clock.bound(clock.timeline()):
            invocation = self.runtime.invoke(route.function, event)
        if invocation.errored:
            return 500, {"Content-Type": "application/json"}, b'{"message":"Internal Server Error"}'
        payload = invocation.payload
        if not (isinstance(payload, dict) and "statusCode" in payload):
            return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()
        headers = {str(k): str(v) for k, v in (payload.get("headers") or {}).items()}
        for name, values in (payload.get("multiValueHeaders") or {}).items():
            headers[str(name)] = ", ".join(str(v) for v in values)
        body = payload.get("body") or ""
        raw = base64.b64decode(body) if payload.get("isBase64Encoded") else str(body).encode("utf-8")
        return int(payload["statusCode"]), headers, raw

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                path = urlsplit(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                found = api.match(self.command, path)
                if found is None:
                    status, headers, raw = 404, {"Content-Type": "application/json"}, b'{"message":"Not Found"}'
                else:
                    route, raw_path = found
                    event = api.event(
                        route,
                        self.command,
                        raw_path,
                        self.path,
                        dict(self.headers.items()),
                        body,
                        self.client_address[0],
                    )
                    status, headers, raw = api.answer(route, event)
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
