"""moto's Step Functions interpreter without AWS Batch's backend (and EC2's) at import.

The interpreter's task-service factory imports every integration it knows, Batch's
among them, and that module needs one enum (``moto.batch.utils.JobStatus``). Importing
``moto.batch.utils`` runs ``moto/batch/__init__.py`` first, which loads Batch's
backend, which loads EC2's: a thousand modules and 90 JSON files of instance types,
about a second of every start, for a template with no Batch and no EC2 at all.

:func:`preload_batch_utils` puts ``moto.batch`` in ``sys.modules`` as the package it is
(its spec, its ``__path__``) with ``exceptions`` and ``utils`` loaded from their own
files, but without running its ``__init__``: that runs on the first attribute the
package does not have yet (``batch_backends``, as moto's ``get_backend("batch")`` or a
``states:::batch:submitJob`` task asks for it), and then Batch's backend loads in full
and picks up these same two modules. Nothing behaves differently; Batch is only paid
for when used.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

from local_runtime.hooks import SeamMissingError

__all__ = ["preload_batch_utils"]

PACKAGE = "moto.batch"
#: Loaded in this order: ``utils`` imports ``.exceptions`` relatively.
_MODULES = ("exceptions", "utils")
_lock = threading.RLock()


def preload_batch_utils() -> None:
    """``moto.batch`` with its ``exceptions`` and ``utils`` but not yet its backend (see the
    module's doc). Does nothing once done, or when Batch is already imported."""
    with _lock:
        if PACKAGE in sys.modules:
            return
        loaded: list[str] = []
        try:
            spec = importlib.util.find_spec(PACKAGE)  # imports ``moto`` only, not ``moto.batch``
            if spec is None or spec.loader is None or not spec.submodule_search_locations:
                raise ImportError(f"no package {PACKAGE}")
            package = importlib.util.module_from_spec(spec)
            sys.modules[PACKAGE] = package
            loaded.append(PACKAGE)
            for name in _MODULES:
                found = importlib.util.find_spec(f"{PACKAGE}.{name}")  # in package.__path__
                if found is None or found.loader is None:
                    raise ImportError(f"no module {PACKAGE}.{name}")
                module = importlib.util.module_from_spec(found)
                sys.modules[found.name] = module
                loaded.append(found.name)
                found.loader.exec_module(module)
                setattr(package, name, module)
            package.utils.JobStatus  # noqa: B018 - what the interpreter imports
        except (OSError, ImportError, AttributeError) as exc:
            for name in loaded:  # nothing half-loaded stays behind
                sys.modules.pop(name, None)
            raise SeamMissingError(
                f"moto seam moto.batch.utils:JobStatus is gone ({exc!r}); "
                "the local runtime is pinned to the moto version in pyproject.toml"
            ) from exc
        package.__dict__["__getattr__"] = _rest_of(package, spec.loader)
        sys.modules["moto"].batch = package  # type: ignore[attr-defined] # as ``import moto.batch`` would


def _rest_of(package: ModuleType, loader: Any) -> Any:
    """The package's ``__getattr__`` (PEP 562) until its ``__init__`` has run: runs it, once."""

    def load_rest(name: str) -> Any:
        with _lock:
            if package.__dict__.get("__getattr__") is load_rest:
                del package.__dict__["__getattr__"]
                loader.exec_module(package)  # ``from .models import batch_backends``
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None

    return load_rest
