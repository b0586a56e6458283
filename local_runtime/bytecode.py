"""Bytecode of this checkout's own Python kept in the user cache, when ``__pycache__`` is off.

With ``PYTHONDONTWRITEBYTECODE`` set (container images set it, this project's machines
among them) Python compiles every module of ours from source at every start: the
runtime, the shared layer and the handlers, some 80 files, about half a second of each
``bw up`` (site-packages are unaffected: pip wrote their bytecode at install). Imported
first by :mod:`local_runtime`, this keeps the compiled code of files under the checkout
in ``~/.cache/breakwater/bytecode`` (:envvar:`BW_BUILD_CACHE` or :envvar:`XDG_CACHE_HOME`
move it), never beside the sources, validated as CPython validates a ``.pyc``: the
interpreter's magic number and the source's mtime and size. Anything else is compiled as
before. ``BW_BYTECODE_CACHE=off`` leaves Python's own behaviour alone.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import marshal
import os
import sys
from pathlib import Path
from typing import Any

from local_runtime.user_cache import cache_dir

__all__ = ["CHECKOUT", "cached_code_path", "install"]

#: The checkout: local_runtime/, layers/, functions/, tests/, bench/.
CHECKOUT = Path(__file__).resolve().parent.parent
_HEADER = 16  # magic, flags, mtime, size: CPython's timestamp-based .pyc header
_installed = False


def _cache_root() -> Path:
    return cache_dir("bytecode") / (sys.implementation.cache_tag or "python")


def cached_code_path(source: str) -> Path:
    """Where the compiled code of ``source`` (an absolute path) is kept."""
    return _cache_root() / f"{hashlib.sha256(source.encode()).hexdigest()[:32]}.pyc"


def _header(stat: os.stat_result) -> bytes:
    return (
        importlib.util.MAGIC_NUMBER
        + (0).to_bytes(4, "little")
        + (int(stat.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
        + (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    )


def install() -> None:
    """Hook ``SourceFileLoader.get_code`` for files under :data:`CHECKOUT` (once per process),
    only while Python itself writes no bytecode."""
    global _installed
    if _installed or not sys.dont_write_bytecode or os.environ.get("BW_BYTECODE_CACHE", "").lower() == "off":
        return
    loader_class: Any = importlib.machinery.SourceFileLoader
    original = loader_class.get_code
    prefix = str(CHECKOUT) + os.sep

    def get_code(self: Any, fullname: str) -> Any:
        source = self.get_filename(fullname)
        if not source.startswith(prefix) or not source.endswith(".py"):
            return original(self, fullname)
        if os.path.exists(importlib.util.cache_from_source(source)):
            return original(self, fullname)  # a __pycache__ already there (a venv inside the checkout)
        try:
            header = _header(os.stat(source))
        except OSError:
            return original(self, fullname)
        cached = cached_code_path(source)
        try:
            data = cached.read_bytes()
        except OSError:
            data = b""
        if data[:_HEADER] == header:
            try:
                return marshal.loads(data[_HEADER:])
            except (EOFError, ValueError, TypeError):
                pass  # a torn or foreign file: compile, and write it again
        code = self.source_to_code(self.get_data(source), source)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            staging = cached.with_suffix(f".{os.getpid()}.tmp")
            staging.write_bytes(header + marshal.dumps(code))
            staging.replace(cached)  # atomic: two processes at once write the same bytes
        except OSError:
            pass  # a read-only cache: compiled again next time, as without it
        return code

    loader_class.get_code = get_code
    _installed = True


install()
