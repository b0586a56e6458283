"""``bw up --containers``: the live stack with every function in a real Lambda container.

The same stack as ``tests/live`` (the strict runtime behind real sockets), but each
invocation -- the gateway's routes, the state machines' ``lambda:invoke`` tasks -- runs
in SAM's ``start-lambda`` container of the function (this host's architecture), which
calls the stack through the ``aws`` endpoint with its own role. A speaker and a listener
connect with tokens, the speaker sends, the listener receives and the ack comes back;
each function's log lines reach ``.bw/logs/<Function>.log`` and the console as they do
in-process; stopping the stack leaves no container, network, process or port behind.

Real seconds of every invocation (cold and warm) go to ``.bw/up-containers/timings.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from local_runtime import LocalRuntime, logs
from local_runtime.gateway import RealTimeLoop
from local_runtime.lambda_containers import access_key
from local_runtime.live import LiveStack, wait_until
from tests.live.test_edge_live import get, signed_headers

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".bw" / "up-containers"
#: One machine is every client: the per-IP $connect limit is the live tier's business.
PARAMETERS = {"ConnectRateLimit": "100000", "RateLimitMessages": "100000"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, native_template: tuple[Path, Path]) -> Iterator[LiveStack]:
    """The stack on the tier's build (its Timeouts raised for SAM; the runtime enforces the template's)."""
    home = tmp_path_factory.mktemp("up")
    runtime = LocalRuntime(ROOT / "template.yaml", parameters=PARAMETERS, data=ROOT / "events" / "local_data.yaml")
    stack = LiveStack(
        runtime, containers=True, containers_dir=WORK, containers_build=native_template, up_file=home / "up.json"
    ).start()
    try:
        yield stack
    finally:
        stack.stop()


def _run(coroutine: Any) -> Any:
    async def main() -> Any:
        return await coroutine

    with asyncio.Runner(loop_factory=RealTimeLoop) as runner:
        return runner.run(main())


async def _open(stack: LiveStack, role: str, token: str) -> ClientConnection:
    assert stack.gateway is not None
    return await connect(
        f"{stack.gateway.url}/?role={role}&tenant=acme&session=containers",
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=180,  # two cold starts: ConnectFunction, then the workflow's VerifyTokenFunction
    )


def _send(n: int) -> str:
    return json.dumps(
        {
            "action": "sendMessage",
            "sessionId": "containers",
            "clientMessageId": f"{n:08x}-0000-4000-8000-000000000000",
            "body": {"n": n},
        }
    )


async def _frame(client: ClientConnection, timeout: float = 180.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(client.recv(), timeout))  # type: ignore[no-any-return]


def test_a_speaker_reaches_a_listener_through_lambda_containers(live: LiveStack, tmp_path: Path) -> None:
    runtime = live.runtime
    speaker_token = runtime.breakwater_token(subject="host-1", roles=("speaker",))
    listener_token = runtime.breakwater_token(subject="guest-1", roles=("listener",))

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        speaker = await _open(live, "speaker", speaker_token)
        listener = await _open(live, "listener", listener_token)
        acks, received = [], []
        for n in (1, 2):  # the first sendMessage is its container's cold start, the second warm
            await speaker.send(_send(n))
            acks.append(await _frame(speaker))
            received.append(await _frame(listener))
        await speaker.close()
        await listener.close()
        return acks, received

    containers = live.containers
    assert containers is not None
    with logs.to_files(tmp_path / "logs"):
        acks, received = _run(scenario())
        # The ack is posted from inside sendMessage: its invocation (and its last lines) ends just after.
        assert wait_until(lambda: len(containers.timings().get("SendMessageFunction", ())) == 2, timeout=60)

    assert [a["type"] for a in acks] == ["ack", "ack"], acks
    assert [a["recipients"]["delivered"] for a in acks] == [1, 1], acks
    assert [(m["type"], m["body"]) for m in received] == [("message", {"n": 1}), ("message", {"n": 2})], received
    timings = containers.timings()
    # Every function that answered ran in its container: the in-process handlers stayed unloaded.
    for name in ("ConnectFunction", "VerifyTokenFunction", "SendMessageFunction"):
        assert timings.get(name), (name, timings)
        assert runtime.functions[name].invocations == [], name
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "timings.json").write_text(json.dumps(timings, indent=1), encoding="utf-8")
    print("\ninvocations through the live stack (cold?, real seconds):", json.dumps(timings))
    _logged_like_in_process(live, tmp_path / "logs", (speaker_token, listener_token))


def _logged_like_in_process(live: LiveStack, directory: Path, tokens: tuple[str, ...]) -> None:
    """Each container's lines are in its function's log file and the console's logs, as an
    in-process function's are: records with their correlation id, no token, no platform line."""
    import urllib.request

    containers = live.containers
    assert containers is not None
    # An invocation waits for its END line: its lines were handed over before it returned.
    assert all(invocation.emf for invocation in containers.functions["SendMessageFunction"].invocations)
    found: dict[str, list[dict[str, Any]]] = {}
    for function in ("ConnectFunction", "VerifyTokenFunction", "SendMessageFunction"):
        text = logs.log_file(function, directory).read_text(encoding="utf-8")
        assert not [token for token in tokens if token in text], function
        found[function] = lines = [json.loads(line) for line in text.splitlines()]
        records = [line for line in lines if line.get("level") not in (None, logs.STDOUT, logs.STDERR)]
        assert all(record.get("correlation_id") for record in records), (function, records)
        platform = [line for line in lines if str(line.get("message", "")).startswith(("START ", "END ", "REPORT "))]
        assert platform == [], platform
    verified = [line for line in found["VerifyTokenFunction"] if line.get("message") == "token verified"]
    assert len(verified) == 2, found["VerifyTokenFunction"]  # the speaker's and the listener's $connect
    # Each invocation carries the request id its function logged with.
    invoked = {invocation.request_id for invocation in containers.functions["VerifyTokenFunction"].invocations}
    assert invoked == {line["function_request_id"] for line in verified}, (invoked, verified)
    accepted = [line for line in found["SendMessageFunction"] if "MessagesAccepted" in line]
    assert len(accepted) == 2, accepted
    assert all(line["correlationId"] for line in accepted), accepted
    with urllib.request.urlopen(f"{live.endpoints()['console']}/api/logs/SendMessageFunction", timeout=10) as answer:
        shown = json.loads(answer.read())["lines"]
    assert sum("MessagesAccepted" in entry["line"] for entry in shown) == 2, shown


