"""The checkout's bytecode in the user cache when PYTHONDONTWRITEBYTECODE keeps __pycache__ off."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
from pathlib import Path

from local_runtime import bytecode

#: A module of the checkout that importing local_runtime does not import by itself.
MODULE = "local_runtime.demo"
SOURCE = str(bytecode.CHECKOUT / "local_runtime" / "demo.py")

_IMPORT = f"""
import json, sys
import local_runtime
import {MODULE} as module
print(json.dumps({{"marker": getattr(module, "BW_TEST_MARKER", None), "has_demo": hasattr(module, "delivery_demo")}}))
"""


def _import_in_a_new_process(cache: Path, **env: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "BW_BUILD_CACHE": str(cache), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _cached(cache: Path, monkeypatch) -> Path:
    monkeypatch.setenv("BW_BUILD_CACHE", str(cache))
    return bytecode.cached_code_path(SOURCE)


def _header() -> bytes:
    return bytecode._header(os.stat(SOURCE))


def test_a_module_compiled_once_is_read_from_the_cache_while_its_source_is_unchanged(tmp_path, monkeypatch):
    assert _import_in_a_new_process(tmp_path) == {"marker": None, "has_demo": True}
    cached = _cached(tmp_path, monkeypatch)
    assert cached.read_bytes()[:16] == _header()
    # What the cache holds is what runs: code standing for the unchanged source is used as is.
    cached.write_bytes(_header() + marshal.dumps(compile("BW_TEST_MARKER = 42", SOURCE, "exec")))
    assert _import_in_a_new_process(tmp_path) == {"marker": 42, "has_demo": False}


def test_code_cached_for_another_version_of_the_source_is_never_used(tmp_path, monkeypatch):
    cached = _cached(tmp_path, monkeypatch)
    cached.parent.mkdir(parents=True)
    stale = bytearray(_header())
    stale[8:12] = (int.from_bytes(stale[8:12], "little") ^ 1).to_bytes(4, "little")  # another mtime
    cached.write_bytes(bytes(stale) + marshal.dumps(compile("BW_TEST_MARKER = 1", SOURCE, "exec")))
    assert _import_in_a_new_process(tmp_path) == {"marker": None, "has_demo": True}
    assert cached.read_bytes()[:16] == _header()  # compiled from the source and kept again


def test_off_leaves_python_alone(tmp_path, monkeypatch):
    assert _import_in_a_new_process(tmp_path, BW_BYTECODE_CACHE="off") == {"marker": None, "has_demo": True}
    assert not _cached(tmp_path, monkeypatch).exists()
