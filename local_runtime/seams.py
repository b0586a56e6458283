"""Every place where the runtime hooks into moto and botocore, in one module.

moto interprets ASL but runs Lambda in Docker, sleeps in real time, and has
no StartSyncExecution; botocore talks to moto through its ``before-send``
stubber. Each hook below names the private attribute it replaces. moto is
pinned to one exact version in ``pyproject.toml``; :func:`verify_seams`
checks that every seam still exists and fails loudly, naming the one that
moved, so an upgrade cannot silently fall back to real sleeps or Docker.

The hooks are installed once per process and dispatch to the *active*
runtime (moto's mock is process-wide too, so only one runtime is active at
a time; see :mod:`local_runtime.hooks`). Those that need the runtime (faults,
Lambda in-process, the clock, WebSockets, StartSyncExecution) behave exactly
like the originals while none is active; the interpreter's fidelity fixes
(timestamps, JSONPaths, error names, parameter validation) and the caches
(parse trees, botocore's loader) stay in force once installed: they only make
moto more like AWS, or faster. ``bench/fidelity.py`` therefore measures plain
moto in a separate interpreter.
"""

from __future__ import annotations

import copy
import datetime
import functools
import hashlib
import importlib
import json
import logging
import os
import pkgutil
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local_runtime import hooks, iam, limits, moto_imports
from local_runtime.hooks import SeamMissingError
from local_runtime.json_copy import json_deepcopy
from local_runtime.protocols import error_response

__all__ = ["SeamMissingError", "activate", "deactivate", "install_seams", "verify_seams"]


#: (module, attribute path) of every seam, for verify_seams().
SEAMS: tuple[tuple[str, str], ...] = (
    ("botocore.endpoint", "Endpoint._do_get_response"),
    ("moto.core.botocore_stubber", "BotocoreStubber.__call__"),
    ("moto.awslambda.models", "LambdaFunction._invoke_lambda"),
    ("moto.apigatewaymanagementapi.models", "ApiGatewayManagementApiBackend.post_to_connection"),
    ("moto.apigatewaymanagementapi.models", "ApiGatewayManagementApiBackend.get_connection"),
    ("moto.apigatewaymanagementapi.models", "ApiGatewayManagementApiBackend.delete_connection"),
    ("moto.stepfunctions.parser.asl.component.state.exec.execute_state", "ExecutionState._evaluate_with_timeout"),
    ("moto.stepfunctions.parser.asl.component.state.exec.execute_state", "ExecutionState._eval_execution"),
    ("moto.stepfunctions.parser.asl.component.common.retry.retrier_decl", "time.sleep"),
    ("moto.stepfunctions.parser.asl.component.common.retry.jitter_strategy_decl", "random.uniform"),
    ("moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function", "WaitFunction._wait_interval"),
    ("moto.stepfunctions.parser.asl.eval.event.event_manager", "EventManager._history_event_list"),
    ("moto.stepfunctions.parser.backend.execution_worker", "ExecutionWorker._execution_logic"),
    ("moto.stepfunctions.parser.backend.execution", "SyncExecution.to_start_sync_execution_output"),
    ("moto.stepfunctions.parser.asl.utils.boto_client", "boto_client_for"),
    ("moto.stepfunctions.parser.asl.eval.evaluation_details", "ExecutionDetails.__init__"),
    (
        "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.is_operator",
        "IsTimestamp.string_to_timestamp",
    ),
    (
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service",
        "StateTaskService._to_boto_request",
    ),
    ("botocore.retries.bucket", "TokenBucket._acquire"),
    ("moto.stepfunctions.parser.asl.utils.json_path", "_contains_slice_or_wildcard_array"),
    ("urllib.request", "urlopen"),
    (
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb",
        "StateTaskServiceDynamoDB._from_error",
    ),
    (
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service",
        "StateTaskService._get_timed_out_failure_event",
    ),
    ("moto.stepfunctions.parser.asl.eval.event.event_manager", "EventManager._mutex"),
    ("moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iteration_worker", "CustomErrorName"),
    ("moto.stepfunctions.parser.asl.component.state.exec.state_parallel.branches_decl", "CustomErrorName"),
    ("moto.stepfunctions.parser.asl.utils.boto_client", "Config"),
    (
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb",
        "StateTaskServiceDynamoDB._error_cause_from_client_error",
    ),
    (
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb",
        "StateTaskServiceDynamoDB._eval_service_task",
    ),
)

#: The interpreter's modules whose ``copy.deepcopy`` only ever copies JSON values or, on
#: their stacks, evaluation objects (:func:`_install_json_copies`).
_JSON_COPIERS = (
    "moto.stepfunctions.parser.asl.eval.states",
    "moto.stepfunctions.parser.asl.eval.environment",
    "moto.stepfunctions.parser.asl.eval.event.event_manager",
    "moto.stepfunctions.parser.asl.component.common.path.result_path",
    "moto.stepfunctions.parser.asl.component.common.string.string_expression",
    "moto.stepfunctions.parser.asl.component.state.exec.execute_state",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map",
    "moto.stepfunctions.parser.asl.component.state.exec.state_parallel.state_parallel",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service",
    "moto.stepfunctions.parser.asl.component.intrinsic.function.statesfunction.json_manipulation.json_merge",
)

SEAMS += (
    ("moto.stepfunctions.parser.asl.parse.asl_parser", "AmazonStateLanguageParser.parse"),
    # A warm start (LocalRuntime._reuse) empties tables and drops executions in place.
    ("moto.dynamodb.models.table", "Table.items"),
    ("moto.stepfunctions.models", "StateMachineInstance.executions"),
    ("moto.core.models", "MockAWS._nested_count"),
    ("moto.core.base_backend", "BackendDict._instances"),
    ("botocore.session", "create_loader"),
    ("moto.core.utils", "create_loader"),
    ("moto.stepfunctions.parser.models", "StepFunctionsParserBackend._validate_definition"),
    (
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda",
        "StateTaskServiceLambda._error_cause_from_client_error",
    ),
    (
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn",
        "StateTaskServiceSfn._from_error",
    ),
    ("moto.stepfunctions.parser.asl.utils.json_path", "extract_json"),
    ("moto.stepfunctions.parser.models", "Execution"),
    ("moto.stepfunctions.parser.utils", "TMP_THREADS"),
    ("moto.stepfunctions.models", "StateMachine._handle_name_input_idempotency"),
    ("moto.stepfunctions.models", "StepFunctionBackend.list_executions"),
    ("moto.stepfunctions.parser.asl.component.state.choice.state_choice", "StateChoice._eval_state"),
    *((module, "copy.deepcopy") for module in _JSON_COPIERS),
    ("moto.core.serialize", "XFormedAttributePicker.get_possible_keys"),
    ("moto.core.serialize", "DEFAULT_ALIAS_PROVIDERS"),
    (
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk",
        "_SERVICE_ERROR_NAMES",
    ),
)

