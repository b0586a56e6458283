"""AWS service quotas the offline runtime enforces, in one module.

The offline runtime must be at least as strict as AWS. Each quota below is a
named constant with the AWS page it comes from; the hooks that enforce the
Step Functions ones patch moto's ASL interpreter and are listed in
:data:`SEAMS` (same ``(module, attribute path)`` form as ``seams.SEAMS``) so an
upgrade that moves one fails loudly instead of silently dropping a limit.
The other quotas are plain checks that ``seams`` and ``lambdas`` call.

Sources (the AWS quota pages):

* Step Functions, Standard: https://docs.aws.amazon.com/step-functions/latest/dg/limits.html
  ("Maximum input or output size for a task, state, or execution: 262,144 bytes
  of data as a UTF-8 encoded string"; "Maximum execution history size: 25,000
  events. If the execution history reaches this quota, the execution will fail").
* Step Functions, Express: https://docs.aws.amazon.com/step-functions/latest/dg/express-limits.html
  ("Maximum execution time: 5 minutes"; history size unlimited).
* Step Functions error names:
  https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html
  (``States.ALL`` "can't catch the States.DataLimitExceeded terminal error type";
  DataLimitExceeded is reported when a connector's output, a state's output, or a
  state's input after Parameters exceeds the payload quota).
* API Gateway WebSocket quotas:
  https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html
  (message payload size 128 KB); the ``apigatewaymanagementapi`` model gives
  PostToConnection a ``PayloadTooLargeException`` (HTTP 413).
* Lambda quotas: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
  (invocation payload 6 MB request and response, synchronous; asynchronous 1 MB
  since AWS raised it from 256 KB,
  https://aws.amazon.com/blogs/compute/more-room-to-build-serverless-services-now-support-payloads-up-to-1-mb).
* DynamoDB quotas: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html
  (item size 400 KB; a Query or Scan page stops at 1 MB). moto 5.2.5 already
  enforces both (``ValidationException`` "Item size has exceeded the maximum
  allowed size"; a page ends at 1 MB with ``LastEvaluatedKey``), so no hook.
"""

from __future__ import annotations

import ast
import datetime
import importlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local_runtime import hooks

if TYPE_CHECKING:
    from local_runtime.template import LocalTemplate

__all__ = [
    "DYNAMODB_MAX_ITEM_BYTES",
    "DYNAMODB_MAX_PAGE_BYTES",
    "EXPRESS_MAX_DURATION_SECONDS",
    "LAMBDA_ASYNC_REQUEST_MAX_BYTES",
    "LAMBDA_SYNC_REQUEST_MAX_BYTES",
    "LAMBDA_SYNC_RESPONSE_MAX_BYTES",
    "POST_TO_CONNECTION_MAX_BYTES",
    "SEAMS",
    "SFN_MAX_PAYLOAD_BYTES",
    "STANDARD_MAX_HISTORY_EVENTS",
    "AwsError",
    "check_invoke_request",
    "check_invoke_response",
    "install",
    "payload_size",
    "post_to_connection_error",
    "timeout_warnings",
    "verify",
]

# -- the quotas -------------------------------------------------------------------------
#: Step Functions: maximum input/output of a task, state or execution (limits.html,
#: express-limits.html): "262,144 bytes of data as a UTF-8 encoded string".
SFN_MAX_PAYLOAD_BYTES = 262_144
#: Step Functions Express: maximum execution time, 5 minutes (express-limits.html).
EXPRESS_MAX_DURATION_SECONDS = 300
#: Step Functions Standard: maximum execution history size, 25,000 events (limits.html).
STANDARD_MAX_HISTORY_EVENTS = 25_000
#: What AWS records when a Standard execution reaches the history quota: the
#: ExecutionFailed event is itself event 25,000.
HISTORY_LIMIT_ERROR = "States.Runtime"
HISTORY_LIMIT_CAUSE = f"The execution reached the maximum number of history events ({STANDARD_MAX_HISTORY_EVENTS})."
#: An Express execution past its maximum duration fails with ``States.Timeout`` (express-limits.html).
EXPRESS_TIMEOUT_ERROR = "States.Timeout"
RUNTIME_ERROR = "States.Runtime"
DATA_LIMIT_ERROR = "States.DataLimitExceeded"

