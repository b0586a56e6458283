"""Step Functions executions on the local stack, as the API and the console show them.

StartExecution (and waiting for it, bounded, in real time), StartSyncExecution
for Express workflows (moto serves no ``sync-states`` endpoint: the runtime
answers it), and an execution's record as DescribeExecution +
GetExecutionHistory return it.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime
from typing import Any

from local_runtime.models import ExecutionResult
from local_runtime.template import ACCOUNT_ID, TemplateError
from local_runtime.trace import maybe_json

__all__ = ["Executions", "execution_history"]


class Executions:
    """The stack's Step Functions: ``stack`` is the LocalRuntime (template, clients, clock, faults)."""

    def __init__(self, stack: Any) -> None:
        self._stack = stack

    def _faults_between(self, start: datetime, stop: datetime | None) -> list[dict[str, Any]]:
        return [f for f in self._stack.faults.log if _within(f["at"], start, stop)]

    def backend(self) -> Any:
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        return stepfunctions_parser_backends[ACCOUNT_ID][self._stack.region]

    def start_execution(self, state_machine: str, input: Any = None, *, name: str | None = None) -> str:
        spec = self._stack.template.state_machine(state_machine)
        name = name or f"{spec.logical_id}-{uuid.uuid4().hex[:12]}"
        response = self._stack.client("stepfunctions").start_execution(
            stateMachineArn=spec.arn, name=name, input=json.dumps({} if input is None else input)
        )
        return str(response["executionArn"])

    def record(self, execution_arn: str) -> Any:
        """moto's record of an execution, Standard or Express. The API describes Standard
        executions only; an Express one is what AWS writes to CloudWatch Logs and the
        console shows."""
        for machine in list(self.backend().state_machines):
            for execution in list(machine.executions):
                if execution.exec_arn == execution_arn:
                    return execution
        raise TemplateError(f"no execution {execution_arn}")

    def started(self, state_machine: str) -> list[str]:
        """The ARNs of a state machine's executions, newest first, Express ones included
        (ListExecutions refuses an Express machine, as on AWS; its console lists them)."""
        spec = self._stack.template.state_machine(state_machine)
        machine = self.backend().describe_state_machine(spec.arn)
        return [e.exec_arn for e in sorted(machine.executions, key=lambda e: e.start_date, reverse=True)]

    def wait(self, execution_arn: str, timeout: float = 300.0) -> ExecutionResult:
        """Wait (in real time, bounded) for an execution and collect its history."""
        execution = self.record(execution_arn)
        thread: threading.Thread | None = getattr(execution.exec_worker, "_bw_thread", None)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"{execution_arn} still running after {timeout}s of real time")
        if execution.stop_date is not None:
            self._stack.clock.advance_to(execution.stop_date)
        return self.describe(execution_arn)

    def run(
        self, state_machine: str, input: Any = None, *, name: str | None = None, timeout: float = 300.0
    ) -> ExecutionResult:
        """Start an execution and wait for it: the offline ``StartExecution`` + console view."""
        return self.wait(self.start_execution(state_machine, input, name=name), timeout)

    def describe(self, execution_arn: str) -> ExecutionResult:
        if ":express:" in execution_arn:  # DescribeExecution refuses these, as on AWS
            return self.describe_sync(self.record(execution_arn))
        sfn = self._stack.client("stepfunctions")
        described = sfn.describe_execution(executionArn=execution_arn)
        events = execution_history(sfn, execution_arn)
        spec = self._stack.template.state_machine(described["stateMachineArn"])
        return ExecutionResult(
            arn=execution_arn,
            name=described.get("name") or execution_arn.rsplit(":", 1)[-1],
            state_machine=spec.logical_id,
            status=described["status"],
            input=maybe_json(described.get("input")),
            output=maybe_json(described.get("output")),
            error=described.get("error"),
            cause=described.get("cause"),
            start=described["startDate"],
            stop=described.get("stopDate"),
            events=[_jsonable(e) for e in events],
            definition=spec.definition,
            faults=[
                f for f in self._stack.faults.log if _within(f["at"], described["startDate"], described.get("stopDate"))
            ],
        )

    def describe_sync(self, execution: Any) -> ExecutionResult:
        """A finished synchronous (Express) execution, read from moto's record of it."""
        spec = self._stack.template.state_machine(execution.state_machine.arn)
        history = execution.exec_worker.env.event_manager.get_event_history()
        return ExecutionResult(
            arn=execution.exec_arn,
            name=execution.name,
            state_machine=spec.logical_id,
            status=str(
                execution.exec_status.value if hasattr(execution.exec_status, "value") else execution.exec_status
            ),
            input=maybe_json(execution.input_data),
            output=maybe_json(execution.output) if isinstance(execution.output, str) else execution.output,
            error=execution.error,
            cause=execution.cause,
            start=execution.start_date,
            stop=execution.stop_date,
            events=[_jsonable(_parse_timestamps(e)) for e in history],
            definition=spec.definition,
            faults=self._faults_between(execution.start_date, execution.stop_date),
        )

    def start_sync_execution(self, state_machine: str, input: Any = None, *, name: str | None = None) -> dict[str, Any]:
        """StartSyncExecution for EXPRESS workflows, as AWS answers it."""
        spec = self._stack.template.state_machine(state_machine)
        response = self._stack.client("stepfunctions").start_sync_execution(
            stateMachineArn=spec.arn, name=name or uuid.uuid4().hex, input=json.dumps({} if input is None else input)
        )
        return dict(response)

    def handle_sync_states(self, request: Any) -> tuple[int, dict[str, str], str]:
        """The ``sync-states`` endpoint moto does not serve (seam)."""
        from moto.stepfunctions.parser.backend.execution import SyncExecution

        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else str(target)
        headers = {"Content-Type": "application/x-amz-json-1.0"}
        if not target.endswith("StartSyncExecution"):
            return 400, headers, json.dumps({"__type": "UnknownOperationException", "message": target})
        body = json.loads(request.body or b"{}")
        try:
            spec = self._stack.template.state_machine(body.get("stateMachineArn", ""))
        except TemplateError:
            return (
                400,
                headers,
                json.dumps({"__type": "StateMachineDoesNotExist", "message": "State Machine Does Not Exist"}),
            )
        if spec.type != "EXPRESS":
            return (
                400,
                headers,
                json.dumps(
                    {
                        "__type": "StateMachineTypeNotSupported",
                        "message": "This operation is not supported by this type of state machine",
                    }
                ),
            )
        backend = self.backend()
        state_machine = backend.describe_state_machine(spec.arn)
        name = body.get("name") or uuid.uuid4().hex
        input_data = body.get("input") or "{}"
        try:
            json.loads(input_data)
        except ValueError:
            return 400, headers, json.dumps({"__type": "InvalidExecutionInput", "message": "Invalid input JSON"})
        arn = f"arn:aws:states:{self._stack.region}:{ACCOUNT_ID}:express:{state_machine.name}:{name}:{uuid.uuid4()}"
        execution = SyncExecution(
            name=name,
            sm_type=state_machine.sm_type,
            role_arn=state_machine.roleArn,
            exec_arn=arn,
            account_id=ACCOUNT_ID,
            region_name=self._stack.region,
            state_machine=state_machine,
            start_date=self._stack.clock.now_datetime(),
            cloud_watch_logging_session=None,
            input_data=input_data,
            trace_header=None,
            activity_store={},
        )
        state_machine.executions.append(execution)
        execution.start()
        output = execution.to_start_sync_execution_output()
        return 200, headers, json.dumps(_jsonable(dict(output)))


def execution_history(sfn: Any, execution_arn: str, *, page_size: int | None = None) -> list[dict[str, Any]]:
    """Every event of an execution, as GetExecutionHistory pages them (oldest first)."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn}
    if page_size is not None:
        kwargs["maxResults"] = page_size
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def _parse_timestamps(event: dict[str, Any]) -> dict[str, Any]:
    """moto keeps history events with ISO strings and enum types; the API (and Trace) has
    datetimes and plain strings."""
    plain = dict(event)
    stamp = plain.get("timestamp")
    if isinstance(stamp, str):
        plain["timestamp"] = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    kind = plain.get("type")
    plain["type"] = str(getattr(kind, "value", kind))
    return plain


def _within(at: float, start: datetime, stop: datetime | None) -> bool:
    # The API reports dates to the millisecond; a fault may land within that first millisecond.
    return start.timestamp() - 1e-3 <= at and (stop is None or at <= stop.timestamp() + 1e-3)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
