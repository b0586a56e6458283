"""Deployment packages: what a function can import, as on AWS.

On AWS a function imports from its own package (``/var/task``: its CodeUri
plus the requirements ``sam build`` installed there), its layers
(``/opt/python``: a layer's ContentUri plus *its* requirements), the Python
standard library and the few packages the Lambda python3.13 runtime ships
(boto3, botocore and their dependencies, awslambdaric). Nothing else: a
module the package lacks is ``Runtime.ImportModuleError`` at the cold start.

Offline the same holds. Requirements are installed the way ``sam build``
installs them (``pip install -r requirements.txt --target``), once per
content hash, into a cache shared by every checkout; a function's imports
resolve to its code, its layers' code and those builds, never to the
developer's virtual environment. The runtime's own boto3/botocore are the
exception (they stand for the copies Lambda ships, and moto hooks them), so
a layer's copy of botocore is left out of its build, as the one Lambda ships
is what a function gets when the layer does not bring one.
"""

from __future__ import annotations

import builtins
import contextvars
import csv
import fcntl
import functools
import hashlib
import importlib.abc
import importlib.machinery
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from local_runtime.user_cache import cache_dir

__all__ = [
    "LAMBDA_RUNTIME_MODULES",
    "PackageBuildError",
    "PackageView",
    "build_requirements",
    "current_view",
    "install_guard",
    "is_under",
    "package_view",
    "top_level_names",
]

#: Top-level modules the Lambda python3.13 runtime provides besides the standard library
#: (boto3 and its dependencies in /var/lang/lib/python3.13/site-packages, the runtime
#: interface client in /var/runtime).
LAMBDA_RUNTIME_MODULES = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "awslambdaric", "simplejson"}
)
#: Distributions of those modules, left out of a build (see the module doc).
_RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "python_dateutil", "urllib3", "six")
_STDLIB = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names) | {"__future__", "_distutils_hack"}
_BUILD_LOCK = threading.Lock()


class PackageBuildError(RuntimeError):
    """``pip install -r requirements.txt`` failed for a function or layer (pip's output says why)."""


