"""Lambda handlers run in-process, one isolated module namespace per function.

On AWS every function has its own sandbox: its CodeUri at ``/var/task``, its
layers under ``/opt/python``, its own module globals (warm caches, clients,
breakers). Here each function is imported once (the cold start) with its
code and layers first on ``sys.path``; the modules that import creates are
then moved out of ``sys.modules`` into the function's own namespace, so two
functions that each have an ``app.py`` (or a layer module with module-level
state) never share or overwrite each other's modules.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
import traceback
import uuid
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from local_runtime import emf, iam, logs
from local_runtime.clock import LambdaTimeoutInterrupt, VirtualClock
from local_runtime.environ import ThreadEnviron
from local_runtime.models import THROTTLED, FunctionSpec, Invocation
from local_runtime.packaging import PackageView, current_view, importing_as, is_under

__all__ = ["FunctionSpec", "Invocation", "LambdaContext", "LocalFunction"]  # data types live in models

# Imports change sys.path and sys.modules for the whole process: one at a time.
_IMPORT_LOCK = threading.RLock()
#: Third-party modules of each requirements build, shared by the functions (and runtimes) using it.
_DEPENDENCIES: dict[Path, dict[str, ModuleType]] = {}


class LambdaContext:
    """The ``context`` argument, with remaining time on the virtual clock."""

    def __init__(self, spec: FunctionSpec, clock: VirtualClock, deadline: float) -> None:
        self.function_name = spec.function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.function_name}"
        self.log_stream_name = f"local/[$LATEST]{self.aws_request_id.replace('-', '')}"
        self.identity = None
        self.client_context = None
        self._clock = clock
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock.now()) * 1000))


@dataclass
class LocalFunction:
    """One function's warm sandbox: its modules and its handler."""

    spec: FunctionSpec
    clock: VirtualClock
    #: What it can import (see :mod:`local_runtime.packaging`).
    view: PackageView
    #: The execution role its calls are signed with (None: IAM not enforced).
    role: str | None = None
    _handler: Callable[[Any, Any], Any] | None = None
    _modules: dict[str, ModuleType] = field(default_factory=dict)
    invocations: list[Invocation] = field(default_factory=list)
    #: When invocations were refused past the reserved concurrency (CloudWatch's ``Throttles``).
    throttled_at: list[float] = field(default_factory=list)
    _init_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _in_flight: int = 0
    _flight_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def roots(self) -> list[Path]:
        return list(self.view.roots)

    def _load(self) -> Callable[[Any, Any], Any]:
        module_name, _, attr = self.spec.handler.rpartition(".")
        if not module_name:
            raise ValueError(f"{self.spec.logical_id}: Handler must be 'module.function', got {self.spec.handler!r}")
        view = self.view
        roots = [str(p) for p in view.roots]  # resolved by package_view
        with _IMPORT_LOCK, self._environment(), importing_as(view, cold_start=True):
            before = dict(sys.modules)
            # Shadow this function's own modules loaded elsewhere, and any module of the
            # same name (a test's or a benchmark's "delivery"), so imports find its files.
            shadowed = {
                name: mod
                for name, mod in before.items()
                if is_under(mod, roots) or ((top := name.split(".", 1)[0]) in view.names and top not in view.shared)
            }
            for name in shadowed:
                del sys.modules[name]
            # Third-party code of its builds is loaded once per process (it keeps no state
            # of the function's); its own code and its layers' are imported afresh.
            for root in view.dependency_roots:
                sys.modules.update(_DEPENDENCIES.get(root, {}))
            # New lists, never edits in place: another thread may be iterating sys.path (any
            # import, importlib.metadata) and an in-place shift made it skip site-packages.
            saved_path = sys.path
            sys.path = [*roots, *saved_path]
            try:
                module = importlib.import_module(module_name)
                handler = getattr(module, attr)
            finally:
                sys.path = saved_path
                # Move this function's modules into its own namespace, and put
                # back whatever another function (or the test) had loaded.
                for name, mod in list(sys.modules.items()):
                    if is_under(mod, roots):
                        dependency = next((r for r in view.dependency_roots if is_under(mod, [r])), None)
                        if dependency is not None:
                            _DEPENDENCIES.setdefault(dependency, {})[name] = mod
                        else:
                            self._modules[name] = mod
                        del sys.modules[name]
                sys.modules.update(shadowed)
        if not callable(handler):
            raise TypeError(f"{self.spec.handler} is not callable")
        return handler  # type: ignore[no-any-return]

    def _environment(self) -> AbstractContextManager[None]:
        """The function's environment variables, seen only by the invoking thread."""
        variables = {k: str(v) for k, v in self.spec.environment.items()}
        variables.update(
            AWS_LAMBDA_FUNCTION_NAME=self.spec.function_name,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(self.spec.memory),
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            AWS_EXECUTION_ENV="AWS_Lambda_python3.13",
            LAMBDA_TASK_ROOT=str(self.spec.code_dir),
        )
        return ThreadEnviron.overlay(variables)

    @property
    def throttles(self) -> int:
        """Invocations refused past the reserved concurrency."""
        return len(self.throttled_at)

    def invoke(self, event: Any) -> Invocation:
        """Run the handler, or refuse as Lambda does when the function's reserved concurrency
        is all in use: 429 ``TooManyRequestsException`` (Reason
        ``ReservedFunctionConcurrentInvocationLimitExceeded``), the handler never started."""
        limit = self.spec.reserved_concurrency
        with self._flight_lock:
            if limit is not None and self._in_flight >= limit:
                now = self.clock.now()
                self.throttled_at.append(now)
                message = "Rate Exceeded."
                payload = {
                    "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                    "Type": "User",
                    "message": message,
                }
                return Invocation(self.spec.logical_id, str(uuid.uuid4()), payload, THROTTLED, message, now)
            self._in_flight += 1
        try:
            return self._invoke(event)
        finally:
            with self._flight_lock:
                self._in_flight -= 1

    def _invoke(self, event: Any) -> Invocation:
        cold = self._handler is None
        # Concurrent first requests (`bw up`) wait for one init instead of each importing the code.
        if self._handler is None:
            with self._init_lock:
                if self._handler is None:
                    try:
                        with iam.acting_as(self.role, self.spec.function_name), logs.running(self.spec.logical_id):
                            self._handler = self._load()
                    except Exception as exc:  # noqa: BLE001 - an init failure is the invocation's answer, as on AWS
                        module_name = self.spec.handler.rpartition(".")[0]
                        if isinstance(exc, AttributeError):
                            kind = "Runtime.HandlerNotFound"
                            message = (
                                f"Handler '{self.spec.handler.rpartition('.')[2]}' missing on module '{module_name}'"
                            )
                        else:
                            kind = "Runtime.ImportModuleError"
                            message = f"Unable to import module '{module_name}': {exc}"
                        payload = {"errorType": kind, "errorMessage": message}
                        invocation = Invocation(
                            self.spec.logical_id, str(uuid.uuid4()), payload, kind, message, self.clock.now()
                        )
                        self.invocations.append(invocation)
                        return invocation
        start = self.clock.now()
        deadline = start + self.spec.timeout
        context = LambdaContext(self.spec, self.clock, deadline)
        invocation = Invocation(self.spec.logical_id, context.aws_request_id, None, started_at=start, cold_start=cold)
        output: list[str] = []
        try:
            with (
                self._environment(),
                self.clock.deadline(self.spec.timeout),
                iam.acting_as(self.role, self.spec.function_name),
                importing_as(self.view),
                emf.capture_stdout(self.spec.logical_id) as output,
                logs.running(self.spec.logical_id),
            ):
                invocation.payload = self._handler(event, context)
            json.dumps(invocation.payload, default=str)
        except LambdaTimeoutInterrupt:
            invocation.error_type = "Sandbox.Timedout"
            invocation.error_message = (
                f"RequestId: {context.aws_request_id} Error: Task timed out after {self.spec.timeout:.2f} seconds"
            )
            invocation.payload = {"errorType": invocation.error_type, "errorMessage": invocation.error_message}
        except Exception as exc:  # noqa: BLE001 - every handler failure is reported, as the Lambda runtime does
            invocation.error_type = type(exc).__name__
            invocation.error_message = str(exc)
            invocation.payload = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "requestId": context.aws_request_id,
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
        invocation.duration = self.clock.now() - start
        # What CloudWatch Logs would extract metrics from (lines printed before a timeout included).
        invocation.emf = emf.documents("".join(output))
        self.invocations.append(invocation)
        return invocation


