"""Function logs: what each handler prints (Powertools log records, EMF metric lines).

On AWS each function's stdout goes to its own CloudWatch log group. In-process
every handler shares the process's stdout, so a command's own output would be
interleaved with the JSON lines of every function it ran. :func:`to_files`
routes what a function writes while it runs (see :func:`running`, set by
:class:`~local_runtime.lambdas.LocalFunction` around its init and each
invocation) to ``.bw/logs/<FunctionLogicalId>.log``, one JSON line each;
anything else still reaches the terminal. ``bw logs FUNCTION`` reads them.
Without :func:`to_files` (the library, the tests) stdout is untouched.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

__all__ = ["LOG_DIR", "describe", "log_file", "running", "to_files"]

LOG_DIR = Path(".bw") / "logs"

_local = threading.local()


def _stack() -> list[str]:
    stack: list[str] | None = getattr(_local, "functions", None)
    if stack is None:
        stack = _local.functions = []
    return stack


@contextmanager
def running(function: str) -> Iterator[None]:
    """What this thread writes to stdout meanwhile is ``function``'s log (nested invokes stack)."""
    stack = _stack()
    stack.append(function)
    try:
        yield
    finally:
        stack.pop()


def log_file(function: str, directory: Path = LOG_DIR) -> Path:
    return directory / f"{function}.log"


class _LogFiles:
    """The open ``<Function>.log`` files, one JSON line per write."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._files: dict[str, TextIO] = {}

    def append(self, function: str, line: str, kind: str) -> None:
        if not line.strip():
            return
        try:
            json.loads(line)
        except ValueError:  # a plain print() or a warning: still one JSON line in the file
            line = json.dumps({"level": kind, "message": line, "function_name": function})
        with self._lock:
            handle = self._files.get(function)
            if handle is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                handle = self._files[function] = log_file(function, self.directory).open("a", encoding="utf-8")
            handle.write(line + "\n")
            handle.flush()

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()


class _FunctionStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` while :func:`to_files` is active: a running function's lines to its file."""

    def __init__(self, terminal: TextIO, files: _LogFiles, kind: str) -> None:
        self._terminal = terminal
        self._files = files
        self._kind = kind
        self._pending = threading.local()
        #: False once :func:`to_files` has ended: a logger that kept this stream writes where stdout is now.
        self.active = True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return bool(getattr(self._terminal, "isatty", lambda: False)())

    def write(self, text: str) -> int:
        if not self.active:
            current = sys.stdout if self._kind == "PRINT" else sys.stderr
            return (self._terminal if current is self else current).write(text)
        stack = getattr(_local, "functions", None)
        if not stack:
            return self._terminal.write(text)
        function = stack[-1]
        pending: dict[str, str] | None = getattr(self._pending, "lines", None)
        if pending is None:
            pending = self._pending.lines = {}
        *lines, pending[function] = (pending.get(function, "") + text).split("\n")
        for line in lines:
            self._files.append(function, line, self._kind)
        return len(text)

    def flush(self) -> None:
        if not getattr(self._terminal, "closed", False):
            self._terminal.flush()

    def close(self) -> None:  # the terminal is not ours to close
        pass


@contextmanager
def to_files(directory: Path = LOG_DIR) -> Iterator[Path]:
    """Route what the functions write (stdout: log records, EMF; stderr: warnings) to
    ``directory/<Function>.log`` meanwhile. Install it before the cold starts: Powertools'
    Logger keeps the stream it found at import."""
    files = _LogFiles(directory)
    terminal_out, terminal_err = sys.stdout, sys.stderr
    out = _FunctionStream(terminal_out, files, "PRINT")
    errors = _FunctionStream(terminal_err, files, "STDERR")
    sys.stdout, sys.stderr = out, errors
    try:
        yield directory
    finally:
        out.active = errors.active = False
        if sys.stdout is out:
            sys.stdout = terminal_out
        if sys.stderr is errors:
            sys.stderr = terminal_err
        files.close()


def _time(value: Any) -> str:
    if isinstance(value, (int, float)):
        stamp = datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=UTC)
        return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, str):
        return value.replace("T", " ")[:23]
    return ""


def _metric(value: Any) -> str:
    values = value if isinstance(value, list) else [value]
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def describe(line: str) -> tuple[str, str, str, str]:
    """(time, level, message, correlation id) of one log line: a Powertools record, an EMF line or a print."""
    try:
        record = json.loads(line)
    except ValueError:
        return "", "", line.rstrip("\n"), ""
    if not isinstance(record, dict):
        return "", "", line.rstrip("\n"), ""
    emf = record.get("_aws")
    if isinstance(emf, dict):
        names = [
            metric["Name"]
            for directive in emf.get("CloudWatchMetrics") or []
            for metric in directive.get("Metrics") or []
            if isinstance(metric, dict) and "Name" in metric
        ]
        values = " ".join(f"{name}={_metric(record.get(name))}" for name in names)
        correlation = record.get("correlation_id") or record.get("correlationId") or ""
        return _time(emf.get("Timestamp")), "METRIC", values, str(correlation)
    message = record.get("message", "")
    if not isinstance(message, str):
        message = json.dumps(message, default=str)
    extra = record.get("exception")
    if isinstance(extra, str) and extra:
        message = f"{message}\n{extra}"
    return (
        _time(record.get("timestamp")),
        str(record.get("level", "")),
        message,
        str(record.get("correlation_id") or ""),
    )
