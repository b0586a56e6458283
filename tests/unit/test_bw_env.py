"""`bw env`: SAM's --env-vars file, and what SAM needs for it to take effect."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from local_runtime.cli import app
from local_runtime.containers import env_vars
from local_runtime.template import LocalTemplate

ROOT = Path(__file__).resolve().parents[2]


def test_every_function_points_at_the_endpoint():
    template = LocalTemplate.load(ROOT / "template.yaml")
    document = env_vars(template, "http://bw-stack:4566")
    assert set(document) == {"Parameters", *template.functions}
    for logical_id, spec in template.functions.items():
        variables = document[logical_id]
        assert variables["AWS_ENDPOINT_URL"] == "http://bw-stack:4566"
        assert variables["BW_WEBSOCKET_ENDPOINT"] == "http://bw-stack:4566"
        assert variables["AWS_ACCESS_KEY_ID"] == "testing"
        # The physical names the local stack gives its resources (tables by logical id).
        assert variables["BW_CONNECTIONS_TABLE"] == str(spec.environment["BW_CONNECTIONS_TABLE"])
        assert all(isinstance(value, str) for value in variables.values())


def test_sam_applies_the_endpoint_because_the_template_declares_it():
    """SAM passes only variables the template declares; an undeclared AWS_ENDPOINT_URL would be dropped."""
    template = LocalTemplate.load(ROOT / "template.yaml")
    for spec in template.functions.values():
        assert spec.environment.get("AWS_ENDPOINT_URL") == ""
        assert "BW_WEBSOCKET_ENDPOINT" in spec.environment


def test_an_empty_endpoint_means_aws_own(monkeypatch):
    """Deployed, AWS_ENDPOINT_URL is empty: botocore must use AWS's endpoints, not fail."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    client = boto3.client("dynamodb", region_name="us-east-1")
    assert client.meta.endpoint_url == "https://dynamodb.us-east-1.amazonaws.com"


def test_bw_env_prints_the_file():
    result = CliRunner().invoke(app, ["env", "--endpoint", "http://127.0.0.1:4566", "-t", str(ROOT / "template.yaml")])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["HealthFunction"]["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert document["Parameters"]["AWS_DEFAULT_REGION"] == "us-east-1"
