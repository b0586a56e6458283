"""The virtual clock: one simulated time for workflows, handlers and faults.

Step Functions runs branches of a Map or Parallel concurrently, so a single
global counter would add up sleeps that overlap in reality. Each thread
therefore owns a *cursor* on the timeline:

* a thread started while the clock runs begins at its parent's time;
* ``sleep`` moves the thread's cursor and, because a parent waits for its
  branches, pulls every waiting ancestor up to at least that time (join =
  max), so a Map of three items that each back off 4 s takes 4 s, not 12 s;
* a *detached* cursor (an execution started in the background) never pulls
  its starter forward: the two run side by side.

Handler code reads this clock through ``time.time()``, ``datetime.now()``
(time-machine patches them at the C level), ``time.sleep`` and
``time.monotonic`` (patched as module attributes while the clock is
installed). Real waits inside the interpreter (``threading.Event``) keep
using the real monotonic clock, which the patch does not touch.
"""

from __future__ import annotations

import contextvars
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any


def _import_time_machine() -> ModuleType:
    """time-machine imports pytest whenever it can, for its pytest plugin: a tenth of a second
    of every ``bw`` start for a plugin only pytest loads. Outside pytest it is imported with
    pytest out of sight (that import fails, time-machine goes without its plugin); under
    pytest, which imported itself first, nothing changes."""
    if "pytest" in sys.modules or "time_machine" in sys.modules:
        import time_machine
    else:
        sys.modules["pytest"] = None  # type: ignore[assignment] # ``import pytest`` raises ImportError
        try:
            import time_machine
        finally:
            if sys.modules.get("pytest") is None:
                del sys.modules["pytest"]
    return time_machine


time_machine = _import_time_machine()

__all__ = ["LambdaTimeoutInterrupt", "VirtualClock"]

_real_sleep = time.sleep
_real_monotonic = time.monotonic


class LambdaTimeoutInterrupt(BaseException):
    """Raised inside a handler whose virtual time passed its function Timeout.

    A ``BaseException`` so that a handler's ``except Exception`` cannot swallow
    it: on AWS the sandbox is frozen at the deadline, nothing after it runs.
    """


@dataclass(eq=False)
class _Cursor:
    now: float
    parent: _Cursor | None = None
    #: Latest time a branch of this thread reached; folded into ``now`` when this
    #: thread next reads or moves time, i.e. after it waited for its branches.
    joined: float = float("-inf")
    deadlines: list[float] = field(default_factory=list)