#: API Gateway WebSocket: maximum message payload (PostToConnection ``Data``), 128 KB.
POST_TO_CONNECTION_MAX_BYTES = 131_072
#: Lambda Invoke, RequestResponse: request payload 6 MB (gettingstarted-limits.html).
LAMBDA_SYNC_REQUEST_MAX_BYTES = 6_291_456
#: Lambda Invoke, RequestResponse: response payload. AWS's own error names
#: 6,291,556 bytes ("exceeded maximum allowed payload size (6291556 bytes)").
LAMBDA_SYNC_RESPONSE_MAX_BYTES = 6_291_556
#: Lambda Invoke, Event (asynchronous): 1 MB since AWS raised it from 256 KB (262,144).
LAMBDA_ASYNC_REQUEST_MAX_BYTES = 1_048_576
#: DynamoDB: maximum item size, 400 KB (attribute names and values); moto enforces it.
DYNAMODB_MAX_ITEM_BYTES = 409_600
#: DynamoDB: a Query/Scan page stops at 1 MB and returns LastEvaluatedKey; moto enforces it.
DYNAMODB_MAX_PAGE_BYTES = 1_048_576

_SIZE_MODULES = (
    "moto.stepfunctions.parser.quotas",
    "moto.stepfunctions.parser.asl.component.state.state",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service",
)

#: (module, attribute path) of every hook installed here, for seams.verify_seams().
SEAMS: tuple[tuple[str, str], ...] = (
    *((module, "is_within_size_quota") for module in _SIZE_MODULES),
    ("moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl", "ErrorEqualsDecl._eval_body"),
    ("moto.stepfunctions.parser.asl.component.program.program", "Program._eval_body"),
    ("moto.stepfunctions.parser.asl.eval.event.event_manager", "EventManager.add_event"),
    ("moto.stepfunctions.parser.backend.execution", "BaseExecutionWorkerCommunication._reflect_execution_status"),
)

_installed = False
_install_lock = threading.Lock()
_history_lock = threading.RLock()


# -- errors as AWS answers them -------------------------------------------------------------
@dataclass(frozen=True)
class AwsError:
    """An API error: the code botocore reports, its message and HTTP status."""

    code: str
    message: str
    status: int


def payload_size(value: Any) -> int:
    """Bytes of ``value`` as Step Functions measures a payload: its compact JSON text in
    UTF-8 (a string output counts its quotes; moto counts a str bare)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8"))


def post_to_connection_error(exc: Exception) -> Any:
    """The moto error that answers PostToConnection with 413 PayloadTooLargeException."""
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError("PayloadTooLargeException", str(exc))
    error.code = 413
    return error


def check_invoke_request(payload_bytes: int, invocation_type: str) -> AwsError | None:
    """The error Lambda's Invoke answers for an oversized request payload, or None."""
    asynchronous = invocation_type == "Event"
    limit = LAMBDA_ASYNC_REQUEST_MAX_BYTES if asynchronous else LAMBDA_SYNC_REQUEST_MAX_BYTES
    if payload_bytes <= limit:
        return None
    return AwsError(
        "RequestEntityTooLargeException",
        f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
        413,
    )


def check_invoke_response(payload_bytes: int, invocation_type: str = "RequestResponse") -> dict[str, str] | None:
    """The function error payload Lambda returns instead of an oversized response, or None.

    Invoke still answers 200, with ``FunctionError: Unhandled`` and this payload.
    An asynchronous invocation's response goes nowhere, so it is never refused."""
    if invocation_type == "Event" or payload_bytes <= LAMBDA_SYNC_RESPONSE_MAX_BYTES:
        return None
    return {
        "errorMessage": (
            f"Response payload size exceeded maximum allowed payload size ({LAMBDA_SYNC_RESPONSE_MAX_BYTES} bytes)."
        ),
        "errorType": "Function.ResponseSizeTooLarge",
    }


# -- installing the interpreter hooks ----------------------------------------------------------
def verify() -> None:
    """Fail loudly, naming the hook, if a moto attribute this module patches moved."""
    hooks.verify(SEAMS)


def install() -> None:
    """Install the Step Functions quota hooks (once per process; idempotent).

    Like every seam, each hook behaves exactly like moto's original while no
    LocalRuntime is active."""
    global _installed
    with _install_lock:
        if _installed:
            return
        verify()
        _install_payload_quota()
        _install_terminal_data_limit()
        _install_program_limits()
        _install_history_limit()
        _install_timeout_error()
        _installed = True


