"""The ``aws`` endpoint holds a function's own access key to that function's role.

``bw up --containers`` gives each function an access key id mapped to its execution
role (:class:`~local_runtime.aws_endpoint.Caller`); what code in a container signs with
it is evaluated there as the runtime's own clients' calls are. Here a boto3 client signs
with HealthFunction's key, as its container would, against the endpoint on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local_runtime import LocalRuntime
from local_runtime.aws_endpoint import AwsEndpoint, Caller

ROOT = Path(__file__).resolve().parents[2]
KEY = "ASIAHEALTHFUNCTION01"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRuntime, AwsEndpoint]]:
    with pytest.MonkeyPatch.context() as env:
        # The calls refused here are refused on purpose: recorded apart from the suite's usage,
        # where `bw iam --check` reads every refusal as a grant the template lacks.
        env.setenv("BW_IAM_USAGE", str(tmp_path_factory.mktemp("iam") / "usage.jsonl"))
        runtime = LocalRuntime(ROOT / "template.yaml", data=ROOT / "events" / "local_data.yaml").start()
        server = AwsEndpoint(runtime)
        server.start()
        assert runtime.iam is not None
        role = runtime.iam.role_for("HealthFunction")
        assert role is not None
        server.callers[KEY] = Caller(role.arn, "HealthFunction", "")
        try:
            yield runtime, server
        finally:
            server.stop()
            runtime.stop()


def _client(server: AwsEndpoint, service: str, key: str = KEY) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _tenant_bucket(runtime: LocalRuntime) -> str:
    names = [b["Name"] for b in runtime.client("s3").list_buckets()["Buckets"]]
    return str(next(name for name in names if "tenant" in name.lower()))


def test_a_call_its_role_grants_is_served(endpoint: tuple[LocalRuntime, AwsEndpoint]) -> None:
    runtime, server = endpoint
    described = _client(server, "dynamodb").describe_table(TableName="ConnectionsTable")
    assert described["Table"]["TableName"] == "ConnectionsTable"
    _client(server, "s3").head_bucket(Bucket=_tenant_bucket(runtime))


def test_a_call_its_role_does_not_grant_is_access_denied(endpoint: tuple[LocalRuntime, AwsEndpoint]) -> None:
    runtime, server = endpoint
    with pytest.raises(ClientError) as refused:
        _client(server, "dynamodb").delete_table(TableName="ConnectionsTable")
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert "assumed-role/" in error["Message"], error
    assert "/HealthFunction is not authorized" in error["Message"], error
    assert "dynamodb:DeleteTable" in error["Message"], error
    assert "ConnectionsTable" in runtime.client("dynamodb").list_tables()["TableNames"]


def test_a_rest_call_is_named_from_its_path(endpoint: tuple[LocalRuntime, AwsEndpoint]) -> None:
    """S3 names its operation by method and path only: GetObject needs s3:GetObject."""
    runtime, server = endpoint
    with pytest.raises(ClientError) as refused:
        _client(server, "s3").get_object(Bucket=_tenant_bucket(runtime), Key="tenants/acme.json")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_another_key_acts_as_the_administrator(endpoint: tuple[LocalRuntime, AwsEndpoint]) -> None:
    """An outside tool's credentials are its own business, as before."""
    _, server = endpoint
    assert "ConnectionsTable" in _client(server, "dynamodb", key="testing").list_tables()["TableNames"]
