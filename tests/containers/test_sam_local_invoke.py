"""The container tier: every function, built by ``sam build``, in a real Lambda container.

SAM CLI runs each function on the python3.13 arm64 image (``make lambda-image`` builds it
offline) with the resilience layer, its emulator (RIE) and the ``--env-vars`` file that
``bw env`` writes; the functions call a stack served by moto on 127.0.0.1, provisioned
from the template (see :mod:`local_runtime.containers`). What this proves that the
in-process tiers cannot: the package (the function folder plus the layer built for
arm64, native wheels included) imports and answers in the Lambda runtime.

The template is arm64. On an x86 host arm64 runs under qemu, where a cold start (importing
the layer) costs 20-40 s of CPU per function; so every function and event runs on this
host's own architecture -- the template built again with ``Architectures: [x86_64]``, on
the python:3.13-x86_64 image made the same way -- and the arm64 build (its aarch64 wheels
on the arm64 image) answers the README's ``sam local invoke`` once. On an arm64 host the
template runs as it is.

One ``sam local start-lambda --warm-containers LAZY`` serves every function: the first
event of a function is its cold start, the others reuse its container; three functions
run at a time. It finds the layer by ARN in its layer cache (the same built folder), so
one image holds it for every function instead of one image build per container start.

Selected by ``-m containers`` (``make containers``, part of ``make test``); the default
pytest run leaves it out.
"""

from __future__ import annotations

import compileall
import concurrent.futures
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local_runtime.lambda_containers import layer_arn

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
WORK = ROOT / ".bw" / "containers"
#: This session's own network and relay: two runs on one Docker (two clones' CI, a helper's
#: tier) would otherwise share ``bw-local``'s relay, and each one's functions reach the other's stack.
NETWORK = f"bw-local-{os.getpid()}-{os.urandom(3).hex()}"
SAM = shutil.which("sam") or str(Path(sys.executable).with_name("sam"))
#: This host's Lambda architecture; arm64 anywhere else runs under qemu.
NATIVE = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
#: SAM counts a cold start (the runtime's init) against the function's Timeout, which Lambda
#: does not, and some Timeouts are 5 s; under qemu a cold start takes 20-40 s. The tier checks
#: answers (the in-process tiers check timeouts), so every build gets this Timeout, and the
#: emulated one more memory (qemu's own).
TIER_TIMEOUT = 120
EMULATED_TIMEOUT = 300
EMULATED_MEMORY = 1024
#: Cold starts at once (the machine has 2 cores).
PARALLEL = 3


@dataclass
class Answer:
    function: str
    event: str
    seconds: float
    payload: Any
    error: str | None


def _sam_env() -> dict[str, str]:
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "SAM_CLI_DISABLE_VERSION_CHECK": "1"}


def _docker_ready(architecture: str) -> None:
    image = f"public.ecr.aws/lambda/python:3.13-{architecture}"
    if shutil.which("docker") is None:
        pytest.fail("docker is not installed: run `make containers` (it installs and starts it)")
    probe = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.fail(f"{image} is missing or dockerd is not running: run `make containers`")


