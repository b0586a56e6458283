"""Real Lambda containers (``sam local invoke``) against a stack served on this machine.

``sam local invoke`` runs a function in a container on a Docker network; the stack it
calls (moto's server, provisioned from the template) listens on 127.0.0.1 only. Three
pieces join them:

* :func:`env_vars` -- the ``--env-vars`` file: every function's template environment,
  resolved as the local runtime names the resources, plus ``AWS_ENDPOINT_URL`` and
  ``BW_WEBSOCKET_ENDPOINT`` pointing at the stack. SAM only passes variables the
  template declares, which is why ``Globals`` declares ``AWS_ENDPOINT_URL`` (empty:
  botocore then uses AWS's endpoints, as on AWS).
* :class:`Gateway` -- a Docker network and one idle container on it whose network
  namespace holds a listening socket that this process opened there (``setns``); each
  connection to it is relayed to the stack on 127.0.0.1. Functions reach the stack by
  the container's network aliases (``bw-stack``, and ``sync-bw-stack`` for the
  ``sync-`` host prefix of StartSyncExecution); nothing listens beyond loopback on
  this machine.
* :class:`MotoStack` -- moto's server on 127.0.0.1 holding the resources the
  :class:`~local_runtime.provisioning.Provisioner` creates from the template (tables,
  secrets, buckets, stack data), for as long as the context lasts.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from local_runtime.runtime import FAKE_AWS_ENV, LocalRuntime
from local_runtime.template import LocalTemplate

__all__ = [
    "GATEWAY_ALIAS",
    "GATEWAY_PORT",
    "LAMBDA_IMAGE",
    "NETWORK",
    "Gateway",
    "MotoStack",
    "env_vars",
]

#: The image SAM CLI runs python3.13 arm64 functions on (tools/lambda_image.sh builds it).
LAMBDA_IMAGE = "public.ecr.aws/lambda/python:3.13-arm64"
#: The Docker network ``sam local invoke --docker-network`` joins.
NETWORK = "bw-local"
GATEWAY_CONTAINER = "bw-stack-gateway"
GATEWAY_ALIAS = "bw-stack"
GATEWAY_PORT = 4566
#: What a function needs besides its template environment (fake credentials: no real account).
_AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def env_vars(
    template: LocalTemplate,
    endpoint: str,
    *,
    websocket_endpoint: str | None = None,
) -> dict[str, Any]:
    """SAM's ``--env-vars`` document: ``{"Parameters": {...}, "<LogicalId>": {VAR: value}}``.

    ``endpoint`` is where the functions find AWS (``AWS_ENDPOINT_URL``); the API Gateway
    management API is that endpoint too unless ``websocket_endpoint`` says otherwise.
    """
    common = {
        "AWS_ENDPOINT_URL": endpoint,
        "BW_WEBSOCKET_ENDPOINT": websocket_endpoint or endpoint,
        **{key: FAKE_AWS_ENV[key] for key in _AWS_VARIABLES},
        "AWS_DEFAULT_REGION": template.region,
        "AWS_REGION": template.region,
    }
    document: dict[str, Any] = {"Parameters": dict(common)}
    for logical_id, spec in sorted(template.functions.items()):
        variables = {key: _text(value) for key, value in spec.environment.items()}
        variables.update(common)
        document[logical_id] = variables
    return document


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


class MotoStack:
    """moto's server on 127.0.0.1 with the template's resources (the Provisioner's)."""

    def __init__(
        self,
        template: str | Path = "template.yaml",
        *,
        parameters: Mapping[str, str] | None = None,
        data: str | Path | None = None,
        port: int = 0,
    ) -> None:
        self.template_path = Path(template)
        self.parameters = dict(parameters or {})
        default_data = self.template_path.parent / "events" / "local_data.yaml"
        self.data = Path(data) if data is not None else (default_data if default_data.exists() else None)
        self.port = port
        self.runtime: LocalRuntime | None = None
        self._server: Any = None
        self._config: Any = None
        self.endpoint = ""

    def start(self) -> MotoStack:
        from moto.server import ThreadedMotoServer

        # The Provisioner creates the stack in moto's backends (the ones its server serves);
        # the runtime stops right after, so its virtual clock and IAM hooks stay out of it.
        runtime = LocalRuntime(self.template_path, parameters=self.parameters, data=self.data, iam=False)
        runtime.start()
        runtime.stop()
        self.runtime = runtime
        # The state machines live where the runtime made them (moto's ASL interpreter). Its
        # Lambda tasks are not the containers: moto answers them itself, without Docker.
        from unittest.mock import patch

        from moto.core.config import default_user_config

        self._config = patch.dict(
            default_user_config,
            {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}},
        )
        self._config.start()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.port = int(port)
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._config is not None:
            self._config.stop()
            self._config = None

    @property
    def template(self) -> LocalTemplate:
        assert self.runtime is not None, "start the stack first"
        return self.runtime.template

    def client(self, service: str) -> Any:
        """A boto3 client on the served stack (for tests: what the functions wrote)."""
        import boto3

        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name=self.template.region,
            aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_AWS_ENV["AWS_SESSION_TOKEN"],
        )

    def __enter__(self) -> MotoStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