_installed = False
_install_lock = threading.Lock()
_local = threading.local()
_DYNAMODB_LOCK = threading.Lock()


def active() -> Any:
    """The running LocalRuntime, or None (see :mod:`local_runtime.hooks`)."""
    return hooks.active()


def activate(runtime: Any) -> None:
    install_seams()
    hooks.activate(runtime)


def deactivate(runtime: Any) -> None:
    hooks.deactivate(runtime)


def verify_seams() -> None:
    """Fail loudly, naming the seam, if a pinned private attribute moved."""
    hooks.verify((*SEAMS, *iam.SEAMS, *limits.SEAMS))


def install_seams() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        # Before anything imports moto's interpreter: it would bring Batch's and EC2's backends.
        moto_imports.preload_batch_utils()
        # Then: moto's imports below build boto3 Sessions (EC2's region list alone parses
        # botocore's endpoint data three times); with one Loader they parse it once.
        _install_shared_loader()
        verify_seams()
        _install_botocore_faults()
        _install_stubber()
        _install_lambda()
        _install_websockets()
        _install_interpreter_time()
        _install_client_cache()
        _install_context_object_fixes()
        _install_timestamp_parsing()
        _install_parameter_casing()
        _install_adaptive_retry_clock()
        _install_indefinite_paths()
        _quiet_missing_path_logs()
        _install_jwks()
        _install_service_timeouts()
        _install_branch_error_names()
        _install_parameter_validation()
        _install_dynamodb_fidelity()
        _install_parse_cache()
        _install_json_copies()
        _install_response_key_memo()
        _install_validation_memo()
        _install_generic_sdk_errors()
        _install_aws_sdk_service_names()
        _install_definite_paths()
        _install_no_choice_matched()
        _install_express_executions()
        limits.install()
        _installed = True


# -- executions run beside their starter ------------------------------------------
def configure_clock(clock: Any) -> None:
    """An execution's worker thread is detached: its sleeps must not move the
    starter's time, and the runtime joins it (in real time) to wait for it."""
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    def detach_when(target: Callable[..., Any]) -> bool:
        return isinstance(getattr(target, "__self__", None), ExecutionWorker)

    def on_detached(thread: threading.Thread, target: Callable[..., Any]) -> None:
        target.__self__._bw_thread = thread  # type: ignore[attr-defined]

    clock.detach_when = detach_when
    clock.on_detached = on_detached


# -- faults at the botocore layer -----------------------------------------------
def _install_botocore_faults() -> None:
    from botocore.endpoint import Endpoint
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    original = Endpoint._do_get_response  # type: ignore[attr-defined]

    def _do_get_response(self: Endpoint, request: Any, operation_model: Any, context: Any) -> Any:
        runtime = hooks.active()
        if runtime is None:
            return original(self, request, operation_model, context)
        runtime.count_request(operation_model.service_model.service_name, operation_model.name)
        if iam.pending_denial() is not None:
            # IAM refuses before the service sees the request: no fault applies to it.
            return original(self, request, operation_model, context)
        refused = _invoke_request_too_large(request, operation_model)
        if refused is not None:
            _local.pending = error_response(operation_model, refused.code, refused.message, refused.status)
            try:
                return original(self, request, operation_model, context)
            finally:
                _local.pending = None
        fault = runtime.decide_fault(
            service=operation_model.service_model.service_name,
            operation=operation_model.name,
            body=request.body,
            url=request.url,
        )
        if fault is None:
            return original(self, request, operation_model, context)
        if fault.rule.answer_lost:
            started = runtime.clock.now()
            original(self, request, operation_model, context)
            _connect, read_timeout = _client_timeouts(self, context)
            # The client gives up once its read timeout has passed since it sent the request.
            runtime.clock.sleep(max(0.0, max(fault.latency, read_timeout or 0.0) - (runtime.clock.now() - started)))
            return (None, ReadTimeoutError(endpoint_url=request.url))
        if fault.latency > 0:
            connect_timeout, read_timeout = _client_timeouts(self, context)
            if fault.error == "ConnectTimeout" and connect_timeout is not None:
                runtime.clock.sleep(connect_timeout)
                return (None, ConnectTimeoutError(endpoint_url=request.url))
            if read_timeout is not None and fault.latency > read_timeout:
                runtime.clock.sleep(read_timeout)
                return (None, ReadTimeoutError(endpoint_url=request.url))
            runtime.clock.sleep(fault.latency)
        if fault.error is None or fault.error == "ConnectTimeout":
            return original(self, request, operation_model, context)
        _local.pending = error_response(operation_model, fault.error, fault.message, fault.status)
        try:
            return original(self, request, operation_model, context)
        finally:
            _local.pending = None

    Endpoint._do_get_response = _do_get_response  # type: ignore[attr-defined]


def _invoke_request_too_large(request: Any, operation_model: Any) -> Any:
    """Lambda refuses an Invoke whose payload is over its quota before running anything."""
    if operation_model.service_model.service_name != "lambda" or operation_model.name != "Invoke":
        return None
    body = request.body or b""
    size = len(body.encode() if isinstance(body, str) else body) if isinstance(body, (bytes, str)) else 0
    kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    return limits.check_invoke_request(size, kind)


def _client_timeouts(endpoint: Any, context: Any) -> tuple[float | None, float | None]:
    timeout = getattr(endpoint.http_session, "_timeout", None)
    read = (context or {}).get("read_timeout")
    connect = None
    if timeout is not None and hasattr(timeout, "connect_timeout"):
        connect = timeout.connect_timeout
        read = read if read is not None else timeout.read_timeout
    elif isinstance(timeout, (int, float)):
        connect = read = float(timeout)
    return (
        float(connect) if isinstance(connect, (int, float)) else None,
        float(read) if isinstance(read, (int, float)) else None,
    )


