"""Offline runtime speed: virtual time vs wall time, and per-execution overhead.

Prints figures, asserts nothing (machines are shared and noisy). Reference
columns, measured in the same run:
  * the 10-minute scenario against the 600 s it would take in real time;
  * the 5-state execution against the same machine with only Pass states on
    plain moto (no runtime hooks, no Lambda): the cost the runtime adds.
Last line: ``virtual_s=600 wall_s=… exec_ms=…`` for scripts.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local_runtime import LocalRuntime, fake_aws_environment  # noqa: E402

TEMPLATE = ROOT / "tests" / "fixtures" / "app" / "template.yaml"
RUNS = 40


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
    virtual, wall = ten_minute_scenario()
    ours = five_state_overhead()
    reference = plain_moto_reference()
    ours_ms, ref_ms = statistics.median(ours), statistics.median(reference)
    print(f"{'figure':<44}{'breakwater':>14}{'reference':>14}{'ratio':>10}")
    print(f"{'10-minute scenario, wall seconds':<44}{wall:>14.3f}{virtual:>14.1f}{virtual / wall:>9.0f}x")
    print(f"{'5-state execution with 1 Lambda, median ms':<44}{ours_ms:>14.2f}{ref_ms:>14.2f}{ours_ms / ref_ms:>9.2f}x")
    print(f"{'5-state execution, p90 ms':<44}{statistics.quantiles(ours, n=10)[-1]:>14.2f}")
    print("reference: real time for the scenario; plain moto, Pass-only, no runtime for the execution")
    print(f"virtual_s={virtual:.0f} wall_s={wall:.3f} exec_ms={ours_ms:.2f} ref_exec_ms={ref_ms:.2f}")


if __name__ == "__main__":
    main()