def _install_payload_quota() -> None:
    """moto checks 256 KB with ``<`` on ``json.dumps`` with spaces and ASCII escapes;
    AWS allows up to and including 262,144 bytes of the UTF-8 JSON text."""
    originals = {name: importlib.import_module(name).is_within_size_quota for name in _SIZE_MODULES}

    def make(original: Callable[[Any], bool]) -> Callable[..., bool]:
        def is_within_size_quota(value: Any) -> bool:
            if hooks.active() is None:
                return original(value)
            return payload_size(value) <= SFN_MAX_PAYLOAD_BYTES

        return is_within_size_quota

    for name, original in originals.items():
        importlib.import_module(name).is_within_size_quota = make(original)  # type: ignore[attr-defined]


def _install_terminal_data_limit() -> None:
    """``States.ALL`` matches every error in moto; on AWS it cannot catch (or retry)
    ``States.DataLimitExceeded``, a terminal error, and nothing catches or retries
    ``States.Runtime`` ("A States.Runtime error isn't retriable, and will always cause the
    execution to fail. A retry or catch on States.ALL won't catch States.Runtime errors",
    https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html)."""
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl

    original = ErrorEqualsDecl._eval_body

    def _eval_body(self: Any, env: Any) -> None:
        if hooks.active() is not None and env.stack:
            error_name = env.stack[-1]
            names = [getattr(n, "error_name", None) for n in self.error_names]
            name = getattr(error_name, "error_name", None)
            if (name == DATA_LIMIT_ERROR and names == ["States.ALL"]) or name == RUNTIME_ERROR:
                env.stack.pop()
                env.stack.append(False)
                return None
        return original(self, env)  # type: ignore[no-any-return]

    ErrorEqualsDecl._eval_body = _eval_body  # type: ignore[method-assign]


_TERMINAL_EVENTS = frozenset({"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"})


def _event_type(event_type: Any) -> str:
    return str(getattr(event_type, "value", event_type))


class _HistoryFull(BaseException):
    """Unwinds the execution's own thread when its history reaches the quota; a
    BaseException, so no Catch, Retry or task wrapper of the interpreter stops it."""


def _machine_type(runtime: Any, env: Any) -> str:
    """STANDARD or EXPRESS. moto records every execution's environment as STANDARD
    (even a StartSyncExecution's), so ask the template."""
    try:
        arn = env.states.context_object.context_object_data["StateMachine"]["Id"]
        return str(runtime.template.state_machine(arn).type)
    except Exception:  # noqa: BLE001 - a machine outside the template: trust moto
        return _event_type(env.execution_type)


def _install_program_limits() -> None:
    """The top-level program of an execution: it stops at its own ``TimeoutSeconds`` and an
    Express execution at 5 minutes, both in virtual time (TIMED_OUT, ``States.Timeout``);
    Standard executions register their environment with their event manager for the
    history quota.

    moto enforces a definition's top-level ``TimeoutSeconds`` by joining the worker thread
    with a *real-time* timeout: a busy machine timed executions out that had run for
    seconds of virtual time, and a long virtual wait never did. Here the program runs on
    the calling thread and its deadline is on the virtual clock."""
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
    from moto.stepfunctions.parser.asl.component.program.program import Program
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    from local_runtime.clock import LambdaTimeoutInterrupt

    original_eval = Program.eval
    original = Program._eval_body

    def eval_program(self: Any, env: Any) -> None:
        if hooks.active() is None:
            return original_eval(self, env)  # type: ignore[no-any-return]
        env.next_state_name = self.start_at.start_at_name
        EvalComponent.eval(self, env)
        return None

    Program.eval = eval_program  # type: ignore[method-assign]

    def _eval_body(self: Any, env: Any) -> None:
        runtime = hooks.active()
        if runtime is None or env.is_frame():
            return original(self, env)  # type: ignore[no-any-return]
        own = self.timeout_seconds.timeout_seconds if self.timeout_seconds else None
        express = _machine_type(runtime, env) == "EXPRESS"
        if not express:
            manager = env.event_manager
            manager._bw_env = env
            manager._bw_thread = threading.get_ident()
        limits = [x for x in (own, EXPRESS_MAX_DURATION_SECONDS if express else None) if x is not None]
        clock = runtime.clock
        limit = min(limits) if limits else None
        deadline = clock.now() + limit if limit is not None else float("inf")
        try:
            if limit is None:
                original(self, env)
            else:
                with clock.deadline(limit):
                    original(self, env)
        except _HistoryFull:
            details = ExecutionFailedEventDetails(error=HISTORY_LIMIT_ERROR, cause=HISTORY_LIMIT_CAUSE)
            env.set_error(details)
            env.event_manager.add_event(
                context=env.event_history_context,
                event_type=HistoryEventType.ExecutionFailed,
                event_details=EventDetails(executionFailedEventDetails=details),  # type: ignore[typeddict-item]
            )
            return None
        except LambdaTimeoutInterrupt:
            # A Wait or a task's wait on this timeline reached the deadline.
            _time_out(env, deadline)
            return None
        if clock.now() > deadline:
            # Concurrent branches (Map, Parallel) ran past it: AWS stopped the execution then.
            history = env.event_manager._history_event_list
            if history and _event_type(history[-1].get("type")) in _TERMINAL_EVENTS:
                history.pop()
            _time_out(env, deadline)
        return None

    Program._eval_body = _eval_body  # type: ignore[method-assign]