class VirtualClock:
    """Simulated wall clock shared by everything the runtime executes."""

    def __init__(self, start: float | datetime | None = None, seed: int | None = None) -> None:
        if isinstance(start, datetime):
            start = start.timestamp()
        if start is None:
            start = float(int(time.time()))
        self._lock = threading.RLock()
        self._root = _Cursor(now=float(start))
        self._local = threading.local()
        self._started_at = float(start)
        #: Jitter and fault probabilities draw from here, so a seed replays a run.
        self.random = random.Random(seed)
        self._installed = 0
        #: Decides which new threads run *beside* their starter (see module doc).
        self.detach_when: Callable[[Callable[..., Any]], bool] = lambda target: False
        #: Told about every detached thread, e.g. so a runtime can join an execution.
        self.on_detached: Callable[[threading.Thread, Callable[..., Any]], None] = lambda thread, target: None
        self._thread_start: Any = None
        self._traveller: Any = None
        self._travel: Any = None
        self._saved: dict[str, Any] = {}

    # -- reading -------------------------------------------------------------
    def _cursor(self) -> _Cursor:
        cursor: _Cursor | None = getattr(self._local, "cursor", None)
        cursor = cursor if cursor is not None else self._root
        if cursor.joined > cursor.now:
            cursor.now = cursor.joined
        return cursor

    def now(self) -> float:
        """Seconds since the epoch on the calling thread's timeline."""
        return self._cursor().now

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=UTC)

    def present(self) -> float:
        """The main timeline's present, whichever thread asks: for servers' request threads
        (``bw up``'s HTTP API), whose own timelines stop where they were started."""
        with self._lock:
            return max(self._root.now, self._root.joined)

    def monotonic(self) -> float:
        return self.now() - self._started_at

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the clock was created, on the main timeline."""
        return self._root.now - self._started_at

    def timeline(self) -> _Cursor:
        """A detached cursor at the main timeline's present.

        A live request (``bw up``) starts when the stack is, and what it sleeps
        (backoff, waits) moves only its own timeline, never the stack's.
        """
        with self._lock:
            root = self._root
            return _Cursor(now=max(root.now, root.joined))

    @contextmanager
    def main_timeline(self) -> Iterator[_Cursor]:
        """Run a block on the main timeline (``bw up``'s ticker and gateway threads)."""
        with self.bound(self._root) as cursor:
            yield cursor

    # -- moving ----------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """Advance the caller's timeline; never waits in real time.

        Inside a Lambda invocation the sandbox deadline is honoured: sleeping
        past it stops the handler there with :class:`LambdaTimeoutInterrupt`.
        """
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        cursor = self._cursor()
        with self._lock:
            target = cursor.now + seconds
            interrupted = False
            if cursor.deadlines and target > cursor.deadlines[-1]:
                target = max(cursor.now, cursor.deadlines[-1])
                interrupted = True
            self._move(cursor, target)
        # Yield the GIL, as a real sleep would, so busy-polling loops let others run.
        _real_sleep(0)
        if interrupted:
            raise LambdaTimeoutInterrupt(f"deadline reached after {target - self._started_at:.3f}s")

    advance = sleep

    def advance_to(self, when: float | datetime) -> None:
        if isinstance(when, datetime):
            when = when.timestamp()
        with self._lock:
            cursor = self._cursor()
            if when > cursor.now:
                self._move(cursor, when)

    def _move(self, cursor: _Cursor, target: float) -> None:
        cursor.now = target
        parent = cursor.parent
        while parent is not None and parent.joined < target:
            parent.joined = target
            parent = parent.parent

    # -- threads ---------------------------------------------------------------
    def fork(self, *, detached: bool = False) -> _Cursor:
        """A cursor for a new thread, starting at the caller's time.

        Reads the starter's own time without folding in its branches: a
        thread that starts several branches in a row starts them all at the
        same moment even if the first one already ran ahead.
        """
        local: _Cursor | None = getattr(self._local, "cursor", None)
        parent = local if local is not None else self._root
        return _Cursor(now=parent.now, parent=None if detached else parent)

    @contextmanager
    def bound(self, cursor: _Cursor) -> Iterator[_Cursor]:
        previous = getattr(self._local, "cursor", None)
        self._local.cursor = cursor
        try:
            yield cursor
        finally:
            self._local.cursor = previous

    @contextmanager
    def branch(self) -> Iterator[_Cursor]:
        """Run a block on a private timeline that does not move this thread's.

        Used for TimeoutSeconds: the work runs to completion (on AWS a Lambda
        keeps running after the state gives up), and the caller then decides
        how much of that time it actually waited.
        """
        with self.bound(_Cursor(now=self.now())) as cursor:
            yield cursor

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[float]:
        """Within the block, sleeping past ``now + seconds`` interrupts the thread."""
        cursor = self._cursor()
        when = cursor.now + seconds
        cursor.deadlines.append(when)
        try:
            yield when
        finally:
            cursor.deadlines.pop()

    def wrap_thread_target(self, target: Callable[..., Any], *, detached: bool) -> Callable[..., Any]:
        cursor = self.fork(detached=detached)
        # A thread carries its starter's context variables (who is calling, for IAM), as an
        # asyncio task does: a handler's worker threads sign with the handler's role.
        context = contextvars.copy_context()

        def run(*args: Any, **kwargs: Any) -> Any:
            with self.bound(cursor):
                return context.run(target, *args, **kwargs)

        return run

    # -- process-wide installation --------------------------------------------
    def install(self) -> None:
        """Route ``time``/``datetime`` of the whole process to this clock."""
        with self._lock:
            self._installed += 1
            if self._installed > 1:
                return
            self._travel = time_machine.travel(self._root.now, tick=False)
            self._traveller = self._travel.start()
            # time-machine's C patches ask the active traveller for the time;
            # answering per thread is what makes Map branches overlap.
            self._traveller.time_ns = lambda: int(self.now() * 1_000_000_000)
            self._saved = {"sleep": time.sleep, "monotonic": time.monotonic, "start": threading.Thread.start}
            time.sleep = self.sleep  # type: ignore[assignment]
            time.monotonic = self.monotonic
            threading.Thread.start = self._patched_start()  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        with self._lock:
            if self._installed == 0:
                return
            self._installed -= 1
            if self._installed:
                return
            time.sleep = self._saved["sleep"]
            time.monotonic = self._saved["monotonic"]
            threading.Thread.start = self._saved["start"]  # type: ignore[method-assign]
            self._travel.stop()
            self._travel = None
            self._traveller = None

    def _patched_start(self) -> Callable[[threading.Thread], None]:
        original: Callable[[threading.Thread], None] = self._saved["start"]
        clock = self

        def start(thread: threading.Thread) -> None:
            target = getattr(thread, "_target", None)
            if target is not None:
                detached = clock.detach_when(target)
                if detached:
                    clock.on_detached(thread, target)
                thread._target = clock.wrap_thread_target(target, detached=detached)  # type: ignore[attr-defined]
            original(thread)

        return start

    @property
    def installed(self) -> bool:
        return self._installed > 0

    def __enter__(self) -> VirtualClock:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


def real_sleep(seconds: float) -> None:
    """Sleep in real time even while a virtual clock is installed."""
    _real_sleep(seconds)


def real_monotonic() -> float:
    return _real_monotonic()


def real_time() -> float:
    """The wall clock (epoch seconds) even while a virtual clock is installed."""
    return float(time_machine.escape_hatch.time.time())
