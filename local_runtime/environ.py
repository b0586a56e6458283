"""Per-thread environment variables for in-process Lambda sandboxes.

Handlers of different functions run concurrently in one process (a Map
invokes several at once, a handler may start a synchronous workflow that
invokes another). Swapping ``os.environ`` under a lock would serialise them
and deadlock the nested case, so while the runtime is active ``os.environ``
is replaced by a mapping that lets each invoking thread see its function's
variables over the process environment.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

__all__ = ["ThreadEnviron"]


class ThreadEnviron(MutableMapping[str, str]):
    _local = threading.local()
    _installed: ThreadEnviron | None = None
    _lock = threading.Lock()

    def __init__(self, base: MutableMapping[str, str]) -> None:
        self._base = base

    # -- the per-thread layer ---------------------------------------------------
    @classmethod
    def _layers(cls) -> list[dict[str, str]]:
        layers: list[dict[str, str]] | None = getattr(cls._local, "layers", None)
        if layers is None:
            layers = []
            cls._local.layers = layers
        return layers

    @classmethod
    @contextmanager
    def overlay(cls, variables: Mapping[str, str]) -> Iterator[None]:
        layers = cls._layers()
        layers.append(dict(variables))
        try:
            yield
        finally:
            layers.pop()

    def _top(self) -> dict[str, str] | None:
        layers = self._layers()
        return layers[-1] if layers else None

    # -- MutableMapping ---------------------------------------------------------
    def __getitem__(self, key: str) -> str:
        top = self._top()
        if top is not None and key in top:
            return top[key]
        return self._base[key]

    def __setitem__(self, key: str, value: str) -> None:
        top = self._top()
        if top is not None:
            top[key] = value
        else:
            self._base[key] = value

    def __delitem__(self, key: str) -> None:
        top = self._top()
        if top is not None and key in top:
            del top[key]
        else:
            del self._base[key]

    def __iter__(self) -> Iterator[str]:
        top = self._top() or {}
        yield from top
        yield from (key for key in self._base if key not in top)

    def __len__(self) -> int:
        top = self._top() or {}
        return len(top) + sum(1 for key in self._base if key not in top)

    def copy(self) -> dict[str, str]:
        return dict(self)

    def __getattr__(self, name: str) -> Any:
        # os._Environ extras (encodekey, ...) used by subprocess and os helpers.
        return getattr(self._base, name)

    # -- installation -----------------------------------------------------------
    @classmethod
    def install(cls) -> None:
        with cls._lock:
            if cls._installed is None:
                cls._installed = ThreadEnviron(os.environ)
                os.environ = cls._installed  # type: ignore[assignment]  # noqa: B003 - replaced, not cleared, on purpose

    @classmethod
    def uninstall(cls) -> None:
        with cls._lock:
            if cls._installed is not None:
                os.environ = cls._installed._base  # type: ignore[assignment]  # noqa: B003
                cls._installed = None
