"""ASL conformance cases: small definitions and the outcome AWS Step Functions records for them.

Each case cites where its expected outcome comes from: the AWS Step Functions
Developer Guide, the Amazon States Language spec, or a LocalStack snapshot
(``*.snapshot.json`` in localstack/localstack, recorded against real AWS).

The fixture app under ``tests/fidelity/app/`` is generated from this module
(``python -m tests.fidelity.cases``): one STANDARD state machine per case, named
by the case, and three tiny Lambda handlers. ``test_fidelity`` checks it is in sync.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APP = Path(__file__).resolve().parent / "app"

DG = "https://docs.aws.amazon.com/step-functions/latest/dg/"
INTRINSICS = DG + "intrinsic-functions.html"
SPEC = "https://states-language.net/spec.html"
LS = "localstack/localstack tests/aws/services/stepfunctions/v2/"

#: Lambda functions of the fixture app: logical id -> handler directory.
FUNCTIONS = {"RaiseFunction": "raise_error", "SleepFunction": "sleep", "BigFunction": "big"}

UUID_V4 = r'^\{"id": "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"\}$'


@dataclass(frozen=True)
class Expected:
    """What AWS records. ``None`` fields are not checked."""

    status: str
    error: str | None = None
    cause: str | None = None
    cause_contains: str | None = None
    cause_json: dict[str, Any] | None = None  # a subset of the cause parsed as JSON
    output: Any = None
    output_regex: str | None = None  # matched against json.dumps(output, sort_keys=True)
    events: tuple[str, ...] = ()  # history event types, in order (a subsequence of the history)
    event_counts: dict[str, int] = field(default_factory=dict)  # exact counts of these types
    duration: tuple[float, float] | None = None  # seconds between start and stop, inclusive


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    definition: dict[str, Any]
    expected: Expected
    input: Any = field(default_factory=dict)
    functions: tuple[str, ...] = ()  # Lambda functions the definition invokes (not runnable on plain moto)
    known_gap: str | None = None  # why the runtime is allowed to miss this case

    @property
    def machine(self) -> str:
        """The state machine's logical id (and name) in the fixture app."""
        return "".join(part.capitalize() for part in self.name.split("_"))


def _pass(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": params, "End": True, **extra}}}


_PASS_OK = ("ExecutionStarted", "PassStateEntered", "PassStateExited", "ExecutionSucceeded")


def _failing_parallel(**state: Any) -> dict[str, Any]:
    """A Parallel whose only branch fails with FailureType / "Cause description" (LocalStack's template)."""
    branch = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "FailureType", "Cause": "Cause description"}}}
    return {"StartAt": "Par", "States": {"Par": {"Type": "Parallel", "Branches": [branch], **state}}}


def _lambda_task(function: str, **state: Any) -> dict[str, Any]:
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "${" + function + "Arn}", "Payload.$": "$"},
        "OutputPath": "$.Payload",
        **state,
    }
    if "Next" not in task:
        task["End"] = True
    return task


def _choice(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "StartAt": "C",
        "States": {
            "C": {"Type": "Choice", "Choices": [{**rule, "Next": "Yes"}], "Default": "No"},
            "Yes": {"Type": "Pass", "Result": "yes", "End": True},
            "No": {"Type": "Pass", "Result": "no", "End": True},
        },
    }


_CHOICE_EVENTS = ("ChoiceStateEntered", "ChoiceStateExited", "PassStateEntered", "PassStateExited")

