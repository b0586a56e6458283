"""breakwater's offline runtime: the SAM template, its ASL and its handlers on moto."""

from __future__ import annotations

# First: it keeps the bytecode of the modules below when PYTHONDONTWRITEBYTECODE is set.
from local_runtime import bytecode  # noqa: F401
from local_runtime.clock import VirtualClock
from local_runtime.faults import FaultInjector, FaultRule, load_fault_rules
from local_runtime.html import render_html
from local_runtime.runtime import ExecutionResult, LocalRuntime, fake_aws_environment
from local_runtime.seams import SeamMissingError, verify_seams
from local_runtime.template import LocalTemplate, TemplateError
from local_runtime.trace import StateRow, Trace
from local_runtime.websockets import ConnectionRegistry

__all__ = [
    "ConnectionRegistry",
    "ExecutionResult",
    "FaultInjector",
    "FaultRule",
    "LocalRuntime",
    "LocalTemplate",
    "SeamMissingError",
    "StateRow",
    "TemplateError",
    "Trace",
    "VirtualClock",
    "fake_aws_environment",
    "load_fault_rules",
    "render_html",
    "verify_seams",
]