def _time_out(env: Any, deadline: float) -> None:
    from moto.stepfunctions.parser.api import ExecutionTimedOutEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    env.set_timed_out()
    env._bw_timeout_error = EXPRESS_TIMEOUT_ERROR
    env.event_manager.add_event(
        context=env.event_history_context,
        event_type=HistoryEventType.ExecutionTimedOut,
        event_details=EventDetails(  # type: ignore[typeddict-item]
            executionTimedOutEventDetails=ExecutionTimedOutEventDetails(error=EXPRESS_TIMEOUT_ERROR)
        ),
        timestamp=datetime.datetime.fromtimestamp(deadline, datetime.UTC),
    )


def _install_timeout_error() -> None:
    """moto records no error for a TIMED_OUT execution; an Express execution stopped at
    its maximum duration reports ``States.Timeout``."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    original = BaseExecutionWorkerCommunication._reflect_execution_status

    def _reflect_execution_status(self: Any) -> None:
        original(self)  # type: ignore[no-untyped-call]
        env = getattr(self.execution.exec_worker, "env", None)
        error = getattr(env, "_bw_timeout_error", None)
        if error is not None and self.execution.error is None:
            self.execution.error = error

    BaseExecutionWorkerCommunication._reflect_execution_status = _reflect_execution_status  # type: ignore[method-assign]


def _install_history_limit() -> None:
    """A Standard execution whose history reaches 25,000 events fails: event 25,000 is
    ExecutionFailed with ``States.Runtime`` (and nothing the states did after event
    24,999 is recorded)."""
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    original = EventManager.add_event

    def add_event(
        self: Any,
        context: Any,
        event_type: Any,
        event_details: Any = None,
        timestamp: Any = None,
        update_source_event_id: bool = True,
    ) -> int:
        env = getattr(self, "_bw_env", None)
        if env is None or hooks.active() is None:
            return original(self, context, event_type, event_details, timestamp, update_source_event_id)  # type: ignore[no-any-return]
        details = ExecutionFailedEventDetails(error=HISTORY_LIMIT_ERROR, cause=HISTORY_LIMIT_CAUSE)
        with _history_lock:
            full = getattr(self, "_bw_history_full", False)
            if len(self._history_event_list) < STANDARD_MAX_HISTORY_EVENTS - 1 and not full:
                return original(self, context, event_type, event_details, timestamp, update_source_event_id)  # type: ignore[no-any-return]
            if not full and _event_type(event_type) in _TERMINAL_EVENTS:
                # The execution ends with event 25,000 exactly: within the quota.
                return original(self, context, event_type, event_details, timestamp, update_source_event_id)  # type: ignore[no-any-return]
            if not full:
                self._bw_history_full = True
                if getattr(self, "_bw_thread", None) == threading.get_ident():
                    raise _HistoryFull
                # A Map or Parallel branch's thread: stop the execution; the branch unwinds.
                env.set_error(details)
                return len(self._history_event_list)
            if _event_type(event_type) in _TERMINAL_EVENTS and not getattr(self, "_bw_history_closed", False):
                self._bw_history_closed = True
                env.set_error(details)  # a state that failed meanwhile does not get the last word
                return original(  # type: ignore[no-any-return]
                    self,
                    context,
                    HistoryEventType.ExecutionFailed,
                    EventDetails(executionFailedEventDetails=details),  # type: ignore[typeddict-item]
                    timestamp,
                    update_source_event_id,
                )
            return len(self._history_event_list)

    EventManager.add_event = add_event  # type: ignore[method-assign]


# -- build-time timeout checks -----------------------------------------------------------------
_FUNCTION_ARN = re.compile(r"^arn:[^:]+:lambda:[^:]+:\d+:function:([^:]+)(?::[^:]+)?$")
_LAMBDA_INVOKE = re.compile(r"^arn:[^:]+:states:::lambda:invoke$")
#: botocore's default read timeout, for a client built without a Config.
BOTOCORE_DEFAULT_READ_TIMEOUT = 60.0
STEPFUNCTIONS_READ_TIMEOUT_ENV = "BW_STEPFUNCTIONS_READ_TIMEOUT"


def _states(states: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in (states or {}).items():
        if not isinstance(state, dict):
            continue
        yield prefix + name, state
        for key in ("Iterator", "ItemProcessor"):
            nested = state.get(key)
            if isinstance(nested, dict):
                yield from _states(nested.get("States") or {}, f"{prefix}{name}/")
        for index, branch in enumerate(state.get("Branches") or []):
            if isinstance(branch, dict):
                yield from _states(branch.get("States") or {}, f"{prefix}{name}[{index}]/")


def _invoked_function(state: dict[str, Any]) -> str | None:
    resource = str(state.get("Resource", ""))
    match = _FUNCTION_ARN.match(resource)
    if match:
        return match.group(1)
    if _LAMBDA_INVOKE.match(resource):
        parameters = state.get("Parameters") or state.get("Arguments") or {}
        name = parameters.get("FunctionName") if isinstance(parameters, dict) else None
        if isinstance(name, str):
            match = _FUNCTION_ARN.match(name)
            return match.group(1) if match else name.split(":", 1)[0]
    return None


def _express_duration(definition: dict[str, Any]) -> float:
    timeout = definition.get("TimeoutSeconds")
    if isinstance(timeout, (int, float)) and 0 < timeout < EXPRESS_MAX_DURATION_SECONDS:
        return float(timeout)
    return float(EXPRESS_MAX_DURATION_SECONDS)


def _starts_sync_executions(code_dir: Path) -> bool:
    for path in sorted(code_dir.rglob("*.py")) if code_dir.is_dir() else []:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "start_sync_execution":
                return True
    return False


def timeout_warnings(
    template: LocalTemplate, *, default_read_timeout: float = BOTOCORE_DEFAULT_READ_TIMEOUT
) -> list[str]:
    """Timeouts in the template that give up before the work they wait for can end.

    * a Task that invokes a Lambda with ``TimeoutSeconds`` below the function's
      ``Timeout``: Step Functions fails the state with ``States.Timeout`` (and a
      Retry starts a second invocation) while the first may still be running;
    * a function that calls ``StartSyncExecution`` with a read timeout
      (``BW_STEPFUNCTIONS_READ_TIMEOUT``, else ``default_read_timeout``) below how
      long the Express workflow it starts can run (its ``TimeoutSeconds``, at most
      5 minutes): the SDK times out, and retries start the workflow again.
    """
    warnings: list[str] = []
    for machine in template.state_machines.values():
        for path, state in _states(machine.definition.get("States") or {}):
            if state.get("Type") != "Task":
                continue
            name = _invoked_function(state)
            timeout = state.get("TimeoutSeconds")
            if name is None or not isinstance(timeout, (int, float)):
                continue
            try:
                function = template.function(name)
            except Exception:  # noqa: BLE001 - a function outside the template: nothing to compare
                continue
            if timeout < function.timeout:
                warnings.append(
                    f"{machine.logical_id}: state '{path}' has TimeoutSeconds {timeout:g} but invokes "
                    f"{function.logical_id}, whose Timeout is {function.timeout} s: the state fails with "
                    f"States.Timeout while the function may still be running"
                )
    express = {m.arn: m for m in template.state_machines.values() if m.type == "EXPRESS"}
    for function in template.functions.values():
        if not express or not _starts_sync_executions(function.code_dir):
            continue
        targets = [m for m in express.values() if m.arn in function.environment.values()]
        targets = targets or list(express.values())
        raw = function.environment.get(STEPFUNCTIONS_READ_TIMEOUT_ENV)
        try:
            read_timeout = float(raw) if raw is not None else default_read_timeout
        except ValueError:
            continue
        for machine in targets:
            duration = _express_duration(machine.definition)
            if read_timeout < duration:
                source = STEPFUNCTIONS_READ_TIMEOUT_ENV if raw is not None else "the default read timeout"
                warnings.append(
                    f"{function.logical_id}: StartSyncExecution of {machine.logical_id} reads for "
                    f"{read_timeout:g} s ({source}) but the Express workflow can run {duration:g} s: "
                    f"the call times out while the execution continues, and an SDK retry starts it again"
                )
    return warnings