def _sam_build(template: Path, build_dir: Path, *, emulated: bool) -> Path:
    """``sam build``, compiled to bytecode (the code is mounted read-only: without it every
    cold start compiles botocore and Powertools again), with emulation's limits if asked."""
    done = subprocess.run(
        [SAM, "build", "-t", str(template), "--build-dir", str(build_dir),
         "--cache-dir", str(build_dir.parent / "cache"), "--cached"],
        cwd=ROOT, env=_sam_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert compileall.compile_dir(str(build_dir), quiet=1, workers=2, invalidation_mode=_UNCHECKED)
    built = build_dir / "template.yaml"
    text = built.read_text(encoding="utf-8")
    timeout = EMULATED_TIMEOUT if emulated else TIER_TIMEOUT
    text = re.sub(r"(?m)^(\s+)Timeout: \d+$", rf"\g<1>Timeout: {timeout}", text)
    if emulated:
        text = re.sub(r"(?m)^(\s+)MemorySize: \d+$", rf"\g<1>MemorySize: {EMULATED_MEMORY}", text)
    built.write_text(text, encoding="utf-8")
    return built


#: The layer, as SAM finds an already downloaded one (see :func:`_layer_by_arn`).
LAYER_ARN = layer_arn(ROOT)


def _layer_by_arn(built: Path) -> tuple[Path, Path]:
    """The built template with the layer named by ARN, and the layer cache that holds it.

    SAM rebuilds a function's image (the layer ADDed to /opt) at every container start when
    the layer is defined in the template; a layer it finds in ``--layer-cache-basedir`` goes
    into one image that every function shares. Same files in /opt, one build instead of ten.
    """
    _, name, version = LAYER_ARN.rsplit(":", 2)
    cache = built.parent.parent / "layer-cache"
    cache.mkdir(exist_ok=True)
    cached = cache / f"{name}-{version}-{hashlib.sha256(LAYER_ARN.encode()).hexdigest()[:10]}"
    if cached.is_symlink() or cached.exists():
        cached.unlink()
    cached.symlink_to(built.parent / "ResilienceLayer", target_is_directory=True)
    text = built.read_text(encoding="utf-8")
    assert text.count("- Ref: ResilienceLayer") == 1, "the layer is no longer one Globals entry"
    target = built.with_name("template.layer-by-arn.yaml")
    target.write_text(text.replace("- Ref: ResilienceLayer", f"- {LAYER_ARN}"), encoding="utf-8")
    return target, cache


@pytest.fixture(scope="session")
def arm64_template() -> Path:
    """The template as deployed (arm64), under qemu where the host is not arm64."""
    _docker_ready("arm64")
    return _sam_build(ROOT / "template.yaml", WORK / "arm64" / "build", emulated=NATIVE != "arm64")


_UNCHECKED = __import__("py_compile").PycInvalidationMode.UNCHECKED_HASH


@pytest.fixture(scope="session")
def served_stack() -> Iterator[tuple[Any, Path]]:
    """moto on 127.0.0.1 with the template's resources, reached from containers at bw-stack:4566."""
    from local_runtime.containers import Gateway, MotoStack, env_vars

    try:
        with (
            MotoStack(ROOT / "template.yaml") as stack,
            Gateway(stack.port, network=NETWORK, name=f"{NETWORK}-gateway") as gateway,
        ):
            env_file = WORK / "env.json"
            env_file.write_text(json.dumps(env_vars(stack.template, gateway.endpoint), indent=1), encoding="utf-8")
            yield stack, env_file
    finally:
        subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True, check=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def lambda_endpoint(native_template: tuple[Path, Path], served_stack: tuple[Any, Path]) -> Iterator[str]:
    """``sam local start-lambda`` on 127.0.0.1: one warm container per function."""
    _, env_file = served_stack
    template, layer_cache = native_template
    port = _free_port()
    log = (WORK / "start-lambda.log").open("w", encoding="utf-8")
    process = subprocess.Popen(
        [SAM, "local", "start-lambda", "-t", str(template), "--layer-cache-basedir", str(layer_cache),
         "--env-vars", str(env_file),
         "--docker-network", NETWORK, "--skip-pull-image", "--warm-containers", "LAZY",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=_sam_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"start-lambda did not listen; see {log.name}")
            time.sleep(0.5)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # SAM removes its warm containers on Ctrl-C.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _answer(raw: str) -> Any:
    """The function's JSON answer; what SAM sends when there is none (an emulator error) as text."""
    try:
        return json.loads(raw)
    except ValueError:
        return {"notJson": raw}


def _body(answer: Answer) -> dict[str, Any]:
    body = answer.payload.get("body")
    return json.loads(body) if isinstance(body, str) and body else {}


#: (function, sample event, what its answer must be). The stack is moto's server: what
#: needs the live stack (StartSyncExecution, workflows) is expected to answer as a
#: missing dependency does, and says so.
Check = Callable[[Answer, Any], None]


def _status(code: int) -> Check:
    def check(answer: Answer, stack: Any) -> None:
        assert answer.error is None, answer.payload
        assert answer.payload["statusCode"] == code, answer.payload

    return check


def _healthy(answer: Answer, stack: Any) -> None:
    _status(200)(answer, stack)
    body = _body(answer)
    assert body["status"] == "healthy", body
    assert {name: d["status"] for name, d in body["dependencies"].items()} == dict.fromkeys(
        body["dependencies"], "up"
    ), body


def _timeouts(answer: Answer, stack: Any) -> None:
    _status(200)(answer, stack)
    assert _body(answer)["timeouts"]["dynamodb"] == {"connectSeconds": 3.0, "readSeconds": 5.0}


def _returns(expected: dict[str, Any]) -> Check:
    def check(answer: Answer, stack: Any) -> None:
        assert answer.error is None, answer.payload
        assert {k: answer.payload.get(k) for k in expected} == expected, answer.payload

    return check


def _raises(error_type: str, message: str) -> Check:
    def check(answer: Answer, stack: Any) -> None:
        assert answer.payload["errorType"] == error_type, answer.payload
        assert answer.payload["errorMessage"] == message, answer.payload

    return check


def _refused(status: int, code: str) -> Check:
    def check(answer: Answer, stack: Any) -> None:
        _status(status)(answer, stack)
        assert _body(answer)["error"]["code"] == code, answer.payload

    return check


def _admission_needs_the_workflow(answer: Answer, stack: Any) -> None:
    """$connect decides through AuthorizeConnection (StartSyncExecution), which moto's server
    does not serve: the function fails closed with 503, as it must when the workflow is down."""
    _refused(503, "SERVICE_UNAVAILABLE")(answer, stack)
    assert "StartSyncExecution" in _body(answer)["error"]["message"], answer.payload


def _cleanup_started(answer: Answer, stack: Any) -> None:
    _status(200)(answer, stack)
    machine = stack.template.state_machine("DisconnectCleanup").arn
    names = [e["name"] for e in stack.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]]
    assert any(name.startswith("Xy1ZEcabcDEFg=-") for name in names), names


def _delivered(answer: Answer, stack: Any) -> None:
    assert answer.error is None, answer.payload
    assert answer.payload["counts"] == {"delivered": 3, "gone": 0, "parked": 0, "dropped": 0}, answer.payload


def _tenant(answer: Answer, stack: Any) -> None:
    assert answer.error is None, answer.payload
    assert answer.payload["tenantId"] == "acme", answer.payload
    assert answer.payload["config"]["allowAnonymousListeners"] is True, answer.payload


def _backfilled(answer: Answer, stack: Any) -> None:
    assert answer.error is None, answer.payload
    assert answer.payload["pages"] >= 1, answer.payload
    assert "indexed" in answer.payload, answer.payload


CASES: list[tuple[str, str, Check]] = [
    ("HealthFunction", "health/health_details.json", _healthy),
    ("HealthFunction", "health/timeout_status.json", _timeouts),
    ("BlacklistCheckFunction", "blacklist_check/not_revoked.json", _returns({"revoked": False})),
    ("BlacklistCheckFunction", "blacklist_check/revoked.json", _raises("TokenRevokedError", "token revoked")),
    ("ConnectFunction", "connect/bad_role.json", _refused(400, "VALIDATION_ERROR")),
    ("ConnectFunction", "connect/listener.json", _admission_needs_the_workflow),
    ("ConnectFunction", "connect/speaker.json", _admission_needs_the_workflow),
    ("ConnectFunction", "connect/speaker_without_token.json", _admission_needs_the_workflow),
    ("DefaultRouteFunction", "default_route/ping.json", _status(200)),
    ("DefaultRouteFunction", "default_route/not_json.json", _status(400)),
    ("DefaultRouteFunction", "default_route/unknown_action.json", _status(400)),
    ("DisconnectFunction", "disconnect/client_disconnected.json", _cleanup_started),
    ("IdleSweepFunction", "idle_sweep/backfill.json", _backfilled),
    ("IdleSweepFunction", "idle_sweep/close.json", _returns({"closed": "closed"})),
    ("MessageDeliveryFunction", "message_delivery/batch.json", _delivered),
    # The sample's sender holds no speaker connection on this stack: refused, as in-process.
    ("SendMessageFunction", "send_message/hello.json", _status(403)),
    ("TenantConfigFunction", "tenant_config/acme_listener.json", _tenant),
    (
        "VerifyTokenFunction",
        "verify_token/breakwater_speaker.json",
        _returns({"userId": "bot-7", "tenantId": "acme", "roles": ["speaker"], "issuer": "breakwater"}),
    ),
]


@pytest.fixture(scope="session")
def answers(lambda_endpoint: str) -> dict[tuple[str, str], Answer]:
    """Every case's answer; each function's events in order, the functions side by side."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "lambda",
        endpoint_url=lambda_endpoint,
        region_name="us-east-1",
        config=Config(read_timeout=TIER_TIMEOUT + 60, retries={"max_attempts": 1}),
    )
    by_function: dict[str, list[str]] = {}
    for function, event, _ in CASES:
        by_function.setdefault(function, []).append(event)

    def run(function: str) -> list[Answer]:
        found = []
        for event in by_function[function]:
            started = time.monotonic()
            reply = client.invoke(FunctionName=function, Payload=(EVENTS / event).read_bytes())
            payload = _answer(reply["Payload"].read().decode("utf-8"))
            found.append(Answer(function, event, time.monotonic() - started, payload, reply.get("FunctionError")))
        return found

    with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = [a for batch in pool.map(run, by_function) for a in batch]
    report = WORK / "answers.json"
    report.write_text(
        json.dumps([a.__dict__ for a in results], indent=1, default=str),
        encoding="utf-8",
    )
    return {(a.function, a.event): a for a in results}


def test_every_function_has_a_case():
    from local_runtime.template import LocalTemplate

    functions = set(LocalTemplate.load(ROOT / "template.yaml").functions)
    assert functions == {function for function, _, _ in CASES}


@pytest.mark.parametrize(("function", "event"), [(f, e) for f, e, _ in CASES], ids=[f"{f}-{e}" for f, e, _ in CASES])
def test_function_answers_in_its_container(
    function: str, event: str, answers: dict[tuple[str, str], Answer], served_stack: tuple[Any, Path]
):
    check = next(c for f, e, c in CASES if (f, e) == (function, event))
    check(answers[(function, event)], served_stack[0])


def test_sam_local_invoke_arm64_with_bw_env(arm64_template: Path, served_stack: tuple[Any, Path]):
    """The README's command, as a user types it, on the arm64 build and image."""
    _, env_file = served_stack
    done = subprocess.run(
        [SAM, "local", "invoke", "HealthFunction", "-t", str(arm64_template),
         "-e", str(EVENTS / "health" / "health.json"), "--env-vars", str(env_file),
         "--docker-network", NETWORK, "--skip-pull-image"],
        cwd=ROOT, env=_sam_env(), capture_output=True, text=True, check=False, timeout=EMULATED_TIMEOUT + 120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["statusCode"] == 200, answer