def _install_stubber() -> None:
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse

    original = BotocoreStubber.__call__

    def stubber_call(self: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
        pending = iam.take_pending_denial() if self.enabled else None
        if pending is None:
            pending = getattr(_local, "pending", None)
        if pending is not None and self.enabled:
            _local.pending = None
            status, headers, body = pending
            return AWSResponse(request.url, status, headers, MockRawResponse(body))  # type: ignore[arg-type]
        runtime = hooks.active()
        if runtime is not None and self.enabled and "://sync-states." in request.url:
            status, headers, body = runtime.handle_sync_states(request)
            return AWSResponse(request.url, status, headers, MockRawResponse(body))  # type: ignore[arg-type]
        if runtime is not None and self.enabled and "/@connections/" in request.url:
            refused = runtime.management_api_refusal(request.url)
            if refused is not None:
                status, headers, body = refused
                return AWSResponse(request.url, status, headers, MockRawResponse(body))  # type: ignore[arg-type]
        if runtime is not None and "://dynamodb." in request.url:
            # DynamoDB applies each request to an item atomically (conditional writes and
            # ADDs never interleave); moto does not lock, so the runtime serialises them.
            with _DYNAMODB_LOCK:
                # Point-in-time recovery as AWS has it (moto's restores the table as it is now).
                refused = runtime.backups.before(request)
                if refused is not None:
                    status, headers, body = refused
                    return AWSResponse(request.url, status, headers, MockRawResponse(body))  # type: ignore[arg-type]
                response = original(self, event_name, request, **kwargs)
                runtime.backups.after(request, getattr(response, "status_code", 0))
                return response
        return original(self, event_name, request, **kwargs)

    BotocoreStubber.__call__ = stubber_call  # type: ignore[method-assign]


def forget_finished_threads() -> int:
    """moto's interpreter appends every worker thread it starts (a program, each Map
    iteration, each Parallel branch) to ``TMP_THREADS`` and nothing ever removes or reads
    one: a ``bw up`` running for hours kept every finished thread. Returns how many it let go.
    A thread appended while this runs may be dropped from the list too: harmless, nothing
    reads it."""
    from moto.stepfunctions.parser.utils import TMP_THREADS

    before = len(TMP_THREADS)
    TMP_THREADS[:] = [thread for thread in TMP_THREADS if thread.is_alive()]
    return before - len(TMP_THREADS)


# -- Express executions, as AWS starts and lists them ---------------------------------
def _install_express_executions() -> None:
    """AWS does not deduplicate Express executions by name ("Starting multiple workflows
    with the same name results in concurrent executions"), gives each its own ARN
    (``…:express:<machine>:<name>:<uuid>``), and does not list them (ListExecutions is
    "not supported by EXPRESS state machines": they are in CloudWatch Logs, and in the
    runtime's console). moto treats them as Standard: a reused name (a replayed sample
    event) raised ExecutionAlreadyExists, and ListExecutions answered."""
    import uuid

    import moto.stepfunctions.parser.models as parser_models
    from moto.core.exceptions import JsonRESTError
    from moto.stepfunctions.models import StateMachine, StepFunctionBackend

    base = parser_models.Execution  # type: ignore[attr-defined]
    original_idempotency = StateMachine._handle_name_input_idempotency
    original_list = StepFunctionBackend.list_executions

    class Execution(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            machine = kwargs.get("state_machine")
            arn = kwargs.get("exec_arn", "")
            if hooks.active() is not None and getattr(machine, "type", None) == "EXPRESS" and ":execution:" in arn:
                kwargs["exec_arn"] = f"{arn.replace(':execution:', ':express:', 1)}:{uuid.uuid4()}"
            super().__init__(*args, **kwargs)

    def _handle_name_input_idempotency(self: Any, name: str, execution_input: str) -> Any:
        if hooks.active() is not None and self.type == "EXPRESS":
            return None
        return original_idempotency(self, name, execution_input)

    def list_executions(self: Any, state_machine_arn: str, *args: Any, **kwargs: Any) -> Any:
        if hooks.active() is not None and self.describe_state_machine(state_machine_arn).type == "EXPRESS":
            raise JsonRESTError(
                "StateMachineTypeNotSupported", "This operation is not supported by this type of state machine"
            )
        return original_list(self, state_machine_arn, *args, **kwargs)

    parser_models.Execution = Execution  # type: ignore[attr-defined]
    StateMachine._handle_name_input_idempotency = _handle_name_input_idempotency  # type: ignore[method-assign]
    StepFunctionBackend.list_executions = list_executions  # type: ignore[method-assign, assignment]


# -- Lambda in-process ------------------------------------------------------------
def _install_lambda() -> None:
    from moto.awslambda.models import LambdaFunction

    original = LambdaFunction._invoke_lambda

    def _invoke_lambda(self: LambdaFunction, event: str | None = None) -> tuple[str, bool, str]:
        runtime = hooks.active()
        if runtime is None:
            return original(self, event)  # type: ignore[no-any-return]
        from moto.core.exceptions import JsonRESTError

        from local_runtime.models import THROTTLED, LambdaThrottledError

        try:
            answer: tuple[str, bool, str] = runtime.invoke_in_process(self.function_name, event)
        except LambdaThrottledError as exc:
            # Lambda's own refusal, as the Invoke API answers it (the SDK raises
            # TooManyRequestsException; Step Functions names it Lambda.TooManyRequestsException).
            error = JsonRESTError(THROTTLED, str(exc))
            error.code = 429
            error.description = json.dumps(
                {
                    "__type": THROTTLED,
                    "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                    "Type": "User",
                    "message": str(exc),
                }
            )
            raise error from exc
        return answer

    LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign]


# -- API Gateway management API ------------------------------------------------------
def _install_websockets() -> None:
    # moto hands over the id as it stands in the URL path; real ids end in "=" (%3D).
    from urllib.parse import unquote

    from moto.apigatewaymanagementapi.models import ApiGatewayManagementApiBackend, Connection
    from moto.core.exceptions import JsonRESTError

    from local_runtime.websockets import ConnectionGoneError, PayloadTooLargeError

    def gone(connection_id: str) -> JsonRESTError:
        error = JsonRESTError("GoneException", f"Connection {connection_id} is gone")
        error.code = 410
        return error

    def post_to_connection(self: Any, data: bytes, connection_id: str) -> None:
        runtime = hooks.active()
        if runtime is None:
            return original_post(self, data, connection_id)  # type: ignore[no-any-return]
        connection_id = unquote(connection_id)
        try:
            runtime.connections.post(connection_id, data)
        except ConnectionGoneError as exc:
            raise gone(connection_id) from exc
        except PayloadTooLargeError as exc:
            raise limits.post_to_connection_error(exc) from exc

    def get_connection(self: Any, connection_id: str) -> Any:
        runtime = hooks.active()
        if runtime is None:
            return original_get(self, connection_id)
        connection_id = unquote(connection_id)
        try:
            local = runtime.connections.get(connection_id)
        except ConnectionGoneError as exc:
            raise gone(connection_id) from exc
        answer = Connection()
        answer.connected_at = local.connected_at
        answer.source_ip = local.source_ip
        answer.user_agent = local.user_agent
        last_active = local.last_active_at
        answer.to_dict = lambda: {  # type: ignore[method-assign]
            "connectedAt": datetime.datetime.fromtimestamp(local.connected_at, datetime.UTC).isoformat(),
            "lastActiveAt": datetime.datetime.fromtimestamp(last_active, datetime.UTC).isoformat(),
            "identity": {"sourceIp": local.source_ip, "userAgent": local.user_agent},
        }
        return answer

    def delete_connection(self: Any, connection_id: str) -> None:
        runtime = hooks.active()
        if runtime is None:
            return original_delete(self, connection_id)  # type: ignore[no-any-return]
        connection_id = unquote(connection_id)
        try:
            runtime.connections.delete(connection_id)
        except ConnectionGoneError as exc:
            raise gone(connection_id) from exc

    original_post = ApiGatewayManagementApiBackend.post_to_connection
    original_get = ApiGatewayManagementApiBackend.get_connection
    original_delete = ApiGatewayManagementApiBackend.delete_connection
    ApiGatewayManagementApiBackend.post_to_connection = post_to_connection  # type: ignore[method-assign]
    ApiGatewayManagementApiBackend.get_connection = get_connection  # type: ignore[method-assign]
    ApiGatewayManagementApiBackend.delete_connection = delete_connection  # type: ignore[method-assign]


# -- the interpreter's waits, retries, jitter and timeouts ---------------------------------
class _JitterRandom:
    """Stands in for the ``random`` module inside the jitter strategy."""

    def uniform(self, a: float, b: float) -> float:
        runtime = hooks.active()
        if runtime is None:
            import random

            return random.uniform(a, b)
        return float(runtime.clock.random.uniform(a, b))


def _install_interpreter_time() -> None:
    from moto.stepfunctions.parser.asl.component.common.retry import jitter_strategy_decl
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import EvalTimeoutError
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    # Retry sleeps go through time.sleep, which the installed clock replaces;
    # jitter draws from the clock's seeded RNG so a run can be replayed.
    setattr(jitter_strategy_decl, "random", _JitterRandom())  # noqa: B010 - the module's own name for it

    original_wait = WaitFunction._wait_interval

    def _wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        runtime = hooks.active()
        if runtime is None:
            return original_wait(self, env, wait_seconds)  # type: ignore[no-any-return]
        if wait_seconds > 0 and env.is_running():
            runtime.clock.sleep(wait_seconds)
        return None

    WaitFunction._wait_interval = _wait_interval  # type: ignore[method-assign]

    original_timeout = ExecutionState._evaluate_with_timeout

    def _evaluate_with_timeout(self: Any, env: Any) -> None:
        runtime = hooks.active()
        if runtime is None:
            return original_timeout(self, env)  # type: ignore[no-any-return]
        clock = runtime.clock
        self.timeout.eval(env=env)
        timeout_seconds: float = env.stack.pop()

        frame = env.open_frame()
        frame.states.reset(input_value=env.states.get_input())
        frame.stack = json_deepcopy(env.stack)
        # The frame's events chain from here (each one's previousEventId is the one before).
        frame_source = frame.event_history_context.source_event_id
        first_event = len(env.event_manager._history_event_list)
        error: Exception | None = None
        start = clock.now()
        # The task runs to completion on its own timeline (the Lambda keeps
        # running after Step Functions stops waiting); the state then waits
        # min(elapsed, TimeoutSeconds) on the real one.
        with clock.branch() as branch:
            try:
                self._eval_execution(frame)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the timeout check
                error = exc
        # A Map or Parallel ends when its last branch does. The branches' threads
        # only record that on the cursor (``joined``); it reaches ``now`` when this
        # thread next reads the time, which a failing Map may never do in the branch
        # (it re-raises without logging or adding an event).
        elapsed = max(branch.now, branch.joined) - start
        timed_out = elapsed > timeout_seconds
        clock.sleep(min(elapsed, timeout_seconds))
        frame.set_ended()
        env.close_frame(frame)
        if timed_out:
            # What the task reported after the deadline never reached the execution.
            _drop_late_outcomes(env.event_manager, first_event, frame_source, _iso(start + timeout_seconds))
            raise EvalTimeoutError()
        if error is not None:
            raise error

        execution_output = frame.stack.pop()
        env.stack.append(execution_output)
        if not self._is_language_query_jsonpath():
            env.states.set_result(execution_output)
        if self.assign_decl:
            self.assign_decl.eval(env=env)
        if self.result_selector:
            self.result_selector.eval(env=env)
        if self.result_path:
            self.result_path.eval(env)
        else:
            res = env.stack.pop()
            env.states.reset(input_value=res)
        return None

    ExecutionState._evaluate_with_timeout = _evaluate_with_timeout  # type: ignore[method-assign]


def _drop_late_outcomes(event_manager: Any, first_event: int, frame_source: int, deadline: str) -> None:
    """Remove the outcome events a timed-out task's frame published after its deadline.

    Map iterations and Parallel branches append to the same history concurrently, so
    only events chained (by ``previousEventId``) to the task's own frame are this
    task's; another iteration's ``TaskSucceeded`` after this deadline is legitimate.
    ``EventManager._mutex`` keeps other threads from appending while the list is rewritten.
    """
    with event_manager._mutex:
        history = event_manager._history_event_list
        ours = {frame_source}
        kept = []
        for event in history[first_event:]:
            if event.get("previousEventId") in ours:
                ours.add(event.get("id"))
                if _is_task_outcome(event) and str(event["timestamp"]) > deadline:
                    continue
            kept.append(event)
        history[first_event:] = kept


def _is_task_outcome(event: Any) -> bool:
    # moto stores the type as its HistoryEventType enum, whose str() is "HistoryEventType.TaskSucceeded".
    kind = event.get("type", "")
    kind = str(getattr(kind, "value", kind))
    return kind.startswith(("Task", "LambdaFunction")) and kind.endswith(("Succeeded", "Failed", "TimedOut"))


def _iso(epoch: float) -> str:
    from moto.core.utils import iso_8601_datetime_with_milliseconds

    return str(iso_8601_datetime_with_milliseconds(datetime.datetime.fromtimestamp(epoch, datetime.UTC)))


def _install_client_cache() -> None:
    """SDK integrations build a boto3 client per call (~10 ms); build each once."""
    from moto.stepfunctions.parser.asl.utils import boto_client

    original: Callable[..., Any] = boto_client.boto_client_for
    cache: dict[tuple[str, str, bool], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        from moto.core.models import botocore_stubber

        key = (region, service, bool(botocore_stubber.enabled))
        with lock:
            client = cache.get(key)
            if client is None:
                client = original(region=region, service=service, state_credentials=state_credentials)
                cache[key] = client
        return client

    boto_client.boto_client_for = boto_client_for
    import moto.stepfunctions.parser.asl.component.state.exec.state_task as state_task

    for info in pkgutil.walk_packages(state_task.__path__, state_task.__name__ + "."):
        module = importlib.import_module(info.name)
        if getattr(module, "boto_client_for", None) is original:
            module.boto_client_for = boto_client_for  # type: ignore[attr-defined]


def _install_timestamp_parsing() -> None:
    """Choice ``Timestamp*`` rules compare RFC 3339 timestamps on AWS, fractional
    seconds and offsets included (``$$.State.EnteredTime`` has milliseconds);
    moto only parses ``%Y-%m-%dT%H:%M:%SZ`` and silently answers False otherwise."""
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations import (
        is_operator,
    )

    def string_to_timestamp(string: str) -> datetime.datetime | None:
        if not isinstance(string, str) or "T" not in string:
            return None
        try:
            parsed = datetime.datetime.fromisoformat(string.replace("Z", "+00:00"))
        except ValueError:
            return None
        # Naive and aware datetimes must not meet in a comparison.
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)

    is_operator.IsTimestamp.string_to_timestamp = staticmethod(string_to_timestamp)  # type: ignore[method-assign,assignment]


#: Wildcards, slices, unions, filters and deep scans: paths that may select any number of nodes.
_INDEFINITE_PATH = re.compile(r"\[\*\]|\.\*|\.\.|\[\?|\[-?\d*:-?\d*(?::-?\d*)?\]|\[[^\]]*,[^\]]*\]")


def _install_indefinite_paths() -> None:
    """Step Functions evaluates paths with Jayway JsonPath: an *indefinite* path
    (``$.results[*].gone[*]``) yields the array of its matches, empty when nothing
    matches. moto returns ``[]`` only for a path with a single wildcard and raises
    States.Runtime for the rest, so a tally over batches that all had nothing to
    report would fail offline and succeed on AWS."""
    from moto.stepfunctions.parser.asl.utils import json_path

    def is_indefinite(path: str) -> bool:
        return bool(_INDEFINITE_PATH.search(path))

    json_path._contains_slice_or_wildcard_array = is_indefinite


#: A Cognito user pool's public keys: https://cognito-idp.<region>.amazonaws.com/<pool id>/.well-known/jwks.json
_COGNITO_JWKS = re.compile(r"^https://cognito-idp\.([a-z0-9-]+)\.amazonaws\.com/([^/]+)/\.well-known/jwks\.json$")


def _install_jwks() -> None:
    """Cognito's JWKS is plain HTTPS, not an SDK call, so the botocore fault layer never
    sees it. Offline the runtime's identity provider answers for every user pool, and the
    same fault rules apply (service ``cognito-idp``, operation ``GetJWKS``, resource the
    pool id): an error status is an ``HTTPError``, latency past the caller's timeout is a
    ``TimeoutError`` after that timeout, in virtual time."""
    import io
    import urllib.error
    import urllib.request
    from email.message import Message

    original = urllib.request.urlopen

    def urlopen(url: Any, data: Any = None, timeout: Any = None, **kwargs: Any) -> Any:
        runtime = hooks.active()
        target = url if isinstance(url, str) else getattr(url, "full_url", "")
        match = _COGNITO_JWKS.match(target)
        if runtime is None or match is None:
            if timeout is None:
                return original(url, data, **kwargs)
            return original(url, data, timeout, **kwargs)
        runtime.count_request("cognito-idp", "GetJWKS")
        fault = runtime.decide_fault(service="cognito-idp", operation="GetJWKS", body=None, url=target)
        if fault is not None and fault.latency > 0:
            if timeout is not None and fault.latency > float(timeout):
                runtime.clock.sleep(float(timeout))
                raise TimeoutError(f"timed out reading {target}")
            runtime.clock.sleep(fault.latency)
        if fault is not None and fault.error is not None:
            if fault.error == "MalformedResponse":
                return _Response(target, b"<html>not a key set</html>")
            body = json.dumps({"message": fault.message, "__type": fault.error}).encode()
            raise urllib.error.HTTPError(target, fault.status, fault.error, Message(), io.BytesIO(body))
        return _Response(target, runtime.identity.jwks_json(match.group(2)))

    urllib.request.urlopen = urlopen


class _Response:
    """Just enough of ``http.client.HTTPResponse`` for a JSON download."""

    def __init__(self, url: str, body: bytes) -> None:
        self.url = url
        self.status = 200
        self._body = body

    def read(self, amount: int | None = None) -> bytes:
        return self._body if amount is None else self._body[:amount]

    def getcode(self) -> int:
        return self.status

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None


def _install_service_timeouts() -> None:
    """A service integration that outlives ``TimeoutSeconds`` fails with ``States.Timeout``
    on AWS. moto's DynamoDB (and other) integrations turn any non-ClientError into their
    catch-all (``DynamoDB.AmazonDynamoDBException``), the timeout included, so a Catch on
    States.Timeout would never fire offline."""
    import moto.stepfunctions.parser.asl.component.state.exec.state_task.service as service_package
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )

    for info in pkgutil.iter_modules(service_package.__path__, service_package.__name__ + "."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, StateTaskService)
                and "_from_error" in vars(value)
                and not getattr(value._from_error, "_bw_timeouts", False)
            ):
                value._from_error = _timeouts_first(value._from_error)  # type: ignore[method-assign]


