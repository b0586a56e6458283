"""Embedded metric format: what a function prints, read as CloudWatch Logs reads it.

On AWS a handler's stdout goes to CloudWatch Logs, which extracts a metric
from every line that is an EMF document (``_aws.CloudWatchMetrics``). Here
each invocation's stdout lines are captured (per thread: handlers run concurrently
in one process; through :mod:`local_runtime.logs`) into the invocation, and :func:`datapoints` turns each document into
the datapoints CloudWatch would store, timestamped by the document's own
``_aws.Timestamp`` (the virtual clock's, since Powertools reads ``datetime``).

A document CloudWatch would refuse to extract (no namespace, a dimension the
document does not carry, a value that is not a number) yields no datapoint and
raises :class:`EmfError` naming why, so a metric that would silently never reach
CloudWatch fails a test instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from local_runtime import logs
from local_runtime.models import Datapoint

__all__ = ["EmfError", "all_datapoints", "capture_stdout", "datapoints", "documents"]

#: CloudWatch's limit on dimensions per dimension set (EMF specification).
MAX_DIMENSIONS = 30


class EmfError(ValueError):
    """An EMF document CloudWatch would not extract metrics from."""


@contextmanager
def capture_stdout(function: str) -> Iterator[list[str]]:
    """The lines ``function`` prints to stdout in this thread while inside, in order (still
    written through). Enter it before :func:`local_runtime.logs.running`: the one capture
    of the functions' output is :mod:`local_runtime.logs`, which only tees stdout while a
    function runs and a sink listens."""
    thread = threading.get_ident()
    captured: list[str] = []

    def keep(name: str, line: str, kind: str) -> None:
        # Another function nested in this thread (an in-process invoke) keeps its own lines.
        if kind == logs.STDOUT and name == function and threading.get_ident() == thread:
            captured.append(line + "\n")

    with logs.listening(logs.Sink(keep)):
        yield captured


def documents(output: str) -> list[dict[str, Any]]:
    """Every JSON object in ``output`` that carries ``_aws`` (one per line, as Powertools prints)."""
    found: list[dict[str, Any]] = []
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue  # not JSON: CloudWatch keeps it as a plain log line
        if isinstance(document, dict) and isinstance(document.get("_aws"), dict):
            found.append(document)
    return found


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EmfError(f"{where}: value {value!r} is not a number")
    return float(value)


def datapoints(document: dict[str, Any]) -> list[Datapoint]:
    """The datapoints one EMF document yields: one per value, per metric, per dimension set."""
    meta = document["_aws"]
    timestamp = meta.get("Timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise EmfError(f"_aws.Timestamp must be epoch milliseconds, got {timestamp!r}")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        raise EmfError("_aws.CloudWatchMetrics must be a list")
    points: list[Datapoint] = []
    for directive in directives:
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str) or not namespace:
            raise EmfError("a metric directive has no Namespace")
        dimension_sets = directive.get("Dimensions") or [[]]
        for names in dimension_sets:
            if len(names) > MAX_DIMENSIONS:
                raise EmfError(f"{namespace}: {len(names)} dimensions, CloudWatch allows {MAX_DIMENSIONS}")
            missing = [name for name in names if not isinstance(document.get(name), str)]
            if missing:
                raise EmfError(f"{namespace}: dimension(s) {missing} have no string value in the document")
            dimensions = frozenset((name, str(document[name])) for name in names)
            for metric in directive.get("Metrics") or []:
                name = metric.get("Name")
                if name not in document:
                    raise EmfError(f"{namespace}: metric {name!r} has no value in the document")
                raw = document[name]
                values = raw if isinstance(raw, list) else [raw]
                points.extend(
                    Datapoint(
                        namespace=namespace,
                        name=str(name),
                        dimensions=dimensions,
                        timestamp=timestamp / 1000.0,
                        value=_number(value, f"{namespace}/{name}"),
                        unit=metric.get("Unit"),
                    )
                    for value in values
                )
    return points


def all_datapoints(docs: Iterable[dict[str, Any]]) -> list[Datapoint]:
    return [point for document in docs for point in datapoints(document)]