CASES: tuple[Case, ...] = (
    # -- intrinsic functions ------------------------------------------------------------------
    Case(
        "intrinsic_format",
        f"{INTRINSICS} (States.Format); {LS}intrinsic_functions/test_generic.snapshot.json test_format_1",
        _pass({"greeting.$": "States.Format('Hello, my name is {}.', $.name)"}),
        Expected("SUCCEEDED", output={"greeting": "Hello, my name is Arnav."}, events=_PASS_OK),
        input={"name": "Arnav"},
    ),
    Case(
        "intrinsic_string_to_json",
        f"{INTRINSICS} (States.StringToJson); {LS}intrinsic_functions/test_json_manipulation.snapshot.json",
        _pass({"parsed.$": "States.StringToJson($.escapedJsonString)"}),
        Expected("SUCCEEDED", output={"parsed": {"foo": "bar"}}, events=_PASS_OK),
        input={"escapedJsonString": '{"foo": "bar"}'},
    ),
    Case(
        "intrinsic_array",
        f"{INTRINSICS} (States.Array: {{'Id': 123456}} -> [123456])",
        _pass({"BuildId.$": "States.Array($.Id)", "Mixed.$": "States.Array('Foo', 2020, $.Id)"}),
        Expected("SUCCEEDED", output={"BuildId": [123456], "Mixed": ["Foo", 2020, 123456]}, events=_PASS_OK),
        input={"Id": 123456},
    ),
    Case(
        "intrinsic_array_partition",
        f"{INTRINSICS} (States.ArrayPartition, chunk size 4); {LS}intrinsic_functions/test_array.snapshot.json",
        _pass({"chunks.$": "States.ArrayPartition($.inputArray, 4)"}),
        Expected("SUCCEEDED", output={"chunks": [[1, 2, 3, 4], [5, 6, 7, 8], [9]]}, events=_PASS_OK),
        input={"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9]},
    ),
    Case(
        "intrinsic_math_add",
        f"{INTRINSICS} (States.MathAdd(111, -1) = 110); {LS}intrinsic_functions/test_math_operations.snapshot.json",
        _pass({"value.$": "States.MathAdd($.value1, $.step)"}),
        Expected("SUCCEEDED", output={"value": 110}, events=_PASS_OK),
        input={"value1": 111, "step": -1},
    ),
    Case(
        "intrinsic_uuid_shape",
        f"{INTRINSICS} (States.UUID: a v4 UUID); {LS}intrinsic_functions/test_unique_id_generation.snapshot.json",
        _pass({"id.$": "States.UUID()"}),
        Expected("SUCCEEDED", output_regex=UUID_V4, events=_PASS_OK),
    ),
    Case(
        "intrinsic_hash_sha1",
        f"{INTRINSICS} (States.Hash SHA-1); {LS}intrinsic_functions/test_hash_calculations.snapshot.json test_hash",
        _pass({"output.$": "States.Hash($.Data, $.Algorithm)"}),
        Expected("SUCCEEDED", output={"output": "aaff4a450a104cd177d28d18d74485e8cae074b7"}, events=_PASS_OK),
        input={"Data": "input data", "Algorithm": "SHA-1"},
    ),
    Case(
        "intrinsic_base64_encode",
        f"{INTRINSICS} (States.Base64Encode); {LS}intrinsic_functions/test_encode_decode.snapshot.json",
        _pass({"base64.$": "States.Base64Encode($.input)"}),
        Expected("SUCCEEDED", output={"base64": "RGF0YSB0byBlbmNvZGU="}, events=_PASS_OK),
        input={"input": "Data to encode"},
    ),
    # -- JSONPath input/output processing -------------------------------------------------------
    Case(
        "path_resultpath_keeps_raw_input",
        f"{DG}input-output-resultpath.html (ResultPath combines the result with the state's raw input, "
        "not the InputPath-filtered one); " + SPEC + " (Input and Output Processing)",
        _pass({"x.$": "$.b"}, InputPath="$.a", ResultPath="$.res"),
        Expected("SUCCEEDED", output={"a": {"b": 1}, "keep": True, "res": {"x": 1}}, events=_PASS_OK),
        input={"a": {"b": 1}, "keep": True},
    ),
    Case(
        "path_outputpath",
        f"{DG}input-output-example.html (OutputPath selects the effective output)",
        _pass({"x.$": "$.b"}, InputPath="$.a", ResultPath="$.res", OutputPath="$.res"),
        Expected("SUCCEEDED", output={"x": 1}, events=_PASS_OK),
        input={"a": {"b": 1}, "keep": True},
    ),
    Case(
        "path_resultpath_null_discards",
        f"{DG}input-output-resultpath.html (ResultPath null discards the result and keeps the input)",
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"r": 1}, "ResultPath": None, "End": True}}},
        Expected("SUCCEEDED", output={"in": 1}, events=_PASS_OK),
        input={"in": 1},
    ),
    Case(
        "path_array_index_definite",
        f"{LS}base/test_base.snapshot.json test_json_path_array_access[$.items[0]] (an index is a definite path: "
        "one value, not a list)",
        _pass({"item.$": "$.items[0]", "key.$": "$.items[10].item_key"}),
        Expected("SUCCEEDED", output={"item": {"item_key": 0}, "key": 10}, events=_PASS_OK),
        input={"items": [{"item_key": i} for i in range(11)]},
    ),
    Case(
        "path_result_selector",
        f"{DG}input-output-inputpath-params.html (ResultSelector on a Parallel result, then ResultPath); "
        f"{LS}base/test_base.snapshot.json test_json_path_array_access (`$[0].v` is definite: one value)",
        {
            "StartAt": "Par",
            "States": {
                "Par": {
                    "Type": "Parallel",
                    "Branches": [
                        {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": {"v": 1}, "End": True}}},
                        {"StartAt": "B", "States": {"B": {"Type": "Pass", "Result": {"v": 2}, "End": True}}},
                    ],
                    "ResultSelector": {"first.$": "$[0].v", "all.$": "$[*].v"},
                    "ResultPath": "$.sel",
                    "End": True,
                }
            },
        },
        Expected(
            "SUCCEEDED",
            output={"in": True, "sel": {"first": 1, "all": [1, 2]}},
            events=("ParallelStateEntered", "ParallelStateStarted", "ParallelStateSucceeded", "ParallelStateExited"),
        ),
        input={"in": True},
    ),
    Case(
        "path_indefinite_empty",
        f"{LS}base/test_base.snapshot.json test_json_path_array_wildcard_or_slice_with_no_input"
        "[$.items[*].itemValue] (output {'item': []})",
        _pass({"item.$": "$.items[*].itemValue"}),
        Expected("SUCCEEDED", output={"item": []}, events=_PASS_OK),
    ),
    Case(
        "path_missing_is_runtime_error",
        f"{DG}concepts-error-handling.html (States.Runtime: e.g. a path that does not exist in the input); "
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_catch_states_runtime",
        _pass({"x.$": "$.no.such.field"}),
        Expected("FAILED", error="States.Runtime", events=("ExecutionStarted", "PassStateEntered", "ExecutionFailed")),
    ),
    Case(
        "catch_does_not_catch_states_runtime",
        f"{DG}concepts-error-handling.html (\"A States.Runtime error isn't retriable, and will always cause the "
        'execution to fail"); '
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_catch_states_runtime (recorded on AWS: a Catch on "
        "States.Runtime does not catch a missing OutputPath; ExecutionFailed follows)",
        {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "End": True}}}],
                    "OutputPath": "$.no.such.result.path",
                    "Catch": [{"ErrorEquals": ["States.Runtime"], "Next": "Caught"}],
                    "End": True,
                },
                "Caught": {"Type": "Pass", "End": True},
            },
        },
        Expected("FAILED", error="States.Runtime", events=("ParallelStateEntered", "ExecutionFailed")),
    ),
    Case(
        "catch_all_does_not_catch_states_runtime",
        f'{DG}concepts-error-handling.html ("A retry or catch on States.ALL won\'t catch States.Runtime errors")',
        {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "End": True}}}],
                    "OutputPath": "$.no.such.result.path",
                    "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2, "IntervalSeconds": 1}],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                    "End": True,
                },
                "Caught": {"Type": "Pass", "End": True},
            },
        },
        Expected(
            "FAILED",
            error="States.Runtime",
            events=("ParallelStateEntered", "ExecutionFailed"),
            event_counts={"ParallelStateEntered": 1},
        ),
    ),
    Case(
        "pass_result",
        f"{DG}state-pass.html (Result, ResultPath $.coords)",
        {
            "StartAt": "P",
            "States": {"P": {"Type": "Pass", "Result": {"x": 0.38, "y": 3.14}, "ResultPath": "$.coords", "End": True}},
        },
        Expected("SUCCEEDED", output={"georefOf": "Home", "coords": {"x": 0.38, "y": 3.14}}, events=_PASS_OK),
        input={"georefOf": "Home"},
    ),
    Case(
        "pass_data_limit_exceeded",
        f"{LS}error_handling/test_states_errors.snapshot.json test_start_large_input (Pass result > 256 KiB)",
        {
            "StartAt": "State_1",
            "States": {"State_1": {"Type": "Pass", "Result": {"Arg1": "a" * (257 * 1024)}, "End": True}},
        },
        Expected(
            "FAILED",
            error="States.DataLimitExceeded",
            cause="The state/task 'State_1' returned a result with a size exceeding the maximum number of bytes "
            "service limit.",
            events=("ExecutionStarted", "PassStateEntered", "ExecutionFailed"),
        ),
    ),
    # -- Choice -------------------------------------------------------------------------------------
    Case(
        "choice_timestamp_fractional",
        f"{DG}state-choice.html (timestamps are RFC 3339; fractional seconds are part of RFC 3339); "
        f"{SPEC} (Choice Rules: TimestampGreaterThan)",
        _choice({"Variable": "$.t", "TimestampGreaterThan": "2024-01-01T00:00:00Z"}),
        Expected("SUCCEEDED", output="yes", events=_CHOICE_EVENTS),
        input={"t": "2024-01-01T00:00:00.500Z"},
    ),
    Case(
        "choice_timestamp_path_offset",
        f"{DG}state-choice.html (TimestampLessThanPath; RFC 3339 timestamps with fractional seconds)",
        _choice({"Variable": "$.a", "TimestampLessThanPath": "$.b"}),
        Expected("SUCCEEDED", output="yes", events=_CHOICE_EVENTS),
        input={"a": "2024-01-01T00:00:00.250Z", "b": "2024-01-01T00:00:00.750Z"},
    ),
    Case(
        "choice_is_present_false",
        f"{DG}state-choice.html (IsPresent); {LS}choice_operators/test_is_operators.snapshot.json test_is_present",
        _choice({"Variable": "$.missing", "IsPresent": False}),
        Expected("SUCCEEDED", output="yes", events=_CHOICE_EVENTS),
    ),
    Case(
        "choice_and_or_not",
        f"{DG}state-choice.html (And, Or, Not); {SPEC} (Boolean expressions)",
        _choice(
            {
                "And": [
                    {"Not": {"Variable": "$.type", "StringEquals": "Private"}},
                    {
                        "Or": [
                            {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                            {"Variable": "$.vip", "BooleanEquals": True},
                        ]
                    },
                ]
            }
        ),
        Expected("SUCCEEDED", output="yes", events=_CHOICE_EVENTS),
        input={"type": "Public", "value": 5, "vip": True},
    ),
    Case(
        "choice_no_match",
        f"{DG}state-choice.html (no rule matches and no Default: States.NoChoiceMatched); {SPEC} (Choice State)",
        {
            "StartAt": "C",
            "States": {
                "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "Y"}]},
                "Y": {"Type": "Succeed"},
            },
        },
        Expected(
            "FAILED",
            error="States.NoChoiceMatched",
            events=("ExecutionStarted", "ChoiceStateEntered", "ExecutionFailed"),
        ),
        input={"x": 2},
    ),
    # -- Fail ----------------------------------------------------------------------------------------
    Case(
        "fail_error_cause",
        f"{LS}base/test_base.snapshot.json test_state_fail; {DG}state-fail.html",
        {
            "StartAt": "F",
            "States": {
                "F": {
                    "Type": "Fail",
                    "Error": "SomeFailure",
                    "Cause": "This state machines raises a 'SomeFailure' failure.",
                }
            },
        },
        Expected(
            "FAILED",
            error="SomeFailure",
            cause="This state machines raises a 'SomeFailure' failure.",
            events=("ExecutionStarted", "FailStateEntered", "ExecutionFailed"),
        ),
    ),
    Case(
        "fail_errorpath_causepath",
        f"{LS}base/test_base.snapshot.json test_state_fail_path; {DG}state-fail.html (ErrorPath, CausePath)",
        {"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.Error", "CausePath": "$.Cause"}}},
        Expected(
            "FAILED",
            error="error string",
            cause="cause string",
            events=("ExecutionStarted", "FailStateEntered", "ExecutionFailed"),
        ),
        input={"Error": "error string", "Cause": "cause string"},
    ),
    # -- Retry / Catch ---------------------------------------------------------------------------------
    Case(
        "retry_max_attempts_zero",
        f"{DG}concepts-error-handling.html (MaxAttempts 0: never retried); "
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_retry_interval_features_max_attempts_zero",
        _failing_parallel(Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}], End=True),
        Expected(
            "FAILED",
            error="FailureType",
            cause="Cause description",
            events=(
                "ParallelStateEntered",
                "ParallelStateStarted",
                "FailStateEntered",
                "ParallelStateFailed",
                "ExecutionFailed",
            ),
            event_counts={"ParallelStateStarted": 1},
        ),
    ),
    Case(
        "retry_backoff_rate",
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_parallel_state_retry (one ParallelStateStarted per "
        f"attempt); {DG}concepts-error-handling.html (IntervalSeconds 1, BackoffRate 2 => waits 1 s, 2 s)",
        _failing_parallel(
            Retry=[{"ErrorEquals": ["FailureType"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2.0}],
            End=True,
        ),
        Expected(
            "FAILED",
            error="FailureType",
            cause="Cause description",
            events=(
                "ParallelStateEntered",
                "ParallelStateStarted",
                "ParallelStateStarted",
                "ParallelStateStarted",
                "ParallelStateFailed",
                "ExecutionFailed",
            ),
            event_counts={"ParallelStateStarted": 3},
            duration=(3.0, 4.5),
        ),
    ),
    Case(
        "retry_max_delay_seconds",
        f"{DG}concepts-error-handling.html (MaxDelaySeconds caps the backoff: 1, 5->2, 25->2); "
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_retry_interval_features",
        _failing_parallel(
            Retry=[
                {
                    "ErrorEquals": ["States.ALL"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 3,
                    "BackoffRate": 5.0,
                    "MaxDelaySeconds": 2,
                }
            ],
            End=True,
        ),
        Expected("FAILED", error="FailureType", event_counts={"ParallelStateStarted": 4}, duration=(5.0, 6.5)),
    ),
    Case(
        "retry_jitter_full",
        f"{DG}concepts-error-handling.html (JitterStrategy FULL: each wait drawn in [0, interval]); "
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_retry_interval_features",
        _failing_parallel(
            Retry=[
                {
                    "ErrorEquals": ["States.ALL"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 2,
                    "BackoffRate": 2.0,
                    "JitterStrategy": "FULL",
                }
            ],
            End=True,
        ),
        Expected("FAILED", error="FailureType", event_counts={"ParallelStateStarted": 3}, duration=(0.0, 3.5)),
    ),
    Case(
        "catch_result_path",
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_parallel_state_catch; "
        f"{DG}concepts-error-handling.html (Catch ResultPath keeps the input and adds Error/Cause)",
        {
            "StartAt": "Par",
            "States": {
                **_failing_parallel(
                    Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handled"}], Next="Handled"
                )["States"],
                "Handled": {"Type": "Pass", "End": True},
            },
        },
        Expected(
            "SUCCEEDED",
            output={"order": 7, "error": {"Error": "FailureType", "Cause": "Cause description"}},
            events=(
                "ParallelStateStarted",
                "FailStateEntered",
                "ParallelStateFailed",
                "ParallelStateExited",
                "PassStateEntered",
                "ExecutionSucceeded",
            ),
        ),
        input={"order": 7},
    ),
    Case(
        "catch_first_match_wins",
        f"{DG}concepts-error-handling.html (catchers are tried in order; States.ALL must be last); "
        f"{SPEC} (Fallback States)",
        {
            "StartAt": "Par",
            "States": {
                **_failing_parallel(
                    Catch=[
                        {"ErrorEquals": ["Other"], "Next": "Wrong"},
                        {"ErrorEquals": ["FailureType"], "Next": "Right"},
                        {"ErrorEquals": ["States.ALL"], "Next": "Wrong"},
                    ],
                    End=True,
                )["States"],
                "Right": {"Type": "Pass", "Result": "right", "End": True},
                "Wrong": {"Type": "Pass", "Result": "wrong", "End": True},
            },
        },
        Expected("SUCCEEDED", output="right", events=("ParallelStateFailed", "PassStateEntered", "ExecutionSucceeded")),
    ),
    # -- Map / Parallel -----------------------------------------------------------------------------------
    Case(
        "map_items_path_item_selector",
        f"{DG}state-map-inline.html (ItemsPath, ItemSelector with $$.Map.Item.Value/Index); "
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_map_state_item_selector",
        {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "MaxConcurrency": 1,
                    "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index", "c.$": "$.const"},
                    "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}},
                    "End": True,
                }
            },
        },
        Expected(
            "SUCCEEDED",
            output=[{"v": "a", "i": 0, "c": 9}, {"v": "b", "i": 1, "c": 9}],
            events=(
                "MapStateEntered",
                "MapStateStarted",
                "MapIterationStarted",
                "MapIterationSucceeded",
                "MapIterationStarted",
                "MapIterationSucceeded",
                "MapStateSucceeded",
                "MapStateExited",
                "ExecutionSucceeded",
            ),
            event_counts={"MapIterationStarted": 2},
        ),
        input={"items": ["a", "b"], "const": 9},
    ),
    Case(
        "map_empty_items",
        f"{DG}state-map-inline.html; "
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_map_state_items_input_array[empty]",
        {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}},
                    "End": True,
                }
            },
        },
        Expected(
            "SUCCEEDED",
            output=[],
            events=("MapStateEntered", "MapStateStarted", "MapStateSucceeded", "ExecutionSucceeded"),
        ),
        input={"items": []},
    ),
    Case(
        "map_failing_iteration",
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_map_state_catch_empty_fail (MapIterationFailed, "
        "MapStateFailed, ExecutionFailed)",
        {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "MaxConcurrency": 1,
                    "ItemProcessor": {
                        "StartAt": "Check",
                        "States": {
                            "Check": {
                                "Type": "Choice",
                                "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Bad"}],
                                "Default": "Ok",
                            },
                            "Ok": {"Type": "Pass", "End": True},
                            "Bad": {"Type": "Fail", "Error": "HandleItemFailError", "Cause": "HandleItemFailCause"},
                        },
                    },
                    "End": True,
                }
            },
        },
        Expected(
            "FAILED",
            error="HandleItemFailError",
            cause="HandleItemFailCause",
            events=(
                "MapStateStarted",
                "MapIterationStarted",
                "FailStateEntered",
                "MapIterationFailed",
                "MapStateFailed",
                "ExecutionFailed",
            ),
        ),
        input=[1, 2, 3],
    ),
    Case(
        "map_tolerated_failure_count",
        f"{DG}state-map-distributed.html (ToleratedFailureCount); {LS}scenarios/test_base_scenarios.snapshot.json "
        "test_map_state_tolerated_failure_values[count_literal]",
        {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "ToleratedFailureCount": 1,
                    "ItemProcessor": {
                        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                        "StartAt": "Check",
                        "States": {
                            "Check": {
                                "Type": "Choice",
                                "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Bad"}],
                                "Default": "Ok",
                            },
                            "Ok": {"Type": "Pass", "End": True},
                            "Bad": {"Type": "Fail", "Error": "ItemError"},
                        },
                    },
                    "ResultPath": None,
                    "End": True,
                }
            },
        },
        Expected(
            "SUCCEEDED",
            output=[1, 2, 3],
            events=("MapStateEntered", "MapRunStarted", "MapRunSucceeded", "ExecutionSucceeded"),
        ),
        input=[1, 2, 3],
    ),
    Case(
        "parallel_failing_branch",
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_parallel_state_fail",
        _failing_parallel(End=True),
        Expected(
            "FAILED",
            error="FailureType",
            cause="Cause description",
            events=(
                "ExecutionStarted",
                "ParallelStateEntered",
                "ParallelStateStarted",
                "FailStateEntered",
                "ParallelStateFailed",
                "ExecutionFailed",
            ),
        ),
    ),
    Case(
        "parallel_output_order",
        f"{DG}state-parallel.html (the output is an array of branch outputs in branch order); "
        f"{LS}scenarios/test_base_scenarios.snapshot.json test_parallel_state_order",
        {
            "StartAt": "Par",
            "States": {
                "Par": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "Slow",
                            "States": {
                                "Slow": {"Type": "Wait", "Seconds": 1, "Next": "A"},
                                "A": {"Type": "Pass", "Result": "a", "End": True},
                            },
                        },
                        {"StartAt": "B", "States": {"B": {"Type": "Pass", "Result": "b", "End": True}}},
                    ],
                    "End": True,
                }
            },
        },
        Expected(
            "SUCCEEDED",
            output=["a", "b"],
            events=("ParallelStateStarted", "ParallelStateSucceeded", "ExecutionSucceeded"),
            duration=(1.0, 2.5),
        ),
    ),
    # -- Wait -------------------------------------------------------------------------------------------------
    Case(
        "wait_seconds",
        f"{DG}state-wait.html (Seconds); {LS}base/test_wait.snapshot.json",
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 2, "End": True}}},
        Expected(
            "SUCCEEDED",
            output={"k": 1},
            events=("ExecutionStarted", "WaitStateEntered", "WaitStateExited", "ExecutionSucceeded"),
            duration=(2.0, 3.5),
        ),
        input={"k": 1},
    ),
    Case(
        "wait_timestamp_path_fractional",
        f"{LS}base/test_wait.snapshot.json test_wait_timestamppath[.000000Z] (a past timestamp with fractional "
        f"seconds: no wait); {DG}state-wait.html (TimestampPath)",
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "TimestampPath": "$.start_at", "End": True}}},
        Expected(
            "SUCCEEDED",
            output={"start_at": "2016-03-14T01:59:00.000000Z"},
            events=("ExecutionStarted", "WaitStateEntered", "WaitStateExited", "ExecutionSucceeded"),
            duration=(0.0, 1.5),
        ),
        input={"start_at": "2016-03-14T01:59:00.000000Z"},
    ),
    # -- Lambda tasks (plain moto would need Docker: not runnable there) -----------------------------------------
    Case(
        "lambda_error_is_exception_class",
        f"{LS}error_handling/test_task_service_lambda.snapshot.json test_raise_exception (error = errorType, cause = "
        f"the Lambda error JSON); {DG}concepts-error-handling.html",
        {"StartAt": "T", "States": {"T": _lambda_task("RaiseFunction")}},
        Expected(
            "FAILED",
            error="CustomError",
            cause_json={"errorMessage": "boom", "errorType": "CustomError"},
            events=("TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskFailed", "ExecutionFailed"),
        ),
        input={"error": "CustomError", "message": "boom"},
        functions=("RaiseFunction",),
    ),
    Case(
        "lambda_catch_result_path",
        f"{LS}error_handling/test_task_lambda.snapshot.json test_raise_custom_exception; "
        f"{DG}concepts-error-handling.html (Catch with ResultPath)",
        {
            "StartAt": "T",
            "States": {
                "T": _lambda_task(
                    "RaiseFunction",
                    Catch=[{"ErrorEquals": ["CustomError"], "ResultPath": "$.caught", "Next": "Done"}],
                    Next="Done",
                ),
                "Done": {
                    "Type": "Pass",
                    "Parameters": {"error.$": "$.caught.Error", "message.$": "$.message"},
                    "End": True,
                },
            },
        },
        Expected(
            "SUCCEEDED",
            output={"error": "CustomError", "message": "boom"},
            events=(
                "TaskScheduled",
                "TaskStarted",
                "TaskFailed",
                "TaskStateExited",
                "PassStateEntered",
                "ExecutionSucceeded",
            ),
        ),
        input={"error": "CustomError", "message": "boom"},
        functions=("RaiseFunction",),
    ),
    Case(
        "task_timeout",
        f"{LS}timeouts/test_timeouts.snapshot.json test_fixed_timeout_service_lambda (TaskTimedOut, States.Timeout)",
        {"StartAt": "T", "States": {"T": _lambda_task("SleepFunction", TimeoutSeconds=1)}},
        Expected(
            "FAILED",
            error="States.Timeout",
            events=("TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskTimedOut", "ExecutionFailed"),
            event_counts={"TaskSucceeded": 0},
            duration=(1.0, 2.5),
        ),
        input={"seconds": 3},
        functions=("SleepFunction",),
    ),
    Case(
        "lambda_result_data_limit",
        f"{LS}error_handling/test_states_errors.snapshot.json "
        "test_service_task_lambada_data_limit_exceeded_on_large_utf8_response",
        {
            "StartAt": "T",
            "States": {
                "T": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": "${BigFunctionArn}", "Payload.$": "$"},
                    "Catch": [{"ErrorEquals": ["States.DataLimitExceeded"], "Next": "Caught"}],
                    "End": True,
                },
                "Caught": {"Type": "Pass", "End": True},
            },
        },
        Expected(
            "SUCCEEDED",
            output={
                "Error": "States.DataLimitExceeded",
                "Cause": "The state/task 'lambda' returned a result with a size exceeding the maximum number of bytes "
                "service limit.",
            },
            events=(
                "TaskScheduled",
                "TaskStarted",
                "TaskFailed",
                "TaskStateExited",
                "PassStateEntered",
                "ExecutionSucceeded",
            ),
        ),
        input={"bytes": 257 * 1024},
        functions=("BigFunction",),
    ),
)


