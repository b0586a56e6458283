"""Function logs: what each handler prints (Powertools log records, EMF metric lines).

On AWS each function's stdout goes to its own CloudWatch log group. In-process
every handler shares the process's stdout, so a command's own output would be
interleaved with the JSON lines of every function it ran. This module is the one
way a function's lines are captured:

* :func:`running` (set by :class:`~local_runtime.lambdas.LocalFunction` around its
  init and each invocation) says which function this thread is acting as;
* :func:`listening` subscribes a :class:`Sink` to every complete line a running
  function writes to stdout/stderr: :func:`to_files` (``.bw/logs/<Function>.log``,
  read by ``bw logs FUNCTION``) and the console's recent lines and metrics
  (:mod:`local_runtime.console`) are two sinks;
* :func:`emit` hands the sinks a line a function wrote elsewhere (``bw up --containers``:
  a Lambda container's log), so it lands where an in-process function's line would.

A bearer token or a JWT in a line never reaches a sink (:func:`redact`): a log file or
the console is read by more people than the token was meant for.

``sys.stdout``/``sys.stderr`` are only replaced while a function runs and a sink
listens, by a tee layered over whatever stream was there, and put back when the
last running function returns. Whoever swaps the streams meanwhile (pytest's
capture, click's CliRunner, ``redirect_stdout``) wins: a tee that is no longer on
top writes where ``sys.stdout`` is *now*, never to a stream it once saw. That
matters because Powertools' Logger keeps the stream it found at its first import
for the life of the process (its stdlib logger is process-global). Without a
sink (the library, most tests) nothing is replaced.
"""

from __future__ import annotations

import io
import json
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

__all__ = ["LOG_DIR", "Sink", "describe", "emit", "listening", "log_file", "redact", "running", "to_files"]

LOG_DIR = Path(".bw") / "logs"

#: What a line came through: stdout (log records, EMF, print) or stderr (warnings, tracebacks).
STDOUT, STDERR = "PRINT", "STDERR"


@dataclass(frozen=True)
class Sink:
    """Where a running function's complete lines go: ``keep(function, line, kind)``."""

    keep: Callable[[str, str, str], None]
    #: The lines reach this sink only, not the terminal (``--logs files``).
    divert: bool = False


_local = threading.local()
_lock = threading.Lock()
_sinks: tuple[Sink, ...] = ()
_running = 0  # functions running now, in every thread
_STREAMS = (("stdout", STDOUT), ("stderr", STDERR))
#: A JWT (three base64url parts, the header's ``{"`` first) or a bearer credential.
_SECRET = re.compile(r"eyJ[\w-]{5,}\.[\w-]+\.[\w-]*|(?i:bearer)\s+[\w.~+/=-]{8,}")
#: Every tee ever put on a stream, by (stream, the stream under it), never freed: print()
#: holds a *borrowed* reference to sys.stdout while it writes (CPython before 3.13.3,
#: gh-130163), so a tee freed by another thread's swap mid-print was a use-after-free
#: (segfaults in the garbage collector). Keyed by the stream under it, which it keeps
#: alive too; bounded by the streams a process swaps in (``bw``: one).
_tees: dict[tuple[str, int], _Tee] = {}


def _stack() -> list[str]:
    stack: list[str] | None = getattr(_local, "functions", None)
    if stack is None:
        stack = _local.functions = []
    return stack


def _current() -> str | None:
    stack = getattr(_local, "functions", None)
    return stack[-1] if stack else None


@contextmanager
def running(function: str) -> Iterator[None]:
    """What this thread writes to stdout/stderr meanwhile is ``function``'s (nested invokes stack)."""
    stack = _stack()
    stack.append(function)
    _enter()
    try:
        yield
    finally:
        stack.pop()
        _leave()


def _enter() -> None:
    global _running
    with _lock:
        _running += 1
        if not _sinks:
            return
        for name, kind in _STREAMS:
            current = getattr(sys, name)
            if not isinstance(current, _Tee):  # none yet, or something swapped it since
                tee = _tees.get((name, id(current)))
                if tee is None:
                    tee = _tees[(name, id(current))] = _Tee(current, name, kind)
                setattr(sys, name, tee)