def _timeouts_first(from_error: Callable[..., Any]) -> Callable[..., Any]:
    from botocore.exceptions import ParamValidationError

    def _from_error(self: Any, env: Any, ex: Exception) -> Any:
        if isinstance(ex, TimeoutError):
            return self._get_timed_out_failure_event(env)
        if isinstance(ex, ParamValidationError):
            # See _install_parameter_validation: on AWS the service rejects the request.
            ex = _validation_client_error(ex, self)
        return from_error(self, env, ex)

    _from_error._bw_timeouts = True  # type: ignore[attr-defined]
    return _from_error


class _MissingPathFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "NoSuchJsonPathError" not in record.getMessage()


def _quiet_missing_path_logs() -> None:
    """moto logs a missing path at ERROR once per enclosing component (a dozen lines),
    including the ordinary ``IsPresent: false`` of a Choice. A path that really fails a
    state reaches the execution history, and so the trace, as ``States.Runtime``."""
    logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").addFilter(_MissingPathFilter())


def _install_adaptive_retry_clock() -> None:
    """botocore's adaptive retry mode paces a client through a token bucket shared by
    every thread using the client, refilled from ``time.time`` and waited on with a
    real condition variable. Offline, each Map branch runs on its own virtual timeline,
    so the bucket would see time run backwards and never refill. The runtime turns
    that client-side pacing off; the SDK's retries and their backoff (``time.sleep``,
    virtual) still happen, so injected throttles cost what they cost on AWS."""
    from botocore.retries.bucket import TokenBucket

    original = TokenBucket._acquire  # type: ignore[attr-defined]

    def _acquire(self: Any, amount: int, block: bool) -> bool:
        if hooks.active() is None:
            return original(self, amount, block)  # type: ignore[no-any-return]
        return True

    TokenBucket._acquire = _acquire  # type: ignore[attr-defined]


