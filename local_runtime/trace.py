"""An execution's history, read the way the Step Functions console shows it.

The history events are the source of truth (the same ``GetExecutionHistory``
an AWS user would read); this module folds them into one row per state
visit: when it started (offset from the execution start), how long it took,
how it ended, how many attempts it needed, how long each retry waited, and
the error and cause. Events of concurrent Map iterations interleave, so a
row is attributed to its iteration through the ``previousEventId`` chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from local_runtime.models import ExecutionResult

__all__ = ["StateRow", "Trace"]

_SCHEDULED = ("TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled")
_FAILED = (
    "TaskFailed",
    "TaskTimedOut",
    "LambdaFunctionFailed",
    "LambdaFunctionTimedOut",
    "LambdaFunctionScheduleFailed",
    "LambdaFunctionStartFailed",
    "TaskSubmitFailed",
    "TaskStartFailed",
    "ActivityFailed",
    "ActivityTimedOut",
    "MapStateFailed",
    "ParallelStateFailed",
    "MapIterationFailed",
)


@dataclass
class StateRow:
    name: str
    type: str
    start: float
    end: float | None = None
    status: str = "running"
    attempts: int = 0
    retry_delays: list[float] = field(default_factory=list)
    error: str | None = None
    cause: str | None = None
    input: Any = None
    output: Any = None
    iteration: str | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return (self.end - self.start) if self.end is not None else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "start": round(self.start, 3),
            "duration": round(self.duration, 3),
            "status": self.status,
            "attempts": self.attempts,
            "retryDelays": [round(d, 3) for d in self.retry_delays],
            "error": self.error,
            "cause": self.cause,
            "input": self.input,
            "output": self.output,
            "iteration": self.iteration,
            "failures": self.failures,
        }


@dataclass
class Trace:
    name: str
    state_machine: str
    status: str
    error: str | None
    cause: str | None
    duration: float
    rows: list[StateRow]
    definition: dict[str, Any]
    faults: list[dict[str, Any]]
    output: Any = None

    @classmethod
    def from_result(cls, result: ExecutionResult) -> Trace:
        events = sorted(result.events, key=lambda e: int(e["id"]))
        t0 = result.start.timestamp()
        branch_of: dict[int, str | None] = {}
        open_rows: dict[tuple[str | None, str], StateRow] = {}
        last_row: dict[str | None, StateRow] = {}
        rows: list[StateRow] = []
        map_counters: dict[str | None, int] = {}
        for event in events:
            event_id = int(event["id"])
            kind = str(event["type"])
            # History stamps have milliseconds; the start date may not: never before the start.
            at = max(0.0, float(event["timestamp"]) - t0)
            branch = branch_of.get(int(event.get("previousEventId") or 0))
            if kind == "MapIterationStarted":
                details = event.get("mapIterationStartedEventDetails") or {}
                index = details.get("index", map_counters.get(branch, 0))
                map_counters[branch] = int(index) + 1
                label = f"{details.get('name', 'Map')}[{index}]"
                branch = f"{branch}/{label}" if branch else label
            branch_of[event_id] = branch
            if kind.endswith("StateEntered"):
                details = event.get("stateEnteredEventDetails") or {}
                row = StateRow(
                    name=details.get("name", "?"),
                    type=kind[: -len("StateEntered")],
                    start=at,
                    input=maybe_json(details.get("input")),
                    iteration=branch.split("/", 1)[-1] if branch else None,
                )
                rows.append(row)
                open_rows[(branch, row.name)] = row
                last_row[branch] = row
                continue
            if kind.endswith("StateExited"):
                name = (event.get("stateExitedEventDetails") or {}).get("name")
                # A Map/Parallel exits from the chain of its last branch: find it by name up the tree.
                row_or_none = _open_row(open_rows, branch, name)
            else:
                row_or_none = last_row.get(branch)
            if row_or_none is None:
                continue
            row = row_or_none
            if kind in _SCHEDULED:
                if row.failures:
                    row.retry_delays.append(at - row.failures[-1]["at"])
                row.attempts += 1
            elif kind in _FAILED:
                failure: dict[str, Any] = next((v for k, v in event.items() if k.endswith("EventDetails")), {}) or {}
                error = failure.get("error") or ("States.Timeout" if kind.endswith("TimedOut") else kind)
                row.error = error
                row.cause = failure.get("cause")
                row.failures.append({"at": at, "error": error, "cause": row.cause})
            elif kind.endswith("StateExited"):
                details = event.get("stateExitedEventDetails") or {}
                row.end = at
                row.output = maybe_json(details.get("output"))
                row.status = "caught" if row.error and not _succeeded_after_failure(row) else "succeeded"
                if row.error and row.status == "succeeded":
                    row.status = "retried"
                for key in [k for k, v in open_rows.items() if v is row]:
                    del open_rows[key]
                    # What follows a Map or Parallel runs in the branch the Map itself ran in.
                    branch_of[event_id] = key[0]
            elif kind in ("TaskSucceeded", "LambdaFunctionSucceeded") and row.failures:
                row.failures[-1]["recovered"] = True
            elif kind in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
                for open_row in open_rows.values():
                    if open_row.end is None:
                        open_row.end = at
                        open_row.status = "failed" if kind == "ExecutionFailed" else kind[len("Execution") :].lower()
        end = result.duration
        for row in rows:
            if row.end is None:
                row.end = end
                if row.status == "running":
                    row.status = "failed" if result.status == "FAILED" else row.status
            if row.type == "Fail":
                row.status = "failed"
        return cls(
            name=result.name,
            state_machine=result.state_machine,
            status=result.status,
            error=result.error,
            cause=result.cause,
            duration=result.duration,
            rows=rows,
            definition=result.definition,
            faults=result.faults,
            output=result.output,
        )

    def redacted(self) -> Trace:
        """A copy safe to print or keep as an artifact: tokens, secrets and keys in
        inputs, outputs, errors and causes are replaced, as on every log line."""
        from dataclasses import replace

        from resilience.observability import redact, redact_text

        def text(value: str | None) -> str | None:
            return redact_text(value) if value is not None else None

        rows = [
            replace(
                row,
                input=redact(row.input),
                output=redact(row.output),
                error=text(row.error),
                cause=text(row.cause),
                failures=[redact(f) for f in row.failures],  # type: ignore[misc]
            )
            for row in self.rows
        ]
        return replace(self, rows=rows, error=text(self.error), cause=text(self.cause), output=redact(self.output))

    def row(self, name: str, iteration: str | None = None) -> StateRow:
        for row in self.rows:
            if row.name == name and (iteration is None or row.iteration == iteration):
                return row
        raise KeyError(f"state {name!r} did not run in {self.name}")

    def states_visited(self) -> list[str]:
        return [row.name for row in self.rows]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stateMachine": self.state_machine,
            "status": self.status,
            "error": self.error,
            "cause": self.cause,
            "duration": round(self.duration, 3),
            "rows": [row.to_json() for row in self.rows],
            "definition": self.definition,
            "faults": self.faults,
            "output": self.output,
        }

    # -- terminal -------------------------------------------------------------------
    def render(self, console: Console) -> None:
        from rich.table import Table

        view = self.redacted()  # the terminal shows the same safe view as the page

        colour = {"SUCCEEDED": "green", "FAILED": "red", "TIMED_OUT": "red", "ABORTED": "yellow"}.get(
            view.status, "cyan"
        )
        table = Table(
            title=f"{view.state_machine} · {view.name} · [{colour}]{view.status}[/] in {view.duration:.3f}s (virtual)",
            title_justify="left",
            header_style="bold",
        )
        for column, justify in (
            ("#", "right"),
            ("State", "left"),
            ("Type", "left"),
            ("Start", "right"),
            ("Duration", "right"),
            ("Status", "left"),
            ("Attempts", "right"),
            ("Retry delays", "left"),
            ("Error / cause", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        styles = {"succeeded": "green", "retried": "yellow", "caught": "yellow", "failed": "red"}
        for index, row in enumerate(view.rows, 1):
            name = f"{row.name} [dim]{row.iteration}[/]" if row.iteration else row.name
            problem = ""
            if row.error:
                problem = row.error + (f": {_short(row.cause)}" if row.cause else "")
            table.add_row(
                str(index),
                name,
                row.type,
                f"+{row.start:.3f}s",
                f"{row.duration:.3f}s",
                f"[{styles.get(row.status, 'cyan')}]{row.status}[/]",
                str(row.attempts) if row.attempts else "",
                ", ".join(f"{d:.2f}s" for d in row.retry_delays),
                problem,
            )
        console.print(table)
        if view.faults:
            console.print(f"[dim]faults injected: {len(view.faults)}[/]")
        if view.error:
            console.print(f"[red]{view.error}[/]: {_short(view.cause, 300)}")


def _open_row(open_rows: dict[tuple[str | None, str], StateRow], branch: str | None, name: Any) -> StateRow | None:
    while True:
        row = open_rows.get((branch, name))
        if row is not None:
            return row
        if branch is None:
            return None
        branch = branch.rsplit("/", 1)[0] if "/" in branch else None


def _succeeded_after_failure(row: StateRow) -> bool:
    return bool(row.failures and row.failures[-1].get("recovered"))


def _short(text: str | None, limit: int = 90) -> str:
    if not text:
        return ""
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            text = str(parsed["errorMessage"])
    except ValueError:
        pass
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def maybe_json(value: Any) -> Any:
    """A JSON document given as a string, decoded; anything else as it is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
