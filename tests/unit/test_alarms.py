"""CloudWatch alarm evaluation (local_runtime.alarms) and EMF extraction (local_runtime.emf)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from local_runtime import alarms, aws_metrics, emf
from local_runtime.models import Datapoint
from local_runtime.template import LocalTemplate
from resilience.alarm_metrics import EMITTED, SERVICE_DIMENSION
from resilience.cache import cache_presets

ROOT = Path(__file__).resolve().parents[2]
NS = "Breakwater"
DIMS = frozenset({("service", "breakwater"), ("Breaker", "b")})


def alarm(**overrides: Any) -> alarms.Alarm:
    properties: dict[str, Any] = {
        "Namespace": NS,
        "MetricName": "BreakerOpenSeconds",
        "Dimensions": [{"Name": "service", "Value": "breakwater"}, {"Name": "Breaker", "Value": "b"}],
        "Statistic": "Maximum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 300,
        "TreatMissingData": "notBreaching",
    }
    properties.update(overrides)
    return alarms.parse_alarm("A", properties)


def point(value: float, at: float, name: str = "BreakerOpenSeconds", dims: frozenset[Any] = DIMS) -> Datapoint:
    return Datapoint(NS, name, dims, at, value)


def test_AboveTheThresholdInThePeriodIsAlarm():
    result = alarms.evaluate(alarm(), [point(10, 600), point(301, 610)], at=619)
    assert result.state == "ALARM"
    assert result.periods == ((600, 301),)


def test_ExactlyAtTheThresholdIsOk():
    assert alarms.evaluate(alarm(), [point(300, 600)], at=619).state == "OK"


def test_ADatapointWithOneDimensionMoreIsAnotherMetricAndNeverTripsTheAlarm():
    extra = frozenset({*DIMS, ("function_name", "HealthFunction")})
    assert alarms.evaluate(alarm(), [point(1000, 600, dims=extra)], at=619).state == "OK"
    assert alarms.evaluate(alarm(), [point(1000, 600, dims=frozenset({("Breaker", "b")}))], at=619).state == "OK"


def test_OnlyTheEvaluatedPeriodsCount():
    # A breach two minutes ago is outside a one-period alarm evaluated now.
    assert alarms.evaluate(alarm(), [point(400, 480)], at=619).state == "OK"


def test_MOutOfNDatapointsToAlarm():
    two_of_three = alarm(EvaluationPeriods=3, DatapointsToAlarm=2)
    assert alarms.evaluate(two_of_three, [point(400, 480), point(0, 540), point(400, 600)], at=619).state == "ALARM"
    assert alarms.evaluate(two_of_three, [point(400, 480), point(0, 540), point(0, 600)], at=619).state == "OK"


def test_MissingDataIsGoodOrBadAsTreatMissingDataSays():
    assert alarms.evaluate(alarm(), [], at=619).state == "OK"
    assert alarms.evaluate(alarm(TreatMissingData="breaching"), [], at=619).state == "ALARM"


@pytest.mark.parametrize(
    ("statistic", "expected"),
    [("Sum", 30.0), ("Average", 10.0), ("Maximum", 20.0), ("Minimum", 0.0), ("SampleCount", 3.0)],
)
def test_Statistics(statistic, expected):
    result = alarms.evaluate(alarm(Statistic=statistic), [point(0, 600), point(10, 601), point(20, 659)], at=659)
    assert result.periods == ((600, expected),)


def test_MetricMathHitRate():
    dims = [{"Name": "service", "Value": "breakwater"}, {"Name": "Cache", "Value": "c"}]
    cache = frozenset({("service", "breakwater"), ("Cache", "c")})

    def stat(name: str) -> dict[str, Any]:
        return {"Metric": {"Namespace": NS, "MetricName": name, "Dimensions": dims}, "Stat": "Sum", "Period": 300}

    hit_rate = alarms.parse_alarm(
        "HitRate",
        {
            "Metrics": [
                {"Id": "rate", "Expression": "100 * hits / (hits + misses)", "ReturnData": True},
                {"Id": "hits", "MetricStat": stat("CacheHits"), "ReturnData": False},
                {"Id": "misses", "MetricStat": stat("CacheMisses"), "ReturnData": False},
            ],
            "EvaluationPeriods": 1,
            "ComparisonOperator": "LessThanThreshold",
            "Threshold": 50,
            "TreatMissingData": "notBreaching",
        },
    )
    low = [point(1, 300, "CacheHits", cache), point(3, 310, "CacheMisses", cache)]
    assert alarms.evaluate(hit_rate, low, at=599).periods == ((300, 25.0),)
    assert alarms.evaluate(hit_rate, low, at=599).state == "ALARM"
    half = [point(2, 300, "CacheHits", cache), point(2, 310, "CacheMisses", cache)]
    assert alarms.evaluate(hit_rate, half, at=599).state == "OK"
    # No lookups: no value, which notBreaching counts as good.
    assert alarms.evaluate(hit_rate, [], at=599).state == "OK"


@pytest.mark.parametrize(
    "overrides",
    [
        {"Statistic": "p99"},
        {"ExtendedStatistic": "p99"},
        {"ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold"},
        {"TreatMissingData": "missing"},
        {"TreatMissingData": "ignore"},
        {"EvaluationPeriods": 2, "DatapointsToAlarm": 3},
    ],
)
def test_WhatTheEvaluatorDoesNotImplementIsRefused(overrides):
    with pytest.raises(alarms.UnsupportedAlarmError):
        alarm(**overrides)


@pytest.mark.parametrize("expression", ["SUM([m1])", "FILL(m1, 0)", "m1 ** 2", "-m1", "other / m1"])
def test_MetricMathBeyondArithmeticIsRefused(expression):
    metric = {"Metric": {"Namespace": NS, "MetricName": "X"}, "Stat": "Sum", "Period": 60}
    with pytest.raises(alarms.UnsupportedAlarmError):
        alarms.parse_alarm(
            "A",
            {
                "Metrics": [
                    {"Id": "e", "Expression": expression, "ReturnData": True},
                    {"Id": "m1", "MetricStat": metric, "ReturnData": False},
                ],
                "EvaluationPeriods": 1,
                "ComparisonOperator": "GreaterThanThreshold",
                "Threshold": 1,
                "TreatMissingData": "notBreaching",
            },
        )


# -- EMF ------------------------------------------------------------------------------------------


def test_EmfDocumentsYieldOneDatapointPerValueAndDimensionSet():
    document = {
        "_aws": {
            "Timestamp": 1_700_000_000_500,
            "CloudWatchMetrics": [
                {"Namespace": NS, "Dimensions": [["service"], ["service", "Role"]], "Metrics": [{"Name": "C"}]}
            ],
        },
        "service": "breakwater",
        "Role": "listener",
        "C": [1.0, 2.0],
    }
    (found,) = emf.documents("log line\n" + json.dumps(document) + "\n{not json\n")
    points = emf.datapoints(found)
    assert len(points) == 4
    assert {p.dimensions for p in points} == {
        frozenset({("service", "breakwater")}),
        frozenset({("service", "breakwater"), ("Role", "listener")}),
    }
    assert {p.timestamp for p in points} == {1_700_000_000.5}


def test_EmfDocumentCloudWatchWouldRefuseIsAnError():
    document = {
        "_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": NS, "Dimensions": [["Gone"]], "Metrics": []}]}
    }
    with pytest.raises(emf.EmfError):
        emf.datapoints(document)


# -- the template's alarms against what the code emits ------------------------------------------------


@pytest.fixture(scope="module")
def template() -> LocalTemplate:
    return LocalTemplate.load(ROOT / "template.yaml")


def test_EveryAlarmReadsAMetricTheCodeOrAwsEmitsWithItsExactDimensionSet(template):
    namespace = template.parameters["MetricsNamespace"]
    service = template.raw["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    caches = {policy.name for policy in cache_presets({}).policies()}
    functions = {spec.function_name for spec in template.functions.values()}
    machines = {spec.arn for spec in template.state_machines.values()}
    found = alarms.template_alarms(template)
    assert found
    for each in found:
        for metric in each.metrics:
            names = frozenset(name for name, _ in metric.dimensions)
            values = dict(metric.dimensions)
            if metric.namespace == namespace:
                assert EMITTED.get(metric.name) == names, (each.logical_id, metric)
                assert values[SERVICE_DIMENSION] == service, each.logical_id
                if "Cache" in values:
                    assert values["Cache"] in caches, each.logical_id
            else:
                assert aws_metrics.PUBLISHED.get((metric.namespace, metric.name)) == names, (each.logical_id, metric)
                if "FunctionName" in values:
                    assert values["FunctionName"] in functions, each.logical_id
                if "StateMachineArn" in values:
                    assert values["StateMachineArn"] in machines, each.logical_id


def test_AlarmCountPerSeedThreshold(template):
    """One alarm per seed threshold and subject; the lead's table in the README says the same."""
    raw = template.raw["Resources"]
    by_threshold = Counter(
        str(resource["Properties"]["Threshold"].get("Ref"))
        for resource in raw.values()
        if resource.get("Type") == "AWS::CloudWatch::Alarm" and isinstance(resource["Properties"]["Threshold"], dict)
    )
    assert dict(by_threshold) == {
        "AlertBreakerOpenSeconds": 3,  # one per shared breaker
        "AlertCacheHitRatePercent": 4,  # one per seed cache
        "AlertLatencyMs": 3,  # one per service with its own client timeouts
        "AlertMemoryPercent": 4,
        "AlertTimeoutRatePercent": 3,
        "IdleConnectionsAlarmPerMinute": 1,
        "ConnectionsClosedAlarmPerMinute": 1,
        "AuthorizeFailuresAlarmPerMinute": 1,
        "WorkflowStepErrorsAlarmPerMinute": 5,  # Lambda errors of the five workflow-step functions
    }