#: Each sandbox's own ``logging.Logger`` per Powertools service name (see install_sandbox_loggers).
_SANDBOX_LOGGERS: weakref.WeakKeyDictionary[PackageView, dict[str, logging.Logger]] = weakref.WeakKeyDictionary()
_SANDBOX_LOCK = threading.Lock()


def install_sandbox_loggers() -> None:
    """On AWS every function logs from its own process. Powertools' Logger configures the
    process-wide ``logging.getLogger(service)``, and ``inject_lambda_context`` appends the
    function's name and request id to that logger's formatter: functions sharing a process
    (and a service name) would log under each other's names. A sandbox gets its own
    ``logging.Logger`` per service instead, so its keys are its own."""
    from aws_lambda_powertools.logging.logger import Logger as PowertoolsLogger

    if getattr(PowertoolsLogger._get_logger, "_bw_sandboxed", False):
        return
    original = PowertoolsLogger._get_logger

    def _get_logger(self: Any) -> logging.Logger:
        view = current_view()
        if view is None or self.child:
            return original(self)
        with _SANDBOX_LOCK:
            loggers = _SANDBOX_LOGGERS.setdefault(view, {})
            if self.service not in loggers:
                logger = logging.Logger(self.service)
                logger.parent = logging.root  # propagates like a top-level logger of that name
                loggers[self.service] = logger
            return loggers[self.service]

    _get_logger._bw_sandboxed = True  # type: ignore[attr-defined]
    PowertoolsLogger._get_logger = _get_logger  # type: ignore[method-assign]
