"""The ``aws`` endpoint holds a function's own access key to that function's role.

``bw up --containers`` gives each function an access key id mapped to its execution
role (:class:`~local_runtime.aws_endpoint.Caller`); what code in a container signs with
it is evaluated there as the runtime's own clients' calls are. Here a boto3 client signs
with HealthFunction's key, as its container would, against the endpoint on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


# -- fault rules meet a function's calls as they meet them in-process ----------------------------
#: DefaultRouteFunction's own key: its role may UpdateItem the Connections table.
ROUTE_KEY = "ASIADEFAULTROUTEFN01"
#: A container's SDK call, from a process of its own: in this one the runtime's botocore
#: seam would meet the call before it left (the in-process path, not the endpoint's).
_OUTSIDE = """
import json, sys
import boto3
from botocore.config import Config
url, key, operation, params = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
client = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
    aws_secret_access_key="testing", config=Config(read_timeout=0.5, retries={"total_max_attempts": 1}))
try:
    getattr(client, operation)(**params)
    print(json.dumps({"answer": "ok"}))
except Exception as exc:
    code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
    print(json.dumps({"answer": code or type(exc).__name__}))
"""


@pytest.fixture
def as_route(endpoint: tuple[LocalRuntime, AwsEndpoint]) -> Iterator[Callable[..., str]]:
    """Makes a DynamoDB call as DefaultRouteFunction's container would (0.5 s read timeout)."""
    import json
    import subprocess
    import sys

    runtime, server = endpoint
    assert runtime.iam is not None
    role = runtime.iam.role_for("DefaultRouteFunction")
    assert role is not None
    server.callers[ROUTE_KEY] = Caller(role.arn, "DefaultRouteFunction", "")

    def call(operation: str, **params: Any) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _OUTSIDE, server.url, ROUTE_KEY, operation, json.dumps(params)],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return str(json.loads(done.stdout.strip().splitlines()[-1])["answer"])

    try:
        yield call
    finally:
        runtime.faults.clear()
        del server.callers[ROUTE_KEY]


def _touch(call: Callable[..., str], connection_id: str) -> str:
    return call(
        "update_item",
        TableName="ConnectionsTable",
        Key={"connectionId": {"S": connection_id}},
        UpdateExpression="SET lastActivityTime = :t",
        ExpressionAttributeValues={":t": {"N": "1"}},
    )


def _stored(runtime: LocalRuntime, connection_id: str) -> bool:
    key = {"connectionId": {"S": connection_id}}
    return "Item" in runtime.client("dynamodb").get_item(TableName="ConnectionsTable", Key=key)


def test_latency_past_the_read_timeout_is_a_read_timeout_and_the_call_never_lands(
    endpoint: tuple[LocalRuntime, AwsEndpoint], as_route: Callable[..., str]
) -> None:
    """In real seconds (a container's SDK runs on the wall clock), as in-process in stack seconds."""
    from local_runtime.live import wait_until

    runtime, _ = endpoint
    rule = runtime.faults.add({"service": "dynamodb", "operation": "UpdateItem", "latency": 1.0})
    assert _touch(as_route, "late-1") == "ReadTimeoutError"
    assert runtime.faults.fired(rule) == 1
    # The endpoint holds the call for the whole latency, then finds its caller gone.
    assert not wait_until(lambda: _stored(runtime, "late-1"), timeout=1.5)


def test_latency_within_the_read_timeout_delays_the_call(
    endpoint: tuple[LocalRuntime, AwsEndpoint], as_route: Callable[..., str]
) -> None:
    runtime, _ = endpoint
    rule = {"service": "dynamodb", "operation": "UpdateItem", "latency": 0.2, "error": "InternalServerError"}
    runtime.faults.add(rule)
    assert _touch(as_route, "slow-1") == "InternalServerError"
    assert not _stored(runtime, "slow-1")


def test_a_lost_answer_is_a_read_timeout_of_a_call_carried_out(
    endpoint: tuple[LocalRuntime, AwsEndpoint], as_route: Callable[..., str]
) -> None:
    runtime, _ = endpoint
    runtime.faults.add({"service": "dynamodb", "operation": "UpdateItem", "answer_lost": True})
    assert _touch(as_route, "lost-1") == "ReadTimeoutError"
    assert _stored(runtime, "lost-1")


def test_a_call_iam_refuses_meets_no_fault(
    endpoint: tuple[LocalRuntime, AwsEndpoint], as_route: Callable[..., str]
) -> None:
    """IAM answers before the service sees the request, so no rule fires (as in-process)."""
    runtime, _ = endpoint
    rule = runtime.faults.add({"service": "dynamodb", "error": "InternalServerError"})
    assert as_route("delete_table", TableName="ConnectionsTable") == "AccessDeniedException"
    assert runtime.faults.fired(rule) == 0
