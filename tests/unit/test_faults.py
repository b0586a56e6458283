"""Fault rules: parsing, matching and counting, without AWS."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_runtime.faults import FaultInjector, FaultRule, load_fault_rules, request_resources


def never() -> float:
    return 0.99


def always() -> float:
    return 0.0


def test_shorthands_expand_to_aws_error_codes():
    assert FaultRule.from_dict({"service": "dynamodb", "throttle": True}).error == (
        "ProvisionedThroughputExceededException"
    )
    gone = FaultRule.from_dict({"service": "apigatewaymanagementapi", "gone": True})
    assert (gone.error, gone.http_status) == ("GoneException", 410)
    assert FaultRule.from_dict({"service": "s3", "timeout": True}).latency > 60


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"operation": "GetItem", "error": "X"}, "needs a 'service'"),
        ({"service": "s3"}, "needs an error, a latency or answer_lost"),
        ({"service": "s3", "error": "X", "probability": 2}, "probability"),
        ({"service": "s3", "error": "X", "colour": "red"}, "unknown fault rule keys"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_message(rule, message):
    with pytest.raises((ValueError, TypeError), match=message):
        FaultRule.from_dict(rule)


def test_after_and_count_bound_when_a_rule_fires():
    injector = FaultInjector()
    injector.add(
        {"service": "dynamodb", "operation": "PutItem", "error": "InternalServerError", "after": 1, "count": 2}
    )
    fired = [injector.decide("dynamodb", "PutItem", ["T"], always, 0.0) is not None for _ in range(5)]
    assert fired == [False, True, True, False, False]


def test_rules_match_by_glob_on_service_operation_and_resource():
    injector = FaultInjector()
    injector.add({"service": "dynamo*", "operation": "*Item", "resource": "Messages*", "error": "X"})
    assert injector.decide("dynamodb", "PutItem", ["Connections"], always, 0) is None
    assert injector.decide("s3", "PutObject", ["Messages"], always, 0) is None
    assert injector.decide("dynamodb", "Query", ["Messages"], always, 0) is None
    assert injector.decide("dynamodb", "GetItem", ["MessagesTable"], always, 0) is not None


def test_probability_draws_from_the_given_random_source():
    injector = FaultInjector()
    injector.add({"service": "s3", "error": "SlowDown", "probability": 0.5})
    assert injector.decide("s3", "GetObject", [], never, 0) is None
    assert injector.decide("s3", "GetObject", [], always, 0) is not None


def test_request_resources_names_tables_arns_and_paths():
    body = b'{"TableName": "Messages", "FunctionName": "arn:aws:lambda:us-east-1:1:function:Fn"}'
    found = request_resources(body, "https://x.execute-api.us-east-1.amazonaws.com/local/@connections/abc")
    assert {"Messages", "Fn", "abc", "@connections"} <= set(found)


def test_a_rule_on_a_function_name_meets_an_invoke_by_arn():
    # The Lambda Invoke API names the function in its path, as a Step Functions task gives it.
    url = "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3AVerifyTokenFunction%3Alive/invocations"
    injector = FaultInjector()
    injector.add({"service": "lambda", "resource": "VerifyTokenFunction", "error": "ServiceException"})
    assert injector.decide("lambda", "Invoke", request_resources(b"{}", url), always, 0) is not None
    other = url.replace("VerifyTokenFunction", "ConnectFunction")
    assert injector.decide("lambda", "Invoke", request_resources(b"{}", other), always, 0) is None


def test_rules_load_from_yaml(tmp_path: Path):
    path = tmp_path / "faults.yaml"
    path.write_text("faults:\n  - service: dynamodb\n    throttle: true\n    count: 2\n", encoding="utf-8")
    (rule,) = load_fault_rules(path)
    assert (rule.service, rule.count, rule.error) == ("dynamodb", 2, "ProvisionedThroughputExceededException")
