"""Every state machine logs its errors (never its data) and is traced; every log group has a retention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local_runtime.template import LocalTemplate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return LocalTemplate.load(ROOT / "template.yaml").resources


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def test_state_machines_log_errors_without_execution_data_and_are_traced(resources):
    machines = of_type(resources, "AWS::Serverless::StateMachine")
    assert len(machines) == 4
    for name, machine in machines.items():
        props = machine["Properties"]
        # AuthorizeConnection's input holds tokens, DeliverMessage's message bodies.
        assert props["Logging"]["Level"] == "ERROR", name
        assert props["Logging"]["IncludeExecutionData"] is False, name
        (destination,) = props["Logging"]["Destinations"]
        assert destination["CloudWatchLogsLogGroup"]["LogGroupArn"] == {"Fn::GetAtt": [f"{name}LogGroup", "Arn"]}
        assert props["Tracing"] == {"Enabled": True}, name


def test_every_function_and_state_machine_has_a_log_group_with_a_retention(resources):
    groups = of_type(resources, "AWS::Logs::LogGroup")
    owners = set(of_type(resources, "AWS::Serverless::Function")) | set(
        of_type(resources, "AWS::Serverless::StateMachine")
    )
    # The API stages' access logs (issue 12), besides one group per function and state machine.
    access = {name for name in groups if name.endswith("AccessLogGroup")}
    assert access == {"WebSocketAccessLogGroup", "HealthApiAccessLogGroup"}
    assert {name.removesuffix("LogGroup") for name in groups if name not in access} == owners
    for name, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    for name in of_type(resources, "AWS::Serverless::Function"):
        assert groups[f"{name}LogGroup"]["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{name}}}"}