def _install_parameter_casing() -> None:
    """Service integrations take PascalCase parameters (``StateMachineArn``) on AWS, which
    Step Functions maps onto the API's member names (``stateMachineArn``). moto has the
    mapping (``_to_boto_request``) but never calls it, so an SFN or other camelCase API
    integration fails with a KeyError; call it, as the interpreter it comes from does."""
    import botocore.session
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )

    models = botocore.session.get_session()
    original = StateTaskService._normalise_parameters

    def _normalise_parameters(
        self: Any,
        parameters: dict[str, Any],
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        original(self, parameters, boto_service_name, service_action_name)
        service = boto_service_name or self._get_boto_service_name()
        action = service_action_name or self._get_boto_service_action()
        try:
            model = models.get_service_model(service)
            operation = model.operation_model("".join(part.title() for part in action.split("_")))
        except Exception:  # noqa: BLE001 - unknown to botocore: leave the parameters as written
            return
        if operation.input_shape is not None:
            self._to_boto_request(parameters, operation.input_shape)

    StateTaskService._normalise_parameters = _normalise_parameters  # type: ignore[method-assign]


def _install_context_object_fixes() -> None:
    """``$$.Execution.StartTime`` is an ISO-8601 string on AWS; moto passes a datetime,
    which breaks ``States.Format`` and every JSON serialisation of the context."""
    from moto.stepfunctions.parser.asl.eval.evaluation_details import ExecutionDetails

    original = ExecutionDetails.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - replaces __init__
        original(self, *args, **kwargs)
        if isinstance(self.start_time, datetime.datetime):
            self.start_time = _iso(self.start_time.timestamp())

    ExecutionDetails.__init__ = __init__  # type: ignore[method-assign]


# -- Map and Parallel failures ---------------------------------------------------------------
def _install_branch_error_names() -> None:
    """A Map iteration or Parallel branch that fails with a ``States.*`` error (a task's
    ``States.Timeout``) fails the Map or Parallel with that error on AWS, where a Catch
    or Retry can match it. moto wraps the branch's error name in ``CustomErrorName``,
    which refuses names starting with ``States.``, so the state failed with
    ``States.Runtime`` instead. Build those names as moto builds its own States errors."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl

    for module in (iteration_worker, branches_decl):
        module.CustomErrorName = _branch_error_name  # type: ignore[attr-defined]


def _branch_error_name(error_name: str | None = None) -> Any:
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
        ILLEGAL_CUSTOM_ERROR_PREFIX,
        CustomErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName

    if error_name is None or not error_name.startswith(ILLEGAL_CUSTOM_ERROR_PREFIX):
        return CustomErrorName(error_name=error_name)
    try:
        # A StatesErrorName, so States.TaskFailed does not match States.Timeout (as on AWS).
        return StatesErrorName.from_name(error_name)
    except ValueError:
        # A States.* name moto's grammar does not know: matched by name only.
        return ErrorName(error_name=error_name)


# -- SDK and optimised integrations ------------------------------------------------------------
def _install_parameter_validation() -> None:
    """moto builds the interpreter's clients with ``parameter_validation=False``, so a bad
    parameter (a DynamoDB Item not in AttributeValue form) crashes somewhere in the
    serialiser. On AWS the service answers ValidationException, which the integration
    reports as a task failure (``DynamoDB.AmazonDynamoDBException``). Validate, and turn
    botocore's ParamValidationError into that service error (see ``_timeouts_first``).
    :func:`_install_client_cache` caches the clients built here."""
    from botocore.config import Config
    from moto.stepfunctions.parser.asl.utils import boto_client

    def validating_config(*args: Any, **kwargs: Any) -> Config:
        kwargs["parameter_validation"] = True
        return Config(*args, **kwargs)

    setattr(boto_client, "Config", validating_config)  # noqa: B010 - the module's own name for it


def _validation_client_error(ex: Exception, state: Any) -> Exception:
    """The ValidationException a service returns for a request its model rejects."""
    import uuid

    from botocore.exceptions import ClientError

    report = str(getattr(ex, "kwargs", {}).get("report", ex)).strip()
    problems = [line.strip() for line in report.splitlines() if line.strip()]
    message = f"{len(problems)} validation error{'s' if len(problems) != 1 else ''} detected: {'; '.join(problems)}"
    try:
        operation = str(state._get_boto_service_action())
    except Exception:  # noqa: BLE001 - only names the operation in the message
        operation = "Unknown"
    response: Any = {
        "Error": {"Code": "ValidationException", "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": str(uuid.uuid4()), "HTTPHeaders": {}},
    }
    return ClientError(
        response,
        "".join(part.title() for part in operation.split("_")),
    )


#: DynamoDB errors Step Functions names after their own exception class; the others are
#: not modelled by the SDK it uses and surface as the service's base exception.

#: Response members DynamoDB returns only when the request asks for them.
_DYNAMODB_ON_REQUEST = (
    ("ConsumedCapacity", "ReturnConsumedCapacity", ("TOTAL", "INDEXES")),
    ("ItemCollectionMetrics", "ReturnItemCollectionMetrics", ("SIZE",)),
)


def _install_dynamodb_fidelity() -> None:
    """The optimised DynamoDB integration's output carries ``ConsumedCapacity`` /
    ``ItemCollectionMetrics`` only when the task asked for them, as on AWS (moto's
    DynamoDB always returns ``ConsumedCapacity``). Its error names: see
    :func:`_install_generic_sdk_errors`."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb import (
        StateTaskServiceDynamoDB,
    )

    original_eval = StateTaskServiceDynamoDB._eval_service_task

    def _eval_service_task(
        self: Any, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
    ) -> None:
        original_eval(self, env, resource_runtime_part, normalised_parameters, state_credentials)
        response = env.stack[-1]
        if isinstance(response, dict):
            for member, parameter, values in _DYNAMODB_ON_REQUEST:
                if normalised_parameters.get(parameter) not in values:
                    response.pop(member, None)

    StateTaskServiceDynamoDB._eval_service_task = _eval_service_task  # type: ignore[method-assign]


