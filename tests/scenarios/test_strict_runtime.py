"""Strict as AWS: a call the caller's role does not grant is AccessDenied, and a function
imports only what its deployment package holds.

Each IAM scenario removes one grant (an action, or one resource of it) from a copy of the
real template and runs the sample that needs it: the call fails as AWS fails it (the refusal names the
assumed role, the action and the resource) and the IAM report lists the missing grant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse
from typer.testing import CliRunner

from local_runtime import LocalRuntime
from local_runtime.cli import app
from local_runtime.sessions import join_session

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
PACKAGING = ROOT / "tests" / "fixtures" / "packaging" / "template.yaml"
ACCOUNT = "123456789012"


def template_without(tmp_path: Path, resource: str, action: str, target: str | None = None) -> Path:
    """A copy of template.yaml whose ``resource`` is no longer granted ``action`` (on the one
    resource naming ``target``, if given): exactly one statement of its Policies loses it."""
    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    changed = 0
    for policy in template["Resources"][resource]["Properties"]["Policies"]:
        statements = policy.get("Statement") if isinstance(policy, dict) else None
        if not isinstance(statements, list):
            continue
        for statement in list(statements):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if action not in actions or (target is not None and target not in json.dumps(statement["Resource"])):
                continue
            changed += 1
            resources = statement["Resource"]
            if target is not None and isinstance(resources, list) and len(resources) > 1:
                statement["Resource"] = [r for r in resources if target not in json.dumps(r)]
            elif len(actions) > 1:
                statement["Action"] = [a for a in actions if a != action]
            else:
                statements.remove(statement)
    assert changed == 1, f"expected exactly one statement of {resource} to grant {action}"
    return write_template(tmp_path, template)


def write_template(tmp_path: Path, template: dict[str, Any]) -> Path:
    """``template`` (a changed copy of template.yaml) as a file whose code paths still resolve."""
    for props in (r.get("Properties") or {} for r in template["Resources"].values()):
        for uri in ("CodeUri", "DefinitionUri", "ContentUri"):
            if isinstance(props.get(uri), str):
                props[uri] = str((ROOT / props[uri]).resolve())
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    return path


def sample(path: str) -> Any:
    return json.loads((EVENTS / path).read_text(encoding="utf-8"))


def connect(runtime: LocalRuntime, connection_id: str) -> None:
    """A connection in the table (the administrator's write), for the cleanup to remove."""
    join_session(runtime, "town-hall", [(connection_id, "listener", "anonymous")])


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
    template = template_without(tmp_path, "DisconnectCleanup", "dynamodb:DeleteItem")
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
    template = template_without(tmp_path, "AuthorizeConnection", "lambda:InvokeFunction", "VerifyToken")
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
    template = template_without(tmp_path, "ConnectFunction", "states:StartSyncExecution")
    with LocalRuntime(template, data=EVENTS / "local_data.yaml") as rt:
        answer = rt.invoke("ConnectFunction", sample("connect/listener.json"))
        # Unhandled in the function, as on AWS: API Gateway answers the client 500.
        assert answer.errored
        assert "AccessDeniedException" in str(answer.error_message)
        assert [(d["role"], d["action"]) for d in refused(rt)] == [("ConnectFunctionRole", "states:StartSyncExecution")]
        assert rt.items("ConnectionsTable") == []


def test_S3ReadWithoutGrantIsAccessDenied(tmp_path):
    template = template_without(tmp_path, "TenantConfigFunction", "s3:GetObject")
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
    template = template_without(tmp_path, "VerifyTokenFunction", "secretsmanager:GetSecretValue")
    with LocalRuntime(template, data=EVENTS / "local_data.yaml") as rt:
        answer = rt.invoke("VerifyTokenFunction", sample("verify_token/breakwater_speaker.json"))
        assert answer.errored
        denied = refused(rt)
        assert [d["action"] for d in denied] == ["secretsmanager:GetSecretValue"]
        assert denied[0]["resource"].startswith(f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:SigningKeySecret-")


def test_PostToConnectionWithoutGrantIsAccessDenied(tmp_path):
    template = template_without(tmp_path, "MessageDeliveryFunction", "execute-api:ManageConnections")
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
    template = template_without(tmp_path, "DisconnectCleanup", "dynamodb:DeleteItem")
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
    template = template_without(tmp_path, "DisconnectCleanup", "dynamodb:DeleteItem")
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
        connect(rt, sample("disconnect_cleanup/client_disconnected.json")["connectionId"])
        rt.run("DisconnectCleanup", sample("disconnect_cleanup/client_disconnected.json"))

    report = CliRunner().invoke(
        app, ["iam", "-t", str(ROOT / "template.yaml"), "--usage", str(usage), "--check", "--json"]
    )

    assert report.exit_code == 0, report.output
    roles = {role["role"]: role for role in json.loads(report.stdout)["roles"]}
    cleanup = roles["DisconnectCleanupRole"]
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/ConnectionsTable"
    assert {(g["action"], g["resource"]) for g in cleanup["used"]} == {
        ("dynamodb:DeleteItem", table),
        ("cloudwatch:PutMetricData", "*"),
    }
    assert cleanup["unused"] == []
    assert cleanup["missing"] == []
    # A role no recorded run acted with: everything it grants is unused.
    assert roles["SendMessageFunctionRole"]["used"] == []
    assert ("states:StartSyncExecution", f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:DeliverMessage") in {
        (g["action"], g["resource"]) for g in roles["SendMessageFunctionRole"]["unused"]
    }


def test_IamStrictCheckFailsOnAGrantNoRunUsedUnlessTheAllowanceKeepsIt(tmp_path, monkeypatch):
    usage = tmp_path / "usage.jsonl"
    monkeypatch.setenv("BW_IAM_USAGE", str(usage))
    with LocalRuntime(ROOT / "template.yaml", data=EVENTS / "local_data.yaml") as rt:
        rt.invoke("DisconnectFunction", sample("disconnect/client_disconnected.json"))
    deliver = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:DeliverMessage"
    allowance = tmp_path / "allowance.yaml"
    allowance.write_text(
        "- {role: SendMessageFunctionRole, action: states:StartSyncExecution, "
        f"resource: '{deliver}', reason: a test keeps it}}\n",
        encoding="utf-8",
    )
    argv = ["iam", "-t", str(ROOT / "template.yaml"), "--usage", str(usage), "--allowance", str(allowance)]

    lenient = CliRunner().invoke(app, [*argv, "--check", "--json"])
    strict = CliRunner().invoke(app, [*argv, "--check", "--strict", "--json"])

    assert lenient.exit_code == 0, lenient.output
    assert strict.exit_code == 1
    # The suite's run of one function leaves other functions' grants unused: each is named.
    assert (
        "unused grant: SendMessageFunctionRole is granted dynamodb:PutItem on "
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/IdempotencyTable"
    ) in strict.output
    assert "states:StartSyncExecution" not in strict.output.split("unused grant: SendMessageFunctionRole")[1][:200]
    roles = {role["role"]: role for role in json.loads(lenient.stdout)["roles"]}
    assert roles["SendMessageFunctionRole"]["allowed"] == [
        {"action": "states:StartSyncExecution", "resource": deliver, "reason": "a test keeps it"}
    ]
    assert roles["DisconnectFunctionRole"]["unused"] == [
        {
            "action": "dynamodb:DeleteItem",
            "resource": f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/ConnectionsTable",
            "policy": "DisconnectFunctionRolePolicy0",
        }
    ]


def test_IamStrictCheckFailsOnAnAllowanceEntryThatKeepsNoGrant(tmp_path):
    allowance = tmp_path / "allowance.yaml"
    allowance.write_text(
        "- {role: ConnectFunctionRole, action: dynamodb:DeleteItem, resource: '*', reason: gone}\n", encoding="utf-8"
    )
    argv = ["iam", "-t", str(ROOT / "template.yaml"), "--allowance", str(allowance), "--check", "--strict"]

    result = CliRunner().invoke(app, argv)

    assert result.exit_code == 1
    assert "stale allowance: ConnectFunctionRole has no grant dynamodb:DeleteItem on *" in result.output


def test_AnAllowanceEntryWithoutAReasonIsRefused(tmp_path):
    allowance = tmp_path / "allowance.yaml"
    allowance.write_text("- {role: ConnectFunctionRole, action: dynamodb:DeleteItem, resource: '*'}\n")

    result = CliRunner().invoke(app, ["iam", "-t", str(ROOT / "template.yaml"), "--allowance", str(allowance)])

    assert result.exit_code != 0
    assert "entry 1 needs reason" in result.output


def test_MetricsOfAnotherNamespaceAreAccessDenied(tmp_path):
    # The cleanup's PutMetricData is granted on the stack's MetricsNamespace only.
    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    cleanup = template["Resources"]["DisconnectCleanup"]["Properties"]
    cleanup["DefinitionSubstitutions"]["MetricsNamespace"] = "SomeoneElses"
    with LocalRuntime(write_template(tmp_path, template), data=EVENTS / "local_data.yaml") as rt:
        connect(rt, sample("disconnect_cleanup/client_disconnected.json")["connectionId"])
        result = rt.run("DisconnectCleanup", sample("disconnect_cleanup/client_disconnected.json"))
        # The metric is best effort: the cleanup succeeds, the refusal is caught and recorded.
        assert result.status == "SUCCEEDED"
        error, cause = refusal(result)
        # An aws-sdk integration names an error CloudWatch's model does not declare after the
        # AWS SDK for Java v2 client's generic exception.
        assert error == "CloudWatch.CloudWatchException"
        assert "not authorized to perform: cloudwatch:PutMetricData on resource: * because" in cause
        assert "(Service: CloudWatch, Status Code: 403," in cause
        assert [(d["role"], d["action"], d["resource"]) for d in refused(rt)] == [
            ("DisconnectCleanupRole", "cloudwatch:PutMetricData", "*")
        ]


def delete_config(rt: LocalRuntime, tenant: str) -> None:
    rt.client("s3").delete_object(Bucket="tenantconfigbucket", Key=f"tenants/{tenant}/config.json")


def test_AMissingTenantConfigIsUnknownWithListBucket():
    # Recorded in the suite's own usage (no BW_IAM_USAGE of its own): the only run that
    # reaches TenantConfigFunction's s3:ListBucket grant.
    with LocalRuntime(ROOT / "template.yaml", data=EVENTS / "local_data.yaml") as rt:
        delete_config(rt, "globex")
        answer = rt.invoke("TenantConfigFunction", {"tenantHint": "globex", "tokenTenant": None, "anonymous": True})
        assert answer.error_type == "TenantRejectedError"
        assert "unknown tenant" in str(answer.error_message)
        assert refused(rt) == []
        assert rt.iam is not None
        assert {
            "role": "TenantConfigFunctionRole",
            "action": "s3:ListBucket",
            "resource": "arn:aws:s3:::tenantconfigbucket",
            "calls": 1,
        } in rt.iam.usage()["requested"]


def test_AMissingKeyWithoutListBucketIsAccessDeniedAsOnS3(tmp_path):
    template = template_without(tmp_path, "TenantConfigFunction", "s3:ListBucket")
    with LocalRuntime(template, data=EVENTS / "local_data.yaml") as rt:
        delete_config(rt, "globex")
        answer = rt.invoke("TenantConfigFunction", {"tenantHint": "globex", "tokenTenant": None, "anonymous": True})
        # S3 will not tell a caller without ListBucket whether the key exists: 403, not 404.
        assert answer.error_type == "TenantRejectedError"
        assert "cannot be verified" in str(answer.error_message)
        assert [(d["action"], d["resource"]) for d in refused(rt)] == [
            ("s3:ListBucket", "arn:aws:s3:::tenantconfigbucket")
        ]


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
