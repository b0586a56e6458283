"""Offline runtime speed: start-up, `bw run`, virtual time vs wall time, per-execution overhead.

Prints figures, asserts nothing (machines are shared and noisy). Reference
columns, measured in the same run:
  * LocalRuntime start (cold = first in the process, warm = later ones) on the
    real template, against plain moto starting its mock and creating the same
    state machines (no IAM, no packages, no hooks);
  * a one-state `bw run` as a user types it (a new process, imports and exit
    included), against a new process running the same definition on plain moto;
  * the 10-minute scenario against the 600 s it would take in real time;
  * the 5-state execution against the same machine with only Pass states on
    plain moto (no runtime hooks, no Lambda): the cost the runtime adds.
Last line: ``start_warm_s=… bw_run_s=… virtual_s=600 wall_s=… exec_ms=…`` for scripts.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local_runtime import LocalRuntime, fake_aws_environment  # noqa: E402

TEMPLATE = ROOT / "tests" / "fixtures" / "app" / "template.yaml"
REAL = ROOT / "template.yaml"
ONE_STATE = ROOT / "bench" / "one_state" / "template.yaml"
RUNS = 40
STARTS = 5


def start_times() -> tuple[float, float]:
    """(cold, median warm) seconds for LocalRuntime.start() on the real template."""
    samples = []
    for _ in range(STARTS + 1):
        started = time.perf_counter()
        runtime = LocalRuntime(REAL, data=ROOT / "events" / "local_data.yaml").start()
        samples.append(time.perf_counter() - started)
        runtime.stop()
    return samples[0], statistics.median(samples[1:])


def plain_moto_start() -> float:
    """Plain moto: start the mock and create the real template's state machines."""
    import boto3
    from moto import mock_aws

    from local_runtime.template import LocalTemplate

    machines = LocalTemplate.load(REAL).state_machines.values()
    samples = []
    for _ in range(STARTS):
        started = time.perf_counter()
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            sfn = boto3.client("stepfunctions", region_name="us-east-1")
            for machine in machines:
                sfn.create_state_machine(
                    name=machine.name,
                    definition=json.dumps(machine.definition),
                    roleArn="arn:aws:iam::123456789012:role/r",
                    type="EXPRESS" if machine.type == "EXPRESS" else "STANDARD",
                )
            samples.append(time.perf_counter() - started)
    return statistics.median(samples)


_PLAIN_ONE_STATE = """
import json, time, boto3
from moto import mock_aws
ONE = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    role = "arn:aws:iam::123456789012:role/r"
    arn = sfn.create_state_machine(name="OneState", roleArn=role, definition=json.dumps(ONE))["stateMachineArn"]
    run = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    while sfn.describe_execution(executionArn=run)["status"] == "RUNNING":
        time.sleep(0.001)
"""


def one_state_runs() -> tuple[float, float]:
    """(bw run, plain moto) wall seconds for a one-state workflow in a new process, median of 3."""
    env = {**os.environ, "BW_IAM_USAGE": ""}
    bw = str(Path(sys.executable).parent / "bw")
    ours, plain = [], []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([bw, "run", "OneState", "-t", str(ONE_STATE)], check=True, capture_output=True, env=env)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", _PLAIN_ONE_STATE], check=True, capture_output=True, env=env)
        plain.append(time.perf_counter() - started)
    return statistics.median(ours), statistics.median(plain)


def ten_minute_scenario() -> tuple[float, float]:
    """WaitFlow: a 600 s Wait, then a direct DynamoDB write stamped with the virtual time."""
    with LocalRuntime(TEMPLATE) as runtime:
        runtime.run("PipelineFlow", {"id": 0})  # warm the interpreter: parsing costs once per process
        start_virtual = runtime.clock.now()
        started = time.perf_counter()
        waited = runtime.run("WaitFlow", {})
        wall = time.perf_counter() - started
        virtual = runtime.clock.now() - start_virtual
        assert waited.succeeded
        return virtual, wall


def five_state_overhead() -> list[float]:
    with LocalRuntime(TEMPLATE) as runtime:
        runtime.run("PipelineFlow", {"id": 0})
        samples = []
        for index in range(RUNS):
            started = time.perf_counter()
            result = runtime.run("PipelineFlow", {"id": index})
            samples.append((time.perf_counter() - started) * 1000)
            assert result.succeeded
        return samples


def plain_moto_reference() -> list[float]:
    """The same shape with Pass states only, on moto without the runtime."""
    import boto3
    from moto import mock_aws

    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Next": "B"},
            "B": {"Type": "Pass", "Next": "C"},
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.id", "IsPresent": True, "Next": "D"}], "Default": "E"},
            "D": {"Type": "Pass", "End": True},
            "E": {"Type": "Fail"},
        },
    }
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="ref", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/r"
        )["stateMachineArn"]
        samples = []
        for index in range(RUNS + 1):
            started = time.perf_counter()
            execution = sfn.start_execution(stateMachineArn=arn, name=f"r{index}", input=json.dumps({"id": index}))
            while sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "RUNNING":
                time.sleep(0.0005)
            samples.append((time.perf_counter() - started) * 1000)
        return samples[1:]


def main() -> None:
    fake_aws_environment()
    cold, warm = start_times()
    plain_start = plain_moto_start()
    bw_run, plain_run = one_state_runs()
    virtual, wall = ten_minute_scenario()
    ours = five_state_overhead()
    reference = plain_moto_reference()
    ours_ms, ref_ms = statistics.median(ours), statistics.median(reference)
    print(f"{'figure':<44}{'breakwater':>14}{'reference':>14}{'ratio':>10}")
    for label, value, ref in (
        ("LocalRuntime start, cold s (real template)", cold, plain_start),
        ("LocalRuntime start, warm s (median)", warm, plain_start),
        ("one-state bw run, wall s (new process)", bw_run, plain_run),
    ):
        print(f"{label:<44}{value:>14.3f}{ref:>14.3f}{value / ref:>9.2f}x")
    print(f"{'10-minute scenario, wall seconds':<44}{wall:>14.3f}{virtual:>14.1f}{virtual / wall:>9.0f}x")
    print(f"{'5-state execution with 1 Lambda, median ms':<44}{ours_ms:>14.2f}{ref_ms:>14.2f}{ours_ms / ref_ms:>9.2f}x")
    print(f"{'5-state execution, p90 ms':<44}{statistics.quantiles(ours, n=10)[-1]:>14.2f}")
    print(
        "reference: plain moto creating the same state machines (start); a new process running the one-state "
        "definition on plain moto (bw run); real time for the scenario; plain moto, Pass-only, for the execution"
    )
    print(
        f"start_cold_s={cold:.3f} start_warm_s={warm:.3f} ref_start_s={plain_start:.3f} bw_run_s={bw_run:.3f} "
        f"ref_run_s={plain_run:.3f} virtual_s={virtual:.0f} wall_s={wall:.3f} exec_ms={ours_ms:.2f} "
        f"ref_exec_ms={ref_ms:.2f}"
    )


if __name__ == "__main__":
    main()
