"""The runtime's data types: what the template says, what a run produced.

Plain values with no behaviour beyond presenting themselves, so every other
module (the stack, the Lambda sandboxes, traces, the CLI) can share them
without importing one another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from local_runtime.trace import Trace

__all__ = ["THROTTLED", "Datapoint", "ExecutionResult", "FunctionSpec", "Invocation", "LambdaThrottledError"]

#: Lambda's error for an invocation past the function's reserved concurrency (HTTP 429).
THROTTLED = "TooManyRequestsException"


class LambdaThrottledError(Exception):
    """An Invoke Lambda refused (429): the API answers it, the function never ran."""


@dataclass(frozen=True)
class FunctionSpec:
    """What the template says about one function (Globals merged)."""

    logical_id: str
    function_name: str
    handler: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    timeout: int
    memory: int
    environment: Mapping[str, str]
    arn: str
    #: ReservedConcurrentExecutions: invocations past it are throttled (None: the account's pool).
    reserved_concurrency: int | None = None


@dataclass
class Invocation:
    """One finished invocation: what AWS would return, plus timing."""

    function: str
    request_id: str
    payload: Any
    error_type: str | None = None
    error_message: str | None = None
    started_at: float = 0.0
    duration: float = 0.0
    cold_start: bool = False
    #: The embedded-metric-format documents the handler printed, as CloudWatch Logs received them.
    emf: list[dict[str, Any]] = field(default_factory=list)

    @property
    def errored(self) -> bool:
        return self.error_type is not None

    @property
    def throttled(self) -> bool:
        """Lambda refused to run it (429 TooManyRequestsException): the handler never started."""
        return self.error_type == THROTTLED

    def response_payload(self) -> str:
        return json.dumps(self.payload, default=str)


@dataclass(frozen=True)
class Datapoint:
    """One value of one metric (namespace, name and exact dimension set) at one time (epoch seconds)."""

    namespace: str
    name: str
    dimensions: frozenset[tuple[str, str]]
    timestamp: float
    value: float
    unit: str | None = None


@dataclass
class ExecutionResult:
    """A finished execution, as DescribeExecution + GetExecutionHistory show it."""

    arn: str
    name: str
    state_machine: str
    status: str
    input: Any
    output: Any
    error: str | None
    cause: str | None
    start: datetime
    stop: datetime | None
    events: list[dict[str, Any]] = field(default_factory=list)
    definition: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    @property
    def duration(self) -> float:
        return max(0.0, (self.stop - self.start).total_seconds()) if self.stop else 0.0

    def trace(self) -> Trace:
        return Trace.from_result(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "executionArn": self.arn,
            "name": self.name,
            "stateMachine": self.state_machine,
            "status": self.status,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "cause": self.cause,
            "startDate": self.start.isoformat(),
            "stopDate": self.stop.isoformat() if self.stop else None,
            "events": self.events,
            "definition": self.definition,
            "faults": self.faults,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExecutionResult:
        return cls(
            arn=data["executionArn"],
            name=data["name"],
            state_machine=data["stateMachine"],
            status=data["status"],
            input=data.get("input"),
            output=data.get("output"),
            error=data.get("error"),
            cause=data.get("cause"),
            start=datetime.fromisoformat(data["startDate"]),
            stop=datetime.fromisoformat(data["stopDate"]) if data.get("stopDate") else None,
            events=list(data.get("events") or []),
            definition=dict(data.get("definition") or {}),
            faults=list(data.get("faults") or []),
        )
