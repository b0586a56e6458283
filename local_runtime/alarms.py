"""CloudWatch alarm evaluation: the template's alarms against the datapoints a run recorded.

Each ``AWS::CloudWatch::Alarm`` is read from the template with its intrinsics
resolved by the runtime's template machinery (so ``!Ref MetricsNamespace`` and
``!Ref HealthFunction`` are what the stack uses), then evaluated the way
CloudWatch documents it:

* datapoints are matched on namespace, metric name and the *exact* dimension
  set (a datapoint with one dimension more or less is another metric);
* they are aggregated into periods aligned on multiples of ``Period`` since the
  epoch, with ``Statistic`` (SampleCount, Sum, Average, Minimum, Maximum);
* the alarm looks at the last ``EvaluationPeriods`` periods up to and
  including the one in progress at the evaluation time; it is in ALARM when
  ``DatapointsToAlarm`` (default: ``EvaluationPeriods``) of them breach
  ``ComparisonOperator`` ``Threshold``, OK otherwise;
* a period with no datapoint is treated per ``TreatMissingData``:
  ``notBreaching`` (a good period) or ``breaching`` (a bad one);
* ``Metrics`` (metric math): each ``MetricStat`` query gives a series; the one
  query with ``ReturnData`` true is an ``Expression`` of arithmetic (``+ - * /``,
  parentheses, numbers, query ids), computed per period where every operand
  has a value (a division by zero gives no value, as in CloudWatch).

What the template does not use is refused with :class:`UnsupportedAlarmError`
rather than approximated: percentiles and extended statistics, anomaly
detection, ``TreatMissingData`` ``missing``/``ignore`` (their result depends on
the alarm's previous state and on how far back CloudWatch looks for data), and
any metric math function (``SUM(...)``, ``FILL(...)``, ``SEARCH(...)``, ...).
"""

from __future__ import annotations

import ast
import math
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from local_runtime.models import Datapoint
from local_runtime.template import LocalTemplate

__all__ = [
    "Alarm",
    "AlarmEvaluation",
    "MetricQuery",
    "MetricStat",
    "UnsupportedAlarmError",
    "evaluate",
    "evaluate_all",
    "parse_alarm",
    "template_alarms",
]

AlarmState = Literal["OK", "ALARM"]

