"""Strict as AWS: a call the caller's role does not grant is AccessDenied, and a function
imports only what its deployment package holds.

Each IAM scenario removes one ``Policies`` entry from a copy of the real template and
runs the sample that needs it: the call fails as AWS fails it (the refusal names the
assumed role, the action and the resource) and the IAM report lists the missing grant.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse
from typer.testing import CliRunner

from local_runtime import LocalRuntime
from local_runtime.cli import app

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
PACKAGING = ROOT / "tests" / "fixtures" / "packaging" / "template.yaml"
ACCOUNT = "123456789012"


def template_without(tmp_path: Path, resource: str, drop: Callable[[Any], bool]) -> Path:
    """A copy of template.yaml whose ``resource`` lacks the Policies entries ``drop`` picks."""
    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    policies = template["Resources"][resource]["Properties"]["Policies"]
    kept = [p for p in policies if not drop(p)]
    assert len(kept) == len(policies) - 1, f"expected to drop exactly one policy of {resource}"
    template["Resources"][resource]["Properties"]["Policies"] = kept
    for props in (r.get("Properties") or {} for r in template["Resources"].values()):
        for uri in ("CodeUri", "DefinitionUri", "ContentUri"):
            if isinstance(props.get(uri), str):
                props[uri] = str((ROOT / props[uri]).resolve())
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    return path


def statement_with(action: str) -> Callable[[Any], bool]:
    def matches(policy: Any) -> bool:
        statements = policy.get("Statement") if isinstance(policy, dict) else None
        return isinstance(statements, list) and any(action in json.dumps(s.get("Action")) for s in statements)

    return matches


def template_policy(name: str, target: str | None = None) -> Callable[[Any], bool]:
    def matches(policy: Any) -> bool:
        return isinstance(policy, dict) and name in policy and (target is None or target in json.dumps(policy[name]))

    return matches


def sample(path: str) -> Any:
    return json.loads((EVENTS / path).read_text(encoding="utf-8"))


def refused(runtime: LocalRuntime) -> list[dict[str, Any]]:
    assert runtime.iam is not None
    return list(runtime.iam.usage()["denied"])


def refusal(result: Any) -> tuple[str, str]:
    """(error, cause) of the first failed task event whose cause is an IAM refusal."""
    failures = [
        (str(details.get("error", "")), str(details.get("cause", "")))
        for event in result.events
        for key, details in event.items()
        if key.endswith("FailedEventDetails") and isinstance(details, dict)
    ]
    return next((f for f in failures if "is not authorized to perform" in f[1]), ("", ""))


def refusal_in(result: Any) -> str:
    return refusal(result)[1]


def test_DynamoDbDeleteWithoutGrantIsAccessDenied(tmp_path):
    template = template_without(tmp_path, "DisconnectCleanup", statement_with("dynamodb:DeleteItem"))
    with LocalRuntime(template, data=EVENTS / "local_data.yaml") as rt:
        result = rt.run("DisconnectCleanup", sample("disconnect_cleanup/client_disconnected.json"))
        assert result.status == "FAILED"
        # AccessDeniedException is not in DynamoDB's API model: the Java SDK's generic exception.
        error, cause = refusal(result)
        assert error == "DynamoDB.AmazonDynamoDBException"
        assert "AccessDeniedException" in cause
        assert f"arn:aws:sts::{ACCOUNT}:assumed-role/breakwater-local-DisconnectCleanupRole/" in cause
        assert (
            f"is not authorized to perform: dynamodb:DeleteItem on resource: "
            f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/ConnectionsTable because no identity-based policy allows"
        ) in cause
        assert refused(rt) == [
            {
                "role": "DisconnectCleanupRole",
                "action": "dynamodb:DeleteItem",
                "resource": f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/ConnectionsTable",
                # "Remove connection" retries DynamoDB.AmazonDynamoDBException (3 attempts more),
                # and so AccessDenied too, as it would on AWS.
                "calls": 4,
            }
        ]


def test_LambdaInvokeWithoutGrantIsAccessDenied(tmp_path):
    template = template_without(tmp_path, "AuthorizeConnection", template_policy("LambdaInvokePolicy", "VerifyToken"))
    with LocalRuntime(template, data=EVENTS / "local_data.yaml") as rt:
        result = rt.run("AuthorizeConnection", sample("authorize_connection/speaker.json"))
        error, cause = refusal(result)
        # As AWS records a denied lambda:invoke (executions recorded on AWS).
        assert error == "Lambda.AWSLambdaException"
        assert "lambda:InvokeFunction" in cause
        assert "(Service: AWSLambda; Status Code: 403; Error Code: AccessDeniedException;" in cause
        assert {(d["action"], d["resource"]) for d in refused(rt)} == {
            ("lambda:InvokeFunction", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:VerifyTokenFunction")
        }
        assert rt.items("ConnectionsTable") == []


def test_StartSyncExecutionWithoutGrantIsAccessDenied(tmp_path):
    template = template_without(tmp_path, "ConnectFunction", statement_with("states:StartSyncExecution"))
    with LocalRuntime(template, data=EVENTS / "local_data.yaml") as rt:
        answer = rt.invoke("ConnectFunction", sample("connect/listener.json"))
        # Unhandled in the function, as on AWS: API Gateway answers the client 500.
        assert answer.errored
        assert "AccessDeniedException" in str(answer.error_message)
        assert [(d["role"], d["action"]) for d in refused(rt)] == [("ConnectFunctionRole", "states:StartSyncExecution")]
        assert rt.items("ConnectionsTable") == []


def test_S3ReadWithoutGrantIsAccessDenied(tmp_path):
    template = template_without(tmp_path, "TenantConfigFunction", template_policy("S3ReadPolicy"))
    with LocalRuntime(template, data=EVENTS / "local_data.yaml") as rt:
        answer = rt.invoke("TenantConfigFunction", sample("tenant_config/acme_listener.json"))
        assert (
            answer.errored
            or "allowed" not in json.dumps(answer.payload)
            or '"allowed": false' in json.dumps(answer.payload)
        )
        actions = {d["action"] for d in refused(rt)}
        assert actions & {"s3:GetObject", "s3:ListBucket"}, actions


def test_SecretReadWithoutGrantIsAccessDenied(tmp_path):
    template = template_without(
        tmp_path, "VerifyTokenFunction", template_policy("AWSSecretsManagerGetSecretValuePolicy")
    )
    with LocalRuntime(template, data=EVENTS / "local_data.yaml") as rt:
        answer = rt.invoke("VerifyTokenFunction", sample("verify_token/breakwater_speaker.json"))
        assert answer.errored
        denied = refused(rt)
        assert [d["action"] for d in denied] == ["secretsmanager:GetSecretValue"]
        assert denied[0]["resource"].startswith(f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:SigningKeySecret-")


def test_PostToConnectionWithoutGrantIsAccessDenied(tmp_path):
    template = template_without(tmp_path, "MessageDeliveryFunction", statement_with("execute-api:ManageConnections"))
    with LocalRuntime(template, data=EVENTS / "local_data.yaml") as rt:
        for listener in ("Ana=", "Ben=", "Chi="):
            rt.connections.connect(listener)
        rt.invoke("MessageDeliveryFunction", sample("message_delivery/batch.json"))
        denied = refused(rt)
        assert denied
        assert {d["action"] for d in denied} == {"execute-api:ManageConnections"}
        assert all("/POST/@connections/" in d["resource"] for d in denied)
        assert [rt.connections.received(c) for c in ("Ana=", "Ben=", "Chi=")] == [[], [], []]


def test_BwRunShowsTheRefusal(tmp_path, monkeypatch):
    template = template_without(tmp_path, "DisconnectCleanup", statement_with("dynamodb:DeleteItem"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "run",
            "DisconnectCleanup",
            "-t",
            str(template),
            "-e",
            str(EVENTS / "disconnect_cleanup/client_disconnected.json"),
        ],
        catch_exceptions=False,
    )
    assert "DynamoDB.AmazonDynamoDBException" in result.output  # the failed state, as the console shows it
    assert "AccessDenied: DisconnectCleanupRole may not dynamodb:DeleteItem on " in result.output


def test_TheRealTemplateGrantsWhatItsSamplesNeed():
    with LocalRuntime(ROOT / "template.yaml", data=EVENTS / "local_data.yaml") as rt:
        rt.run("DisconnectCleanup", sample("disconnect_cleanup/client_disconnected.json"))
        rt.invoke("ConnectFunction", sample("connect/listener.json"))
        rt.invoke("TenantConfigFunction", sample("tenant_config/acme_listener.json"))
        assert refused(rt) == []


# -- deployment packages ------------------------------------------------------------
@pytest.fixture
def packaged() -> Any:
    with LocalRuntime(PACKAGING) as rt:
        yield rt


def test_FunctionImportsComeFromItsPackageNotTheDevEnvironment(packaged):
    answer = packaged.invoke("UsesLayerFunction", {})
    assert not answer.errored, answer.payload
    assert "/breakwater/requirements/" in answer.payload["cachetools"]
    assert ".venv" not in answer.payload["cachetools"]


def test_DependencyMissingFromTheLayerIsImportModuleError(packaged):
    import tenacity  # the developer's environment has it; the function's package does not

    assert tenacity.Retrying.__name__ == "Retrying"
    answer = packaged.invoke("NeedsUndeclaredFunction", {})
    assert answer.error_type == "Runtime.ImportModuleError"
    assert answer.payload == {
        "errorType": "Runtime.ImportModuleError",
        "errorMessage": "Unable to import module 'app': No module named 'tenacity'",
    }


def test_ImportInsideTheHandlerIsHeldToThePackageToo(packaged):
    import yaml

    assert yaml.__file__
    answer = packaged.invoke("LazyImportFunction", {})
    assert answer.error_type == "ModuleNotFoundError"
    assert answer.error_message == "No module named 'yaml'"


# -- one sandbox per function ---------------------------------------------------------
def test_EachFunctionLogsUnderItsOwnName(capsys):
    """In one process, functions that share a Powertools service name still log under
    their own function name (on AWS each has its own process)."""
    with LocalRuntime(ROOT / "template.yaml", data=EVENTS / "local_data.yaml") as rt:
        # $connect runs AuthorizeConnection synchronously: its Lambdas log while Connect waits,
        # and Connect logs its decision after them.
        rt.invoke("ConnectFunction", sample("connect/speaker.json"))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"level"')]
    by_message = {line["message"]: line["function_name"] for line in lines}
    assert by_message["token verified"] == "VerifyTokenFunction"
    assert by_message["connection admitted"] == "ConnectFunction"


# -- the least-privilege report ----------------------------------------------------------
def test_IamReportFailsTheBuildOnAMissingGrant(tmp_path, monkeypatch):
    template = template_without(tmp_path, "DisconnectCleanup", statement_with("dynamodb:DeleteItem"))
    usage = tmp_path / "usage.jsonl"
    monkeypatch.setenv("BW_IAM_USAGE", str(usage))
    with LocalRuntime(template, data=EVENTS / "local_data.yaml") as rt:
        rt.run("DisconnectCleanup", sample("disconnect_cleanup/client_disconnected.json"))

    report = CliRunner().invoke(app, ["iam", "-t", str(template), "--usage", str(usage), "--check", "--json"])

    assert report.exit_code == 1
    assert (
        "missing grant: DisconnectCleanupRole needs dynamodb:DeleteItem on "
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/ConnectionsTable"
    ) in report.output


def test_IamReportListsGrantsNoRunUsed(tmp_path, monkeypatch):
    usage = tmp_path / "usage.jsonl"
    monkeypatch.setenv("BW_IAM_USAGE", str(usage))
    with LocalRuntime(ROOT / "template.yaml", data=EVENTS / "local_data.yaml") as rt:
        rt.run("DisconnectCleanup", sample("disconnect_cleanup/client_disconnected.json"))

    report = CliRunner().invoke(
        app, ["iam", "-t", str(ROOT / "template.yaml"), "--usage", str(usage), "--check", "--json"]
    )

    assert report.exit_code == 0, report.output
    roles = {role["role"]: role for role in json.loads(report.stdout)["roles"]}
    cleanup = roles["DisconnectCleanupRole"]
    used = {(g["action"], g["resource"]) for g in cleanup["used"]}
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/ConnectionsTable"
    assert ("dynamodb:DeleteItem", table) in used
    assert ("dynamodb:PutItem", table) in {(g["action"], g["resource"]) for g in cleanup["unused"]}
    assert cleanup["missing"] == []
    # A role no recorded run acted with: everything it grants is unused.
    assert roles["HealthFunctionRole"]["used"] == []


def _function_samples() -> list[tuple[str, Path]]:
    from local_runtime.template import LocalTemplate

    template = LocalTemplate.load(ROOT / "template.yaml")
    return [
        (logical_id, event)
        for logical_id, spec in sorted(template.functions.items())
        for event in sorted((EVENTS / spec.code_dir.name).glob("*.json"))
    ]


@pytest.mark.parametrize(("function", "event"), _function_samples(), ids=lambda v: getattr(v, "name", v))
def test_EverySampleEventRunsWithOnlyItsPackage(function, event):
    """Each function starts from its deployment package alone, and no sample call is refused by IAM."""
    with LocalRuntime(ROOT / "template.yaml", data=EVENTS / "local_data.yaml") as rt:
        answer = rt.invoke(function, json.loads(event.read_text(encoding="utf-8")))
        assert answer.error_type not in ("Runtime.ImportModuleError", "ModuleNotFoundError"), answer.payload
        assert refused(rt) == []
