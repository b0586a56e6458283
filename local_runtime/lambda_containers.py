"""``bw up --containers``: every function of the live stack in a real Lambda container.

SAM CLI's own machinery runs them: ``sam local start-lambda`` (the Lambda Invoke API on
127.0.0.1, one warm container per function, ``--warm-containers LAZY``) on the
``sam build`` output of the template for this host's architecture, with the layer, on the
python3.13 image ``make lambda-image`` builds offline. The runtime's Lambda seam sends
every invocation there instead of running the handler in-process -- the gateway's
routes, the HTTP API, schedules and the state machines' ``lambda:invoke`` tasks alike --
so the runtime's own checks stay in front (payload limits, the caller's IAM, the
function's timeout) and errors come back as Lambda reports them (``FunctionError``,
the handler's ``errorType``).

The containers reach the stack through the live ``aws`` endpoint
(:class:`~local_runtime.aws_endpoint.AwsEndpoint`), which listens on 127.0.0.1 only: a
:class:`~local_runtime.containers.Gateway` relays ``bw-stack:4566`` on a Docker network of
this stack's own to it. Each function signs with an access key id of its own, mapped
to its execution role there, so every call it makes is evaluated against that role.

Timeouts: SAM counts a cold start (the runtime's init) against the function's Timeout;
Lambda gives the init its own budget. The build SAM runs gets every Timeout plus
:data:`COLD_START_ALLOWANCE`, and the runtime enforces the template's Timeout itself
(plus the allowance on a container's first invocation): past it the caller gets
``Sandbox.Timedout``, as on Lambda; SAM's container may still finish that run.
Invocations of one function run one at a time (one execution environment each).

Logs: SAM writes every container's output into one stream (``start-lambda.log``), the
functions' lines interleaved. Each function's own container log (``docker logs``, found
by SAM's ``sam.cli.function.name`` label on this stack's network) is followed instead, and
its lines go where an in-process function's go (:func:`local_runtime.logs.emit`:
``.bw/logs/<Function>.log``, ``bw logs``, the console); the runtime's START/END/REPORT
lines and the emulator's own are not the function's. The lines between an invocation's
START and END are its output: its EMF documents become the invocation's metrics, and
the invocation carries the request id the function logged with.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_runtime import emf, leftovers, logs
from local_runtime.aws_endpoint import AwsEndpoint, Caller
from local_runtime.clock import real_monotonic, real_sleep
from local_runtime.containers import Gateway, env_vars
from local_runtime.lambdas import LocalFunction
from local_runtime.models import FunctionSpec, Invocation

__all__ = [
    "COLD_START_ALLOWANCE",
    "ContainerFunction",
    "LambdaContainers",
    "access_key",
    "build_for_containers",
    "layer_arn",
    "native_architecture",
    "on_architecture",
    "with_own_keys",
]

#: Seconds a container's first invocation may take beyond the function's Timeout (its init).
COLD_START_ALLOWANCE = 60
#: How long ``sam local start-lambda`` may take to listen.
_LISTEN_TIMEOUT = 120.0
#: Real seconds an answered invocation waits for its END line in the container's log.
_LOG_SETTLE = 5.0
#: The emulator's own lines (``02 Dec 2026 06:29:25,123 [INFO] (rapid) ...``) and the
#: Lambda runtime's per-invocation ones: the platform's, not the function's.
_PLATFORM_LINE = re.compile(
    r"^(?:\d{2} \w{3} \d{4} [\d:,.]+ \[\w+\] \(rapid\)|(?:START|END|REPORT) RequestId: |INIT_(?:START|REPORT) )"
)
_START = re.compile(r"^START RequestId: (\S+)")
_END = re.compile(r"^END RequestId: (\S+)")


def native_architecture() -> str:
    """This host's Lambda architecture (arm64 elsewhere runs under qemu, ~70 s a cold start)."""
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


def _sam() -> str:
    return shutil.which("sam") or str(Path(sys.executable).with_name("sam"))


def _sam_env() -> dict[str, str]:
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "SAM_CLI_DISABLE_VERSION_CHECK": "1"}