def _requirements(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def build_requirements(requirements: Path) -> Path | None:
    """The directory ``sam build`` would fill from ``requirements`` (None when it lists nothing)."""
    if not requirements.is_file():
        return None
    text = requirements.read_text(encoding="utf-8")
    if not _requirements(text):
        return None
    version = f"{sys.implementation.name}{sys.version_info.major}{sys.version_info.minor}"
    digest = hashlib.sha256(f"{version}\n{text}".encode()).hexdigest()[:16]
    target = cache_dir("requirements") / digest
    if (target / ".complete").is_file():
        return target
    with _BUILD_LOCK:
        target.parent.mkdir(parents=True, exist_ok=True)
        with (target.parent / f"{digest}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (target / ".complete").is_file():
                return target
            staging = target.parent / f"{digest}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-warn-script-location",
                    "--target",
                    str(staging),
                    "-r",
                    str(requirements),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                raise PackageBuildError(f"pip install -r {requirements} failed:\n{result.stderr[-4000:]}")
            for entry in list(staging.iterdir()):
                stem = entry.name.split("-", 1)[0].split(".", 1)[0]
                if stem in LAMBDA_RUNTIME_MODULES or stem in _RUNTIME_DISTRIBUTIONS or entry.name == "bin":
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
            (staging / ".complete").write_text(requirements.as_posix(), encoding="utf-8")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
    return target


def top_level_names(roots: Iterable[Path]) -> frozenset[str]:
    """Modules and packages the directories provide (what ``import NAME`` can find there)."""
    names: set[str] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            if entry.suffix == ".py":
                names.add(entry.stem)
            elif entry.suffix in (".so", ".pyd"):
                names.add(entry.name.split(".", 1)[0])
            elif entry.is_dir() and entry.name.isidentifier() and not entry.name.endswith((".dist-info", ".egg-info")):
                names.add(entry.name)  # packages, namespace packages included
    return frozenset(names)


@dataclass(frozen=True, eq=False)
class PackageView:
    """What one function sees: its package roots, in the order Lambda searches them."""

    function: str
    roots: tuple[Path, ...]  # CodeUri, its build, each layer's code, each layer's build
    dependency_roots: tuple[Path, ...]  # the builds: third-party code, loaded once per process
    names: frozenset[str]  # top-level names the roots provide
    #: Names whose build holds the very distribution version the runtime's own environment
    #: has: the function imports those modules from there (the same code, loaded once).
    shared: frozenset[str] = frozenset()

    def allows(self, name: str) -> bool:
        top = name.partition(".")[0]
        return top in self.names or top in _STDLIB or top in LAMBDA_RUNTIME_MODULES

    def owns_file(self, path: str) -> bool:
        return bool(path) and path.startswith(self._prefixes)

    @functools.cached_property
    def _prefixes(self) -> tuple[str, ...]:
        return tuple(str(root) + os.sep for root in self.roots)


def package_view(function: str, code_dir: Path, layer_dirs: Sequence[Path]) -> PackageView:
    """A function's view, building its and its layers' requirements when needed."""
    roots: list[Path] = []
    dependencies: list[Path] = []
    for source in (code_dir, *layer_dirs):
        roots.append(source)
        built = build_requirements(source / "requirements.txt")
        if built is not None:
            roots.append(built)
            dependencies.append(built)
    resolved = tuple(p.resolve() for p in roots)
    shared = frozenset(name for build in dependencies for name in _same_as_environment(build))
    return PackageView(function, resolved, tuple(p.resolve() for p in dependencies), top_level_names(resolved), shared)


@functools.cache
def _same_as_environment(build: Path) -> frozenset[str]:
    """Top-level names of the distributions in ``build`` installed at the same version here
    (a build never changes: its directory is named by its requirements' hash)."""
    from importlib import metadata

    names: set[str] = set()
    for info in build.glob("*.dist-info"):
        distribution = metadata.PathDistribution(info)
        try:
            same = metadata.version(distribution.metadata["Name"]) == distribution.version
        except metadata.PackageNotFoundError:
            same = False
        if not same:
            continue
        for top in _record_tops(info, distribution):
            if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__", "bin"):
                continue
            names.add(top.split(".", 1)[0] if "." in top else top)
    return frozenset(names)


def _record_tops(info: Path, distribution: Any) -> set[str]:
    """The first path component of every file the distribution installed that exists, as
    ``Distribution.files`` gives them (it drops the files missing, such as a script
    ``--target`` did not install). Read straight from its RECORD (csv: path, hash, size), and
    one file found is enough for its component: ``files`` builds and stats a path object per
    file, and the builds' fifteen hundred files made that a tenth of a second of every start."""
    try:
        text = (info / "RECORD").read_text(encoding="utf-8")
    except OSError:  # no RECORD: metadata's own way
        return {file.parts[0] for file in distribution.files or ()}
    found: set[str] = set()
    for row in csv.reader(text.splitlines()):
        if not row or not row[0]:
            continue
        top = row[0].split("/", 1)[0]
        if top not in found and (info.parent / row[0]).exists():
            found.add(top)
    return found


def module_location(module: ModuleType | None) -> str | None:
    """Where a module's code is, symlinks resolved (remembered: a loaded module never moves)."""
    location = getattr(module, "__file__", None)
    if not location:
        paths = getattr(module, "__path__", None)
        location = next(iter(paths), None) if paths is not None else None
    return _real(location) if isinstance(location, str) and location else None


@functools.cache
def _real(location: str) -> str:
    return os.path.realpath(location)


def is_under(module: ModuleType | None, roots: Iterable[Path | str]) -> bool:
    """Is the module's code inside one of ``roots`` (resolved directories)?"""
    location = module_location(module)
    if location is None:
        return False
    return any(location == str(root) or location.startswith(str(root) + os.sep) for root in roots)


# -- the guard --------------------------------------------------------------------
_VIEW: contextvars.ContextVar[PackageView | None] = contextvars.ContextVar("bw_package_view", default=None)


_LOADING: contextvars.ContextVar[PackageView | None] = contextvars.ContextVar("bw_package_loading", default=None)


def current_view() -> PackageView | None:
    """The package of the function running (or starting) on this thread, if any."""
    return _VIEW.get()


@contextmanager
def importing_as(view: PackageView | None, *, cold_start: bool = False) -> Iterator[None]:
    """Imports the function's code makes inside (and in threads started inside) must resolve
    within ``view``; during the cold start (``cold_start``) every import on the thread must."""
    token = _VIEW.set(view)
    loading = _LOADING.set(view if cold_start else None)
    try:
        yield
    finally:
        _LOADING.reset(loading)
        _VIEW.reset(token)


class _PackageGuard(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path``: while a function imports, a top-level module outside its
    package is not found at all (the developer's venv is on ``sys.path`` for the runtime's
    sake, not the function's)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if path is not None:
            return None  # a submodule: its package's __path__ decides
        loading = _LOADING.get()
        view = loading or _VIEW.get()
        if view is None:
            return None
        if fullname in view.shared:
            outside = [p for p in sys.path if not view.owns_file(os.path.join(os.path.realpath(p or "."), ""))]
            return importlib.machinery.PathFinder.find_spec(fullname, outside)
        if loading is not None and not loading.allows(fullname):
            raise ModuleNotFoundError(f"No module named '{fullname}'", name=fullname)
        return None


_GUARD = _PackageGuard()


_original_import = builtins.__import__


def _guarded_import(
    name: str,
    globals: dict[str, Any] | None = None,
    locals: dict[str, Any] | None = None,
    fromlist: Sequence[str] = (),
    level: int = 0,
) -> ModuleType:
    """``import x`` finds a module already loaded by the developer's side in ``sys.modules``
    without asking any finder; on a function's thread it must not."""
    if level == 0:
        view = _VIEW.get()
        # Only the function's own code (and its builds) is held to its package: the runtime's
        # machinery (moto, the shared botocore and its optional awscrt) runs on the same thread.
        if view is not None and view.owns_file(str((globals or {}).get("__file__") or "")) and not view.allows(name):
            raise ModuleNotFoundError(f"No module named '{name.partition('.')[0]}'", name=name)
    return _original_import(name, globals, locals, fromlist, level)


def install_guard() -> None:
    """Install the guard (once per process): with no function importing, it does nothing."""
    if _GUARD not in sys.meta_path:
        sys.meta_path.insert(0, _GUARD)
    if builtins.__import__ is not _guarded_import:
        builtins.__import__ = _guarded_import  # type: ignore[assignment]
