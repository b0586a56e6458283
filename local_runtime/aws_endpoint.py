"""``bw up``'s ``aws`` endpoint: moto's server on the stack's own backends, for outside tools.

``aws --endpoint-url http://127.0.0.1:PORT dynamodb scan --table-name ConnectionsTable``
reads the live stack's data. The runtime's fault rules apply here too, for every
call whose operation the request names (JSON protocols' ``X-Amz-Target``, query
protocols' ``Action``, the management API's ``/@connections/{id}``): the error is
answered in the service's protocol, as :mod:`local_runtime.seams` does for the
stack's own clients. Latency rules are not applied here (the caller's clock is
not the stack's), and neither is IAM: an outside tool signs with whatever
credentials it has, and the runtime's policy evaluation sits on its own botocore
clients.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from local_runtime.protocols import error_response

__all__ = ["AwsEndpoint", "identify"]

#: SigV4 signing names that are not botocore's service names.
_SERVICES = {"states": "stepfunctions", "execute-api": "apigatewaymanagementapi", "email": "ses"}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_MANAGEMENT = {"POST": "PostToConnection", "GET": "GetConnection", "DELETE": "DeleteConnection"}


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
    return None


class _Faulted:
    """WSGI middleware: the runtime's fault rules in front of moto's dispatcher."""

    def __init__(self, app: Callable[..., Iterable[bytes]], runtime: Any) -> None:
        self.app = app
        self.runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        named = identify(environ, body)
        if named is not None:
            service, operation = named
            url = environ.get("PATH_INFO", "/")
            fault = self.runtime.decide_fault(service=service, operation=operation, body=body, url=url)
            if fault is not None and fault.error is not None:
                answer = _error(service, operation, fault.error, fault.message, fault.status)
                if answer is not None:
                    status, headers, text = answer
                    raw = text.encode("utf-8")
                    start_response(f"{status} Injected", [*headers.items(), ("Content-Length", str(len(raw)))])
                    return [raw]
        return self.app(environ, start_response)


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

    def _server_entry(self) -> None:
        app = _Faulted(DomainDispatcherApplication(create_backend_app), self.runtime)
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