def layer_arn(root: Path) -> str:
    """The layer's ARN, its version following its source: SAM tags the image it bakes a
    layer into by that ARN and reuses an image of that tag (a fixed version ran later
    stacks on the first build's layer)."""
    layer = root / "layers" / "resilience"
    digest = hashlib.sha256()
    for path in sorted(p for p in layer.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(layer)).encode() + b"\0" + path.read_bytes())
    return f"arn:aws:lambda:us-east-1:123456789012:layer:breakwater-resilience:{int(digest.hexdigest()[:12], 16)}"


def on_architecture(template: Path, work: Path, architecture: str) -> Path:
    """The template with every function and the layer on ``architecture`` (paths made absolute)."""
    root = template.parent
    text = template.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^(\s+(?:Compatible)?Architectures:) \[arm64\]$", rf"\1 [{architecture}]", text)
    text = re.sub(r"(?m)^(\s+BuildArchitecture:) arm64$", rf"\1 {architecture}", text)
    text = re.sub(
        r"(?m)^(\s+(?:CodeUri|ContentUri|DefinitionUri):) ([\w./-]+)$", lambda m: f"{m[1]} {root / m[2]}", text
    )
    target = work / "template.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def build_for_containers(template: Path, work: Path, architecture: str | None = None) -> tuple[Path, Path]:
    """``sam build`` of ``template`` for ``architecture`` (this host's by default) into
    ``work``: (the built template SAM runs, the layer cache that holds the layer).

    Compiled to bytecode (the code is mounted read-only: without it every cold start
    compiles botocore and Powertools again); every Timeout plus the cold-start allowance;
    the layer named by ARN and found in the layer cache, so one image holds it for every
    function instead of one image build per container start.
    """
    architecture = architecture or native_architecture()
    template = template.resolve()
    source = template if architecture == "arm64" else on_architecture(template, work, architecture)
    build_dir = work / "build"
    done = subprocess.run(
        [_sam(), "build", "-t", str(source), "--build-dir", str(build_dir),
         "--cache-dir", str(work / "cache"), "--cached"],
        cwd=template.parent, env=_sam_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"sam build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    # In a process of its own: its worker pool would wait on the runtime's virtual clock here.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "2", "--invalidation-mode", "unchecked-hash", str(build_dir)],
        capture_output=True, check=False,
    )  # fmt: skip
    built = build_dir / "template.yaml"
    text = built.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^(\s+Timeout:) (\d+)$", lambda m: f"{m[1]} {int(m[2]) + COLD_START_ALLOWANCE}", text)
    if text.count("- Ref: ResilienceLayer") != 1:
        raise RuntimeError("the layer is no longer one Globals entry of the built template")
    arn = layer_arn(template.parent)
    _, name, version = arn.rsplit(":", 2)
    cache = work / "layer-cache"
    cache.mkdir(exist_ok=True)
    cached = cache / f"{name}-{version}-{hashlib.sha256(arn.encode()).hexdigest()[:10]}"
    if cached.is_symlink() or cached.exists():
        cached.unlink()
    cached.symlink_to(build_dir / "ResilienceLayer", target_is_directory=True)
    target = built.with_name("template.containers.yaml")
    target.write_text(text.replace("- Ref: ResilienceLayer", f"- {arn}"), encoding="utf-8")
    return target, cache


def with_own_keys(template: Path) -> Path:
    """``template`` (built) declaring ``AWS_ACCESS_KEY_ID`` beside ``AWS_ENDPOINT_URL``.

    SAM gives a container only the variables its template declares from ``--env-vars``;
    every ``AWS_*`` credential it does not is its own process's (the shell's keys): without
    this every container signed as the administrator and no role held it. A copy beside the
    built template (its ``CodeUri`` are relative to it); Lambda would refuse the reserved
    name in a deployed template, so the template itself never declares it.
    """
    text = template.read_text(encoding="utf-8")
    declared, count = re.subn(
        r"(?m)^(\s+)AWS_ENDPOINT_URL:(.*)$", lambda m: f"{m[0]}\n{m[1]}AWS_ACCESS_KEY_ID: ''", text
    )
    if count == 0:
        raise RuntimeError(f"{template} no longer declares AWS_ENDPOINT_URL (Globals): the functions' keys need it")
    target = template.with_name(f"{template.stem}.own-keys.yaml")
    target.write_text(declared, encoding="utf-8")
    return target


