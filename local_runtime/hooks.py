"""The running stack, as every hook into moto and botocore finds it.

moto's mock and botocore's classes are process-wide, so their hooks are
installed once per process and dispatch to the one *active* LocalRuntime (with
none active they behave exactly like the originals). Each hook module lists the
private attributes it replaces as ``(module, attribute path)`` pairs, checked by
:func:`verify` against the pinned moto version so an upgrade that moves one
fails loudly, naming it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

__all__ = ["SeamMissingError", "activate", "active", "deactivate", "verify"]


class SeamMissingError(RuntimeError):
    """A private moto/botocore attribute the runtime relies on has moved."""


_active: Any = None


def active() -> Any:
    """The running LocalRuntime, or None."""
    return _active


def activate(runtime: Any) -> None:
    global _active
    if _active is not None and _active is not runtime:
        raise RuntimeError("another LocalRuntime is active in this process; stop it first")
    _active = runtime


def deactivate(runtime: Any) -> None:
    global _active
    if _active is runtime:
        _active = None


def resolve(module_name: str, path: str) -> Any:
    """The attribute at ``path`` in ``module_name``; an instance attribute is found in its
    class's constructor (``EventManager._mutex``)."""
    module = importlib.import_module(module_name)
    target: Any = module
    for part in path.split("."):
        if isinstance(target, type) and not hasattr(target, part):
            source = getattr(target, "__init__", None)
            code = getattr(source, "__code__", None)
            if code is None or part not in code.co_names:
                raise AttributeError(part)
            return source
        target = getattr(target, part)
    return target


def verify(seams: Iterable[tuple[str, str]]) -> None:
    """Fail loudly, naming the seam, if a pinned private attribute moved."""
    for module_name, path in seams:
        try:
            resolve(module_name, path)
        except (ImportError, AttributeError) as exc:
            raise SeamMissingError(
                f"moto/botocore seam {module_name}:{path} is gone ({exc}); "
                "the local runtime is pinned to the moto version in pyproject.toml"
            ) from exc
