"""Fault injection at the botocore layer.

A rule matches calls by service, operation and resource, and then answers
with an AWS error, adds latency, or both. Because it sits under botocore
(see :mod:`local_runtime.seams`), a boto3 call inside a handler and an ASL
SDK integration (``arn:aws:states:::dynamodb:putItem``) meet the same faults,
and the SDK's own retry logic sees a real error response, so adaptive
retries consume faults exactly as they would consume real throttles.

Rules file (YAML or JSON)::

    faults:
      - service: dynamodb          # botocore service name (glob)
        operation: PutItem         # optional, glob
        resource: "Messages*"      # optional, glob on table / function / connection id / URL path
        error: ProvisionedThroughputExceededException
        count: 2                   # fire at most this often (default: always)
        after: 1                   # let the first N matching calls through
        probability: 0.5           # drawn from the clock's seeded RNG
      - service: apigatewaymanagementapi
        gone: true                 # shorthand for GoneException (410)
      - service: secretsmanager
        latency: 4                 # virtual seconds; past the client's read timeout => ReadTimeoutError
      - service: stepfunctions
        operation: StartSyncExecution
        answer_lost: true          # the call runs to completion, then the client times out reading the answer
"""

from __future__ import annotations

import fnmatch
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

__all__ = ["Fault", "FaultInjector", "FaultRule", "load_fault_rules", "request_resources"]

#: Status codes AWS answers with for well-known error codes (rules may override).
_DEFAULT_STATUS: dict[str, int] = {
    "GoneException": 410,
    "AccessDeniedException": 403,
    "AccessDenied": 403,
    "ForbiddenException": 403,
    "ThrottlingException": 400,
    "Throttling": 400,
    "ProvisionedThroughputExceededException": 400,
    "RequestLimitExceeded": 400,
    "TooManyRequestsException": 429,
    "LimitExceededException": 429,
    "SlowDown": 503,
    "ServiceUnavailable": 503,
    "ServiceUnavailableException": 503,
    "InternalServerError": 500,
    "InternalFailure": 500,
    "InternalServiceError": 500,
    "InternalError": 500,
    "ResourceNotFoundException": 400,
    "NoSuchKey": 404,
    "NoSuchBucket": 404,
    "ValidationException": 400,
    "ConditionalCheckFailedException": 400,
}

#: What "throttle: true" means per service.
_THROTTLE_CODE: dict[str, str] = {
    "dynamodb": "ProvisionedThroughputExceededException",
    "s3": "SlowDown",
    "apigatewaymanagementapi": "LimitExceededException",
    "lambda": "TooManyRequestsException",
}

#: Request fields that name the resource a call is about, per JSON protocol.
_RESOURCE_FIELDS = (
    "TableName",
    "SecretId",
    "QueueUrl",
    "stateMachineArn",
    "executionArn",
    "FunctionName",
    "Name",
    "Bucket",
)