def _install_parse_cache() -> None:
    """moto parses a definition with ANTLR (pure Python) and builds its components with the
    preprocessor's visit for every execution: about 0.5 s of CPU per DeliverMessage run,
    whose intrinsic functions (``States.Format`` ...) are each lexed and parsed again. Both
    depend only on the definition text, so the program is built once and every execution
    evaluates the same components. moto's interpreter already shares them: a Map's
    iterations run one ItemProcessor's components at once on several threads, each with its
    own environment; what an evaluation changes (retry counts, inputs, results) lives in
    that environment, never on a component. The one lazy attribute a component sets on
    itself, its heap key (where a retrier keeps its attempt count), is drawn before the
    program is shared, so two first executions at once cannot draw two keys."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    original = AmazonStateLanguageParser.parse
    programs: dict[str, tuple[Any, Any]] = {}
    lock = threading.Lock()

    def parse(definition: str) -> tuple[Any, Any]:
        with lock:
            parsed = programs.get(definition)
        if parsed is None:
            parsed = original(definition)  # raises on a syntax error, as before (and is not kept)
            _draw_heap_keys(parsed[0])
            with lock:
                parsed = programs.setdefault(definition, parsed)
        return parsed

    AmazonStateLanguageParser.parse = staticmethod(parse)  # type: ignore[method-assign,assignment]


def _install_json_copies() -> None:
    """The interpreter copies JSON values with :func:`~local_runtime.json_copy.json_deepcopy`
    (the same values, several times faster); each module listed in ``_JSON_COPIERS`` sees a
    ``copy`` module whose ``deepcopy`` is that one, the rest of ``copy`` unchanged."""
    import types

    shim = types.ModuleType("copy")
    shim.__dict__.update(vars(copy))
    shim.deepcopy = json_deepcopy  # type: ignore[attr-defined]
    for name in _JSON_COPIERS:
        importlib.import_module(name).copy = shim  # type: ignore[attr-defined]


def _install_response_key_memo() -> None:
    """moto's response serializer looks up every member of every value through six alias
    providers (a Query of 200 connection ids: 2 000 lookups, 0.1 s of CPU). For a plain dict
    value the keys it tries depend only on the member's shape (its name, serialization name
    and parent) and the member's name: no provider reads anything else of a dict (it has no
    ``Meta``, and its class name is ``dict``). So those keys are worked out once per shape and
    member name; any other value (a model object) is looked up as before."""
    from moto.core.serialize import DEFAULT_ALIAS_PROVIDERS, XFormedAttributePicker

    original = XFormedAttributePicker.get_possible_keys
    #: (shape, its parent, member name) -> the keys tried, in order. Shapes are botocore's
    #: cached model objects (bounded by the models in use); kept, so no id is ever reused.
    tried: dict[tuple[Any, Any, str], tuple[str, ...]] = {}

    def get_possible_keys(self: Any, context: Any) -> Any:
        if type(context.obj) is not dict or self.alias_providers is not DEFAULT_ALIAS_PROVIDERS:
            return original(self, context)
        shape = context.shape
        memo = (shape, getattr(shape, "parent", None), context.key)
        keys = tried.get(memo)
        if keys is None:
            keys = tried[memo] = tuple(original(self, context))
        return keys

    XFormedAttributePicker.get_possible_keys = get_possible_keys  # type: ignore[method-assign]


def _draw_heap_keys(program: Any) -> None:
    """Every evaluable component of ``program`` draws its heap key now (see above)."""
    from moto.stepfunctions.parser.asl.component.component import Component
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent

    seen: set[int] = set()
    pending: list[Any] = [program]
    while pending:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, EvalComponent):
            _ = value.heap_key
        if isinstance(value, Component):
            pending.extend(vars(value).values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.values())


def _install_validation_memo() -> None:
    """CreateStateMachine validates the definition with the same ANTLR parse (a stack's four
    definitions: about 2 s of a start). The parse is a pure function of the definition text
    and the code that parses it, so a definition that parsed once is recorded on disk
    (:func:`~local_runtime.user_cache.cache_dir`, keyed by the text, moto's version, Python's
    and this module) and a later start skips only that repeat. A definition that fails is
    never recorded: it fails on every start exactly as before, and an execution still
    parses its definition (once per process, :func:`_install_parse_cache`)."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend._validate_definition

    def _validate_definition(definition: str) -> None:
        marker = _validated_marker(definition)
        if marker.is_file():
            return
        original(definition)  # raises InvalidDefinition, as before
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            staging = marker.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            staging.write_text(str(len(definition)), encoding="utf-8")
            staging.replace(marker)  # atomic: two starts at once both write the same marker
        except OSError:
            return  # a read-only cache: the next start validates again

    StepFunctionsParserBackend._validate_definition = staticmethod(_validate_definition)  # type: ignore[method-assign,assignment]