def test_a_function_key_is_held_to_its_role_at_the_aws_endpoint(live: LiveStack) -> None:
    """What a container signs with its own key is evaluated against its role, as on AWS."""
    import boto3
    from botocore.exceptions import ClientError

    endpoint = live.endpoints()["aws"]

    def client(function: str) -> Any:
        return boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key(function),
            aws_secret_access_key="testing",
        )

    health = client("HealthFunction")
    with pytest.raises(ClientError) as refused:
        health.delete_table(TableName="ConnectionsTable")
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert (
        "HealthFunction" in error["Message"] or "is not authorized to perform: dynamodb:DeleteTable" in error["Message"]
    ), error
    assert "ConnectionsTable" in live.runtime.client("dynamodb").list_tables()["TableNames"]


@contextmanager
def _in_process(stack: LiveStack) -> Iterator[None]:
    """Meanwhile the same stack answers with its in-process functions (the reference)."""
    containers, stack.runtime.containers = stack.runtime.containers, None
    try:
        yield
    finally:
        stack.runtime.containers = containers


def _connect_status(stack: LiveStack, token: str) -> int:
    async def attempt() -> int:
        try:
            client = await _open(stack, "speaker", token)
        except InvalidStatus as refused:
            return refused.response.status_code
        await client.close()
        return 101

    return int(_run(attempt()))


@pytest.mark.parametrize(
    "rule",
    [
        # Past the VerifyToken task's TimeoutSeconds (10): States.Timeout, fail closed.
        {"service": "lambda", "operation": "Invoke", "resource": "VerifyTokenFunction", "latency": 11},
        # Lambda's own failure: retried twice (backoff in stack time), then fail closed.
        {"service": "lambda", "operation": "Invoke", "resource": "VerifyTokenFunction", "error": "ServiceException"},
    ],
    ids=["latency", "error"],
)
def test_a_rule_on_a_function_meets_its_container_as_it_meets_it_in_process(
    live: LiveStack, rule: dict[str, Any]
) -> None:
    """The AuthorizeConnection workflow invokes VerifyTokenFunction through the Lambda API: the
    rule delays or fails that invocation before it reaches the container, as in-process."""
    token = live.runtime.breakwater_token(subject="host-faults", roles=("speaker",))
    containers = live.containers
    assert containers is not None
    verify = containers.function(live.runtime.functions["VerifyTokenFunction"])
    answered = len(verify.timings)
    statuses, fired = [], []
    try:
        for mode in ("containers", "in-process"):
            live.add_faults([rule])
            with _in_process(live) if mode == "in-process" else contextlib.nullcontext():
                statuses.append(_connect_status(live, token))
            fired.append(live.list_faults()[0]["fired"])
            live.clear_faults()
    finally:
        live.clear_faults()
    assert statuses[0] == statuses[1], statuses
    assert statuses[0] >= 500, statuses  # fail closed: the token could not be verified
    assert fired[0] == fired[1] >= 1, fired
    if "error" in rule:
        assert len(verify.timings) == answered, "the invocation failed before reaching its container"