def case(name: str) -> Case:
    for candidate in CASES:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


# -- checking an outcome ------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one side recorded: DescribeExecution + the history's event types."""

    status: str
    error: str | None = None
    cause: str | None = None
    output: Any = None
    events: list[str] = field(default_factory=list)
    duration: float | None = None
    note: str | None = None  # why the case could not run on this side


def _subsequence(wanted: tuple[str, ...], events: list[str]) -> bool:
    it = iter(events)
    return all(any(event == w for event in it) for w in wanted)


def mismatches(expected: Expected, outcome: Outcome) -> list[str]:
    """How ``outcome`` differs from what AWS records (empty: it conforms)."""
    if outcome.note:
        return [outcome.note]
    problems: list[str] = []
    if outcome.status != expected.status:
        problems.append(f"status {outcome.status} != {expected.status}")
    if expected.error is not None and outcome.error != expected.error:
        problems.append(f"error {outcome.error!r} != {expected.error!r}")
    if expected.cause is not None and outcome.cause != expected.cause:
        problems.append(f"cause {outcome.cause!r} != {expected.cause!r}")
    if expected.cause_contains is not None and expected.cause_contains not in (outcome.cause or ""):
        problems.append(f"cause {outcome.cause!r} lacks {expected.cause_contains!r}")
    if expected.cause_json is not None:
        try:
            parsed = json.loads(outcome.cause or "")
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or any(parsed.get(k) != v for k, v in expected.cause_json.items()):
            problems.append(f"cause {outcome.cause!r} does not hold {expected.cause_json!r}")
    if expected.output is not None and outcome.output != expected.output:
        problems.append(f"output {_short(outcome.output)} != {_short(expected.output)}")
    if expected.output_regex is not None and not re.match(
        expected.output_regex, json.dumps(outcome.output, sort_keys=True)
    ):
        problems.append(f"output {_short(outcome.output)} !~ {expected.output_regex}")
    if expected.events and not _subsequence(expected.events, outcome.events):
        problems.append(f"events {outcome.events} lack {list(expected.events)} in order")
    for event, count in expected.event_counts.items():
        if outcome.events.count(event) != count:
            problems.append(f"{outcome.events.count(event)} x {event} != {count}")
    if expected.duration is not None:
        low, high = expected.duration
        if outcome.duration is None or not low <= outcome.duration <= high:
            problems.append(f"duration {outcome.duration} not in [{low}, {high}]")
    return problems


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -- the fixture app ----------------------------------------------------------------------------------------------
def app_files() -> dict[Path, str]:
    """The fixture app's files (template + one ASL file per case) as this module defines them."""
    files: dict[Path, str] = {}
    lines = [
        'AWSTemplateFormatVersion: "2010-09-09"',
        "Transform: AWS::Serverless-2016-10-31",
        "Description: >",
        "  ASL conformance cases (generated by `python -m tests.fidelity.cases`; edit tests/fidelity/cases.py).",
        "",
        "Globals:",
        "  Function:",
        "    Runtime: python3.13",
        "    Architectures: [arm64]",
        "    Timeout: 30",
        "    MemorySize: 256",
        "",
        "Resources:",
    ]
    for logical_id, directory in FUNCTIONS.items():
        lines += [
            f"  {logical_id}:",
            "    Type: AWS::Serverless::Function",
            "    Properties:",
            f"      CodeUri: functions/{directory}/",
            "      Handler: app.handler",
            "",
        ]
    for item in CASES:
        path = APP / "statemachines" / f"{item.name}.asl.json"
        files[path] = json.dumps(item.definition, indent=2) + "\n"
        lines += [
            f"  {item.machine}:",
            "    Type: AWS::Serverless::StateMachine",
            "    Properties:",
            "      Type: STANDARD",
            f"      DefinitionUri: statemachines/{item.name}.asl.json",
        ]
        if item.functions:
            lines.append("      DefinitionSubstitutions:")
            lines += [f"        {fn}Arn: !GetAtt {fn}.Arn" for fn in item.functions]
            lines.append("      Policies:")
            lines += [f"        - LambdaInvokePolicy:\n            FunctionName: !Ref {fn}" for fn in item.functions]
        lines.append("")
    files[APP / "template.yaml"] = "\n".join(lines)
    return files


def write_app() -> None:
    for path, text in app_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    write_app()
    print(f"wrote {len(CASES)} state machines under {APP}")