_STATISTICS: Final[Mapping[str, Callable[[list[float]], float]]] = {
    "SampleCount": lambda values: float(len(values)),
    "Sum": lambda values: math.fsum(values),
    "Average": lambda values: math.fsum(values) / len(values),
    "Minimum": min,
    "Maximum": max,
}
_COMPARISONS: Final[Mapping[str, Callable[[float, float], bool]]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
_MISSING: Final = frozenset({"notBreaching", "breaching"})
_OPERATORS: Final[Mapping[type[ast.operator], Callable[[float, float], float]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class UnsupportedAlarmError(ValueError):
    """An alarm property this evaluator does not implement (refused, never approximated)."""


@dataclass(frozen=True)
class MetricStat:
    namespace: str
    name: str
    dimensions: frozenset[tuple[str, str]]
    stat: str
    period: int

    def matches(self, point: Datapoint) -> bool:
        return point.namespace == self.namespace and point.name == self.name and point.dimensions == self.dimensions


@dataclass(frozen=True)
class MetricQuery:
    id: str
    stat: MetricStat | None
    expression: str | None
    return_data: bool


@dataclass(frozen=True)
class Alarm:
    logical_id: str
    name: str
    comparison: str
    threshold: float
    evaluation_periods: int
    datapoints_to_alarm: int
    treat_missing_data: str
    period: int
    queries: tuple[MetricQuery, ...]

    @property
    def metrics(self) -> tuple[MetricStat, ...]:
        """Every metric the alarm reads."""
        return tuple(query.stat for query in self.queries if query.stat is not None)


@dataclass(frozen=True)
class AlarmEvaluation:
    alarm: Alarm
    state: AlarmState
    #: The evaluated periods, oldest first: (period start, value or None when missing).
    periods: tuple[tuple[float, float | None], ...]
    breaching: int

    @property
    def reason(self) -> str:
        values = ", ".join("-" if value is None else f"{value:g}" for _, value in self.periods)
        return (
            f"{self.breaching} of the last {len(self.periods)} periods of {self.alarm.period} s "
            f"{self.alarm.comparison} {self.alarm.threshold:g} ([{values}], {self.alarm.datapoints_to_alarm} to alarm)"
        )


# --------------------------------------------------------------------------- reading the template


def _dimensions(raw: object, where: str) -> frozenset[tuple[str, str]]:
    pairs = []
    for item in raw or []:  # type: ignore[attr-defined]
        if not isinstance(item, Mapping) or not isinstance(item.get("Name"), str):
            raise UnsupportedAlarmError(f"{where}: a dimension must be {{Name, Value}}, got {item!r}")
        pairs.append((str(item["Name"]), str(item["Value"])))
    return frozenset(pairs)


def _statistic(name: object, where: str) -> str:
    if name not in _STATISTICS:
        raise UnsupportedAlarmError(f"{where}: statistic {name!r} (supported: {sorted(_STATISTICS)})")
    return str(name)


def parse_alarm(logical_id: str, properties: Mapping[str, Any]) -> Alarm:
    """An alarm from its resolved CloudFormation properties."""
    where = f"alarm {logical_id}"
    for refused in ("ExtendedStatistic", "ThresholdMetricId", "EvaluateLowSampleCountPercentile"):
        if refused in properties:
            raise UnsupportedAlarmError(f"{where}: {refused} is not supported")
    comparison = str(properties.get("ComparisonOperator"))
    if comparison not in _COMPARISONS:
        raise UnsupportedAlarmError(f"{where}: ComparisonOperator {comparison!r} (supported: {sorted(_COMPARISONS)})")
    missing = str(properties.get("TreatMissingData", "missing"))
    if missing not in _MISSING:
        raise UnsupportedAlarmError(f"{where}: TreatMissingData {missing!r} (supported: {sorted(_MISSING)})")
    evaluation_periods = int(properties["EvaluationPeriods"])
    datapoints_to_alarm = int(properties.get("DatapointsToAlarm", evaluation_periods))
    if not 1 <= datapoints_to_alarm <= evaluation_periods:
        raise UnsupportedAlarmError(f"{where}: DatapointsToAlarm must be 1..EvaluationPeriods")
    queries: list[MetricQuery] = []
    if "Metrics" in properties:
        for raw in properties["Metrics"]:
            query_id = str(raw["Id"])
            stat = None
            if "MetricStat" in raw:
                spec = raw["MetricStat"]
                metric = spec["Metric"]
                stat = MetricStat(
                    namespace=str(metric["Namespace"]),
                    name=str(metric["MetricName"]),
                    dimensions=_dimensions(metric.get("Dimensions"), where),
                    stat=_statistic(spec["Stat"], where),
                    period=int(spec["Period"]),
                )
            elif "Expression" not in raw:
                raise UnsupportedAlarmError(f"{where}: query {query_id} has neither MetricStat nor Expression")
            return_data = raw.get("ReturnData", True)
            queries.append(MetricQuery(query_id, stat, raw.get("Expression"), return_data in (True, "true", "True")))
        periods = {query.stat.period for query in queries if query.stat is not None}
        if len(periods) != 1:
            raise UnsupportedAlarmError(f"{where}: every MetricStat must have one and the same Period")
        period = periods.pop()
        if sum(query.return_data for query in queries) != 1:
            raise UnsupportedAlarmError(f"{where}: exactly one query must have ReturnData true")
    else:
        period = int(properties["Period"])
        stat = MetricStat(
            namespace=str(properties["Namespace"]),
            name=str(properties["MetricName"]),
            dimensions=_dimensions(properties.get("Dimensions"), where),
            stat=_statistic(properties.get("Statistic"), where),
            period=period,
        )
        queries.append(MetricQuery("m1", stat, None, True))
    for query in queries:
        if query.expression is not None:
            _check_expression(query.expression, {q.id for q in queries if q.id != query.id}, where)
    return Alarm(
        logical_id=logical_id,
        name=str(properties.get("AlarmName", logical_id)),
        comparison=comparison,
        threshold=float(properties["Threshold"]),
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=datapoints_to_alarm,
        treat_missing_data=missing,
        period=period,
        queries=tuple(queries),
    )


#: What decides an alarm's state; its actions (``AlarmActions``, ``OKActions``) do not, and are
#: left unresolved.
_EVALUATED: Final = (
    "AlarmName",
    "ComparisonOperator",
    "DatapointsToAlarm",
    "Dimensions",
    "EvaluateLowSampleCountPercentile",
    "EvaluationPeriods",
    "ExtendedStatistic",
    "MetricName",
    "Metrics",
    "Namespace",
    "Period",
    "Statistic",
    "Threshold",
    "ThresholdMetricId",
    "TreatMissingData",
)


def template_alarms(template: LocalTemplate) -> list[Alarm]:
    """Every ``AWS::CloudWatch::Alarm`` of ``template``, its intrinsics resolved by the runtime's resolver."""
    resolver = template.resolver()
    found = []
    for logical_id, resource in sorted(template.of_type("AWS::CloudWatch::Alarm").items()):
        properties = {key: value for key, value in (resource.get("Properties") or {}).items() if key in _EVALUATED}
        resolved = resolver.intrinsic_property_resolver({"Properties": properties}, ignore_errors=False)
        found.append(parse_alarm(logical_id, resolved["Properties"]))
    return found


# --------------------------------------------------------------------------- metric math


def _check_expression(expression: str, ids: set[str], where: str) -> None:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise UnsupportedAlarmError(f"{where}: expression {expression!r} is not arithmetic") from exc
    for node in ast.walk(tree):
        allowed = (
            isinstance(node, ast.Expression | ast.BinOp | ast.Load)
            or type(node) in _OPERATORS
            or (isinstance(node, ast.Constant) and type(node.value) in (int, float))
            or (isinstance(node, ast.Name) and node.id in ids)
        )
        if not allowed:
            raise UnsupportedAlarmError(
                f"{where}: expression {expression!r}: only + - * /, numbers and query ids {sorted(ids)} are supported"
            )


def _compute(node: ast.AST, values: Mapping[str, float]) -> float | None:
    if isinstance(node, ast.Expression):
        return _compute(node.body, values)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.Name):
        return values.get(node.id)
    if isinstance(node, ast.BinOp):
        left, right = _compute(node.left, values), _compute(node.right, values)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Div) and right == 0:
            return None
        return _OPERATORS[type(node.op)](left, right)
    raise UnsupportedAlarmError(f"unexpected expression node {type(node).__name__}")  # pragma: no cover - checked


# --------------------------------------------------------------------------- evaluation


def _series(stat: MetricStat, points: Iterable[Datapoint]) -> dict[float, float]:
    buckets: dict[float, list[float]] = defaultdict(list)
    for point in points:
        if stat.matches(point):
            buckets[math.floor(point.timestamp / stat.period) * stat.period].append(point.value)
    aggregate = _STATISTICS[stat.stat]
    return {start: aggregate(values) for start, values in buckets.items()}


def evaluate(alarm: Alarm, points: Iterable[Datapoint], at: float) -> AlarmEvaluation:
    """The alarm's state at ``at`` (epoch seconds) from ``points``."""
    points = list(points)
    series = {query.id: _series(query.stat, points) for query in alarm.queries if query.stat is not None}
    result = next(query for query in alarm.queries if query.return_data)
    last = math.floor(at / alarm.period) * alarm.period
    starts = [last - alarm.period * back for back in reversed(range(alarm.evaluation_periods))]
    periods: list[tuple[float, float | None]] = []
    for start in starts:
        if result.expression is None:
            value = series[result.id].get(start)
        else:
            present = {query_id: found[start] for query_id, found in series.items() if start in found}
            value = _compute(ast.parse(result.expression, mode="eval"), present)
        periods.append((start, value))
    compare = _COMPARISONS[alarm.comparison]
    breaching = sum(
        1
        for _, value in periods
        if (value is None and alarm.treat_missing_data == "breaching")
        or (value is not None and compare(value, alarm.threshold))
    )
    state: AlarmState = "ALARM" if breaching >= alarm.datapoints_to_alarm else "OK"
    return AlarmEvaluation(alarm, state, tuple(periods), breaching)


def evaluate_all(alarms: Iterable[Alarm], points: Iterable[Datapoint], at: float) -> list[AlarmEvaluation]:
    points = list(points)
    return [evaluate(alarm, points, at) for alarm in alarms]