@dataclass(frozen=True)
class FaultRule:
    """One injected failure mode, matched by service/operation/resource globs."""

    service: str
    operation: str = "*"
    resource: str = "*"
    error: str | None = None
    message: str | None = None
    status: int | None = None
    latency: float = 0.0
    count: int | None = None
    after: int = 0
    probability: float = 1.0
    #: The request reaches the service and is carried out; the answer never reaches the client,
    #: which times out reading it (``ReadTimeoutError``) -- the case a retry can duplicate.
    answer_lost: bool = False
    name: str | None = None
    #: Tests only (not in rule files): run this just before the matched call proceeds, e.g. a
    #: client's frame arriving while a workflow is between two of its states.
    before: Callable[[], object] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.error is None and self.latency <= 0 and self.before is None and not self.answer_lost:
            raise ValueError(f"fault rule for {self.service!r} needs an error, a latency or answer_lost")
        if self.answer_lost and self.error is not None:
            raise ValueError("answer_lost means the call succeeds on the service side; it takes no error")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.count is not None and self.count < 0:
            raise ValueError("count must be >= 0")
        if self.after < 0 or self.latency < 0:
            raise ValueError("after and latency must be >= 0")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        data = dict(data)
        allowed = set(cls.__dataclass_fields__) | {"gone", "throttle", "timeout"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault rule keys: {sorted(unknown)}")
        if "service" not in data:
            raise ValueError("a fault rule needs a 'service'")
        if data.pop("gone", False):
            data.setdefault("error", "GoneException")
        if data.pop("throttle", False):
            data.setdefault("error", _THROTTLE_CODE.get(str(data["service"]), "ThrottlingException"))
        timeout = data.pop("timeout", None)
        if timeout:
            # Longer than any client's read timeout: the SDK raises ReadTimeoutError.
            data.setdefault("latency", 3600.0 if timeout is True else float(timeout))
        if "latency" in data:
            data["latency"] = float(data["latency"])
        return cls(**data)

    @property
    def http_status(self) -> int:
        if self.status is not None:
            return self.status
        return _DEFAULT_STATUS.get(self.error or "", 400)

    def matches(self, service: str, operation: str, resources: Iterable[str]) -> bool:
        if not fnmatch.fnmatchcase(service, self.service):
            return False
        if not fnmatch.fnmatchcase(operation.lower(), self.operation.lower()):
            return False
        if self.resource == "*":
            return True
        return any(fnmatch.fnmatchcase(resource, self.resource) for resource in resources)


@dataclass(frozen=True)
class Fault:
    """What the injector decided for one call."""

    rule: FaultRule
    latency: float
    error: str | None
    message: str
    status: int


@dataclass
class _RuleState:
    seen: int = 0
    fired: int = 0


@dataclass
class FaultInjector:
    """The active rules and how often each fired (shown in traces and tests)."""

    rules: list[FaultRule] = field(default_factory=list)
    _state: dict[int, _RuleState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    log: list[dict[str, Any]] = field(default_factory=list)

    def add(self, rule: FaultRule | Mapping[str, Any]) -> FaultRule:
        if not isinstance(rule, FaultRule):
            rule = FaultRule.from_dict(rule)
        with self._lock:
            self.rules.append(rule)
        return rule

    def extend(self, rules: Iterable[FaultRule | Mapping[str, Any]]) -> None:
        for rule in rules:
            self.add(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self._state.clear()

    def fired(self, rule: FaultRule) -> int:
        return self._state.get(id(rule), _RuleState()).fired

    def decide(
        self, service: str, operation: str, resources: Iterable[str], draw: Callable[[], float], at: float
    ) -> Fault | None:
        """The fault for this call, if any; counts are updated atomically."""
        resources = list(resources)
        fault = self._decide(service, operation, resources, draw, at)
        if fault is not None and fault.rule.before is not None:
            # Outside the lock: the hook may make calls of its own, which come through here.
            fault.rule.before()
        return fault

    def _decide(
        self, service: str, operation: str, resources: list[str], draw: Callable[[], float], at: float
    ) -> Fault | None:
        with self._lock:
            for rule in self.rules:
                if not rule.matches(service, operation, resources):
                    continue
                state = self._state.setdefault(id(rule), _RuleState())
                state.seen += 1
                if state.seen <= rule.after:
                    continue
                if rule.count is not None and state.fired >= rule.count:
                    continue
                if rule.probability < 1.0 and draw() >= rule.probability:
                    continue
                state.fired += 1
                message = rule.message or f"Injected fault: {rule.error or 'latency'} ({service}.{operation})"
                self.log.append(
                    {
                        "at": at,
                        "rule": rule.name or f"{rule.service}:{rule.operation}",
                        "service": service,
                        "operation": operation,
                        "resource": resources[0] if resources else "",
                        "error": rule.error,
                        "latency": rule.latency,
                    }
                )
                return Fault(rule, rule.latency, rule.error, message, rule.http_status)
        return None


def request_resources(body: bytes | str | None, url: str) -> list[str]:
    """Names a request is about: table, secret, function, connection id, URL path."""
    found: list[str] = []
    if body:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if isinstance(payload, dict):
            for key in _RESOURCE_FIELDS:
                value = payload.get(key)
                if isinstance(value, str):
                    found.append(value)
                    # ARNs and URLs: also offer the last segment (a logical id).
                    found.append(value.rsplit(":", 1)[-1].rsplit("/", 1)[-1])
    path = url.split("://", 1)[-1].split("?", 1)[0]
    # Match what the user wrote: a connection id "abc=" is "abc%3D" in the URL.
    path = unquote(path.split("/", 1)[1]) if "/" in path else ""
    if path:
        found.append("/" + path)
        for part in (part for part in path.split("/") if part):
            found.append(part)
            if ":" in part:
                # Lambda's Invoke names the function in its path, an ARN as the Step Functions
                # task gives it: a rule on the function's name meets it too (a version or alias
                # qualifier left aside).
                arn = part.split(":")
                if len(arn) >= 7 and arn[0] == "arn" and arn[5] == "function":
                    found.append(arn[6])
                else:
                    found.append(part.rsplit(":", 1)[-1])
    return found


def load_fault_rules(source: str | Path | Mapping[str, Any] | list[Any]) -> list[FaultRule]:
    """Rules from a YAML/JSON file, a mapping with a ``faults`` list, or a list."""
    data: Any = source
    if isinstance(source, (str, Path)):
        data = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    if isinstance(data, Mapping):
        data = data.get("faults", [])
    if not isinstance(data, list):
        raise ValueError("fault rules must be a list, or a mapping with a 'faults' list")
    return [FaultRule.from_dict(item) for item in data]
