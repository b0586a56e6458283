"""The security-scan gate (tools/scan.py): what it lets through and what fails the build."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_scan() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bw_tools_scan", ROOT / "tools" / "scan.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


scan = _load_scan()

BASELINE = scan.Baseline.parse(
    {
        "checkov": {
            "CKV_AWS_117": {"why": "no private resource to reach", "resources": ["ConnectFunction", "HealthFunction"]},
        },
        "cfn-lint": {"I4010": {"why": "architecture is in the README", "resources": ["(template)"]}},
    }
)


def test_the_checked_in_baseline_gives_a_reason_for_every_accepted_finding() -> None:
    baseline = scan.Baseline.load(ROOT / "security" / "scan-baseline.yaml")

    entries = list(baseline.entries())

    assert entries
    for scanner, rule, _ in entries:
        assert len(baseline.rules[scanner][rule].why) > 40, f"{scanner} {rule}: say why it is accepted"


def test_accepted_findings_pass() -> None:
    findings = [
        scan.Finding("checkov", "CKV_AWS_117", "ConnectFunction"),
        scan.Finding("checkov", "CKV_AWS_117", "HealthFunction"),
        # the same finding from the SAM and the translated template counts once
        scan.Finding("checkov", "CKV_AWS_117", "HealthFunction"),
        scan.Finding("cfn-lint", "I4010", "(template)"),
    ]

    verdict = scan.compare(findings, BASELINE)

    assert verdict.ok
    assert len(verdict.accepted) == 3


def test_an_accepted_rule_on_a_new_resource_fails_the_build() -> None:
    findings = [
        scan.Finding("checkov", "CKV_AWS_117", "ConnectFunction"),
        scan.Finding("checkov", "CKV_AWS_117", "HealthFunction"),
        scan.Finding("checkov", "CKV_AWS_117", "NewFunction"),
        scan.Finding("cfn-lint", "I4010", "(template)"),
    ]

    verdict = scan.compare(findings, BASELINE)

    assert not verdict.ok
    assert [(f.rule, f.resource) for f in verdict.new] == [("CKV_AWS_117", "NewFunction")]


def test_a_rule_the_baseline_does_not_know_fails_the_build() -> None:
    findings = [
        scan.Finding("checkov", "CKV_AWS_117", "ConnectFunction"),
        scan.Finding("checkov", "CKV_AWS_117", "HealthFunction"),
        scan.Finding("cfn-lint", "I4010", "(template)"),
        scan.Finding("checkov", "CKV_AWS_111", "ConnectFunctionRole", "IAM write without constraints"),
    ]

    verdict = scan.compare(findings, BASELINE)

    assert [f.rule for f in verdict.new] == ["CKV_AWS_111"]
    assert "CKV_AWS_111 on ConnectFunctionRole" in scan.render(verdict, BASELINE)


def test_a_fixed_finding_left_in_the_baseline_fails_the_build() -> None:
    findings = [
        scan.Finding("checkov", "CKV_AWS_117", "ConnectFunction"),
        scan.Finding("cfn-lint", "I4010", "(template)"),
    ]

    verdict = scan.compare(findings, BASELINE)

    assert not verdict.ok
    assert verdict.stale == (("checkov", "CKV_AWS_117", "HealthFunction"),)


@pytest.mark.parametrize(
    "entry",
    [
        {"resources": ["ConnectFunction"]},
        {"why": "  ", "resources": ["ConnectFunction"]},
        {"why": "a reason", "resources": []},
    ],
)
def test_an_entry_without_a_reason_or_resources_is_refused(entry: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="CKV_AWS_117"):
        scan.Baseline.parse({"checkov": {"CKV_AWS_117": entry}})


def test_scanner_reports_name_the_logical_resource() -> None:
    checkov_report = {
        "check_type": "cloudformation",
        "results": {
            "failed_checks": [
                {"check_id": "CKV_AWS_28", "check_name": "PITR", "resource": "AWS::DynamoDB::Table.LocksTable"},
                {"check_id": "CKV_AWS_117", "check_name": "VPC", "resource": "AWS::Serverless::Function.Fn"},
            ]
        },
    }
    lint = [
        {"Rule": {"Id": "I3011"}, "Message": "DeletionPolicy", "Location": {"Path": ["Resources", "LocksTable"]}},
        {"Rule": {"Id": "I4010"}, "Message": "Context", "Location": {"Path": ["Metadata"]}},
    ]

    found = scan.checkov_findings([checkov_report]) + scan.cfn_lint_findings(lint)

    assert [(f.scanner, f.rule, f.resource) for f in found] == [
        ("checkov", "CKV_AWS_28", "LocksTable"),
        ("checkov", "CKV_AWS_117", "Fn"),
        ("cfn-lint", "I3011", "LocksTable"),
        ("cfn-lint", "I4010", "(template)"),
    ]