@functools.cache
def _validation_salt() -> bytes:
    from importlib.metadata import version

    return "\0".join((version("moto"), version("antlr4-python3-runtime"), sys.version)).encode() + (
        Path(__file__).read_bytes()
    )


def _validated_marker(definition: str) -> Path:
    from local_runtime.user_cache import cache_dir

    digest = hashlib.sha256(_validation_salt() + b"\0" + definition.encode()).hexdigest()[:32]
    return cache_dir("asl-valid") / digest


def _install_shared_loader() -> None:
    """Every botocore Session builds its own Loader and parses the service models again
    (several MB of JSON; a function's cold start makes a Session per client set). The
    model files never change in a process, so every Session shares one Loader per data
    path: the same models, parsed once. Only the runtime's speed changes."""
    import botocore.session

    # Installed before verify_seams (see install_seams): check its own two seams first.
    hooks.verify([("botocore.session", "create_loader"), ("moto.core.utils", "create_loader")])
    original = botocore.session.create_loader
    loaders: dict[str | None, Any] = {}
    lock = threading.Lock()

    def create_loader(search_path_string: str | None = None) -> Any:
        with lock:
            if search_path_string not in loaders:
                loaders[search_path_string] = original(search_path_string)
            return loaders[search_path_string]

    botocore.session.create_loader = create_loader  # type: ignore[assignment]

    # moto reads the models it answers with through a Loader of its own (with its extras
    # path), a new one for each model, each listing botocore's data directories again.
    moto_utils: Any = importlib.import_module("moto.core.utils")
    moto_original = moto_utils.create_loader
    moto_loader: list[Any] = []

    def create_moto_loader() -> Any:
        with lock:
            if not moto_loader:
                moto_loader.append(moto_original())
            return moto_loader[0]

    moto_utils.create_loader = create_moto_loader


