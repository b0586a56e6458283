"""How long `bw up` takes to start, as a user sees it, against plain moto starting beside it.

``bw up`` (in-process functions, no ``--containers``) on the real template is launched
as a new process, the way a user types it; its start-up is the time from the launch
until ``.bw/up.json`` is written and the control endpoint it names answers (every
endpoint is listening by then: the file is written last). Each run starts in a fresh
directory (no stack data of an earlier run) but with the same user cache
(``~/.cache/breakwater``: templates read, SAM's translation, definitions validated),
as a second ``bw up`` on a developer's machine would.

References, measured in alternation with it so all see the same machine load: a new
process that imports moto and boto3, starts ``mock_aws`` with the Step Functions
interpreter on, answers one call and writes its ready file; the call is
``ListStateMachines`` (plain moto ready for Step Functions: it imports its interpreter,
as ``bw up`` must) and, as the floor, DynamoDB's ``ListTables``. Where ``/proc`` exists
the CPU seconds of each process are printed too: on a shared machine they move far
less than wall time.

Prints, asserts nothing. Last line: ``up_s=… ref_s=… ratio=… floor_s=… up_cpu_s=…
ref_cpu_s=…`` (medians; ref is plain moto ready for Step Functions; ``--runs N``, default 5).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
TIMEOUT = 120.0

_REFERENCE = """
import sys
from pathlib import Path
import boto3
from moto import mock_aws
mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
mock.start()
client = boto3.client(sys.argv[2], region_name="us-east-1")
client.list_state_machines() if sys.argv[2] == "stepfunctions" else client.list_tables()
Path(sys.argv[1]).write_text("ready", encoding="utf-8")
sys.stdin.read()  # until the bench closes it
mock.stop()
"""


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _environment() -> dict[str, str]:
    paths = [str(ROOT), str(ROOT / "layers" / "resilience"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "BW_IAM_USAGE": ""}


def _wait_for(process: subprocess.Popen[str], ready: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError(f"exited {process.returncode} before it was ready: {process.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {TIMEOUT:.0f} s")
        time.sleep(0.002)


def bw_up(bw: str, env: dict[str, str]) -> tuple[float, float | None, str]:
    """(seconds to ready, CPU seconds, the stack's own start-up line) for one `bw up`."""
    with tempfile.TemporaryDirectory(prefix="bw-startup-") as where:
        up_file = Path(where) / ".bw" / "up.json"
        began = time.perf_counter()
        process = subprocess.Popen(
            [bw, "up", "-t", str(ROOT / "template.yaml")],
            cwd=where,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for(process, up_file)
            while True:  # written whole, but read it only once it parses
                try:
                    control = json.loads(up_file.read_text(encoding="utf-8"))["control"]
                    break
                except (ValueError, KeyError):
                    time.sleep(0.002)
            with urllib.request.urlopen(f"{control}/endpoints", timeout=10):
                pass
            seconds = time.perf_counter() - began
            cpu = _cpu_seconds(process.pid)
            said = process.stdout.readline() if process.stdout else ""  # "breakwater live on … (started in …)"
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
    found = re.search(r"started in ([\d.]+) s, of which the runtime ([\d.]+) s", said)
    return seconds, cpu, f"stack {found.group(1)} s, runtime {found.group(2)} s" if found else said.strip()


def reference(env: dict[str, str], service: str) -> tuple[float, float | None]:
    """(seconds to ready, CPU seconds) for plain moto's mock answering ``service``, in a new process."""
    with tempfile.TemporaryDirectory(prefix="bw-startup-ref-") as where:
        ready = Path(where) / "ready"
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", _REFERENCE, str(ready), service],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for(process, ready)
            seconds = time.perf_counter() - began
            cpu = _cpu_seconds(process.pid)
        finally:
            process.communicate(input="", timeout=60)
    return seconds, cpu


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):>8.2f}{min(values):>8.2f}{max(values):>8.2f}"


def main() -> None:
    env = _environment()
    bw = str(Path(sys.executable).parent / "bw")
    bw_up(bw, env)  # once unmeasured: fills the user cache as any earlier `bw up` of this checkout would
    ups: list[float] = []
    up_cpus: list[float] = []
    refs: list[float] = []
    ref_cpus: list[float] = []
    floors: list[float] = []
    for run in range(1, RUNS + 1):
        seconds, cpu, said = bw_up(bw, env)
        ref_seconds, ref_cpu = reference(env, "stepfunctions")
        floor, _ = reference(env, "dynamodb")
        ups.append(seconds)
        refs.append(ref_seconds)
        floors.append(floor)
        up_cpus += [cpu] if cpu is not None else []
        ref_cpus += [ref_cpu] if ref_cpu is not None else []
        print(f"run {run}: bw up {seconds:.2f} s ({said}); plain moto {ref_seconds:.2f} s, floor {floor:.2f} s")
    print(f"{'start-up, new process to ready':<48}{'median':>8}{'min':>8}{'max':>8}")
    print(f"{'bw up (real template), wall s':<48}{_summary(ups)}")
    print(f"{'plain moto ready for Step Functions, wall s':<48}{_summary(refs)}")
    print(f"{'plain moto ready for DynamoDB (floor), wall s':<48}{_summary(floors)}")
    if up_cpus and ref_cpus:
        print(f"{'bw up, CPU s':<48}{_summary(up_cpus)}")
        print(f"{'plain moto ready for Step Functions, CPU s':<48}{_summary(ref_cpus)}")
    up, ref = statistics.median(ups), statistics.median(refs)
    print(f"ratio (medians): bw up takes {up / ref:.2f}x plain moto's start for Step Functions")
    cpu_figures = (
        f" up_cpu_s={statistics.median(up_cpus):.2f} ref_cpu_s={statistics.median(ref_cpus):.2f}"
        if up_cpus and ref_cpus
        else ""
    )
    print(f"up_s={up:.2f} ref_s={ref:.2f} ratio={up / ref:.2f} floor_s={statistics.median(floors):.2f}{cpu_figures}")


if __name__ == "__main__":
    main()
