"""API Gateway access logs: one line per request, in the stage's ``AccessLogSettings.Format``,
written to its log group (moto's CloudWatch Logs, so ``aws logs filter-log-events`` against
``bw up``'s AWS endpoint reads them).

Each ``$context.<name>`` of the format is replaced by that request's value; a variable
without one is written ``-``, as API Gateway does. Values are JSON-escaped, so a JSON
format stays one JSON object per line whatever a client sends. The lines are API
Gateway's own delivery, not a call of the application: no role, fault rule or request
count applies to them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AccessLog", "AccessLogSpec", "access_log_spec", "render"]

_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)")


@dataclass(frozen=True)
class AccessLogSpec:
    log_group: str
    format: str


def access_log_spec(template: Any, settings: Any) -> AccessLogSpec | None:
    """A stage's ``AccessLogSettings`` (DestinationArn: ``!GetAtt <LogGroup>.Arn``) as a spec."""
    if not isinstance(settings, Mapping) or "Format" not in settings:
        return None
    destination = settings.get("DestinationArn")
    target = destination.get("Fn::GetAtt") if isinstance(destination, Mapping) else None
    logical_id = (target[0] if isinstance(target, list) else str(target).split(".")[0]) if target else None
    resource = template.resources.get(logical_id) if logical_id else None
    if resource is None or resource.get("Type") != "AWS::Logs::LogGroup":
        return None
    name = (resource.get("Properties") or {}).get("LogGroupName")
    resolved = template.resolver().intrinsic_property_resolver({"v": name}, ignore_errors=True).get("v")
    return AccessLogSpec(str(resolved), str(settings["Format"]))


def render(format: str, variables: Mapping[str, Any]) -> str:
    """The format with every ``$context`` variable substituted (``-`` when it has no value)."""

    def value(match: re.Match[str]) -> str:
        found = variables.get(match.group(1))
        if found is None or found == "":
            return "-"
        return json.dumps(str(found))[1:-1]

    return _VARIABLE.sub(value, format)


@dataclass
class AccessLog:
    """Writes one stage's lines into moto's log group (created on the first line)."""

    spec: AccessLogSpec
    region: str
    account_id: str
    stream: str
    clock: Callable[[], float]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def write(self, variables: Mapping[str, Any]) -> str:
        from moto.logs.models import logs_backends

        line = render(self.spec.format, variables)
        backend = logs_backends[self.account_id][self.region]
        with self._lock:
            if self.spec.log_group not in backend.groups:
                backend.create_log_group(self.spec.log_group, tags={})
            group = backend.groups[self.spec.log_group]
            if self.stream not in group.streams:
                backend.create_log_stream(self.spec.log_group, self.stream)
            backend.put_log_events(
                self.spec.log_group, self.stream, [{"timestamp": int(self.clock() * 1000), "message": line}]
            )
        return line