def access_key(logical_id: str) -> str:
    """A function's own access key id (AWS's shape: ASIA + 16 upper-case characters)."""
    return "ASIA" + hashlib.sha256(logical_id.encode()).hexdigest()[:16].upper()


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class ContainerLog:
    """Follows one function's container log (``docker logs --follow``): each line of the
    function to :func:`local_runtime.logs.emit`, each invocation's lines (START to END) to
    :meth:`finished`."""

    def __init__(self, function: str, container: str) -> None:
        self.function = function
        self.container = container
        self._done: list[tuple[str, list[str]]] = []  # (request id, lines), oldest first
        self._changed = threading.Condition()
        self._skip = 0
        self.process = subprocess.Popen(
            ["docker", "logs", "--follow", container],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self._threads = [
            threading.Thread(target=self._read, args=(stream, kind), name=f"bw-logs-{function}", daemon=True)
            for stream, kind in ((self.process.stdout, logs.STDOUT), (self.process.stderr, logs.STDERR))
        ]
        self._current: tuple[str, list[str]] | None = None
        for thread in self._threads:
            thread.start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self, stream: Any, kind: str) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            started = _START.match(line)
            ended = _END.match(line)
            platform = _PLATFORM_LINE.match(line) is not None
            with self._changed:
                if started is not None:
                    self._current = (started[1], [])
                elif ended is not None:
                    current = self._current if self._current is not None else (ended[1], [])
                    self._current = None
                    if self._skip:
                        self._skip -= 1  # the END of an invocation its caller stopped waiting for
                    else:
                        self._done.append(current)
                    self._changed.notify_all()
                elif self._current is not None and not platform:
                    self._current[1].append(line)
            if not platform:
                logs.emit(self.function, line, kind)
        stream.close()

    def finished(self, timeout: float) -> tuple[str, list[str]] | None:
        """The next invocation's (request id, lines) once its END is logged; None past ``timeout``
        (then that invocation's END, when it comes, is no one's)."""
        deadline = real_monotonic() + timeout
        with self._changed:
            while not self._done:
                left = deadline - real_monotonic()
                if left <= 0 or not self.alive:
                    self._skip += 1
                    return None
                self._changed.wait(min(left, 0.5))
            return self._done.pop(0)

    def forget_next(self) -> None:
        """The next invocation to end is one its caller gave up on (a timeout)."""
        with self._changed:
            self._skip += 1

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


