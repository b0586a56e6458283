"""``bw up``'s ``aws`` endpoint: moto's server on the stack's own backends, for outside tools.

``aws --endpoint-url http://127.0.0.1:PORT dynamodb scan --table-name ConnectionsTable``
reads the live stack's data. The runtime's fault rules apply here too, for every
call whose operation the request names (JSON protocols' ``X-Amz-Target``, query
protocols' ``Action``, the management API's ``/@connections/{id}``): the error is
answered in the service's protocol, as :mod:`local_runtime.seams` does for the
stack's own clients. For a function's own key (``bw up --containers``) latency and
``answer_lost`` apply too, in real seconds (the function's clock, and its SDK's
timeouts, are the wall clock's), after IAM, as in-process; for an outside tool they do
not (its clock is not the stack's).

IAM applies to the callers it knows: ``bw up --containers`` gives each function its
own access key id (:attr:`AwsEndpoint.callers`), and every call signed with it is
evaluated against that function's role, as the in-process clients' calls are, and
refused with AWS's AccessDenied; a call from such a key that the endpoint cannot name
is refused too. An outside tool signs with whatever credentials it has and acts as
the administrator. ``StartSyncExecution`` (the ``sync-`` host prefix, which moto's
server does not serve) runs on the stack's Express workflows here.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, unquote

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from local_runtime.clock import real_monotonic, real_sleep
from local_runtime.protocols import error_response

__all__ = ["AwsEndpoint", "Caller", "identify", "request_params"]

#: SigV4 signing names that are not botocore's service names.
_SERVICES = {"states": "stepfunctions", "execute-api": "apigatewaymanagementapi", "email": "ses"}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_ACCESS_KEY = re.compile(r"Credential=([^/]+)/")
_MANAGEMENT = {"POST": "PostToConnection", "GET": "GetConnection", "DELETE": "DeleteConnection"}
#: Longest an ``answer_lost`` answer is held for a caller that does not hang up (real seconds).
_ANSWER_LOST_HOLD = 120.0


def identify(environ: dict[str, Any], body: bytes) -> tuple[str, str] | None:
    """(botocore service, operation) of a request, when the request names them."""
    found = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if found is None:
        return None
    service = _SERVICES.get(found.group(1), found.group(1))
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return service, target.rsplit(".", 1)[-1]
    if service == "apigatewaymanagementapi" and "/@connections/" in environ.get("PATH_INFO", ""):
        return service, _MANAGEMENT.get(environ.get("REQUEST_METHOD", ""), "*")
    if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
        if action:
            return service, action[0]
    found_rest = _rest_operation(service, environ)
    return (service, found_rest[0]) if found_rest is not None else None


@dataclass(frozen=True)
class Caller:
    """Who signs with an access key id: a function's role, its IAM session, and the
    management API endpoint its template environment names (IAM's execute-api ARN)."""

    role_arn: str
    session: str
    management_endpoint: str


def _service_model(service: str) -> Any:
    import botocore.session

    try:
        return botocore.session.get_session().get_service_model(service)
    except Exception:  # noqa: BLE001 - a service botocore does not know: nothing to match
        return None


def _rest_operation(service: str, environ: Mapping[str, Any]) -> tuple[str, dict[str, str]] | None:
    """(operation, URI labels) of a REST request, from the service model's request URIs:
    the matching operation with the most literal characters (``/{Bucket}?uploads`` only
    when the query names ``uploads``)."""
    model = _service_model(service)
    if model is None or model.resolved_protocol not in ("rest-json", "rest-xml"):
        return None
    method = environ.get("REQUEST_METHOD", "")
    path = environ.get("PATH_INFO", "/") or "/"
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    best: tuple[int, str, dict[str, str]] | None = None
    for name in model.operation_names:
        http = model.operation_model(name).http
        if http.get("method") != method:
            continue
        # A client botocore made for S3 moves the bucket out of requestUri into authPath (in
        # the shared model); the path the request came on is authPath then.
        uri, _, needs = str(http.get("requestUri", "/")).partition("?")
        uri = str(http.get("authPath") or uri)
        if needs and not all(part.split("=", 1)[0] in query for part in needs.split("&")):
            continue
        pattern = re.sub(
            r"\\\{(\w+)(\\\+)?\\\}",
            lambda m: f"(?P<{m[1]}>.+)" if m[2] else f"(?P<{m[1]}>[^/]+)",
            re.escape(uri.rstrip("/") or "/"),
        )
        found = re.fullmatch(pattern + ("/?" if uri != "/" else ""), path)
        if found is None:
            continue
        literal = len(re.sub(r"\{[^}]*\}", "", uri)) + len(needs)
        if best is None or literal > best[0]:
            # URI labels are the members' locationNames ("connectionId" is ConnectionId).
            shape = model.operation_model(name).input_shape
            members = {
                str(m.serialization.get("name", n)): n
                for n, m in (shape.members.items() if shape is not None else ())
                if m.serialization.get("location") == "uri"
            }
            labels = {members.get(k, k): unquote(v) for k, v in found.groupdict().items()}
            best = (literal, name, labels)
    return (best[1], best[2]) if best is not None else None


def request_params(service: str, operation: str, environ: Mapping[str, Any], body: bytes) -> dict[str, Any]:
    """The members IAM reads from a request (table, key, ARN, queue...), by protocol."""
    model = _service_model(service)
    protocol = model.resolved_protocol if model is not None else "json"
    if protocol == "json":
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    if protocol in ("query", "ec2"):
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    found = _rest_operation(service, environ)
    return dict(found[1]) if found is not None and found[0] == operation else {}


class _Faulted:
    """WSGI middleware: the runtime's fault rules in front of moto's dispatcher."""

    def __init__(self, app: Callable[..., Iterable[bytes]], runtime: Any, callers: Mapping[str, Caller]) -> None:
        self.app = app
        self.runtime = runtime
        self.callers = callers

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        named = identify(environ, body)
        key = _ACCESS_KEY.search(environ.get("HTTP_AUTHORIZATION", ""))
        caller = self.callers.get(key.group(1)) if key is not None else None
        if caller is not None:
            # IAM refuses before the service sees the request: no fault applies to it (as in-process).
            refused = self._refusal(caller, named, environ, body)
            if refused is not None:
                return _respond(start_response, *refused)
        if named is None:
            return self._dispatch(environ, named, body, start_response)
        service, operation = named
        url = environ.get("PATH_INFO", "/")
        fault = self.runtime.decide_fault(service=service, operation=operation, body=body, url=url)
        if fault is not None and caller is not None:
            # A function in a container runs on the wall clock: its SDK's timeouts are real
            # seconds, so the rule's latency is too, and a read timeout shorter than it fails
            # the call as botocore's ReadTimeoutError, as the same rule does in-process.
            if fault.rule.answer_lost:
                for _ in self._dispatch(environ, named, body, lambda *_: None):
                    pass  # carried out; the answer is dropped
                _hold_until_hung_up(environ, fault.latency)
                start_response("504 Answer lost", [("Content-Length", "0")])  # to a closed socket
                return []
            if fault.latency > 0 and _hung_up_within(environ, fault.latency):
                # As in-process: a call whose client gave up first never reaches the service.
                start_response("504 Caller gone", [("Content-Length", "0")])  # to a closed socket
                return []
        if fault is not None and fault.error is not None:
            status, headers, text = _error(service, operation, fault.error, fault.message, fault.status)
            raw = text.encode("utf-8")
            start_response(f"{status} Injected", [*headers.items(), ("Content-Length", str(len(raw)))])
            return [raw]
        return self._dispatch(environ, named, body, start_response)

    def _dispatch(
        self, environ: dict[str, Any], named: tuple[str, str] | None, body: bytes, respond: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("HTTP_HOST", "").startswith("sync-") and named == ("stepfunctions", "StartSyncExecution"):
            request = SimpleNamespace(headers={"X-Amz-Target": environ.get("HTTP_X_AMZ_TARGET", "")}, body=body)
            return _respond(respond, *self.runtime.handle_sync_states(request))
        return self.app(environ, respond)

    def _refusal(
        self, caller: Caller, named: tuple[str, str] | None, environ: dict[str, Any], body: bytes
    ) -> tuple[int, dict[str, str], str] | None:
        from local_runtime import iam

        if named is None:
            # A call this endpoint cannot name is one IAM could not authorise either.
            message = f"{caller.session}: request {environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')} unnamed"
            return 403, {"Content-Type": "application/json"}, json.dumps({"message": message})
        service, operation = named
        model = _service_model(service)
        if model is None:
            return None
        params = request_params(service, operation, environ, body)
        endpoint = caller.management_endpoint if service == "apigatewaymanagementapi" else ""
        return iam.refusal(
            self.runtime,
            caller.role_arn,
            caller.session,
            model,
            operation,
            params,
            region=self.runtime.region,
            endpoint=endpoint,
        )


def _hung_up_within(environ: Mapping[str, Any], seconds: float) -> bool:
    """Wait up to ``seconds`` (real) for the caller to hang up (its read timeout); True if it did,
    then with the connection dropped."""
    import select
    import socket

    connection = environ.get("werkzeug.socket")
    if connection is None:
        real_sleep(seconds)
        return False
    deadline = real_monotonic() + seconds
    while (left := deadline - real_monotonic()) > 0:
        readable, _, _ = select.select([connection], [], [], min(left, 0.2))
        try:
            gone = bool(readable) and not connection.recv(1, socket.MSG_PEEK)
        except OSError:
            gone = True
        if gone:
            _hang_up(connection)
            return True
    return False


def _hold_until_hung_up(environ: Mapping[str, Any], latency: float) -> None:
    """An answer that never reaches its caller: held until the caller gives up (its read
    timeout: botocore's ``ReadTimeoutError``), or dropped unanswered after a while."""
    if not _hung_up_within(environ, max(latency, _ANSWER_LOST_HOLD)):
        connection = environ.get("werkzeug.socket")
        if connection is not None:
            _hang_up(connection)


def _hang_up(connection: Any) -> None:
    """Drop the caller's connection (both ways); already gone is fine."""
    import socket

    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _respond(start_response: Callable[..., Any], status: int, headers: Mapping[str, str], text: str) -> Iterable[bytes]:
    raw = text.encode("utf-8")
    start_response(f"{status} bw", [*headers.items(), ("Content-Length", str(len(raw)))])
    return [raw]


def _error(service: str, operation: str, code: str, message: str, status: int) -> tuple[int, dict[str, str], str]:
    import botocore.session

    try:
        model = botocore.session.get_session().get_service_model(service).operation_model(operation)
    except Exception:  # noqa: BLE001 - an operation botocore does not know: a plain JSON error
        import json

        return status, {"Content-Type": "application/json", "x-amzn-ErrorType": code}, json.dumps({"message": message})
    return error_response(model, code, message, status)


class AwsEndpoint(ThreadedMotoServer):
    """moto's threaded server with the runtime's fault rules in front."""

    def __init__(self, runtime: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(ip_address=host, port=port, verbose=False)
        self.runtime = runtime
        #: Access key id -> the function that signs with it (``bw up --containers``).
        self.callers: dict[str, Caller] = {}

    def _server_entry(self) -> None:
        app = _Faulted(DomainDispatcherApplication(create_backend_app), self.runtime, self.callers)
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"

    def stop(self) -> None:
        server = self._server
        super().stop()
        if server is not None:
            server.server_close()  # moto's stop leaves the listening socket open
