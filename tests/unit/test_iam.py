"""IAM policy evaluation and the resources each call is authorised on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import botocore.session
import pytest

from local_runtime.iam import (
    AccessRequest,
    Allowance,
    Decision,
    IamModel,
    Role,
    Statement,
    evaluate,
    normalise_resource,
    report,
    requests_for,
    stale_allowances,
)

ACCOUNT = "123456789012"
TABLE = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/Connections"


def statement(effect: str = "Allow", action: Any = None, resource: Any = "*", **extra: Any) -> Statement:
    raw = {"Effect": effect, "Resource": resource, **extra}
    if action is not None:
        raw["Action"] = action
    return Statement.parse(raw, "TestPolicy")


def request(action: str = "dynamodb:GetItem", resource: str = TABLE, **context: str) -> AccessRequest:
    return AccessRequest(action, resource, {k.lower(): v for k, v in context.items()})


def test_nothing_is_allowed_without_a_statement():
    assert not evaluate([], request()).allowed


def test_actions_match_case_insensitively_with_wildcards():
    assert evaluate([statement(action="DynamoDB:get*")], request()).allowed
    assert evaluate([statement(action="dynamodb:?etItem")], request()).allowed
    assert not evaluate([statement(action="dynamodb:Get")], request()).allowed


def test_resources_match_case_sensitively_and_star_crosses_separators():
    assert evaluate(
        [statement(action="dynamodb:*", resource=f"{TABLE}*")], request(resource=f"{TABLE}/index/X")
    ).allowed
    assert not evaluate([statement(action="dynamodb:*", resource=TABLE.lower())], request()).allowed
    assert not evaluate([statement(action="dynamodb:*", resource=TABLE)], request(resource=f"{TABLE}/index/X")).allowed


def test_an_explicit_deny_wins_over_any_allow():
    decision = evaluate(
        [statement(action="dynamodb:*"), statement("Deny", action="dynamodb:DeleteItem")],
        request("dynamodb:DeleteItem"),
    )
    assert not decision.allowed
    assert decision.explicit_deny
    assert "with an explicit deny in an identity-based policy" in decision.message("arn:aws:sts::1:assumed-role/R/s")


def test_not_action_and_not_resource():
    allow_all_but_delete = statement(NotAction="dynamodb:DeleteItem")
    assert evaluate([allow_all_but_delete], request("dynamodb:PutItem")).allowed
    assert not evaluate([allow_all_but_delete], request("dynamodb:DeleteItem")).allowed
    raw = {"Effect": "Allow", "Action": "dynamodb:*", "NotResource": TABLE}
    assert not evaluate([Statement.parse(raw, "P")], request()).allowed


def test_conditions_are_evaluated_and_an_unknown_operator_never_allows():
    scoped = statement(
        action="cloudwatch:PutMetricData", Condition={"StringEquals": {"cloudwatch:namespace": "breakwater"}}
    )
    assert evaluate(
        [scoped], request("cloudwatch:PutMetricData", "*", **{"cloudwatch:namespace": "breakwater"})
    ).allowed
    assert not evaluate([scoped], request("cloudwatch:PutMetricData", "*", **{"cloudwatch:namespace": "other"})).allowed
    assert not evaluate([scoped], request("cloudwatch:PutMetricData", "*")).allowed
    odd = statement(action="*", Condition={"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}})
    assert not evaluate([odd], request()).allowed


def test_the_refusal_names_the_assumed_role_the_action_and_the_resource_as_aws_does():
    message = Decision(False, request("dynamodb:DeleteItem")).message("arn:aws:sts::1:assumed-role/R/fn")
    assert message == (
        "User: arn:aws:sts::1:assumed-role/R/fn is not authorized to perform: dynamodb:DeleteItem on resource: "
        f"{TABLE} because no identity-based policy allows the dynamodb:DeleteItem action"
    )
    s3 = Decision(False, request("s3:GetObject", "arn:aws:s3:::b/k")).message("p")
    assert 'on resource: "arn:aws:s3:::b/k" because' in s3


@pytest.fixture(scope="module")
def models():
    session = botocore.session.get_session()
    return lambda name: session.get_service_model(name)


def calls(
    models: Any, service: str, operation: str, params: dict[str, Any], endpoint: str = "https://x.amazonaws.com"
) -> list[tuple[str, str]]:
    found = requests_for(models(service), operation, params, region="us-east-1", account=ACCOUNT, endpoint=endpoint)
    return [(r.action, r.resource) for r in found]


def test_a_query_on_an_index_is_authorised_on_the_index(models):
    assert calls(models, "dynamodb", "Query", {"TableName": "Connections", "IndexName": "BySession"}) == [
        ("dynamodb:Query", f"{TABLE}/index/BySession")
    ]


def test_batch_and_transact_writes_are_authorised_per_table_and_item_action(models):
    batch = calls(models, "dynamodb", "BatchWriteItem", {"RequestItems": {"A": [], "B": []}})
    assert [r for _, r in batch] == [
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/A",
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/B",
    ]
    transact = calls(
        models,
        "dynamodb",
        "TransactWriteItems",
        {"TransactItems": [{"Put": {"TableName": "A"}}, {"Delete": {"TableName": "B"}}]},
    )
    assert [a for a, _ in transact] == ["dynamodb:PutItem", "dynamodb:DeleteItem"]


def test_s3_head_requests_need_the_read_actions(models):
    assert calls(models, "s3", "HeadBucket", {"Bucket": "b"}) == [("s3:ListBucket", "arn:aws:s3:::b")]
    assert calls(models, "s3", "HeadObject", {"Bucket": "b", "Key": "k/1.json"}) == [
        ("s3:GetObject", "arn:aws:s3:::b/k/1.json")
    ]


def test_lambda_invoke_is_invoke_function_on_the_function_arn(models):
    assert calls(models, "lambda", "Invoke", {"FunctionName": "Fn"}) == [
        ("lambda:InvokeFunction", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:Fn")
    ]


def test_the_management_api_is_manage_connections_on_the_route(models):
    endpoint = "https://abc123.execute-api.us-east-1.amazonaws.com/prod"
    assert calls(models, "apigatewaymanagementapi", "PostToConnection", {"ConnectionId": "c="}, endpoint) == [
        ("execute-api:ManageConnections", f"arn:aws:execute-api:us-east-1:{ACCOUNT}:abc123/prod/POST/@connections/c=")
    ]


def test_secret_arns_compare_without_their_random_suffix():
    arn = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:SigningKeySecret-AbC123"
    assert normalise_resource(arn) == f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:SigningKeySecret-*"


def test_put_metric_data_carries_its_namespace_for_the_condition_key(models):
    found = requests_for(
        models("cloudwatch"),
        "PutMetricData",
        {"Namespace": "Breakwater", "MetricData": []},
        region="us-east-1",
        account=ACCOUNT,
        endpoint="https://monitoring.us-east-1.amazonaws.com",
    )
    scoped = statement(
        action="cloudwatch:PutMetricData", Condition={"StringEquals": {"cloudwatch:namespace": "Breakwater"}}
    )
    assert [(r.action, r.resource, r.context["cloudwatch:namespace"]) for r in found] == [
        ("cloudwatch:PutMetricData", "*", "Breakwater")
    ]
    assert evaluate([scoped], found[0]).allowed
    # StringEquals is case-sensitive: another namespace, however spelt, is refused.
    other = AccessRequest(found[0].action, "*", {**found[0].context, "cloudwatch:namespace": "breakwater"})
    assert not evaluate([scoped], other).allowed


def model_with(*statements: Statement) -> IamModel:
    role = Role("FnRole", "stack-FnRole", f"arn:aws:iam::{ACCOUNT}:role/stack-FnRole", statements)
    return IamModel(Path("template.yaml"), {role.arn: role}, {"Fn": role.arn})


def test_a_grant_is_used_by_a_request_it_covers_whatever_policy_a_run_had():
    # A run of an earlier template granted the table through a wildcard; the request it
    # recorded still counts for today's exact grant.
    model = model_with(statement(action=["dynamodb:GetItem", "dynamodb:PutItem"], resource=TABLE))
    record = {
        "template": "template.yaml",
        "used": [{"role": "FnRole", "action": "dynamodb:*", "resource": "*", "policy": "Old", "calls": 2}],
        "requested": [{"role": "FnRole", "action": "dynamodb:GetItem", "resource": TABLE, "calls": 2}],
    }
    (only,) = report(model, [record])
    assert [(g.action, n) for g, n in only.used.items()] == [("dynamodb:GetItem", 2)]
    assert [g.action for g in only.unused] == ["dynamodb:PutItem"]


def test_the_allowance_keeps_an_unused_grant_with_its_reason_and_names_stale_entries():
    model = model_with(statement(action=["dynamodb:GetItem", "dynamodb:PutItem"], resource=TABLE))
    keep = Allowance("FnRole", "dynamodb:PutItem", TABLE, "only on AWS")
    gone = Allowance("FnRole", "dynamodb:DeleteItem", TABLE, "was removed")

    reports = report(model, [], [keep, gone])

    assert [g.action for g in reports[0].unused] == ["dynamodb:GetItem"]
    assert [(g.action, why) for g, why in reports[0].allowed] == [("dynamodb:PutItem", "only on AWS")]
    assert stale_allowances(reports, [keep, gone]) == [gone]