@functools.cache
def _modelled_errors(service: str) -> frozenset[str]:
    """Error codes the service's API model declares (botocore's error shapes)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    return frozenset(
        str(shape.metadata.get("error", {}).get("code") or shape.name) for shape in model.error_shapes
    ) | frozenset(shape.name for shape in model.error_shapes)


def _unmodelled_as(
    error_cause: Callable[[Any], tuple[str, str]], service: str, generic: str
) -> Callable[[Any], tuple[str, str]]:
    """``error_cause`` with an error code the service's model does not declare named ``generic``."""

    def _error_cause_from_client_error(client_error: Any) -> tuple[str, str]:
        error, cause = error_cause(client_error)
        if client_error.response["Error"]["Code"] not in _modelled_errors(service):
            error = generic
        return error, cause

    return _error_cause_from_client_error


#: The service part of an ``aws-sdk`` integration's error name: the AWS SDK for Java v2 client's
#: name (``CloudWatch.CloudWatchException`` for an error CloudWatch's model does not declare).
#: moto knows dynamodb (DynamoDb) and sfn (Sfn) and spells any other lower-case.
AWS_SDK_SERVICE_NAMES = {
    "cloudwatch": "CloudWatch",
    "lambda": "Lambda",
    "s3": "S3",
    "secretsmanager": "SecretsManager",
    "sns": "Sns",
    "sqs": "Sqs",
}


def _install_aws_sdk_service_names() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_aws_sdk

    for service, name in AWS_SDK_SERVICE_NAMES.items():
        state_task_service_aws_sdk._SERVICE_ERROR_NAMES.setdefault(service, name)


def _install_generic_sdk_errors() -> None:
    """Step Functions runs optimised integrations with the AWS SDK for Java: an error the
    service's API model declares keeps its exception's name (``Lambda.TooManyRequestsException``,
    ``StepFunctions.ExecutionAlreadyExistsException``); any other (AccessDeniedException,
    ValidationException, ...) is the SDK's generic exception: ``Lambda.AWSLambdaException``,
    ``DynamoDB.AmazonDynamoDBException``, ``StepFunctions.AWSStepFunctionsException``. moto
    names them after the code (and doubles the suffix for Step Functions)."""
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb import (
        StateTaskServiceDynamoDB,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
        StateTaskServiceLambda,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )

    for task, service, generic in (
        (StateTaskServiceLambda, "lambda", "Lambda.AWSLambdaException"),
        (StateTaskServiceDynamoDB, "dynamodb", "DynamoDB.AmazonDynamoDBException"),
    ):
        task._error_cause_from_client_error = staticmethod(  # type: ignore[method-assign,assignment]
            _unmodelled_as(task._error_cause_from_client_error, service, generic)
        )

    sfn_from_error = StateTaskServiceSfn._from_error

    def _from_error(self: Any, env: Any, ex: Exception) -> Any:
        failure = sfn_from_error(self, env, ex)
        response = getattr(ex, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if not isinstance(code, str):
            return failure
        if code not in _modelled_errors("stepfunctions"):
            name = "StepFunctions.AWSStepFunctionsException"
        else:
            name = f"StepFunctions.{code}" if code.endswith("Exception") else f"StepFunctions.{code}Exception"
        failure.error_name = CustomErrorName(name)  # type: ignore[misc]
        event_details: Any = failure.event_details or {}
        details = event_details.get("taskFailedEventDetails")
        if isinstance(details, dict):
            details["error"] = name
        return failure

    StateTaskServiceSfn._from_error = _from_error  # type: ignore[method-assign]


def _install_definite_paths() -> None:
    """Jayway JsonPath, which Step Functions uses, tells paths apart by their shape: a
    *definite* path (no wildcard, slice, filter, union or deep scan) yields its one value,
    an indefinite one the list of its matches. moto decides by the match instead and
    wraps the value of ``$.items[10].key`` or ``$[0].v`` (an index, then a field) in a list."""
    import moto.stepfunctions.parser.asl as asl
    from jsonpath_ng.ext import parse  # type: ignore[attr-defined]  # the parser moto's extract_json uses
    from moto.stepfunctions.parser.asl.utils import json_path

    original = json_path.extract_json
    # Parsing a path costs more than applying it (jsonpath_ng's parser), and a workflow
    # applies the same few paths on every state it visits: parse each one once.
    parsed = functools.lru_cache(maxsize=4096)(parse)

    def extract_json(path: str, data: Any) -> Any:
        matches = parsed(path).find(data)
        if _INDEFINITE_PATH.search(path):
            return [match.value for match in matches]
        if not matches:
            raise json_path.NoSuchJsonPathError(json_path=path, data=data)
        return matches[0].value

    for info in pkgutil.walk_packages(asl.__path__, asl.__name__ + "."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue  # a module of LocalStack's that moto ships but cannot import: never used
        if getattr(module, "extract_json", None) is original:
            module.extract_json = extract_json  # type: ignore[attr-defined]


def _install_no_choice_matched() -> None:
    """A Choice state with no matching rule and no Default fails the execution with
    ``States.NoChoiceMatched`` on AWS; moto raises a RuntimeError (``States.Runtime``)."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.choice.state_choice import StateChoice
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = StateChoice._eval_state

    def _eval_state(self: Any, env: Any) -> None:
        if self.default_state is not None:
            return original(self, env)  # type: ignore[no-any-return]
        try:
            return original(self, env)  # type: ignore[no-any-return]
        except RuntimeError as exc:
            if "No branching option reached" not in str(exc.args[0] if exc.args else exc):
                raise
            name = StatesErrorNameType.StatesNoChoiceMatched.to_name()
            raise FailureEventException(
                failure_event=FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesNoChoiceMatched),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(  # type: ignore[typeddict-item]
                        taskFailedEventDetails=TaskFailedEventDetails(
                            error=name, cause=f"No Matches! in state '{self.name}'"
                        )
                    ),
                )
            ) from exc

    StateChoice._eval_state = _eval_state  # type: ignore[method-assign]