@dataclass
class ContainerFunction:
    """One function served by ``sam local start-lambda``: the runtime's Lambda seam calls
    :meth:`invoke` as it calls :meth:`LocalFunction.invoke`."""

    spec: FunctionSpec
    local: LocalFunction
    host: str
    port: int
    #: The stack's Docker network (its containers are found there by function).
    network: str = ""
    invocations: list[Invocation] = field(default_factory=list)
    #: Real seconds of each invocation, cold ones first flagged (what ``bw up`` reports).
    timings: list[tuple[bool, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _warm: bool = False
    _log: ContainerLog | None = field(default=None, repr=False)

    @property
    def clock(self) -> Any:
        return self.local.clock

    @property
    def role(self) -> str | None:
        return self.local.role

    def invoke(self, event: Any) -> Invocation:
        body = json.dumps(event).encode("utf-8")
        with self._lock:
            cold = not self._warm
            allowed = self.spec.timeout + (COLD_START_ALLOWANCE if cold else 0)
            request_id = str(uuid.uuid4())
            started = self.clock.now()
            invocation = Invocation(self.spec.logical_id, request_id, None, started_at=started, cold_start=cold)
            began = real_monotonic()
            connection = http.client.HTTPConnection(self.host, self.port, timeout=allowed)
            try:
                connection.request(
                    "POST",
                    f"/2015-03-31/functions/{self.spec.logical_id}/invocations",
                    body=body,
                    headers={"Content-Type": "application/json", "X-Amz-Invocation-Type": "RequestResponse"},
                )
                response = connection.getresponse()
                raw = response.read()
                status, function_error = response.status, response.getheader("X-Amz-Function-Error")
            except TimeoutError:
                status, function_error, raw = 0, None, b""
            finally:
                connection.close()
            elapsed = real_monotonic() - began
            self._warm = True
            if status != 0:
                self._collect_output(invocation)
            elif self._log is not None and self._log.alive:
                self._log.forget_next()  # its END, if it comes, belongs to no one waiting
            self.timings.append((cold, elapsed))
        invocation.duration = elapsed
        if status == 0 or elapsed > allowed:
            invocation.error_type = "Sandbox.Timedout"
            invocation.error_message = (
                f"RequestId: {request_id} Error: Task timed out after {self.spec.timeout:.2f} seconds"
            )
            invocation.payload = {"errorType": invocation.error_type, "errorMessage": invocation.error_message}
        elif status != 200:
            # SAM's own failure (no container, emulator gone): not an answer of the function.
            raise RuntimeError(f"sam local start-lambda answered {status} for {self.spec.logical_id}: {raw[:500]!r}")
        else:
            try:
                invocation.payload = json.loads(raw) if raw else None
            except ValueError:
                invocation.payload = raw.decode("utf-8", "replace")
            if function_error is not None:
                payload = invocation.payload if isinstance(invocation.payload, dict) else {}
                invocation.error_type = str(payload.get("errorType") or function_error)
                invocation.error_message = str(payload.get("errorMessage", ""))
        self.invocations.append(invocation)
        return invocation

    def _collect_output(self, invocation: Invocation) -> None:
        """The invocation's lines from its container's log: its EMF, the request id it logged with."""
        log = self._follow()
        if log is None:
            return
        found = log.finished(_LOG_SETTLE)
        if found is not None:
            invocation.request_id, lines = found
            invocation.emf = emf.documents("\n".join(lines))

    def _follow(self) -> ContainerLog | None:
        """The log of the container that answers for this function (SAM starts a new one if it died)."""
        if self._log is not None and self._log.alive:
            return self._log
        found = subprocess.run(
            ["docker", "ps", "-q", "--no-trunc", "--filter", f"network={self.network}",
             "--filter", f"label=sam.cli.function.name={self.spec.logical_id}"],
            capture_output=True, text=True, check=False,
        ).stdout.split()  # fmt: skip
        if self._log is not None:
            self._log.stop()
            found = [c for c in found if c != self._log.container]
        self._log = ContainerLog(self.spec.logical_id, found[0]) if found else None
        return self._log

    def close(self) -> None:
        if self._log is not None:
            self._log.stop()
            self._log = None


class LambdaContainers:
    """``sam local start-lambda`` for a live stack, its Docker network and relay; the
    runtime's functions answered by it while it runs (``runtime.containers``)."""

    def __init__(
        self,
        runtime: Any,
        endpoint: AwsEndpoint,
        *,
        work: Path,
        architecture: str | None = None,
        host: str = "127.0.0.1",
        build: tuple[Path, Path] | None = None,
    ) -> None:
        self.runtime = runtime
        #: (built template, layer cache) already made by :func:`build_for_containers` or alike.
        self.build = build
        self.endpoint = endpoint
        self.work = work.resolve()  # SAM runs in the build folder: every path it gets is absolute
        self.architecture = architecture or native_architecture()
        self.host = host
        self.port = 0
        # One network and relay container per stack: two stacks (or the container tier)
        # on one Docker never share names.
        suffix = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.network = f"bw-up-{suffix}"
        self.gateway: Gateway | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = work / "start-lambda.log"
        self.functions: dict[str, ContainerFunction] = {}
        self.build_seconds: float | None = None
        #: Who started the network, relay and SAM (recorded under ``work/owners`` while it runs).
        self.owner = leftovers.owner_of_this_process(self.network, self.network)

    def start(self) -> LambdaContainers:
        began = real_monotonic()
        template, layer_cache = self.build or build_for_containers(
            self.runtime.template_path, self.work / self.architecture, self.architecture
        )
        self.build_seconds = real_monotonic() - began
        try:
            self._start_network()
            env_file = self._write_env()
            self._start_sam(template, layer_cache, env_file)
        except BaseException:
            self.stop()
            raise
        self.runtime.containers = self
        return self

    def _start_network(self) -> None:
        _, target_port = self.endpoint.get_host_and_port()
        self.gateway = Gateway(
            int(target_port),
            network=self.network,
            image=f"public.ecr.aws/lambda/python:3.13-{self.architecture}",
            name=self.network,
            platform=f"linux/{'arm64' if self.architecture == 'arm64' else 'amd64'}",
            labels=leftovers.labels(self.owner),
        )
        # Before anything exists: a kill -9 from here on leaves what the record names.
        leftovers.write_record(self.work, self.owner)
        self.gateway.start()

    def _write_env(self) -> Path:
        assert self.gateway is not None
        template = self.runtime.template
        document = env_vars(template, self.gateway.endpoint)
        callers: dict[str, Caller] = {}
        for logical_id, spec in template.functions.items():
            key = access_key(logical_id)
            document[logical_id]["AWS_ACCESS_KEY_ID"] = key
            role = self.runtime.iam.role_for(logical_id) if self.runtime.iam is not None else None
            if role is not None:
                management = str(spec.environment.get("BW_WEBSOCKET_ENDPOINT", ""))
                callers[key] = Caller(role.arn, spec.function_name, management)
        self.endpoint.callers.clear()
        self.endpoint.callers.update(callers)
        env_file = self.work / "env.json"
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text(json.dumps(document, indent=1), encoding="utf-8")
        return env_file

    def _start_sam(self, template: Path, layer_cache: Path, env_file: Path) -> None:
        template = with_own_keys(template)
        self.port = _free_port(self.host)
        log = self.log_path.open("wb")
        # Its own session: a Ctrl-C at the terminal reaches bw, whose stop() then stops SAM
        # (SIGINT: SAM removes its warm containers) after the stack's sockets are closed.
        self.process = subprocess.Popen(
            [_sam(), "local", "start-lambda", "-t", str(template), "--layer-cache-basedir", str(layer_cache),
             "--env-vars", str(env_file), "--docker-network", self.network, "--skip-pull-image",
             "--warm-containers", "LAZY", "--host", self.host, "--port", str(self.port)],
            cwd=template.parent, env=_sam_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.owner.sam_pid = self.process.pid
        self.owner.sam_started = leftovers.process_started(self.process.pid) or ""
        leftovers.write_record(self.work, self.owner)
        deadline = real_monotonic() + _LISTEN_TIMEOUT
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or real_monotonic() > deadline:
                    raise RuntimeError(f"sam local start-lambda did not listen; see {self.log_path}") from None
                real_sleep(0.5)

    def stop(self) -> None:
        """SAM first (SIGINT: it removes its containers), then the relay and the network."""
        if self.runtime.containers is self:
            self.runtime.containers = None
        process, self.process = self.process, None
        for function in self.functions.values():
            function.close()
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
            # Whatever SAM left on the network (a kill, a container it was still creating).
            left = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"network={self.network}"],
                capture_output=True, text=True, check=False,
            ).stdout.split()  # fmt: skip
            if self.gateway is not None:
                left = [c for c in left if not self.gateway.container_id.startswith(c)]
            if left:
                subprocess.run(["docker", "rm", "-f", *left], capture_output=True, check=False)
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        subprocess.run(["docker", "network", "rm", self.network], capture_output=True, check=False)
        leftovers.remove_record(self.work, self.network)
        self.endpoint.callers.clear()

    def function(self, local: LocalFunction) -> ContainerFunction:
        """The container that answers for ``local`` (the runtime's seam asks for each call;
        a reset gives the runtime new LocalFunctions, the containers stay warm)."""
        found = self.functions.get(local.spec.logical_id)
        if found is None:
            found = ContainerFunction(local.spec, local, self.host, self.port, self.network)
            self.functions[local.spec.logical_id] = found
        found.local = local
        return found

    def timings(self) -> dict[str, list[tuple[bool, float]]]:
        """Real seconds of every invocation so far, by function, (cold?, seconds) each."""
        return {name: list(function.timings) for name, function in sorted(self.functions.items())}
