"""The metrics AWS itself publishes for what a run did (AWS/Lambda, AWS/States).

Alarms on Lambda errors and failed executions read metrics no code of ours
emits; offline, they are derived from the run's record, as AWS derives them:

* ``AWS/Lambda``, dimension ``FunctionName``, per invocation at its start:
  ``Invocations`` 1, ``Errors`` 1 for a function error (an exception, a timeout,
  an init failure) else 0, ``Duration`` in milliseconds.
  ``Throttles`` 1 per invocation Lambda refused for concurrency (reserved
  concurrency all in use), at the refusal; a refused one is no ``Invocations``.
* ``AWS/States``, dimension ``StateMachineArn``, per execution:
  ``ExecutionsStarted`` at its start; ``ExecutionsSucceeded`` / ``ExecutionsFailed`` /
  ``ExecutionsTimedOut`` / ``ExecutionsAborted`` and ``ExecutionTime`` (ms) when it
  stops. Express executions included, as AWS publishes these for both types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from local_runtime.models import Datapoint, Invocation

__all__ = ["LAMBDA_NAMESPACE", "PUBLISHED", "STATES_NAMESPACE", "lambda_datapoints", "states_datapoints"]

LAMBDA_NAMESPACE: Final = "AWS/Lambda"
STATES_NAMESPACE: Final = "AWS/States"

#: Every metric above, with the dimension set an alarm must name: (namespace, name) -> dimensions.
PUBLISHED: Final[Mapping[tuple[str, str], frozenset[str]]] = {
    **{
        (LAMBDA_NAMESPACE, name): frozenset({"FunctionName"})
        for name in ("Invocations", "Errors", "Duration", "Throttles")
    },
    **{
        (STATES_NAMESPACE, name): frozenset({"StateMachineArn"})
        for name in (
            "ExecutionsStarted",
            "ExecutionsSucceeded",
            "ExecutionsFailed",
            "ExecutionsTimedOut",
            "ExecutionsAborted",
            "ExecutionTime",
        )
    },
}

#: The metric AWS/States publishes when an execution stops with each status.
_STOPPED: Final[Mapping[str, str]] = {
    "SUCCEEDED": "ExecutionsSucceeded",
    "FAILED": "ExecutionsFailed",
    "TIMED_OUT": "ExecutionsTimedOut",
    "ABORTED": "ExecutionsAborted",
}


def lambda_datapoints(
    function_name: str, invocations: Iterable[Invocation], throttled_at: Iterable[float] = ()
) -> list[Datapoint]:
    dimensions = frozenset({("FunctionName", function_name)})
    points = [Datapoint(LAMBDA_NAMESPACE, "Throttles", dimensions, at, 1.0, "Count") for at in throttled_at]
    for invocation in invocations:
        at = invocation.started_at
        points += [
            Datapoint(LAMBDA_NAMESPACE, "Invocations", dimensions, at, 1.0, "Count"),
            Datapoint(LAMBDA_NAMESPACE, "Errors", dimensions, at, 1.0 if invocation.errored else 0.0, "Count"),
            Datapoint(LAMBDA_NAMESPACE, "Duration", dimensions, at, invocation.duration * 1000.0, "Milliseconds"),
        ]
    return points


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


def states_datapoints(state_machine_arn: str, executions: Iterable[Any]) -> list[Datapoint]:
    """``executions``: moto's execution records of one state machine (status, start_date, stop_date)."""
    dimensions = frozenset({("StateMachineArn", state_machine_arn)})
    points: list[Datapoint] = []
    for execution in executions:
        started = _epoch(execution.start_date)
        if started is None:
            continue
        points.append(Datapoint(STATES_NAMESPACE, "ExecutionsStarted", dimensions, started, 1.0, "Count"))
        stopped = _epoch(getattr(execution, "stop_date", None))
        metric = _STOPPED.get(str(execution.status))
        if stopped is None or metric is None:
            continue  # still running: nothing published yet
        points += [
            Datapoint(STATES_NAMESPACE, metric, dimensions, stopped, 1.0, "Count"),
            Datapoint(
                STATES_NAMESPACE, "ExecutionTime", dimensions, stopped, (stopped - started) * 1000.0, "Milliseconds"
            ),
        ]
    return points