def _leave() -> None:
    global _running
    with _lock:
        _running -= 1
        if _running:
            return
        # No function runs: no tee stays. One that something covered meanwhile is back on
        # top only if that something restored it (pytest's capsys does): unwrapped too.
        for name, _ in _STREAMS:
            while isinstance(top := getattr(sys, name), _Tee):
                setattr(sys, name, top.below)


@contextmanager
def listening(sink: Sink) -> Iterator[Sink]:
    """``sink`` gets every complete line a running function writes, meanwhile."""
    global _sinks
    with _lock:
        _sinks = (*_sinks, sink)
    try:
        yield sink
    finally:
        with _lock:
            _sinks = tuple(s for s in _sinks if s is not sink)


def redact(line: str) -> str:
    """``line`` with every JWT and bearer credential in it replaced by ``[REDACTED]``."""
    return _SECRET.sub("[REDACTED]", line) if "eyJ" in line or "earer" in line.lower() else line


def emit(function: str, line: str, kind: str = STDOUT) -> None:
    """One complete line ``function`` wrote outside this process (its Lambda container):
    every sink listening keeps it, as a line written in-process; with none diverting it,
    it is written to the terminal too, as an in-process function's would be."""
    if not line.strip():
        return
    line = redact(line)
    sinks = _sinks
    for sink in sinks:
        sink.keep(function, line, kind)
    if not any(sink.divert for sink in sinks):
        (sys.stdout if kind == STDOUT else sys.stderr).write(line + "\n")


class _Tee(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` while a function runs and a sink listens."""

    def __init__(self, below: TextIO, name: str, kind: str) -> None:
        self.below = below
        self.name = name
        self.kind = kind
        self._pending: dict[tuple[int, str], str] = {}
        self._pending_lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._target(), "encoding", None) or "utf-8")

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return bool(getattr(self._target(), "isatty", lambda: False)())

    def fileno(self) -> int:
        return int(self._target().fileno())

    def _target(self) -> TextIO:
        """The stream under the tee now: what it covered while on top, else whatever is there now."""
        top: TextIO | _Tee = getattr(sys, self.name)
        if isinstance(top, _Tee):
            return self.below if top is self else top._target()
        return top

    def write(self, text: str) -> int:
        top = getattr(sys, self.name)
        if top is not self and isinstance(top, _Tee):
            return top.write(text)  # the tee on top now keeps the lines: once
        function = _current()
        sinks = _sinks
        if function is None or not sinks:
            return self._target().write(text)
        self._keep(function, text, sinks)
        if any(sink.divert for sink in sinks):
            return len(text)
        return self._target().write(text)

    def _keep(self, function: str, text: str, sinks: tuple[Sink, ...]) -> None:
        key = (threading.get_ident(), function)
        with self._pending_lock:
            *lines, rest = (self._pending.pop(key, "") + text).split("\n")
            if rest:
                self._pending[key] = rest
        for line in lines:
            if line.strip():
                line = redact(line)
                for sink in sinks:
                    sink.keep(function, line, self.kind)

    def flush(self) -> None:
        target = self._target()
        if not getattr(target, "closed", False):
            target.flush()

    def close(self) -> None:  # the stream under it is not ours to close
        pass


def log_file(function: str, directory: Path = LOG_DIR) -> Path:
    return directory / f"{function}.log"


class _LogFiles:
    """The open ``<Function>.log`` files, one JSON line per write."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._files: dict[str, TextIO] = {}
        self._closed = False

    def append(self, function: str, line: str, kind: str) -> None:
        try:
            json.loads(line)
        except ValueError:  # a plain print() or a warning: still one JSON line in the file
            line = json.dumps({"level": kind, "message": line, "function_name": function})
        with self._lock:
            if self._closed:  # a line of a function still running after the command ended
                return
            handle = self._files.get(function)
            if handle is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                handle = self._files[function] = log_file(function, self.directory).open("a", encoding="utf-8")
            handle.write(line + "\n")
            handle.flush()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for handle in self._files.values():
                handle.close()
            self._files.clear()


@contextmanager
def to_files(directory: Path = LOG_DIR, *, divert: bool = True) -> Iterator[Path]:
    """Meanwhile, what the functions write (stdout: log records, EMF; stderr: warnings) also
    goes to ``directory/<Function>.log``; with ``divert``, only there (not the terminal)."""
    files = _LogFiles(directory)
    try:
        with listening(Sink(files.append, divert=divert)):
            yield directory
    finally:
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