def test_a_latency_rule_on_a_containers_sdk_call_times_it_out_as_in_process(live: LiveStack) -> None:
    """HealthFunction probes the tenant config bucket with one attempt and S3's 3 s read
    timeout: 4 s of latency on HeadBucket is a timed-out probe in both modes."""
    rule = {"service": "s3", "operation": "HeadBucket", "latency": 4}
    answers, fired = [], []
    try:
        for mode in ("containers", "in-process"):
            live.add_faults([rule])
            with _in_process(live) if mode == "in-process" else contextlib.nullcontext():
                answers.append(get(live, "/prod/health/details", signed_headers(live, "/prod/health/details")))
            fired.append(live.list_faults()[0]["fired"])
            live.clear_faults()
    finally:
        live.clear_faults()
    (status, body), (in_process_status, in_process_body) = answers
    assert status == in_process_status, answers
    assert body["dependencies"] == in_process_body["dependencies"], answers
    assert body["dependencies"]["tenantConfig"]["reason"] == "ServiceTimeoutError", body
    assert fired == [1, 1], fired


#: A `bw up --containers` in a process of its own: one function warm in its container, then it waits to be killed.
_OWNER = """
import json, sys, threading
from pathlib import Path
from local_runtime import LocalRuntime
from local_runtime.live import LiveStack
root, template, cache = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
runtime = LocalRuntime(root / "template.yaml", data=root / "events" / "local_data.yaml")
stack = LiveStack(runtime, containers=True, containers_build=(template, cache), console_port=None).start()
event = json.loads((root / "events" / "health" / "timeout_status.json").read_text())
runtime.invoke("HealthFunction", event)
print("OWNER", json.dumps({"network": stack.containers.network, "sam": stack.containers.process.pid}), flush=True)
threading.Event().wait()
"""


def test_a_killed_stack_s_leftovers_are_removed_by_bw_down(
    native_template: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 leaves SAM (its own session), its warm containers and the network; `bw down`
    (and the next `bw up`) finds them by the owner's record and removes them."""
    import os
    import signal
    import subprocess
    import sys

    from typer.testing import CliRunner

    from local_runtime.cli import app

    template, cache = native_template
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(ROOT), str(template), str(cache)],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert owner.stdout is not None
        # Its functions' lines come first (no sink listens there: they are its terminal's).
        said = next((line for line in owner.stdout if line.startswith("OWNER ")), "OWNER {}")
        started = json.loads(said.removeprefix("OWNER "))
    finally:
        os.killpg(owner.pid, signal.SIGKILL)  # the owner only: SAM runs in a session of its own
        owner.wait(timeout=30)
    network, sam = started["network"], int(started["sam"])
    left = _on_network(network)
    assert len(left) >= 2, left  # the relay and HealthFunction's warm container
    assert os.path.exists(f"/proc/{sam}")

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["down"])

    assert result.exit_code == 0, result.output
    assert "removed what a stopped `bw up --containers` left" in result.output
    assert _on_network(network) == set()
    assert left & _docker_ps() == set()
    assert _networks(network) == []
    assert wait_until(lambda: not os.path.exists(f"/proc/{sam}") or _zombie(sam), timeout=10)
    assert list((tmp_path / ".bw" / "up-containers" / "owners").glob("*.json")) == []
    assert "nothing left behind" in CliRunner().invoke(app, ["down"]).output


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def _docker_ps(*filters: str) -> set[str]:
    found = subprocess.run(["docker", "ps", "-aq", *filters], capture_output=True, text=True, check=True)
    return set(found.stdout.split())


def _on_network(network: str) -> set[str]:
    return _docker_ps("--filter", f"network={network}")


def _networks(network: str) -> list[str]:
    found = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", f"name=^{network}$"], capture_output=True, text=True, check=True
    )
    return found.stdout.split()


def test_stopping_leaves_no_container_network_process_or_port(live: LiveStack) -> None:
    containers = live.containers
    assert containers is not None
    network, process, port = containers.network, containers.process, containers.port
    assert process is not None

    ours = _on_network(network)
    assert len(ours) >= 2, ours  # the relay and the functions' warm containers
    assert (containers.work / "owners" / f"{network}.json").is_file()
    live.stop()

    assert process.poll() is not None
    assert ours & _docker_ps() == set()
    assert _networks(network) == []
    assert not (containers.work / "owners" / f"{network}.json").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