class Gateway:
    """The stack at ``http://bw-stack:4566`` on the Docker network ``bw-local``.

    An idle container (``sleep``) holds the network namespace; this process opens a
    listening socket inside it and relays each connection to ``target_port`` on
    127.0.0.1. Needs root (``setns``), as dockerd does.
    """

    def __init__(
        self,
        target_port: int,
        *,
        network: str = NETWORK,
        image: str = LAMBDA_IMAGE,
        name: str = GATEWAY_CONTAINER,
        port: int = GATEWAY_PORT,
        platform: str = "linux/arm64",
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.target_port = target_port
        #: Docker labels of the network it creates and of its container (who started them).
        self.labels = dict(labels or {})
        self.network = network
        self.image = image
        self.name = name
        self.port = port
        self.platform = platform
        self.container_id = ""
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{GATEWAY_ALIAS}:{self.port}"

    def start(self) -> Gateway:
        labelled = [part for key, value in self.labels.items() for part in ("--label", f"{key}={value}")]
        if not _docker("network", "ls", "-q", "--filter", f"name=^{self.network}$"):
            _docker("network", "create", *labelled, self.network)
        _docker("rm", "-f", self.name, check=False)
        self.container_id = _docker(
            "run", "-d", "--rm", "--name", self.name, "--platform", self.platform, *labelled,
            "--network", self.network, "--network-alias", GATEWAY_ALIAS,
            "--network-alias", f"sync-{GATEWAY_ALIAS}",
            "--entrypoint", "/bin/sleep", self.image, "infinity",
        )  # fmt: skip
        pid = int(_docker("inspect", "-f", "{{.State.Pid}}", self.name))
        self._listener = _listen_in_namespace(pid, self.port)
        self._thread = threading.Thread(target=self._serve, name="bw-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        _docker("rm", "-f", self.name, check=False)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        listener.settimeout(0.5)
        while not self._stop.is_set():
            try:
                inbound, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(inbound,), daemon=True).start()

    def _relay(self, inbound: socket.socket) -> None:
        try:
            outbound = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            inbound.close()
            return
        outbound.settimeout(None)
        inbound.settimeout(None)
        peers = {inbound: outbound, outbound: inbound}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            open_ends = 2
            while open_ends and not self._stop.is_set():
                for key, _ in selector.select(timeout=1.0):
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    try:
                        chunk = source.recv(65536)
                    except OSError:
                        chunk = b""
                    if chunk:
                        peers[source].sendall(chunk)
                        continue
                    selector.unregister(source)
                    open_ends -= 1
                    try:
                        peers[source].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
        inbound.close()
        outbound.close()


def _listen_in_namespace(pid: int, port: int) -> socket.socket:
    """A socket listening on ``port`` in the network namespace of process ``pid``.

    ``setns`` moves only the calling thread, so a short-lived thread enters the
    namespace, opens the socket and ends; the socket stays in that namespace.
    """
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_listen() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                os.setns(fd, os.CLONE_NEWNET)
            finally:
                os.close(fd)
            made.append(socket.create_server(("0.0.0.0", port), backlog=64))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failed.append(exc)

    worker = threading.Thread(target=enter_and_listen, name="bw-gateway-setns")
    worker.start()
    worker.join()
    if failed:
        raise RuntimeError(f"cannot listen in the gateway's network namespace: {failed[0]}") from failed[0]
    return made[0]
